//! Deflated Explicit VR Little Endian files (transfer syntax `1.2.840.10008.1.2.1.99`) made
//! into their uncompressed twin before anything else reads them.
//!
//! In such a file everything after the file meta group is one raw deflate stream. The length
//! check of [`check_lengths`](super::dicom_scan::check_lengths) cannot see into it, and the
//! parser would inflate it as a stream and allocate each element from the length it reads
//! there: a 1 KB file could claim 4 GB. So the data set is inflated here first, at most up to
//! the read limits (compressed length × [`ReadLimits::max_expansion`] plus the slack, and never
//! more than [`ReadLimits::max_bytes`]), and the file is rebuilt in memory as Explicit VR Little
//! Endian: the same meta group with the transfer syntax replaced (and its group length
//! recomputed), then the inflated data set. That copy then goes through the same length check
//! and parse as any other file.

use std::io::Read;
use std::path::Path;

use flate2::read::DeflateDecoder;

use super::dicom_scan::long_vr;
use super::limits::ReadLimits;
use crate::error::{Result, VolumeError};

const DEFLATED: &[u8] = b"1.2.840.10008.1.2.1.99";
/// Explicit VR Little Endian, padded to an even length with NUL as UIDs are.
const EXPLICIT_LE: &[u8] = b"1.2.840.10008.1.2.1\0";

/// One element of the file meta group (explicit VR little endian).
struct MetaElement {
    elem: u16,
    vr: [u8; 2],
    value: Vec<u8>,
}

/// If `bytes` is a deflated DICOM file (preamble, `DICM`, meta group naming the deflated
/// transfer syntax), returns its uncompressed twin; `None` for any other file (also for files
/// whose meta group cannot be followed: the regular path reports those).
///
/// # Errors
/// [`VolumeError::ClaimExceedsData`] when the data set inflates beyond the limits,
/// [`VolumeError::Dicom`] when the deflate stream is corrupt, both naming `path`.
pub(crate) fn inflate_deflated(
    path: &Path,
    bytes: &[u8],
    limits: &ReadLimits,
) -> Result<Option<Vec<u8>>> {
    let Some((meta, dataset_start)) = meta_group(bytes) else {
        return Ok(None);
    };
    let deflated = meta.iter().any(|e| {
        e.elem == 0x0010 && e.value.strip_suffix(b"\0").unwrap_or(&e.value).trim_ascii() == DEFLATED
    });
    if !deflated {
        return Ok(None);
    }
    let compressed = &bytes[dataset_start..];
    let limit = limits
        .max_decoded_from(compressed.len() as u64)
        .min(limits.max_bytes);
    let mut inflated = Vec::new();
    DeflateDecoder::new(compressed)
        .take(limit.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|e| VolumeError::Dicom {
            path: path.to_path_buf(),
            reason: VolumeError::caused("the deflated data set cannot be inflated", &e),
            source: Some(Box::new(e)),
        })?;
    if inflated.len() as u64 > limit {
        return Err(VolumeError::ClaimExceedsData {
            path: path.to_path_buf(),
            what: format!(
                "deflated data set of {} bytes (inflates to more than the limit)",
                compressed.len()
            ),
            claimed: inflated.len() as u64,
            available: limit,
        });
    }
    let mut group = Vec::new();
    for e in meta.iter().filter(|e| e.elem != 0x0000) {
        let value: &[u8] = if e.elem == 0x0010 {
            EXPLICIT_LE
        } else {
            &e.value
        };
        put_element(&mut group, e.elem, e.vr, value);
    }
    let mut out = Vec::with_capacity(132 + 12 + group.len() + inflated.len());
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    put_element(
        &mut out,
        0x0000,
        *b"UL",
        &(group.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(&group);
    out.extend_from_slice(&inflated);
    Ok(Some(out))
}

/// The meta group's elements and the offset where the data set starts, or `None` when the
/// file does not start like a DICOM file with a readable meta group.
fn meta_group(bytes: &[u8]) -> Option<(Vec<MetaElement>, usize)> {
    let mut pos = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else if bytes.get(..4) == Some(b"DICM") {
        4
    } else {
        return None;
    };
    let mut elements = Vec::new();
    while bytes.get(pos..pos + 2) == Some(&[0x02, 0x00]) {
        let elem = u16::from_le_bytes(bytes.get(pos + 2..pos + 4)?.try_into().ok()?);
        let vr: [u8; 2] = bytes.get(pos + 4..pos + 6)?.try_into().ok()?;
        let (n, header) = if long_vr(vr) {
            let n = u32::from_le_bytes(bytes.get(pos + 8..pos + 12)?.try_into().ok()?);
            (n as usize, 12)
        } else {
            let n = u16::from_le_bytes(bytes.get(pos + 6..pos + 8)?.try_into().ok()?);
            (n as usize, 8)
        };
        let value = bytes.get(pos + header..pos + header + n)?.to_vec();
        elements.push(MetaElement { elem, vr, value });
        pos += header + n;
    }
    Some((elements, pos))
}

fn put_element(out: &mut Vec<u8>, elem: u16, vr: [u8; 2], value: &[u8]) {
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(&vr);
    if long_vr(vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(ts: &[u8], dataset: &[u8]) -> Vec<u8> {
        let mut group = Vec::new();
        put_element(&mut group, 0x0001, *b"OB", &[0, 1]);
        put_element(&mut group, 0x0010, *b"UI", ts);
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        put_element(&mut f, 0x0000, *b"UL", &(group.len() as u32).to_le_bytes());
        f.extend_from_slice(&group);
        f.extend_from_slice(dataset);
        f
    }

    fn deflate(b: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(b).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn a_deflated_file_becomes_its_explicit_le_twin() {
        let dataset = [0x08u8, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T'];
        let twin = file(EXPLICIT_LE, &dataset);
        let deflated = file(DEFLATED, &deflate(&dataset));
        let out = inflate_deflated(Path::new("d.dcm"), &deflated, &ReadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(out, twin);
        // other transfer syntaxes and non-DICOM bytes are left alone
        assert!(
            inflate_deflated(Path::new("p.dcm"), &twin, &ReadLimits::default())
                .unwrap()
                .is_none()
        );
        assert!(
            inflate_deflated(Path::new("x"), b"abc", &ReadLimits::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn inflating_stops_at_the_limit_and_corrupt_streams_are_errors() {
        let zeros = deflate(&vec![0u8; 1 << 20]);
        let big = file(DEFLATED, &zeros);
        let limits = ReadLimits {
            max_expansion: 4,
            expansion_slack: 1000,
            ..ReadLimits::default()
        };
        match inflate_deflated(Path::new("b.dcm"), &big, &limits) {
            Err(VolumeError::ClaimExceedsData { available, .. }) => {
                assert_eq!(available, zeros.len() as u64 * 4 + 1000);
            }
            other => panic!("{other:?}"),
        }
        let corrupt = file(DEFLATED, &[0xFF; 64]);
        assert!(matches!(
            inflate_deflated(Path::new("c.dcm"), &corrupt, &ReadLimits::default()),
            Err(VolumeError::Dicom { .. })
        ));
    }
}
