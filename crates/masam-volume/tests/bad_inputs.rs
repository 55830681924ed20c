//! A corpus of bad inputs, generated at test time from a valid file: each must give a typed
//! error that names the offending file, never a panic, never an unbounded allocation, and never
//! a half-written output.

use std::path::Path;
use std::time::Instant;

use masam_testkit::TempDir;
use masam_volume::dataset::index::load_case;
use masam_volume::dataset::{btcv, folder_pair, msd, CaseFiles, DatasetConfig};
use masam_volume::io::dicom::read_dicom_series;
use masam_volume::io::frames::{list_frames, read_rgb_frame};
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::writer::NiftiWriter;
use masam_volume::{Volume, VolumeError};
use ndarray::Array3;

fn small() -> Volume<f32> {
    Volume::with_spacing(
        Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 20 + y * 5 + x) as f32),
        [1.0, 1.0, 2.0],
    )
}

/// A valid uncompressed NIfTI of `small()` as bytes.
fn valid_nii(dir: &TempDir) -> Vec<u8> {
    let p = dir.join("valid.nii");
    NiftiWriter::new().write(&p, &small()).unwrap();
    std::fs::read(&p).unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An in-place edit of a header.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

fn put_i16(b: &mut [u8], off: usize, v: i16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// The path an error names, for the variants that carry one.
fn named_path(e: &VolumeError) -> Option<&Path> {
    Some(match e {
        VolumeError::Io { path, .. }
        | VolumeError::InvalidHeader { path, .. }
        | VolumeError::TooLarge { path, .. }
        | VolumeError::TooManyVoxels { path, .. }
        | VolumeError::ClaimExceedsData { path, .. }
        | VolumeError::InvalidValue { path, .. }
        | VolumeError::UnsupportedDatatype { path, .. }
        | VolumeError::NotThreeD { path, .. }
        | VolumeError::VolumeIndex { path, .. }
        | VolumeError::NonFinite { path, .. }
        | VolumeError::Empty { path, .. }
        | VolumeError::Missing { path, .. }
        | VolumeError::Dicom { path, .. }
        | VolumeError::DicomSeries { path, .. }
        | VolumeError::Image { path, .. }
        | VolumeError::Dataset { path, .. } => path,
        VolumeError::ShapeMismatch { label, .. } | VolumeError::AffineMismatch { label, .. } => {
            label
        }
        VolumeError::Fs(e) => e.path(),
        _ => return None,
    })
}

fn read_err(p: &Path) -> VolumeError {
    let e = NiftiReader::new()
        .read::<f32>(p)
        .expect_err("bad input must not read");
    assert_eq!(named_path(&e), Some(p), "error must name the file: {e}");
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    e
}

#[test]
fn truncated_gzip() {
    let d = TempDir::new("volume-bad-tgz");
    let g = gz(&valid_nii(&d));
    let p = d.join("truncated.nii.gz");
    std::fs::write(&p, &g[..g.len() / 2]).unwrap();
    assert!(matches!(read_err(&p), VolumeError::Io { .. }));
    // Cut inside the header too.
    std::fs::write(&p, &g[..20]).unwrap();
    let e = read_err(&p);
    assert!(
        matches!(
            e,
            VolumeError::Io { .. } | VolumeError::InvalidHeader { .. }
        ),
        "{e}"
    );
}

#[test]
fn truncated_uncompressed_data() {
    let d = TempDir::new("volume-bad-tnii");
    let b = valid_nii(&d);
    let p = d.join("short.nii");
    std::fs::write(&p, &b[..b.len() - 7]).unwrap();
    // refused from the file's size, before the data is read
    match read_err(&p) {
        VolumeError::ClaimExceedsData {
            claimed, available, ..
        } => {
            assert_eq!(claimed, b.len() as u64);
            assert_eq!(available, b.len() as u64 - 7);
        }
        e => panic!("{e}"),
    }
    std::fs::write(&p, &b[..100]).unwrap();
    assert!(matches!(read_err(&p), VolumeError::InvalidHeader { .. }));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(read_err(&p), VolumeError::InvalidHeader { .. }));
}

#[test]
fn wrong_magic_and_not_nifti() {
    let d = TempDir::new("volume-bad-magic");
    let mut b = valid_nii(&d);
    b[344..348].copy_from_slice(b"xyz\0");
    let p = d.join("magic.nii");
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(read_err(&p), VolumeError::InvalidHeader { .. }));
    let p2 = d.join("text.nii.gz");
    std::fs::write(
        &p2,
        "this is not a NIfTI file at all, just some text ".repeat(20),
    )
    .unwrap();
    assert!(matches!(read_err(&p2), VolumeError::InvalidHeader { .. }));
    // .hdr/.img pairs ("ni1") are refused with an explanation.
    b[344..348].copy_from_slice(b"ni1\0");
    std::fs::write(&p, &b).unwrap();
    assert!(read_err(&p).to_string().contains("ni1"));
}

