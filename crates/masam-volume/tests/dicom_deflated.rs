//! Deflated Explicit VR Little Endian DICOM (transfer syntax 1.2.840.10008.1.2.1.99): the data
//! set after the file meta group is one raw deflate stream. A valid file reads like its
//! uncompressed twin; a deflated data set whose element lengths claim more than the inflated
//! stream holds, or that inflates beyond the read limits (a deflate bomb), is refused with a
//! typed error naming the file, without allocating from the claims.

use std::io::Write;
use std::path::Path;

use dicom_core::smallvec::smallvec;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, Tag};
use flate2::write::DeflateEncoder;
use flate2::Compression;
use masam_testkit::{PeakAlloc, TempDir};
use masam_volume::io::dicom::DicomReader;
use masam_volume::io::ReadLimits;
use masam_volume::VolumeError;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const ROWS: u16 = 6;
const COLS: u16 = 5;

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: PrimitiveValue) {
    obj.put(DataElement::new(tag, vr, value));
}

/// A CT slice of `ROWS` × `COLS` signed 16-bit pixels, with geometry and rescale.
fn slice() -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(
        &mut o,
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.2".into(),
    );
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6".into());
    put(
        &mut o,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        "1.2.3.4.5".into(),
    );
    for (tag, v) in [
        (tags::ROWS, ROWS),
        (tags::COLUMNS, COLS),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 16),
        (tags::HIGH_BIT, 15),
        (tags::PIXEL_REPRESENTATION, 1),
        (tags::SAMPLES_PER_PIXEL, 1),
    ] {
        put(&mut o, tag, VR::US, PrimitiveValue::U16(smallvec![v]));
    }
    put(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(
        &mut o,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        "-10\\20\\5".into(),
    );
    put(
        &mut o,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        "1\\0\\0\\0\\1\\0".into(),
    );
    put(&mut o, tags::PIXEL_SPACING, VR::DS, "0.5\\0.75".into());
    put(&mut o, tags::RESCALE_SLOPE, VR::DS, "2".into());
    put(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "-1024".into());
    let px: Vec<u8> = (0..ROWS as i16 * COLS as i16)
        .flat_map(|v| (v * 7 - 40).to_le_bytes())
        .collect();
    put(&mut o, tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(px));
    o
}

fn write(obj: InMemDicomObject, ts: &str, path: &Path) {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
        .media_storage_sop_instance_uid("1.2.3.4.5.6");
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

/// Offset of the first byte after the file meta group (preamble, `DICM`, group 0002 whose
/// length is the value of its first element).
fn meta_end(file: &[u8]) -> usize {
    assert_eq!(&file[128..132], b"DICM");
    assert_eq!(&file[132..136], [0x02, 0x00, 0x00, 0x00]);
    let group_len = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
    144 + group_len
}

/// A deflated file whose meta group is that of a real deflated file and whose data set is
/// `dataset` (explicit VR little endian bytes), deflated.
fn deflated_file(dir: &Path, name: &str, dataset: &[u8]) -> std::path::PathBuf {
    let template = dir.join("template.dcm");
    write(slice(), DEFLATED, &template);
    let t = std::fs::read(&template).unwrap();
    let mut bytes = t[..meta_end(&t)].to_vec();
    let mut z = DeflateEncoder::new(Vec::new(), Compression::best());
    z.write_all(dataset).unwrap();
    bytes.extend(z.finish().unwrap());
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The explicit-VR little-endian data set of `slice()` (the file without its meta group).
fn plain_dataset(dir: &Path) -> Vec<u8> {
    let p = dir.join("plain.dcm");
    write(slice(), EXPLICIT_LE, &p);
    let b = std::fs::read(&p).unwrap();
    b[meta_end(&b)..].to_vec()
}

fn pixel_data_length_at(dataset: &[u8]) -> usize {
    dataset
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .unwrap()
        + 8
}

#[test]
fn a_deflated_slice_reads_like_its_uncompressed_twin() {
    let d = TempDir::new("dicom-deflated-ok");
    let plain = d.join("plain.dcm");
    write(slice(), EXPLICIT_LE, &plain);
    let written = d.join("written.dcm");
    write(slice(), DEFLATED, &written);
    // and one deflated by this test, not by the DICOM library
    let ours = deflated_file(d.path(), "ours.dcm", &plain_dataset(d.path()));
    let a = DicomReader::new().read_frames(&plain).unwrap();
    for p in [&written, &ours] {
        let b = DicomReader::new().read_frames(p).unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(a[0].pixels, b[0].pixels, "{}", p.display());
        assert_eq!(a[0].pixels.len(), (ROWS * COLS) as usize);
    }
}

#[test]
fn a_deflated_element_claiming_4_gb_is_refused_small() {
    let d = TempDir::new("dicom-deflated-claim");
    let mut ds = plain_dataset(d.path());
    let at = pixel_data_length_at(&ds);
    ds[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let p = deflated_file(d.path(), "claim.dcm", &ds);
    assert!(std::fs::metadata(&p).unwrap().len() < 2048);
    let base = ALLOC.live();
    ALLOC.reset_peak();
    let e = DicomReader::new().read_frames(&p).unwrap_err();
    let used = ALLOC.peak().saturating_sub(base);
    assert!(matches!(e, VolumeError::ClaimExceedsData { .. }), "{e}");
    assert!(e.to_string().contains("claim.dcm"), "{e}");
    assert!(used < 64 << 20, "{used} bytes allocated for a 2 KB file");
}

#[test]
fn a_deflate_bomb_is_refused_at_the_limit() {
    let d = TempDir::new("dicom-deflated-bomb");
    // a private OB element of 64 MiB of zeros before the image: about 64 KB deflated
    let mut ds = plain_dataset(d.path());
    let n: u32 = 64 << 20;
    let mut bomb = vec![0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0];
    bomb.extend(n.to_le_bytes());
    bomb.resize(bomb.len() + n as usize, 0);
    // group 0009 goes between the SOP UIDs (0008) and Series Instance UID (0020,000E)
    let series_uid = ds
        .windows(4)
        .position(|w| w == [0x20, 0x00, 0x0E, 0x00])
        .unwrap();
    ds.splice(series_uid..series_uid, bomb);
    let p = deflated_file(d.path(), "bomb.dcm", &ds);
    let compressed = std::fs::metadata(&p).unwrap().len();
    assert!(compressed < 256 << 10, "{compressed}");
    // inflated, the data set holds 64 MiB: over a limit of 16 MiB with no slack
    let limits = ReadLimits {
        max_expansion: 64,
        expansion_slack: 0,
        ..ReadLimits::default()
    };
    let base = ALLOC.live();
    ALLOC.reset_peak();
    let e = DicomReader::new()
        .limits(limits)
        .read_frames(&p)
        .unwrap_err();
    let used = ALLOC.peak().saturating_sub(base);
    assert!(matches!(e, VolumeError::ClaimExceedsData { .. }), "{e}");
    assert!(e.to_string().contains("bomb.dcm"), "{e}");
    assert!(used < 40 << 20, "{used} bytes allocated");
    // with the default limits the same file reads (64 MiB is within 1032:1 plus slack)
    let frames = DicomReader::new().read_frames(&p).unwrap();
    assert_eq!(frames[0].pixels.len(), (ROWS * COLS) as usize);
}
