//! Hostile `.pth` files end in typed errors, quickly and without large allocations.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use masam_weights::{read_pth, read_pth_bytes, Limits, WeightsError};
use support::*;

fn src() -> &'static Path {
    Path::new("hostile.pth")
}

fn refuse(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> WeightsError {
    read_pth_bytes(&pth(pickle, storages), src(), &Limits::default()).unwrap_err()
}

fn pickle_reason(err: &WeightsError) -> (usize, String, String) {
    match err {
        WeightsError::Pickle {
            offset,
            opcode,
            reason,
            ..
        } => (*offset, opcode.clone(), reason.clone()),
        other => panic!("expected a pickle error, got {other}"),
    }
}

/// A million nested levels of each container kind, as a 1-2 MB `.pth` on disk.
#[test]
fn a_million_nested_levels_fail_fast_without_overflowing_the_stack() {
    let n = 1_000_000;
    let programs: Vec<(&str, Vec<u8>)> = vec![
        ("lists", {
            let mut p = vec![0x80, 2];
            p.extend(std::iter::repeat_n(b']', n));
            p.extend(std::iter::repeat_n(b'a', n - 1));
            p.push(b'.');
            p
        }),
        ("marks", {
            let mut p = vec![0x80, 2];
            p.extend(std::iter::repeat_n(b'(', n));
            p.extend(std::iter::repeat_n(b't', n));
            p.push(b'.');
            p
        }),
        ("tuple1", {
            let mut p = vec![0x80, 2, b')'];
            p.extend(std::iter::repeat_n(0x85u8, n));
            p.push(b'.');
            p
        }),
        ("dicts", {
            let mut p = vec![0x80, 2, b'}'];
            for _ in 0..n / 4 {
                p.extend(b"K\x01}");
            }
            p.extend(std::iter::repeat_n(b's', n / 4));
            p.push(b'.');
            p
        }),
    ];
    let tmp = std::env::temp_dir().join(format!("masam-weights-nested-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (what, program) in programs {
        let path = tmp.join(format!("{what}.pth"));
        std::fs::write(&path, pth(program, &[])).unwrap();
        let t0 = Instant::now();
        let err = read_pth(&path, &Limits::default()).unwrap_err();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "{what}: {took:?}");
        assert!(err.to_string().contains(&format!("{what}.pth")), "{err}");
        let (_, _, reason) = pickle_reason(&err);
        assert!(reason.contains("deeper than 1000"), "{what}: {reason}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn disallowed_globals_are_refused_never_called() {
    for (module, name) in [
        ("os", "system"),
        ("builtins", "eval"),
        ("torch", "load"),
        ("subprocess", "Popen"),
    ] {
        // GLOBAL
        let mut p = vec![0x80, 2];
        p.extend(format!("c{module}\n{name}\n").as_bytes());
        unicode(&mut p, "echo pwned");
        p.extend(b"\x85R.");
        let err = refuse(p, &[]);
        let (offset, opcode, reason) = pickle_reason(&err);
        assert_eq!(offset, 2);
        assert!(opcode.contains("GLOBAL"), "{opcode}");
        assert!(reason.contains(&format!("{module}.{name}")), "{reason}");
        // STACK_GLOBAL
        let mut p = vec![0x80, 4];
        unicode(&mut p, module);
        unicode(&mut p, name);
        p.push(0x93);
        p.extend(b".");
        let (_, opcode, reason) = pickle_reason(&refuse(p, &[]));
        assert!(opcode.contains("STACK_GLOBAL"), "{opcode}");
        assert!(reason.contains("not allowed"), "{reason}");
    }
}

#[test]
fn text_protocol_and_object_building_opcodes_are_refused() {
    for op in [
        b'i', b'o', b'I', b'S', b'V', b'P', b'g', b'p', 0x82, 0x92, 0x8f,
    ] {
        let p = vec![0x80, 2, op, b'0', b'\n', b'.'];
        let (offset, opcode, _) = pickle_reason(&refuse(p, &[]));
        assert_eq!(offset, 2);
        assert!(opcode.starts_with(&format!("0x{op:02x}")), "{opcode}");
    }
}

#[test]
fn a_tensor_claiming_more_than_its_storage_is_refused() {
    // Shape 1000 x 1000 over a storage of 6 floats (24 bytes).
    let mut r = Record::f32("w", "0", &[1000, 1000]);
    r.storage_numel = 6;
    let err = refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[0.; 6]))]);
    assert!(
        matches!(err, WeightsError::Tensor { ref name, .. } if name == "w"),
        "{err}"
    );
    // A storage claiming more elements than its entry holds (BININT: at most 2^31 - 1).
    let mut r = Record::f32("w", "0", &[2]);
    r.storage_numel = i64::from(i32::MAX);
    let err = refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[0.; 2]))]);
    assert!(
        err.to_string().contains("claims 2147483647 elements"),
        "{err}"
    );
    // Strides that overflow, a huge offset, a missing storage.
    let mut r = Record::f32("w", "0", &[3, 3]);
    r.stride = vec![i64::from(i32::MAX), 1];
    r.storage_numel = 9;
    assert!(matches!(
        refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[0.; 9]))]),
        WeightsError::Tensor { .. }
    ));
    let mut r = Record::f32("w", "0", &[1]);
    r.offset = 1 << 30;
    assert!(matches!(
        refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[0.; 1]))]),
        WeightsError::Tensor { .. }
    ));
    let r = Record::f32("w", "missing", &[1]);
    assert!(matches!(
        refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[0.; 1]))]),
        WeightsError::Tensor { .. }
    ));
}