#[test]
fn terabyte_header_is_refused_before_reading() {
    let d = TempDir::new("volume-bad-huge");
    let mut b = valid_nii(&d);
    for i in 1..=3 {
        put_i16(&mut b, 40 + 2 * i, 30000);
    }
    put_i16(&mut b, 70, 64); // float64
    put_i16(&mut b, 72, 64);
    for (name, bytes) in [("huge.nii", b.clone()), ("huge.nii.gz", gz(&b))] {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let t = Instant::now();
        match read_err(&p) {
            VolumeError::TooLarge {
                bytes,
                limit,
                bytes_per_voxel,
                ..
            } => {
                assert_eq!(bytes_per_voxel, 8);
                assert_eq!(bytes, 30000u64.pow(3) * 8);
                assert!(bytes > limit);
            }
            e => panic!("{e}"),
        }
        assert!(t.elapsed().as_secs_f64() < 1.0, "must fail fast");
    }
    // A smaller custom limit applies to ordinary files too.
    let p = d.join("valid.nii");
    let e = NiftiReader::new()
        .max_bytes(100)
        .read::<f32>(&p)
        .unwrap_err();
    assert!(matches!(e, VolumeError::TooLarge { .. }), "{e}");
}

#[test]
fn bad_header_fields() {
    let d = TempDir::new("volume-bad-fields");
    let base = valid_nii(&d);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "zero_dim.nii",
            Box::new(|b: &mut Vec<u8>| put_i16(b, 44, 0)),
        ),
        (
            "neg_dim.nii",
            Box::new(|b: &mut Vec<u8>| put_i16(b, 44, -5)),
        ),
        ("rank9.nii", Box::new(|b: &mut Vec<u8>| put_i16(b, 40, 9))),
        ("bitpix.nii", Box::new(|b: &mut Vec<u8>| put_i16(b, 72, 8))),
        (
            "vox_offset.nii",
            Box::new(|b: &mut Vec<u8>| b[108..112].copy_from_slice(&100f32.to_le_bytes())),
        ),
    ];
    for (name, edit) in cases {
        let mut b = base.clone();
        edit(&mut b);
        let p = d.join(name);
        std::fs::write(&p, &b).unwrap();
        let e = read_err(&p);
        assert!(
            matches!(e, VolumeError::InvalidHeader { .. }),
            "{name}: {e}"
        );
    }
    let mut b = base.clone();
    put_i16(&mut b, 70, 32); // complex64
    put_i16(&mut b, 72, 64);
    let p = d.join("complex.nii");
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(
        read_err(&p),
        VolumeError::UnsupportedDatatype { code: 32, .. }
    ));
}

#[test]
fn nan_voxels() {
    let d = TempDir::new("volume-bad-nan");
    let mut v = small();
    v.data[[1, 2, 3]] = f32::NAN;
    v.data[[2, 0, 0]] = f32::INFINITY;
    let p = d.join("nan.nii.gz");
    NiftiWriter::new().write(&p, &v).unwrap();
    match read_err(&p) {
        VolumeError::NonFinite { count, first, .. } => {
            assert_eq!(count, 2);
            assert_eq!(first, 20 + 2 * 5 + 3); // x-fastest flat index of (z1, y2, x3)
        }
        e => panic!("{e}"),
    }
    let ok = NiftiReader::new()
        .allow_non_finite(true)
        .read::<f32>(&p)
        .unwrap();
    assert!(ok.volume.data[[1, 2, 3]].is_nan());
}

#[test]
fn four_d_without_index() {
    let d = TempDir::new("volume-bad-4d");
    let v = small();
    let p = d.join("4d.nii");
    NiftiWriter::new()
        .write_channels(&p, &[v.data.clone(), v.data.clone(), v.data.clone()], &v)
        .unwrap();
    assert!(matches!(
        read_err(&p),
        VolumeError::NotThreeD { ndim: 4, .. }
    ));
    let e = NiftiReader::new()
        .volume_index(3)
        .read::<f32>(&p)
        .unwrap_err();
    assert!(
        matches!(e, VolumeError::VolumeIndex { count: 3, .. }),
        "{e}"
    );
}

