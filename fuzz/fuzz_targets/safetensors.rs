#![no_main]
//! safetensors from bytes.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = masam_weights::read_safetensors_bytes(
        data,
        std::path::Path::new("fuzz.safetensors"),
        &masam_weights::Limits::default(),
    );
});
