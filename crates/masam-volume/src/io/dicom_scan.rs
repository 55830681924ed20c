//! A pass over a DICOM file's element headers before it is parsed: every defined length must fit
//! in the rest of the file.
//!
//! The DICOM parser allocates (and zero-fills) a value's buffer from the length in its element
//! header before reading it, so a 1.5 KB file whose Pixel Data (or any other element) claims
//! 4 GB would take 4 GB of memory before the read fails. This scan walks the headers with
//! seeks only (nothing is allocated from a claimed length) and stops after the top-level
//! Pixel Data element, whose end is returned (trailing bytes after it are ignored, as the
//! reader does).
//!
//! It understands the file meta group, explicit and implicit VR little endian, explicit VR big
//! endian, sequences and items of defined and undefined length, and encapsulated Pixel Data. A
//! deflated data set is not scanned here: it is reported as such, and the reader inflates it
//! within its limits and scans the inflated copy. Sequences nested deeper than [`MAX_DEPTH`]
//! levels are refused.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Result, VolumeError};

const UNDEFINED: u32 = u32::MAX;
/// Deepest nesting of sequences and items accepted (real files nest a few levels; the parser
/// and the in-memory object recurse once per level, so a file of a million nested sequences
/// would overflow the stack).
pub(crate) const MAX_DEPTH: usize = 64;
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// How the elements at the current nesting level are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

/// What an open container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A sequence: items only.
    Sequence,
    /// An item of a sequence: data elements.
    Item,
    /// Encapsulated Pixel Data: raw fragments (items of defined length) only.
    Fragments,
}

/// One open sequence, item or pixel-fragment sequence.
#[derive(Debug, Clone, Copy)]
struct Open {
    kind: Kind,
    /// File offset where it ends (defined length), or `None` until its delimiter.
    end: Option<u64>,
    /// Encoding of the elements inside.
    encoding: Encoding,
    /// Whether this is the top-level Pixel Data.
    pixel_data: bool,
}

struct Scanner<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Scanner<R> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).ok()?;
        self.pos += N as u64;
        Some(b)
    }
    fn u16(&mut self, big: bool) -> Option<u16> {
        let b = self.bytes::<2>()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&mut self, big: bool) -> Option<u32> {
        let b = self.bytes::<4>()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn skip(&mut self, n: u64) -> Option<()> {
        self.r.seek_relative(i64::try_from(n).ok()?).ok()?;
        self.pos += n;
        Some(())
    }
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length: every VR but the
/// short ones of the standard. An unknown VR counts as long, because that is how the parser
/// reads it (as UN): a mutated VR must not hide a 4-byte length from this scan.
pub(crate) fn long_vr(vr: [u8; 2]) -> bool {
    !matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// Bytes per value of the binary VRs whose values the parser reads as a whole number of
/// values: with a length that is not a multiple of it, the parser would read fewer bytes than
/// the length says and lose step with the file (and then read a length out of some value's
/// bytes), so such an element is refused. 1 for every other VR.
fn value_size(vr: [u8; 2]) -> u64 {
    match &vr {
        b"US" | b"SS" | b"OW" => 2,
        b"AT" | b"FL" | b"OF" | b"SL" | b"UL" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// [`value_size`] of an element of an implicit-VR data set, whose VR the parser takes from the
/// data dictionary: the dictionary's VR, 2 bytes for the context-dependent ones (US or SS,
/// OB or OW, US or OW), 1 for tags it does not know (read as UN).
fn implicit_value_size(tag: (u16, u16)) -> u64 {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    match dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1)) {
        Some(entry) => match entry.vr() {
            VirtualVr::Exact(vr) => value_size(vr.to_bytes()),
            _ => 2,
        },
        None => 1,
    }
}

/// Whether the data dictionary gives `tag` the VR SQ (how the parser reads an element of an
/// implicit-VR data set).
fn implicit_is_sequence(tag: (u16, u16)) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .is_some_and(|e| e.vr() == VirtualVr::Exact(dicom_core::VR::SQ))
}

/// What [`check_lengths`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Every length checked; the offset just past the top-level Pixel Data element when one was
    /// found.
    Plain(Option<u64>),
    /// The data set is deflated (transfer syntax 1.2.840.10008.1.2.1.99): nothing after the
    /// meta group was checked; inflate it first
    /// ([`inflate_deflated`](super::dicom_deflate::inflate_deflated)).
    Deflated,
}