#[test]
fn image_label_mismatch() {
    let d = TempDir::new("volume-bad-mismatch");
    let img = small();
    let ip = d.join("img.nii.gz");
    NiftiWriter::new().write(&ip, &img).unwrap();
    // Shape mismatch.
    let lp = d.join("label_shape.nii.gz");
    let lab = Volume::with_spacing(Array3::<u8>::zeros((3, 4, 6)), img.spacing);
    NiftiWriter::new().write(&lp, &lab).unwrap();
    let case = CaseFiles {
        id: "x".into(),
        image: ip.clone(),
        label: Some(lp.clone()),
    };
    match load_case(&case, &DatasetConfig::default()) {
        Err(VolumeError::ShapeMismatch {
            image,
            label,
            image_shape,
            label_shape,
        }) => {
            assert_eq!((image, label), (ip.clone(), lp.clone()));
            assert_eq!((image_shape, label_shape), ([3, 4, 5], [3, 4, 6]));
        }
        other => panic!("{other:?}"),
    }
    // Affine mismatch (same shape, shifted origin).
    let lp2 = d.join("label_affine.nii.gz");
    let mut lab2 = img.map(|_| 0u8);
    lab2.affine[0][3] += 0.5;
    NiftiWriter::new().write(&lp2, &lab2).unwrap();
    let case = CaseFiles {
        label: Some(lp2.clone()),
        ..case
    };
    match load_case(&case, &DatasetConfig::default()) {
        Err(e @ VolumeError::AffineMismatch { .. }) => {
            assert_eq!(named_path(&e), Some(lp2.as_path()));
            assert!(e.to_string().contains(&ip.display().to_string()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_folders() {
    let d = TempDir::new("volume-bad-empty");
    let e = read_dicom_series(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
    assert_eq!(named_path(&e), Some(d.path()));
    std::fs::create_dir_all(d.join("img")).unwrap();
    let e = btcv::cases(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
    let e = list_frames(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
    let e = folder_pair::cases(d.path(), d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
    let missing = d.join("does_not_exist");
    let e = btcv::cases(&missing).unwrap_err();
    assert!(matches!(e, VolumeError::Io { .. }), "{e}");
}

#[test]
fn dataset_descriptions_and_pairs() {
    let d = TempDir::new("volume-bad-desc");
    std::fs::write(d.join("dataset.json"), "{ \"training\": [ {\"image\": 3 ").unwrap();
    let e = msd::cases(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Dataset { .. }), "{e}");
    assert_eq!(named_path(&e), Some(d.join("dataset.json").as_path()));
    // The JSON parser's own error is the source.
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.downcast_ref::<serde_json::Error>().is_some(),
        "{source}"
    );
    std::fs::write(
        d.join("dataset.json"),
        r#"{"training": [{"image": "./imagesTr/p_001.nii.gz", "label": "./labelsTr/p_001.nii.gz"}]}"#,
    )
    .unwrap();
    let e = msd::cases(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Missing { .. }), "{e}");
    // Folder pair with an unmatched image.
    std::fs::create_dir_all(d.join("im")).unwrap();
    std::fs::create_dir_all(d.join("lb")).unwrap();
    NiftiWriter::new()
        .write(d.join("im/a.nii.gz"), &small())
        .unwrap();
    let e = folder_pair::cases(d.join("im"), d.join("lb")).unwrap_err();
    assert_eq!(named_path(&e), Some(d.join("lb/a.nii.gz").as_path()));
}

#[test]
fn bad_dicom_and_png() {
    let d = TempDir::new("volume-bad-dcm");
    let p = d.join("junk.dcm");
    std::fs::write(&p, vec![7u8; 500]).unwrap();
    let e = read_dicom_series(d.path()).unwrap_err();
    assert!(matches!(e, VolumeError::Dicom { .. }), "{e}");
    assert_eq!(named_path(&e), Some(p.as_path()));
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.downcast_ref::<dicom_object::ReadError>().is_some(),
        "{source}"
    );
    let png = d.join("broken.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage").unwrap();
    let e = read_rgb_frame(&png).unwrap_err();
    assert!(matches!(e, VolumeError::Image { .. }), "{e}");
    assert_eq!(named_path(&e), Some(png.as_path()));
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.downcast_ref::<png::DecodingError>().is_some(),
        "{source}"
    );
}

#[test]
fn writer_never_leaves_partial_files() {
    let d = TempDir::new("volume-bad-writer");
    let v = small();
    let target = d.join("out.nii.gz");
    // Reference grid that does not match: refused before anything is written.
    let other = Volume::with_spacing(Array3::<f32>::zeros((2, 2, 2)), [1.0; 3]);
    let p_other = d.join("other.nii");
    NiftiWriter::new().write(&p_other, &other).unwrap();
    let g = NiftiReader::new().read::<f32>(&p_other).unwrap().geometry;
    let e = NiftiWriter::new()
        .reference(&g)
        .write(&target, &v)
        .unwrap_err();
    assert!(matches!(e, VolumeError::InvalidArgument(_)), "{e}");
    assert!(!target.exists());
    // Destination folder missing: an IO error, no stray temporary file anywhere.
    let e = NiftiWriter::new()
        .write(d.join("no_such_dir/out.nii"), &v)
        .unwrap_err();
    assert!(matches!(e, VolumeError::Fs(_)), "{e}");
    assert_eq!(
        named_path(&e),
        Some(d.join("no_such_dir/out.nii").as_path())
    );
    // Overwriting keeps the old file until the new one is complete; afterwards only outputs remain.
    NiftiWriter::new().write(&target, &v).unwrap();
    NiftiWriter::new()
        .write(&target, &v.map(|x| x * 2.0))
        .unwrap();
    let back = NiftiReader::new().read::<f32>(&target).unwrap();
    assert_eq!(back.volume.data, v.data.map(|x| x * 2.0));
    assert_eq!(d.entries(), ["other.nii", "out.nii.gz"]);
}
