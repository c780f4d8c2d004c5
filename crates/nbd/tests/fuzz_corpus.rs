//! Replays the fuzz corpus (crates/nbd/fuzz/corpus/request_parser) through the fuzz target's
//! body on stable Rust, so CI checks every input the fuzzer kept without nightly.

#[test]
fn replay_request_parser_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_parser");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory") {
        let p = e.expect("corpus entry").path();
        let data = std::fs::read(&p).expect("corpus file");
        shale_nbd::proto::fuzz_one(&data);
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus inputs in {}", dir.display());
}
