//! DICOM inputs built in the test with dicom-rs: classic single-frame series, a lone slice,
//! enhanced multi-frame MR/CT, and hostile files (a FIFO, non-finite rescale and geometry, a
//! small file claiming a huge image, truncation). Each hostile file must give a typed error that
//! names it, quickly and without allocating from the header's claims.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_core::smallvec::smallvec;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, Tag};
use masam_testkit::TempDir;
use masam_volume::io::dicom::{read_dicom_series, DicomReader};
use masam_volume::io::{read_volume, ReadLimits};
use masam_volume::VolumeError;

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const ENHANCED_MR: &str = "1.2.840.10008.5.1.4.1.1.4.1";
const ENHANCED_CT: &str = "1.2.840.10008.5.1.4.1.1.2.1";
const ROWS: usize = 3;
const COLS: usize = 4;
/// An oblique orientation (rotation about z by 30°).
const IOP: [f64; 6] = [
    0.866_025_403_784_438_6,
    0.5,
    0.0,
    -0.5,
    0.866_025_403_784_438_6,
    0.0,
];

fn ds(values: &[f64]) -> PrimitiveValue {
    let s: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    PrimitiveValue::from(s.join("\\"))
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: PrimitiveValue) {
    obj.put(DataElement::new(tag, vr, value));
}

fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn item(tag: Tag, vr: VR, value: PrimitiveValue) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tag, vr, value);
    o
}

/// Pixel values of slice `k` (signed 16-bit, before rescale).
fn pixels(k: usize) -> Vec<i16> {
    (0..ROWS * COLS)
        .map(|i| (k * 100 + i) as i16 - 50)
        .collect()
}

/// The image module shared by every file: 16-bit signed greyscale `ROWS` × `COLS`.
fn image_module(obj: &mut InMemDicomObject, class: &str, frames: &[Vec<i16>]) {
    put(obj, tags::SOP_CLASS_UID, VR::UI, class.into());
    put(obj, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6".into());
    put(obj, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.5".into());
    for (tag, v) in [
        (tags::ROWS, ROWS as u16),
        (tags::COLUMNS, COLS as u16),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 16),
        (tags::HIGH_BIT, 15),
        (tags::PIXEL_REPRESENTATION, 1),
        (tags::SAMPLES_PER_PIXEL, 1),
    ] {
        put(obj, tag, VR::US, PrimitiveValue::U16(smallvec![v]));
    }
    put(
        obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    let bytes: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    put(obj, tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes));
}

fn write(obj: InMemDicomObject, path: &Path) {
    let class = obj
        .get(tags::SOP_CLASS_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid("1.2.3.4.5.6");
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

/// Position of slice `k`: 2.5 mm steps along the normal of `IOP` (= z) from an offset origin.
fn position(k: usize) -> [f64; 3] {
    [-10.0, 20.0, 5.0 + 2.5 * k as f64]
}

/// A classic single-frame CT slice; `edit` changes it before writing.
fn classic_slice(path: &Path, k: usize, edit: impl FnOnce(&mut InMemDicomObject)) {
    let mut obj = InMemDicomObject::new_empty();
    image_module(&mut obj, CT, &[pixels(k)]);
    put(
        &mut obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        ds(&position(k)),
    );
    put(&mut obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&IOP));
    put(&mut obj, tags::PIXEL_SPACING, VR::DS, ds(&[0.5, 0.75]));
    put(&mut obj, tags::RESCALE_SLOPE, VR::DS, ds(&[2.0]));
    put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, ds(&[-1024.0]));
    edit(&mut obj);
    write(obj, path);
}

fn classic_series(dir: &Path, n: usize) {
    for k in 0..n {
        classic_slice(&dir.join(format!("s{k}.dcm")), k, |_| {});
    }
}

/// An enhanced multi-frame file holding slices `order` (frames stored in that order), geometry
/// in the functional groups: position per frame, orientation, spacing and rescale shared.
fn enhanced(path: &Path, class: &str, order: &[usize], edit: impl FnOnce(&mut InMemDicomObject)) {
    let mut obj = InMemDicomObject::new_empty();
    let frames: Vec<Vec<i16>> = order.iter().map(|&k| pixels(k)).collect();
    image_module(&mut obj, class, &frames);
    put(
        &mut obj,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        order.len().to_string().into(),
    );
    let mut shared = InMemDicomObject::new_empty();
    let mut measures = item(tags::PIXEL_SPACING, VR::DS, ds(&[0.5, 0.75]));
    put(&mut measures, tags::SLICE_THICKNESS, VR::DS, ds(&[2.5]));
    put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
    put_seq(
        &mut shared,
        tags::PLANE_ORIENTATION_SEQUENCE,
        vec![item(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&IOP))],
    );
    let mut rescale = item(tags::RESCALE_SLOPE, VR::DS, ds(&[2.0]));
    put(
        &mut rescale,
        tags::RESCALE_INTERCEPT,
        VR::DS,
        ds(&[-1024.0]),
    );
    put_seq(
        &mut shared,
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        vec![rescale],
    );
    put_seq(
        &mut obj,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared],
    );
    let per_frame = order
        .iter()
        .map(|&k| {
            let mut f = InMemDicomObject::new_empty();
            put_seq(
                &mut f,
                tags::PLANE_POSITION_SEQUENCE,
                vec![item(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&position(k)))],
            );
            f
        })
        .collect();
    put_seq(
        &mut obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );
    edit(&mut obj);
    write(obj, path);
}

