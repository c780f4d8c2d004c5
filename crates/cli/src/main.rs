//! `shale`: see `shale --help`. All logic lives in the library (`shale_cli`).
fn main() {
    std::process::exit(shale_cli::main(std::env::args_os().collect()));
}