#[test]
fn stride_zero_expansion_is_bounded_by_the_output_budget() {
    // One float expanded to 2^31 elements (8 GiB) by stride 0.
    let mut r = Record::f32("w", "0", &[1 << 15, 1 << 16]);
    r.storage_numel = 1;
    r.stride = vec![0, 0];
    let err = refuse(state_dict_pickle(&[r]), &[("0", f32_bytes(&[1.]))]);
    assert!(matches!(err, WeightsError::OverBudget { .. }), "{err}");
}

#[test]
fn zip_entries_claiming_huge_sizes_are_refused() {
    let r = Record::f32("w", "0", &[2]);
    let files = vec![
        ("archive/data.pkl".to_string(), state_dict_pickle(&[r])),
        ("archive/data/0".to_string(), f32_bytes(&[1., 2.])),
    ];
    for entry in [0usize, 1] {
        let bytes = zip_with(&files, |i| (i == entry).then_some(u32::MAX - 1));
        let err = read_pth_bytes(&bytes, src(), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("hostile.pth"), "{err}");
        assert!(
            matches!(err, WeightsError::Zip { .. } | WeightsError::Tensor { .. }),
            "entry {entry}: {err}"
        );
    }
}

#[test]
fn memo_copy_bombs_run_out_of_budget() {
    // A list of 1000 items doubled through the memo 40 times would hold 2^40 items.
    let mut p = vec![0x80, 2, b']', b'('];
    p.extend(std::iter::repeat_n(b'N', 1000));
    p.extend(b"eq\x00");
    for _ in 0..40 {
        p.extend(b"(h\x00h\x00lq\x00");
    }
    p.push(b'.');
    let t0 = Instant::now();
    let (_, _, reason) = pickle_reason(&refuse(p, &[]));
    assert!(reason.contains("budget"), "{reason}");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn truncated_and_garbage_files_are_typed_errors() {
    let good = small_pth();
    for cut in [0, 4, 30, good.len() / 2, good.len() - 1] {
        let err = read_pth_bytes(&good[..cut], src(), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("hostile.pth"), "{err}");
    }
    // A pickle without STOP, an empty stack at STOP, an unknown protocol.
    for p in [
        vec![0x80, 2, b'N'],
        vec![0x80, 2, b'.'],
        vec![0x80, 9, b'N', b'.'],
    ] {
        pickle_reason(&refuse(p, &[]));
    }
}

#[test]
fn a_corrupted_storage_fails_its_crc() {
    let mut bytes = small_pth();
    // Flip a byte inside the first storage's data (the weight's 0.0 float at its start).
    let at = bytes
        .windows(14)
        .position(|w| w == b"archive/data/0")
        .unwrap()
        + 14;
    bytes[at + 1] ^= 0x40;
    let err = read_pth_bytes(&bytes, src(), &Limits::default()).unwrap_err();
    assert!(matches!(err, WeightsError::Zip { .. }), "{err}");
}

#[test]
fn limits_are_enforced() {
    let bytes = small_pth();
    let tight = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        read_pth_bytes(&bytes, src(), &tight).unwrap_err(),
        WeightsError::FileTooLarge { .. }
    ));
    let one = Limits {
        max_tensors: 1,
        ..Limits::default()
    };
    assert!(matches!(
        read_pth_bytes(&bytes, src(), &one).unwrap_err(),
        WeightsError::OverBudget { .. }
    ));
}

#[test]
fn big_endian_archives_are_refused() {
    let r = Record::f32("w", "0", &[1]);
    let files = vec![
        ("archive/data.pkl".to_string(), state_dict_pickle(&[r])),
        ("archive/byteorder".to_string(), b"big".to_vec()),
        ("archive/data/0".to_string(), f32_bytes(&[1.])),
    ];
    let err = read_pth_bytes(&zip(&files), src(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("little-endian"), "{err}");
}