fn named(e: &VolumeError) -> Option<PathBuf> {
    match e {
        VolumeError::Dicom { path, .. }
        | VolumeError::DicomSeries { path, .. }
        | VolumeError::InvalidValue { path, .. }
        | VolumeError::NonFinite { path, .. }
        | VolumeError::ClaimExceedsData { path, .. }
        | VolumeError::TooManyVoxels { path, .. }
        | VolumeError::TooLarge { path, .. } => Some(path.clone()),
        VolumeError::Fs(e) => Some(e.path().to_path_buf()),
        _ => None,
    }
}

#[test]
fn enhanced_mr_and_ct_read_like_the_same_classic_series() {
    let d = TempDir::new("dicom-enhanced");
    let classic = d.join("classic");
    std::fs::create_dir_all(&classic).unwrap();
    classic_series(&classic, 4);
    let want = read_dicom_series(&classic).unwrap();
    assert_eq!(want.shape_zyx(), [4, ROWS, COLS]);
    assert_eq!(
        want.data[[2, 1, 3]],
        ((200 + 7) as f32 - 50.0) * 2.0 - 1024.0
    );
    for (name, class) in [("mr.dcm", ENHANCED_MR), ("ct.dcm", ENHANCED_CT)] {
        let p = d.join(name);
        // frames stored out of order: they are sorted along the normal
        enhanced(&p, class, &[2, 0, 3, 1], |_| {});
        let got = read_volume(&p).unwrap();
        assert_eq!(got.data, want.data, "{name}");
        assert!(
            got.affine_max_abs_diff(&want.affine) < 1e-9,
            "{name}: {:?}",
            got.affine
        );
        assert_eq!(got.spacing, want.spacing);
        let frames = DicomReader::new().read_frames(&p).unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[1].position, position(0));
    }
}

#[test]
fn enhanced_frames_with_different_orientations_are_refused() {
    let d = TempDir::new("dicom-enhanced-bad");
    let p = d.join("mixed.dcm");
    enhanced(&p, ENHANCED_MR, &[0, 1, 2], |obj| {
        // frame 3 gets its own (axial) orientation, overriding the shared one
        let per = obj
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        let mut per = per;
        put_seq(
            &mut per[2],
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![item(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            )],
        );
        put_seq(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per);
    });
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::DicomSeries { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("different orientation") && msg.contains("frame 3"),
        "{msg}"
    );
    // A frame count that disagrees with the per-frame items.
    let p = d.join("count.dcm");
    enhanced(&p, ENHANCED_CT, &[0, 1], |obj| {
        put(obj, tags::NUMBER_OF_FRAMES, VR::IS, "3".into())
    });
    let e = read_volume(&p).unwrap_err();
    assert_eq!(named(&e).as_deref(), Some(p.as_path()), "{e}");
}

