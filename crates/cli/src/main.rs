//! `shale`: see `shale --help`. All logic lives in the library (`shale_cli`).
fn main() {
    // Log lines (warnings by default; `SHALE_LOG=debug`, `SHALE_LOG=shale_engine=trace`, ...)
    // go to stderr.
    shale_log::init_from_env();
    std::process::exit(shale_cli::main(std::env::args_os().collect()));
}