/// Scans `file` (of `len` bytes) as described in the module docs. Returns the offset just past
/// the top-level Pixel Data element when one was found. Structures it cannot follow (no `DICM`
/// magic, a header cut short) end the scan without an error: the parser reports those.
///
/// # Errors
/// [`VolumeError::ClaimExceedsData`] naming the element whose length exceeds the rest of the
/// file; [`VolumeError::Dicom`] for nesting deeper than [`MAX_DEPTH`].
pub(crate) fn check_lengths<R: Read + Seek>(path: &Path, file: R, len: u64) -> Result<Scan> {
    let mut s = Scanner {
        r: BufReader::new(file),
        pos: 0,
        len,
    };
    Ok(scan(path, &mut s)?.unwrap_or(Scan::Plain(None)))
}

fn scan<R: Read + Seek>(path: &Path, s: &mut Scanner<R>) -> Result<Option<Scan>> {
    let Some(head) = s.bytes::<132>() else {
        return Ok(None);
    };
    if &head[128..132] != b"DICM" {
        if &head[..4] != b"DICM" {
            return Ok(None);
        }
        s.r.seek(SeekFrom::Start(4)).ok();
        s.pos = 4;
    }
    // `available`: what the file (or the sequence or item around the element) has left
    let too_long = |s: &Scanner<R>, tag: (u16, u16), claimed: u32, available: u64| {
        VolumeError::ClaimExceedsData {
            path: path.to_path_buf(),
            what: format!("element ({:04X},{:04X}) at byte {}", tag.0, tag.1, s.pos),
            claimed: claimed as u64,
            available,
        }
    };
    // File meta group: explicit VR little endian, group 0002.
    let le = Encoding {
        explicit: true,
        big_endian: false,
    };
    let mut dataset = le;
    // where File Meta Information Group Length (0002,0000) says the group ends: the parser
    // starts the data set there, so the elements must end there too
    let mut declared_end = None;
    loop {
        let at = s.pos;
        let Some(group) = s.u16(false) else {
            return Ok(None);
        };
        if group != 0x0002 {
            s.r.seek(SeekFrom::Start(at)).ok();
            s.pos = at;
            break;
        }
        let elem = s.u16(false);
        let vr = s.bytes::<2>();
        let (Some(elem), Some(vr)) = (elem, vr) else {
            return Ok(None);
        };
        let n = if long_vr(vr) {
            s.skip(2);
            s.u32(false)
        } else {
            s.u16(false).map(u32::from)
        };
        let Some(n) = n else { return Ok(None) };
        if n == UNDEFINED || n as u64 > s.len - s.pos.min(s.len) {
            return Err(too_long(s, (group, elem), n, s.len.saturating_sub(s.pos)));
        }
        if elem == 0x0000 && n == 4 {
            let Some(value) = s.u32(false) else {
                return Ok(None);
            };
            declared_end = Some(s.pos + u64::from(value));
        } else if elem == 0x0010 {
            if n > 64 {
                // a UID has at most 64 characters; the encoding of everything after the meta
                // group depends on this one
                return Err(VolumeError::dicom(
                    path,
                    format!("a transfer syntax UID of {n} bytes (at most 64)"),
                ));
            }
            let mut uid = vec![0u8; n as usize];
            if s.r.read_exact(&mut uid).is_err() {
                return Ok(None);
            }
            s.pos += n as u64;
            let uid = String::from_utf8_lossy(&uid);
            match uid.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => dataset.explicit = false,
                "1.2.840.10008.1.2.2" => dataset.big_endian = true,
                "1.2.840.10008.1.2.1.99" => return Ok(Some(Scan::Deflated)),
                _ => {}
            }
        } else if s.skip(n as u64).is_none() {
            return Ok(None);
        }
    }
    if let Some(end) = declared_end.filter(|&e| e != s.pos) {
        return Err(VolumeError::dicom(
            path,
            format!(
                "the file meta group's length says it ends at byte {end}, its elements end at \
                 byte {}",
                s.pos
            ),
        ));
    }
    let mut open: Vec<Open> = Vec::new();
    let bad = |s: &Scanner<R>, at: u64, what: String| {
        VolumeError::dicom(
            path,
            format!("{what} at byte {at} (file of {} bytes)", s.len),
        )
    };
    loop {
        // close the containers whose defined length ends here; one that is overrun, or that
        // ends while a container inside it is still open, is malformed
        while let Some(i) = open.iter().rposition(|o| o.end.is_some_and(|e| s.pos >= e)) {
            let end = open[i].end.unwrap_or(s.pos);
            if s.pos > end || i + 1 != open.len() {
                return Err(bad(
                    s,
                    s.pos,
                    format!("a sequence or item ending at byte {end} is overrun"),
                ));
            }
            let o = open.pop();
            if o.is_some_and(|o| o.pixel_data) {
                return Ok(Some(Scan::Plain(Some(s.pos))));
            }
        }
        if s.pos >= s.len {
            return Ok(Some(Scan::Plain(None)));
        }
        if open.len() > MAX_DEPTH {
            return Err(VolumeError::dicom(
                path,
                format!(
                    "sequences nested deeper than {MAX_DEPTH} levels at byte {}",
                    s.pos
                ),
            ));
        }
        let parent = open.last().copied();
        let enc = parent.map(|o| o.encoding).unwrap_or(dataset);
        let big = enc.big_endian;
        let at = s.pos;
        let (Some(group), Some(elem)) = (s.u16(big), s.u16(big)) else {
            return Ok(Some(Scan::Plain(None)));
        };
        let tag = (group, elem);
        // what the innermost defined-length container and the file leave
        let rest = |s: &Scanner<R>, open: &[Open]| {
            open.iter()
                .filter_map(|o| o.end)
                .fold(s.len, u64::min)
                .saturating_sub(s.pos)
        };
        let kind = parent.map(|o| o.kind);
        if group == 0xFFFE {
            let Some(n) = s.u32(big) else {
                return Ok(Some(Scan::Plain(None)));
            };
            match (elem, kind) {
                (0xE000, Some(Kind::Fragments)) => {
                    if n == UNDEFINED || n as u64 > rest(s, &open) {
                        return Err(too_long(s, tag, n, rest(s, &open)));
                    }
                    s.skip(n as u64);
                }
                (0xE000, Some(Kind::Sequence)) => {
                    if n != UNDEFINED && n as u64 > rest(s, &open) {
                        return Err(too_long(s, tag, n, rest(s, &open)));
                    }
                    open.push(Open {
                        kind: Kind::Item,
                        end: (n != UNDEFINED).then(|| s.pos + n as u64),
                        encoding: enc,
                        pixel_data: false,
                    });
                }
                (0xE00D, Some(Kind::Item)) if parent.is_some_and(|o| o.end.is_none()) => {
                    open.pop();
                }
                (0xE0DD, Some(Kind::Sequence | Kind::Fragments))
                    if parent.is_some_and(|o| o.end.is_none()) =>
                {
                    if open.pop().is_some_and(|o| o.pixel_data) {
                        return Ok(Some(Scan::Plain(Some(s.pos))));
                    }
                }
                // anything else (an item outside a sequence, a delimiter of something that
                // is not open, an unknown item tag): the parser would read it some other way
                // and lose step with this scan
                _ => {
                    return Err(bad(
                        s,
                        at,
                        format!("item tag (FFFE,{elem:04X}) out of place"),
                    ));
                }
            }
            continue;
        }
        if matches!(kind, Some(Kind::Sequence | Kind::Fragments)) {
            return Err(bad(
                s,
                at,
                format!("element ({group:04X},{elem:04X}) directly inside a sequence"),
            ));
        }
        let (vr, n) = if enc.explicit {
            let Some(vr) = s.bytes::<2>() else {
                return Ok(Some(Scan::Plain(None)));
            };
            let n = if long_vr(vr) {
                s.skip(2);
                s.u32(big)
            } else {
                s.u16(big).map(u32::from)
            };
            (Some(vr), n)
        } else {
            (None, s.u32(big))
        };
        let Some(n) = n else {
            return Ok(Some(Scan::Plain(None)));
        };
        if n != UNDEFINED {
            let unit = vr.map_or_else(|| implicit_value_size(tag), value_size);
            if u64::from(n) % unit != 0 {
                return Err(VolumeError::dicom(
                    path,
                    format!(
                        "element ({:04X},{:04X}) at byte {} has a length of {n} bytes, not a \
                         multiple of its {unit}-byte values",
                        tag.0, tag.1, s.pos
                    ),
                ));
            }
        }
        let top_pixel = open.is_empty() && tag == PIXEL_DATA;
        if n == UNDEFINED {
            let fragments = top_pixel || (tag == PIXEL_DATA && enc.explicit);
            let encoding = if vr == Some(*b"UN") {
                Encoding {
                    explicit: false,
                    big_endian: false,
                }
            } else {
                enc
            };
            open.push(Open {
                kind: if fragments {
                    Kind::Fragments
                } else {
                    Kind::Sequence
                },
                end: None,
                encoding,
                pixel_data: top_pixel,
            });
            continue;
        }
        if n as u64 > rest(s, &open) {
            return Err(too_long(s, tag, n, rest(s, &open)));
        }
        // a sequence of defined length: its items are read by the parser, so they are
        // followed here too (in an implicit-VR data set the dictionary says what is one)
        if vr == Some(*b"SQ") || (vr.is_none() && implicit_is_sequence(tag)) {
            open.push(Open {
                kind: Kind::Sequence,
                end: Some(s.pos + n as u64),
                encoding: enc,
                pixel_data: false,
            });
            continue;
        }
        if s.skip(n as u64).is_none() {
            return Ok(Some(Scan::Plain(None)));
        }
        if top_pixel {
            return Ok(Some(Scan::Plain(Some(s.pos))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Preamble, magic and a meta group with only the transfer syntax.
    fn head(ts: &str) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00]);
        b.extend_from_slice(b"UI");
        b.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        b.extend_from_slice(&uid);
        b
    }

    fn explicit(b: &mut Vec<u8>, tag: (u16, u16), vr: &[u8; 2], value: &[u8], claim: Option<u32>) {
        b.extend_from_slice(&tag.0.to_le_bytes());
        b.extend_from_slice(&tag.1.to_le_bytes());
        b.extend_from_slice(vr);
        let n = claim.unwrap_or(value.len() as u32);
        if long_vr(*vr) {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&n.to_le_bytes());
        } else {
            b.extend_from_slice(&(n as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
    }

    #[test]
    fn honest_lengths_pass_and_the_pixel_data_end_is_found() {
        let mut b = head("1.2.840.10008.1.2.1");
        explicit(&mut b, (0x0028, 0x0010), b"US", &4u16.to_le_bytes(), None);
        explicit(&mut b, (0x7FE0, 0x0010), b"OW", &[0u8; 32], None);
        let end = b.len() as u64;
        b.extend_from_slice(&[0u8; 100]); // trailing padding is ignored
        let got = check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(got, Scan::Plain(Some(end)));
    }

    #[test]
    fn a_claim_beyond_the_file_is_refused_before_parsing() {
        let mut b = head("1.2.840.10008.1.2.1");
        explicit(
            &mut b,
            (0x7FE0, 0x0010),
            b"OW",
            &[0u8; 8],
            Some(0xFFFF_FFF0),
        );
        let e = check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).unwrap_err();
        match e {
            VolumeError::ClaimExceedsData {
                claimed, available, ..
            } => {
                assert_eq!(claimed, 0xFFFF_FFF0);
                assert_eq!(available, 8);
            }
            e => panic!("{e}"),
        }
        // Implicit VR, an ordinary element lying about its length.
        let mut b = head("1.2.840.10008.1.2");
        b.extend_from_slice(&[0x10, 0x00, 0x10, 0x00]);
        b.extend_from_slice(&0x7000_0000u32.to_le_bytes());
        b.extend_from_slice(b"Doe^John");
        assert!(check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).is_err());
    }

    #[test]
    fn sequences_and_fragments_are_followed() {
        let mut b = head("1.2.840.10008.1.2.1");
        // An undefined-length sequence with one undefined-length item holding one element.
        b.extend_from_slice(&[0x00, 0x52, 0x29, 0x92, b'S', b'Q', 0, 0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        explicit(&mut b, (0x0028, 0x0030), b"DS", b"1\\1 ", None);
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        // Encapsulated pixel data: empty offset table, one fragment, delimiter.
        b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        b.extend_from_slice(&UNDEFINED.to_le_bytes());
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let end = b.len() as u64;
        let got = check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(got, Scan::Plain(Some(end)));
        // A fragment claiming more than the file holds.
        let n = b.len();
        b[n - 16..n - 12].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        assert!(check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).is_err());
    }

    #[test]
    fn structure_out_of_place_is_refused() {
        let check = |b: &Vec<u8>| check_lengths(Path::new("a.dcm"), Cursor::new(b), b.len() as u64);
        let seq_start = |b: &mut Vec<u8>, len: u32| {
            b.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            b.extend_from_slice(&len.to_le_bytes());
        };
        let item = |b: &mut Vec<u8>, elem: u8, len: u32| {
            b.extend_from_slice(&[0xFE, 0xFF, elem, 0xE0]);
            b.extend_from_slice(&len.to_le_bytes());
        };
        // a well-formed defined-length sequence with a defined-length item
        let mut ok = head("1.2.840.10008.1.2.1");
        seq_start(&mut ok, 8 + 12);
        item(&mut ok, 0x00, 12);
        explicit(&mut ok, (0x0028, 0x0030), b"DS", b"1\\1 ", None);
        explicit(&mut ok, (0x0028, 0x0010), b"US", &4u16.to_le_bytes(), None);
        assert!(check(&ok).is_ok());
        let refused = |b: &Vec<u8>, what: &str| {
            let e = check(b).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        };
        // an item inside an item (a fuzzed file made the parser allocate 2.1 GB from this)
        let mut b = head("1.2.840.10008.1.2.1");
        seq_start(&mut b, UNDEFINED);
        item(&mut b, 0x00, UNDEFINED);
        item(&mut b, 0x00, UNDEFINED);
        refused(&b, "(FFFE,E000) out of place");
        // an element directly inside a sequence
        let mut b = head("1.2.840.10008.1.2.1");
        seq_start(&mut b, UNDEFINED);
        explicit(&mut b, (0x0028, 0x0010), b"US", &4u16.to_le_bytes(), None);
        refused(&b, "directly inside a sequence");
        // delimiters of nothing open, at the top level and in a defined-length item
        let mut b = head("1.2.840.10008.1.2.1");
        item(&mut b, 0xDD, 0);
        refused(&b, "(FFFE,E0DD) out of place");
        let mut b = head("1.2.840.10008.1.2.1");
        seq_start(&mut b, 8 + 8);
        item(&mut b, 0x00, 8);
        item(&mut b, 0x0D, 0);
        refused(&b, "(FFFE,E00D) out of place");
        // an element crossing the end of its item
        let mut b = head("1.2.840.10008.1.2.1");
        seq_start(&mut b, 8 + 6);
        item(&mut b, 0x00, 6);
        explicit(&mut b, (0x0028, 0x0010), b"US", &4u16.to_le_bytes(), None);
        explicit(&mut b, (0x0028, 0x0011), b"US", &4u16.to_le_bytes(), None);
        assert!(matches!(
            check(&b),
            Err(VolumeError::ClaimExceedsData { available: 0, .. })
        ));
        // an implicit-VR sequence of defined length (SQ from the dictionary) is followed:
        // an element in its item claiming more than the item holds is caught
        let mut b = head("1.2.840.10008.1.2");
        b.extend_from_slice(&[0x08, 0x00, 0x40, 0x11]); // Referenced Image Sequence
        b.extend_from_slice(&(8u32 + 8 + 4).to_le_bytes());
        item(&mut b, 0x00, 8 + 4);
        b.extend_from_slice(&[0x08, 0x00, 0x50, 0x11]);
        b.extend_from_slice(&4000u32.to_le_bytes());
        b.extend_from_slice(b"1.2\0");
        b.extend_from_slice(&[0u8; 4000]);
        assert!(matches!(
            check(&b),
            Err(VolumeError::ClaimExceedsData { .. })
        ));
    }

    #[test]
    fn a_transfer_syntax_uid_longer_than_64_bytes_is_refused() {
        // padded with NULs, the scan would otherwise keep the default encoding while the
        // parser reads the data set as implicit VR
        let mut ts = "1.2.840.10008.1.2".to_string();
        ts.push_str(&"\0".repeat(60));
        let b = head(&ts);
        let e = check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).unwrap_err();
        assert!(e.to_string().contains("at most 64"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_before_the_parser_recurses() {
        let nest = |levels: usize| {
            let mut b = head("1.2.840.10008.1.2.1");
            for _ in 0..levels {
                b.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
                b.extend_from_slice(&UNDEFINED.to_le_bytes());
                b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
                b.extend_from_slice(&UNDEFINED.to_le_bytes());
            }
            b
        };
        let b = nest(100_000);
        let e = check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
        // a few levels (each sequence and item counts once) are fine
        let b = nest(MAX_DEPTH / 2);
        assert!(check_lengths(Path::new("a.dcm"), Cursor::new(&b), b.len() as u64).is_ok());
    }
}
