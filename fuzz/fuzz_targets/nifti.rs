#![no_main]
//! Uncompressed NIfTI (`.nii`): header and voxels.

use libfuzzer_sys::fuzz_target;

#[path = "../src/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("in.nii", data);
    let _ = masam_volume::io::read_nifti(&path);
});
