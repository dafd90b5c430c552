//! Feeds arbitrary bytes to the engine's full decode path (sniffing, header probe, limits,
//! every decoder, resize, encode). libfuzzer-sys aborts on any panic, even one the engine
//! would catch, so decoder panics are found rather than hidden.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::Rendition;
use worker::image::{Limits, render};

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the limit checks themselves are part of what is fuzzed.
    let limits = Limits { max_input_bytes: 1 << 20, max_pixels: 4_000_000, max_dimension: 4096, ..Limits::default() };
    let mut small = Rendition::thumbnail();
    small.width = Some(64);
    small.height = Some(64);
    let _ = render(data, &[small], &limits);
});
