//! A `.nii.gz` whose gzip trailer (CRC-32 or length) does not match its content is refused,
//! naming the file, instead of being used silently.

use masam_volume::io::{read_nifti, NiftiWriter};
use masam_volume::ndarray::Array3;
use masam_volume::Volume;

fn write_sample(path: &std::path::Path) {
    let data = Array3::from_shape_fn((4, 6, 5), |(z, y, x)| (z * 30 + y * 5 + x) as f32);
    NiftiWriter::new()
        .write(path, &Volume::with_spacing(data, [1.0, 1.0, 2.0]))
        .unwrap();
}

#[test]
fn corrupted_gzip_trailers_are_errors() {
    let dir = std::env::temp_dir().join(format!("masam-gz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.nii.gz");
    write_sample(&good);
    assert_eq!(
        read_nifti(&good).unwrap().data[[3, 5, 4]],
        3.0 * 30.0 + 25.0 + 4.0
    );
    let bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    // the last 8 bytes: CRC-32 of the uncompressed data, then its length mod 2^32
    for (name, at) in [("crc", n - 8), ("isize", n - 2)] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        let path = dir.join(format!("bad_{name}.nii.gz"));
        std::fs::write(&path, &bad).unwrap();
        let err = read_nifti(&path).expect_err(name).to_string();
        assert!(err.contains("gzip"), "{name}: {err}");
        assert!(err.contains(&format!("bad_{name}.nii.gz")), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
