#![no_main]
//! Gzipped NIfTI (`.nii.gz`): the input is the *uncompressed* stream, compressed here, so that
//! mutations reach the header and voxels (and a second half of the input, when it starts with
//! `GZ`, is written raw, to fuzz the gzip layer itself).

use std::io::Write;

use libfuzzer_sys::fuzz_target;

#[path = "../src/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let bytes = if let Some(raw) = data.strip_prefix(b"GZ") {
        raw.to_vec()
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("in memory");
        e.finish().expect("in memory")
    };
    let path = scratch::file("in.nii.gz", &bytes);
    let _ = masam_volume::io::read_nifti(&path);
});
