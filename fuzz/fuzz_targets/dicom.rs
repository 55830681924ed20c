#![no_main]
//! One DICOM file (`.dcm`) read as a one-slice series: meta, data set, geometry, pixel data.

use libfuzzer_sys::fuzz_target;

#[path = "../src/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file("in.dcm", data);
    let dir = path.parent().expect("scratch folder").to_path_buf();
    let _ = masam_volume::io::dicom::read_dicom_files(&dir, &[path]);
});