#[test]
fn a_single_slice_takes_its_thickness_like_itk() {
    let d = TempDir::new("dicom-single");
    let p = d.join("one.dcm");
    let cases: [(Option<f64>, Option<f64>, f64); 3] = [
        (Some(5.0), Some(3.0), 3.0), // Spacing Between Slices first
        (Some(5.0), None, 5.0),      // then Slice Thickness
        (None, None, 1.0),           // else 1 mm
    ];
    for (thickness, between, want) in cases {
        classic_slice(&p, 0, |o| {
            if let Some(t) = thickness {
                put(o, tags::SLICE_THICKNESS, VR::DS, ds(&[t]));
            }
            if let Some(b) = between {
                put(o, tags::SPACING_BETWEEN_SLICES, VR::DS, ds(&[b]));
            }
        });
        let v = read_volume(&p).unwrap();
        assert_eq!(v.spacing, [0.75, 0.5, want]);
        // the third affine column is the normal (z) times the thickness
        let col: Vec<f64> = (0..3).map(|r| v.affine[r][2]).collect();
        assert!(
            (col[2] - want).abs() < 1e-12 && col[0].abs() < 1e-12,
            "{col:?}"
        );
    }
    classic_slice(&p, 0, |o| put(o, tags::SLICE_THICKNESS, VR::DS, ds(&[0.0])));
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::InvalidValue { .. }), "{e}");
}

