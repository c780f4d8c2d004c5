//! Fuzz the NBD request and option decoders (see `shale_nbd::proto::fuzz_one`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shale_nbd::proto::fuzz_one(data));
