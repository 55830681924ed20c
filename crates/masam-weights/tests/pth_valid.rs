//! Well-formed `.pth` files are read exactly.

mod support;

use std::path::Path;

use masam_weights::{read_pth, read_pth_bytes, Limits, WeightDtype, WeightsError};
use support::*;

fn src() -> &'static Path {
    Path::new("test.pth")
}

#[test]
fn reads_a_state_dict_with_parameters_and_metadata() {
    let t = read_pth_bytes(&small_pth(), src(), &Limits::default()).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].0, "lin.weight");
    assert_eq!(t[0].1.shape, vec![2, 3]);
    assert_eq!(t[0].1.dtype, WeightDtype::F32);
    let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
    assert_eq!(t[0].1.data, f32_bytes(&w));
    assert_eq!(t[1].0, "lin.bias");
    assert_eq!(t[1].1.data, f32_bytes(&[0.5, -1.0, 2.0]));
}

#[test]
fn transposed_and_offset_views_are_materialised_in_row_major_order() {
    // storage: 0..12 as a 3x4 matrix; a view of its transpose (4x3, strides (1, 4)) and a
    // narrowed row view at offset 4.
    let s: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let mut t = Record::f32("t", "0", &[4, 3]);
    t.storage_numel = 12;
    t.stride = vec![1, 4];
    let mut row = Record::f32("row", "0", &[4]);
    row.storage_numel = 12;
    row.offset = 4;
    let bytes = pth(state_dict_pickle(&[t, row]), &[("0", f32_bytes(&s))]);
    let out = read_pth_bytes(&bytes, src(), &Limits::default()).unwrap();
    let expect_t: Vec<f32> = (0..4)
        .flat_map(|i| (0..3).map(move |j| (j * 4 + i) as f32))
        .collect();
    assert_eq!(out[0].1.data, f32_bytes(&expect_t));
    assert_eq!(out[1].1.data, f32_bytes(&[4., 5., 6., 7.]));
}

#[test]
fn wrapped_state_dicts_and_other_dtypes() {
    // {"model": {"a": long tensor}, "epoch": 3}
    let mut p = vec![0x80, 2, b'}', b'('];
    unicode(&mut p, "model");
    p.extend(b"}(");
    unicode(&mut p, "a");
    let mut r = Record::f32("a", "k", &[2]);
    r.storage_class = "LongStorage";
    tensor(&mut p, &r, false);
    p.push(b'u');
    unicode(&mut p, "epoch");
    int(&mut p, 3);
    p.extend(b"u.");
    let data: Vec<u8> = [7i64, -9].iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = read_pth_bytes(&pth(p, &[("k", data.clone())]), src(), &Limits::default()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dtype, WeightDtype::I64);
    assert_eq!(out[0].1.data, data);
}

#[test]
fn files_written_by_pytorch_are_read() {
    // candle-core ships small files written by PyTorch (in its crate sources); use them when
    // the registry copy is present, and otherwise the fixtures of this repository.
    let dirs: Vec<std::path::PathBuf> = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|h| h.join("registry/src"))
        .and_then(|r| std::fs::read_dir(r).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("candle-core-0.11.1/tests"))
        .filter(|p| p.is_dir())
        .collect();
    let mut seen = 0;
    for dir in dirs {
        for (file, n) in [("test.pt", 1), ("fortran_tensor_3d.pth", 1)] {
            let path = dir.join(file);
            if path.is_file() {
                let t = read_pth(&path, &Limits::default()).unwrap();
                assert_eq!(t.len(), n, "{}", path.display());
                seen += 1;
            }
        }
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    for entry in walk(&fixtures) {
        if entry.extension().is_some_and(|e| e == "pth") {
            match read_pth(&entry, &Limits::default()) {
                Ok(t) => assert!(!t.is_empty(), "{}", entry.display()),
                Err(e) => panic!("{}: {e}", entry.display()),
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "no PyTorch-written file found");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_reference_fixtures_pth_and_safetensors_hold_the_same_tensors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference-tiny");
    for stem in ["sam_base", "masam_adapter"] {
        let pth = read_pth(dir.join(format!("{stem}.pth")), &Limits::default()).unwrap();
        let st = masam_weights::read_safetensors(
            dir.join(format!("{stem}.safetensors")),
            &Limits::default(),
        )
        .unwrap();
        let st: std::collections::HashMap<_, _> = st.into_iter().collect();
        assert!(pth.len() > 10, "{stem}: {} tensors", pth.len());
        for (name, t) in &pth {
            let s = st
                .get(name)
                .unwrap_or_else(|| panic!("{stem}: {name} missing"));
            assert_eq!((t.dtype, &t.shape), (s.dtype, &s.shape), "{stem}: {name}");
            assert_eq!(t.data, s.data, "{stem}: {name}");
        }
    }
}

#[test]
fn a_missing_file_and_a_directory_are_typed_errors() {
    let err = read_pth("/nonexistent/x.pth", &Limits::default()).unwrap_err();
    assert!(matches!(err, WeightsError::Fs(_)), "{err}");
    let err = read_pth(std::env::temp_dir(), &Limits::default()).unwrap_err();
    assert!(matches!(err, WeightsError::Fs(_)), "{err}");
}
