//! `masam evaluate` on hostile label maps: values that are not labels, a huge label, another
//! grid, two files for one case, names that are not UTF-8, and a folder where one case is bad.
//! Every one ends in an error (exit code 1) naming the file and the problem; the good cases of a
//! batch are still scored and written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use masam_volume::io::{NiftiWriter, Voxel};
use masam_volume::ndarray::{s, Array3};
use masam_volume::Volume;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-evalfault-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("gt")).unwrap();
    std::fs::create_dir_all(d.join("pred")).unwrap();
    d
}

fn evaluate(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masam"))
        .arg("evaluate")
        .arg("--pred")
        .arg(dir.join("pred"))
        .arg("--gt")
        .arg(dir.join("gt"))
        .arg("--out")
        .arg(dir.join("report"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the masam binary runs")
}

/// The error text of a run that must fail with exit code 1.
fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "expected exit code 1:\n{err}");
    err
}

fn succeeds(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "masam failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A box of label 1 (and a voxel of label 2) in an 8×16×16 map; `value` replaces one voxel.
fn labels<T: Voxel + From<u8>>(value: Option<T>) -> Volume<T> {
    let mut a = Array3::<T>::from_elem((8, 16, 16), T::from(0));
    a.slice_mut(s![2..6, 4..12, 4..12]).fill(T::from(1));
    a[[1, 1, 1]] = T::from(2);
    if let Some(v) = value {
        a[[0, 0, 0]] = v;
    }
    Volume::with_spacing(a, [0.8, 0.8, 2.5])
}

fn write<T: Voxel>(path: impl AsRef<Path>, v: &Volume<T>) {
    NiftiWriter::new().write(path, v).unwrap();
}

#[test]
fn negative_and_fractional_labels_are_errors_listing_the_values() {
    let dir = temp_dir("values");
    write(dir.join("gt/a.nii.gz"), &labels::<i16>(Some(-1)));
    write(dir.join("pred/a.nii.gz"), &labels::<u8>(None));
    let err = fails(&evaluate(&dir, &[]));
    assert!(
        err.contains("gt/a.nii.gz") && err.contains("-1 (1 voxel)"),
        "{err}"
    );

    write(dir.join("gt/a.nii.gz"), &labels::<u8>(None));
    write(dir.join("pred/a.nii.gz"), &labels::<f32>(Some(1.5)));
    let err = fails(&evaluate(&dir, &[]));
    assert!(
        err.contains("pred/a.nii.gz") && err.contains("1.5 (1 voxel)"),
        "{err}"
    );

    // a label above the declared classes
    write(dir.join("pred/a.nii.gz"), &labels::<u8>(Some(7)));
    let err = fails(&evaluate(&dir, &["--classes", "2"]));
    assert!(
        err.contains("0..=2") && err.contains("7 (1 voxel)"),
        "{err}"
    );
    assert!(!dir.join("report/dice.csv").exists(), "nothing is scored");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_huge_label_does_not_make_huge_work() {
    let dir = temp_dir("huge");
    write(dir.join("gt/a.nii.gz"), &labels::<i32>(Some(60000)));
    write(dir.join("pred/a.nii.gz"), &labels::<u8>(None));
    let t = Instant::now();
    let err = fails(&evaluate(&dir, &[]));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(err.contains("60000 (1 voxel)"), "{err}");
    let err = fails(&evaluate(&dir, &["--classes", "60000"]));
    assert!(err.contains("at most"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_mirrored_prediction_is_refused_unless_accepted() {
    let dir = temp_dir("mirror");
    let gt = labels::<u8>(None);
    let mut pred = gt.clone();
    // x mirrored: same shape, another grid
    pred.affine[0][0] = -pred.affine[0][0];
    pred.affine[0][3] = 15.0 * 0.8;
    write(dir.join("gt/a.nii.gz"), &gt);
    write(dir.join("pred/a.nii.gz"), &pred);
    let err = fails(&evaluate(&dir, &[]));
    assert!(
        err.contains("affine") && err.contains("--accept-geometry-mismatch"),
        "{err}"
    );
    let out = succeeds(&evaluate(&dir, &["--accept-geometry-mismatch"]));
    assert!(out.contains("1 case(s)"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn two_files_of_one_case_are_an_error_naming_both() {
    let dir = temp_dir("dup");
    write(dir.join("gt/c1.nii"), &labels::<u8>(None));
    write(dir.join("gt/c1.nii.gz"), &labels::<u8>(None));
    write(dir.join("pred/c1.nii.gz"), &labels::<u8>(None));
    let err = fails(&evaluate(&dir, &[]));
    assert!(
        err.contains("c1.nii`") && err.contains("c1.nii.gz`") && err.contains("same case"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_stay_distinct() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = temp_dir("utf8");
    // two names that read the same once made lossy (both become `case\u{FFFD}`)
    for raw in [&b"case\xff.nii.gz"[..], b"case\xfe.nii.gz"] {
        let name = OsStr::from_bytes(raw);
        write(dir.join("gt").join(name), &labels::<u8>(None));
        write(dir.join("pred").join(name), &labels::<u8>(None));
    }
    let out = succeeds(&evaluate(&dir, &[]));
    assert!(out.contains("2 case(s)"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_case_does_not_stop_the_batch() {
    let dir = temp_dir("batch");
    for c in ["a", "b", "c"] {
        write(dir.join(format!("gt/{c}.nii.gz")), &labels::<u8>(None));
    }
    write(dir.join("pred/a.nii.gz"), &labels::<u8>(None));
    std::fs::write(dir.join("pred/b.nii.gz"), b"not a NIfTI file at all").unwrap();
    write(dir.join("pred/c.nii.gz"), &labels::<f32>(Some(0.25)));
    let o = evaluate(&dir, &[]);
    let err = fails(&o);
    assert!(err.contains("2 of 3 cases failed"), "{err}");
    assert!(
        err.contains("b.nii.gz") && err.contains("c.nii.gz"),
        "{err}"
    );
    let dice = std::fs::read_to_string(dir.join("report/dice.csv")).unwrap();
    assert!(dice.lines().any(|l| l.starts_with("a,")), "{dice}");
    assert!(
        !dice
            .lines()
            .any(|l| l.starts_with("b,") || l.starts_with("c,")),
        "{dice}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
