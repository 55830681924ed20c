//! A CI-sized mutation-fuzzing run of the NIfTI (`.nii`, `.nii.gz`) and DICOM readers: a few
//! thousand inputs derived from small valid files, each read from disk; no panic, and no input
//! makes a reader hold more than a bounded amount of memory. The long, coverage-guided runs use
//! the targets of the repository's `fuzz/` folder.

use std::io::Write;

use masam_testkit::mutate::Mutator;
use masam_testkit::{PeakAlloc, TempDir};
use masam_volume::io::dicom::read_dicom_files;
use masam_volume::io::{read_nifti, NiftiWriter};
use masam_volume::Volume;
use ndarray::Array3;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

/// Heap a reader may hold on any of these inputs of a few KB.
const CAP: usize = 256 << 20;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn nii(dir: &TempDir) -> Vec<u8> {
    let v = Volume::with_spacing(
        Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 20 + y * 5 + x) as f32),
        [1.0, 1.0, 2.0],
    );
    let p = dir.join("seed.nii");
    NiftiWriter::new().write(&p, &v).unwrap();
    std::fs::read(&p).unwrap()
}

/// One explicit-VR little-endian element.
fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == b"UI" || vr == b"OB" || vr == b"OW" {
            0
        } else {
            b' '
        });
    }
    out.extend(group.to_le_bytes());
    out.extend(elem.to_le_bytes());
    out.extend(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend([0, 0]);
        out.extend((value.len() as u32).to_le_bytes());
    } else {
        out.extend((value.len() as u16).to_le_bytes());
    }
    out.extend(value);
}

/// A minimal single-frame 16-bit CT slice (4 × 3 pixels).
fn dicom() -> Vec<u8> {
    let ts = b"1.2.840.10008.1.2.1";
    let class = b"1.2.840.10008.5.1.4.1.1.2";
    let mut meta = Vec::new();
    element(&mut meta, 2, 1, b"OB", &[0, 1]);
    element(&mut meta, 2, 2, b"UI", class);
    element(&mut meta, 2, 3, b"UI", b"1.2.3.4");
    element(&mut meta, 2, 0x10, b"UI", ts);
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    element(&mut out, 2, 0, b"UL", &(meta.len() as u32).to_le_bytes());
    out.extend(meta);
    element(&mut out, 8, 0x16, b"UI", class);
    element(&mut out, 8, 0x18, b"UI", b"1.2.3.4");
    element(&mut out, 8, 0x60, b"CS", b"CT");
    element(&mut out, 0x20, 0x0e, b"UI", b"1.2.3");
    element(&mut out, 0x20, 0x32, b"DS", b"0\\0\\0");
    element(&mut out, 0x20, 0x37, b"DS", b"1\\0\\0\\0\\1\\0");
    element(&mut out, 0x28, 0x02, b"US", &1u16.to_le_bytes());
    element(&mut out, 0x28, 0x04, b"CS", b"MONOCHROME2");
    element(&mut out, 0x28, 0x10, b"US", &3u16.to_le_bytes());
    element(&mut out, 0x28, 0x11, b"US", &4u16.to_le_bytes());
    element(&mut out, 0x28, 0x30, b"DS", b"0.5\\0.5");
    element(&mut out, 0x28, 0x100, b"US", &16u16.to_le_bytes());
    element(&mut out, 0x28, 0x101, b"US", &16u16.to_le_bytes());
    element(&mut out, 0x28, 0x102, b"US", &15u16.to_le_bytes());
    element(&mut out, 0x28, 0x103, b"US", &1u16.to_le_bytes());
    element(&mut out, 0x28, 0x1052, b"DS", b"-1024");
    element(&mut out, 0x28, 0x1053, b"DS", b"1");
    let pixels: Vec<u8> = (0..12i16).flat_map(|v| (v * 100).to_le_bytes()).collect();
    element(&mut out, 0x7fe0, 0x10, b"OW", &pixels);
    out
}

fn fuzz(name: &str, seeds: Vec<Vec<u8>>, n: usize, mut read: impl FnMut(&[u8]) -> bool) -> usize {
    let mut m = Mutator::new(0x5eed, seeds);
    let mut accepted = 0;
    let mut worst = 0;
    m.run(n, |input| {
        ALLOC.reset_peak();
        let base = ALLOC.live();
        accepted += usize::from(read(input));
        let used = ALLOC.peak() - base;
        worst = worst.max(used);
        assert!(
            used < CAP,
            "{name}: {used} bytes for an input of {}",
            input.len()
        );
    });
    eprintln!("{name}: {n} inputs, {accepted} accepted, peak {worst} bytes");
    accepted
}

#[test]
fn mutated_volumes_never_panic_or_blow_up() {
    let dir = TempDir::new("volume-fuzz-smoke");
    let plain = nii(&dir);
    let seed_dicom = dicom();
    // The seeds themselves are valid.
    let p = dir.join("seed.dcm");
    std::fs::write(&p, &seed_dicom).unwrap();
    let v = read_dicom_files(dir.path(), std::slice::from_ref(&p)).unwrap();
    assert_eq!(v.data.dim(), (1, 3, 4));
    std::fs::remove_file(&p).unwrap();

    let path = dir.join("in.nii");
    fuzz("nifti", vec![plain.clone()], 2000, |b| {
        std::fs::write(&path, b).unwrap();
        read_nifti(&path).is_ok()
    });
    let path = dir.join("in.nii.gz");
    let seeds = vec![plain.clone(), gz(&plain)];
    fuzz("nifti_gz", seeds, 1000, |b| {
        // a mutated gzip stream as is, anything else gzipped (a mutated NIfTI stream)
        let bytes = if b.starts_with(&[0x1f, 0x8b]) {
            b.to_vec()
        } else {
            gz(b)
        };
        std::fs::write(&path, bytes).unwrap();
        read_nifti(&path).is_ok()
    });
    let path = dir.join("in.dcm");
    let accepted = fuzz("dicom", vec![seed_dicom], 2000, |b| {
        std::fs::write(&path, b).unwrap();
        read_dicom_files(dir.path(), std::slice::from_ref(&path)).is_ok()
    });
    assert!(
        accepted > 0,
        "no mutated DICOM was readable: the seed is not reaching the reader"
    );
}
