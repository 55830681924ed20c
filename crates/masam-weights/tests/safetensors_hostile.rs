//! safetensors files with lying headers end in typed errors before any large allocation.

mod support;

use std::path::Path;

use masam_weights::{read_safetensors, read_safetensors_bytes, Limits, WeightDtype, WeightsError};
use support::safetensors;

fn src() -> &'static Path {
    Path::new("lying.safetensors")
}

fn refuse(bytes: &[u8]) -> WeightsError {
    let err = read_safetensors_bytes(bytes, src(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("lying.safetensors"), "{err}");
    err
}

fn with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn a_valid_file_is_read() {
    let bytes = safetensors(&[
        (
            "a",
            "F32",
            vec![2],
            [1f32, 2.].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        ("b", "I64", vec![], 5i64.to_le_bytes().to_vec()),
    ]);
    let t = read_safetensors_bytes(&bytes, src(), &Limits::default()).unwrap();
    assert_eq!(t.len(), 2);
    let a = t.iter().find(|(n, _)| n == "a").unwrap();
    assert_eq!(
        (a.1.dtype, a.1.shape.as_slice()),
        (WeightDtype::F32, &[2usize][..])
    );
    let b = t.iter().find(|(n, _)| n == "b").unwrap();
    assert_eq!(b.1.data, 5i64.to_le_bytes());
}

#[test]
fn header_length_claims_beyond_the_file_are_refused() {
    for claim in [u64::MAX, 1 << 40, 1000] {
        let mut bytes = claim.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        assert!(matches!(refuse(&bytes), WeightsError::Safetensors { .. }));
    }
    assert!(matches!(
        refuse(b"\x01\x00"),
        WeightsError::Safetensors { .. }
    ));
}

#[test]
fn shapes_that_do_not_match_the_data_are_refused() {
    // 10^12 floats claimed, 8 bytes present.
    let h = r#"{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,8]}}"#;
    refuse(&with_header(h, 8));
    // Overflowing shape.
    let h = r#"{"a":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,8]}}"#;
    refuse(&with_header(h, 8));
    // Offsets beyond the data.
    let h = r#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#;
    refuse(&with_header(h, 4));
    // Overlapping tensors.
    let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
    refuse(&with_header(h, 6));
    // Reversed offsets.
    let h = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#;
    refuse(&with_header(h, 4));
    // Data beyond the last tensor (a gap at the end).
    let h = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    refuse(&with_header(h, 4));
}

#[test]
fn malformed_headers_and_unsupported_dtypes_are_refused() {
    refuse(&with_header("{not json", 0));
    refuse(&with_header(&"[".repeat(100_000), 0));
    let h = r#"{"a":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}}"#;
    assert!(matches!(
        refuse(&with_header(h, 1)),
        WeightsError::Tensor { .. }
    ));
    let dims = vec!["1"; 40].join(",");
    let h = format!(r#"{{"a":{{"dtype":"U8","shape":[{dims}],"data_offsets":[0,1]}}}}"#);
    assert!(matches!(
        refuse(&with_header(&h, 1)),
        WeightsError::Tensor { .. }
    ));
}

#[test]
fn limits_are_enforced_and_files_are_checked_before_reading() {
    let bytes = safetensors(&[
        ("a", "U8", vec![3], vec![1, 2, 3]),
        ("b", "U8", vec![1], vec![4]),
    ]);
    let one = Limits {
        max_tensors: 1,
        ..Limits::default()
    };
    assert!(matches!(
        read_safetensors_bytes(&bytes, src(), &one).unwrap_err(),
        WeightsError::OverBudget { .. }
    ));
    let small = Limits {
        max_file_bytes: 10,
        ..Limits::default()
    };
    let dir = std::env::temp_dir().join(format!("masam-weights-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_safetensors(&path, &small).unwrap_err(),
        WeightsError::FileTooLarge { .. }
    ));
    assert_eq!(
        read_safetensors(&path, &Limits::default()).unwrap().len(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
