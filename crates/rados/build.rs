//! Link librados.so.2 like Ceph's: SONAME librados.so.2 and the version nodes `LIBRADOS_PRIVATE`
//! and `LIBRADOS_14.2.0` (see abi/librados.map and the `.symver` table in src/generated.rs).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    println!("cargo:rerun-if-changed=abi/librados.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librados.so.2");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/abi/librados.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