#[test]
fn non_finite_rescale_and_geometry_are_refused() {
    let d = TempDir::new("dicom-nonfinite");
    type Edit = fn(&mut InMemDicomObject);
    let cases: [(&str, Edit, &str); 6] = [
        (
            "slope_nan",
            |o| put(o, tags::RESCALE_SLOPE, VR::DS, "NaN".into()),
            "Rescale Slope",
        ),
        (
            "slope_1e999",
            |o| put(o, tags::RESCALE_SLOPE, VR::DS, "1e999".into()),
            "Rescale Slope",
        ),
        (
            "inter_inf",
            |o| put(o, tags::RESCALE_INTERCEPT, VR::DS, "-inf".into()),
            "Rescale Intercept",
        ),
        (
            "position",
            |o| put(o, tags::IMAGE_POSITION_PATIENT, VR::DS, "0\\NaN\\1".into()),
            "Image Position",
        ),
        (
            "spacing0",
            |o| put(o, tags::PIXEL_SPACING, VR::DS, "0\\1".into()),
            "Pixel Spacing",
        ),
        (
            "spacing_neg",
            |o| put(o, tags::PIXEL_SPACING, VR::DS, "1\\-0.5".into()),
            "Pixel Spacing",
        ),
    ];
    for (name, edit, field) in cases {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        classic_series(&dir, 2);
        let p = dir.join("s1.dcm");
        classic_slice(&p, 1, edit);
        let e = read_dicom_series(&dir).unwrap_err();
        match &e {
            VolumeError::InvalidValue { path, field: f, .. } => {
                assert_eq!(path, &p);
                assert!(f.contains(field), "{name}: {e}");
            }
            _ => panic!("{name}: {e}"),
        }
    }
    // A finite slope that overflows f32 once applied.
    let p = d.join("overflow.dcm");
    classic_slice(&p, 1, |o| {
        put(o, tags::RESCALE_SLOPE, VR::DS, "1e300".into())
    });
    match read_volume(&p).unwrap_err() {
        VolumeError::NonFinite { count, path, .. } => {
            assert_eq!(path, p);
            assert_eq!(count, ROWS * COLS); // raw values 50..61, all beyond f32 × 1e300
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_small_file_claiming_a_huge_image_fails_fast_and_small() {
    let d = TempDir::new("dicom-huge");
    // Rows × Columns claim 65535² × 16 bit (8 GiB) over 24 bytes of Pixel Data.
    let p = d.join("claim.dcm");
    classic_slice(&p, 0, |o| {
        put(o, tags::ROWS, VR::US, PrimitiveValue::U16(smallvec![65535]));
        put(
            o,
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::U16(smallvec![65535]),
        );
    });
    assert!(std::fs::metadata(&p).unwrap().len() < 2048);
    let t = Instant::now();
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::TooLarge { .. }), "{e}");
    // Below the voxel limit but beyond the Pixel Data element.
    classic_slice(&p, 0, |o| {
        put(o, tags::ROWS, VR::US, PrimitiveValue::U16(smallvec![4096]));
        put(
            o,
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::U16(smallvec![4096]),
        );
        put(o, tags::NUMBER_OF_FRAMES, VR::IS, "60".into());
    });
    match read_volume(&p).unwrap_err() {
        VolumeError::ClaimExceedsData {
            claimed, available, ..
        } => {
            assert_eq!(claimed, 4096 * 4096 * 60 * 2);
            assert_eq!(available, (ROWS * COLS * 2) as u64);
        }
        e => panic!("{e}"),
    }
    // The Pixel Data element itself claims 4 GB (its length field patched in the file).
    classic_slice(&p, 0, |_| {});
    let mut b = std::fs::read(&p).unwrap();
    let at = b
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .unwrap();
    b[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::ClaimExceedsData { .. }), "{e}");
    assert_eq!(named(&e).as_deref(), Some(p.as_path()));
    assert!(t.elapsed().as_secs_f64() < 5.0, "must fail fast");
    // A series over a caller's voxel limit, counted across files.
    let dir = d.join("series");
    std::fs::create_dir_all(&dir).unwrap();
    classic_series(&dir, 3);
    let limits = ReadLimits {
        max_voxels: (2 * ROWS * COLS) as u64,
        ..ReadLimits::default()
    };
    let e = DicomReader::new()
        .limits(limits)
        .read_series(&dir)
        .unwrap_err();
    assert!(matches!(e, VolumeError::TooManyVoxels { .. }), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    let d = TempDir::new("dicom-truncated");
    let p = d.join("t.dcm");
    classic_slice(&p, 0, |_| {});
    let b = std::fs::read(&p).unwrap();
    for cut in [b.len() - 5, b.len() / 2, 200, 131, 10, 0] {
        std::fs::write(&p, &b[..cut]).unwrap();
        let e = read_volume(&p).unwrap_err();
        assert_eq!(named(&e).as_deref(), Some(p.as_path()), "cut {cut}: {e}");
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let d = TempDir::new("dicom-fifo");
    let dir = d.join("series");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("x.dcm");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let t = Instant::now();
    let e = read_volume(&fifo).unwrap_err();
    assert!(matches!(e, VolumeError::Fs(_)), "{e}");
    assert_eq!(named(&e).as_deref(), Some(fifo.as_path()));
    // A series read opens regular files only: the FIFO is skipped, not read.
    classic_series(&dir, 2);
    assert_eq!(
        read_dicom_series(&dir).unwrap().shape_zyx(),
        [2, ROWS, COLS]
    );
    assert!(t.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn bytes_in_memory_read_like_the_file() {
    let d = TempDir::new("dicom-bytes");
    let p = d.join("mr.dcm");
    enhanced(&p, ENHANCED_MR, &[1, 0], |_| {});
    let bytes = std::fs::read(&p).unwrap();
    let frames = DicomReader::new().read_frames_bytes(&p, &bytes).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(
        frames[0].pixels,
        DicomReader::new().read_frames(&p).unwrap()[0].pixels
    );
    let e = DicomReader::new()
        .read_frames_bytes(Path::new("junk.dcm"), &[7u8; 300])
        .unwrap_err();
    assert_eq!(named(&e).as_deref(), Some(Path::new("junk.dcm")));
}

#[test]
fn deeply_nested_sequences_are_refused_not_a_stack_overflow() {
    let d = TempDir::new("dicom-deep");
    let p = d.join("deep.dcm");
    classic_slice(&p, 0, |_| {});
    let b = std::fs::read(&p).unwrap();
    // keep the preamble and meta group, then 200 000 nested undefined-length sequences
    let meta_end = 132 + 12 + u32::from_le_bytes([b[140], b[141], b[142], b[143]]) as usize;
    let mut deep = b[..meta_end].to_vec();
    for _ in 0..200_000 {
        deep.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    std::fs::write(&p, &deep).unwrap();
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::Dicom { .. }), "{e}");
    assert!(e.to_string().contains("nested deeper"), "{e}");
    assert_eq!(named(&e).as_deref(), Some(p.as_path()));
}

#[test]
fn a_value_length_out_of_step_with_its_vr_is_refused() {
    // A fuzzed file (kept as this test's model): a private FL element whose length (174) is not
    // a multiple of 4. The parser reads 43 floats (172 bytes), loses step with the file and then
    // takes a length of 1.33 GB out of the next element's bytes, which it zero-fills before
    // failing: 7.6 KB of input took 1.3 GB and 5 s.
    let d = TempDir::new("dicom-vr-step");
    let p = d.join("fl.dcm");
    classic_slice(&p, 0, |o| {
        put(
            o,
            Tag(0x0027, 0x1045),
            VR::FL,
            PrimitiveValue::F32(smallvec![1.0, 2.0, 3.0, 4.0]),
        );
    });
    let mut b = std::fs::read(&p).unwrap();
    let at = b
        .windows(6)
        .position(|w| w == [0x27, 0x00, 0x45, 0x10, b'F', b'L'])
        .unwrap();
    assert_eq!(b[at + 6..at + 8], [16, 0]);
    b[at + 6] = 14;
    std::fs::write(&p, &b).unwrap();
    let t = Instant::now();
    let e = read_volume(&p).unwrap_err();
    assert!(matches!(e, VolumeError::Dicom { .. }), "{e}");
    assert!(e.to_string().contains("(0027,1045)"), "{e}");
    assert_eq!(named(&e).as_deref(), Some(p.as_path()));
    assert!(t.elapsed().as_secs_f64() < 1.0);

    // Implicit VR: the VR comes from the dictionary (Rows is US, 2-byte values).
    let p = d.join("implicit.dcm");
    let mut obj = InMemDicomObject::new_empty();
    image_module(&mut obj, CT, &[pixels(0)]);
    put(
        &mut obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        ds(&position(0)),
    );
    put(&mut obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&IOP));
    put(&mut obj, tags::PIXEL_SPACING, VR::DS, ds(&[0.5, 0.75]));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2")
        .media_storage_sop_class_uid(CT)
        .media_storage_sop_instance_uid("1.2.3.4.5.6");
    obj.with_meta(meta).unwrap().write_to_file(&p).unwrap();
    assert_eq!(read_volume(&p).unwrap().shape_zyx(), [1, ROWS, COLS]);
    let mut b = std::fs::read(&p).unwrap();
    let at = b
        .windows(8)
        .position(|w| w == [0x28, 0x00, 0x10, 0x00, 2, 0, 0, 0])
        .unwrap();
    b[at + 4] = 3;
    std::fs::write(&p, &b).unwrap();
    let e = read_volume(&p).unwrap_err();
    assert!(e.to_string().contains("(0028,0010)"), "{e}");
}

#[test]
fn an_unknown_item_tag_is_refused() {
    // A fuzzed file (kept as this test's model): a sequence delimiter (FFFE,E0DD) turned into
    // (FFFE,E6DD). The parser read it as an ordinary element and then a 4.29 GB length from the
    // following bytes, which it zero-filled: a 1.5 KB file took 2.3 GB.
    let d = TempDir::new("dicom-item-tag");
    let p = d.join("item.dcm");
    classic_slice(&p, 0, |o| {
        put_seq(
            o,
            tags::REFERENCED_IMAGE_SEQUENCE,
            vec![item(tags::REFERENCED_SOP_CLASS_UID, VR::UI, CT.into())],
        );
    });
    assert!(read_volume(&p).is_ok());
    let mut b = std::fs::read(&p).unwrap();
    let at = b
        .windows(4)
        .position(|w| w == [0xFE, 0xFF, 0x00, 0xE0])
        .unwrap();
    b[at + 3] = 0xE6;
    std::fs::write(&p, &b).unwrap();
    let e = read_volume(&p).unwrap_err();
    assert!(e.to_string().contains("(FFFE,E600)"), "{e}");
    assert_eq!(named(&e).as_deref(), Some(p.as_path()));
}

#[test]
fn a_meta_group_length_that_disagrees_with_its_elements_is_refused() {
    // A fuzzed file (kept as this test's model): the group length pointed 60 bytes past the
    // meta elements, so the parser started the data set elsewhere than the length check and
    // read a 2.77 GB length out of padding: 447 bytes of input took 2.7 GB.
    let d = TempDir::new("dicom-meta-length");
    let p = d.join("meta.dcm");
    classic_slice(&p, 0, |_| {});
    let mut b = std::fs::read(&p).unwrap();
    assert_eq!(&b[132..140], &[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    let declared = u32::from_le_bytes(b[140..144].try_into().unwrap());
    b[140..144].copy_from_slice(&(declared + 60).to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = read_volume(&p).unwrap_err();
    assert!(e.to_string().contains("meta group's length"), "{e}");
    assert_eq!(named(&e).as_deref(), Some(p.as_path()));
}
