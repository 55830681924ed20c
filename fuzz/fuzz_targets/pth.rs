#![no_main]
//! `.pth` (zip + pickle) from bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = masam_weights::read_pth_bytes(
        data,
        std::path::Path::new("fuzz.pth"),
        &masam_weights::Limits::default(),
    );
});
