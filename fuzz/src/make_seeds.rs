//! Writes the seed corpora of the fuzz targets into `corpus/<target>/`: small valid files
//! generated here (`.pth`, safetensors, NIfTI), plus the small files (under 256 KiB) found in
//! the folders given as arguments (`.dcm`, `.nii`, `.nii.gz`, `.pth`, `.safetensors`).
//!
//! `cargo run --release --bin make_seeds -- [FOLDER ...]` (from `fuzz/`).

use std::io::Write;
use std::path::{Path, PathBuf};

use masam_volume::io::NiftiWriter;
use masam_volume::ndarray::Array3;
use masam_volume::Volume;

#[allow(dead_code)]
#[path = "../../crates/masam-weights/tests/support/mod.rs"]
mod support;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(1 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn generated() {
    use support::*;
    put("pth", "small.pth", &small_pth());
    let mut t = Record::f32("t", "0", &[2, 2]);
    t.stride = vec![1, 2];
    let mut h = Record::f32("h", "1", &[3]);
    h.storage_class = "HalfStorage";
    put(
        "pth",
        "strided_half.pth",
        &pth(
            state_dict_pickle(&[t, h]),
            &[("0", f32_bytes(&[1., 2., 3., 4.])), ("1", vec![0; 6])],
        ),
    );
    put(
        "safetensors",
        "small.safetensors",
        &safetensors(&[
            ("a", "F32", vec![2, 2], vec![0; 16]),
            ("b", "BF16", vec![3], vec![1; 6]),
            ("c", "I64", vec![], vec![2; 8]),
        ]),
    );
    let tmp = std::env::temp_dir().join(format!("masam-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp folder");
    let vol = Volume::with_spacing(
        Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 20 + y * 5 + x) as f32),
        [1.0, 1.0, 2.0],
    );
    let p = tmp.join("small.nii");
    NiftiWriter::new().write(&p, &vol).expect("NIfTI writer");
    let nii = std::fs::read(&p).expect("written");
    put("nifti", "small.nii", &nii);
    put("nifti_gz", "small_plain", &nii);
    put("nifti_gz", "small_gz", &[b"GZ".as_slice(), &gz(&nii)].concat());
    std::fs::remove_dir_all(&tmp).expect("temp folder");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The deflated twin (transfer syntax 1.2.840.10008.1.2.1.99) of an Explicit VR Little Endian
/// DICOM file with a preamble: the meta group with the transfer syntax replaced and its group
/// length recomputed, then the data set as one raw deflate stream. `None` for other files.
fn deflated_twin(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(128..132)? != b"DICM" {
        return None;
    }
    let mut pos = 132;
    let mut group = Vec::new();
    let mut explicit_le = false;
    while bytes.get(pos..pos + 2)? == [0x02, 0x00] {
        let elem = u16::from_le_bytes(bytes.get(pos + 2..pos + 4)?.try_into().ok()?);
        let vr = bytes.get(pos + 4..pos + 6)?;
        let long = matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR");
        let (n, head) = if long {
            (u32::from_le_bytes(bytes.get(pos + 8..pos + 12)?.try_into().ok()?) as usize, 12)
        } else {
            (u16::from_le_bytes(bytes.get(pos + 6..pos + 8)?.try_into().ok()?) as usize, 8)
        };
        let value = bytes.get(pos + head..pos + head + n)?;
        if elem == 0x0010 {
            explicit_le = value.strip_suffix(b"\0").unwrap_or(value) == b"1.2.840.10008.1.2.1";
            group.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 22, 0]);
            group.extend_from_slice(b"1.2.840.10008.1.2.1.99");
        } else if elem != 0x0000 {
            group.extend_from_slice(&bytes[pos..pos + head + n]);
        }
        pos += head + n;
    }
    if !explicit_le {
        return None;
    }
    let mut out = bytes[..132].to_vec();
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&bytes[pos..]).ok()?;
    out.extend(z.finish().ok()?);
    Some(out)
}

fn main() {
    generated();
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        walk(Path::new(&arg), &mut files);
    }
    let mut copied = 0;
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else { continue };
        if bytes.len() > 256 << 10 {
            continue;
        }
        let name = f.file_name().unwrap_or_default().to_string_lossy().to_string();
        let lower = name.to_ascii_lowercase();
        let target = if lower.ends_with(".dcm") {
            if let Some(twin) = deflated_twin(&bytes) {
                put("dicom", &format!("{name}.deflated"), &twin);
            }
            "dicom"
        } else if lower.ends_with(".nii") {
            "nifti"
        } else if lower.ends_with(".nii.gz") {
            match gunzip(&bytes) {
                Some(plain) => put("nifti_gz", &format!("{name}.plain"), &plain),
                None => continue,
            }
            "nifti_gz"
        } else if lower.ends_with(".pth") || lower.ends_with(".pt") {
            "pth"
        } else if lower.ends_with(".safetensors") {
            "safetensors"
        } else {
            continue;
        };
        let bytes = if target == "nifti_gz" {
            [b"GZ".as_slice(), &bytes].concat()
        } else {
            bytes
        };
        put(target, &name, &bytes);
        copied += 1;
    }
    println!("seeds written under corpus/ ({copied} copied from the folders given)");
}
