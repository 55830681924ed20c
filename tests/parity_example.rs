//! The `parity` example's checks (`examples/parity/check.rs`, compiled into this test) on the tiny
//! reference fixture, on modified copies of it (a file removed, tensors perturbed), and on bad
//! folders.

#[path = "../examples/parity/check.rs"]
mod check;

use std::path::{Path, PathBuf};

use candle_core::Device;
use check::Status;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-tiny")
}

fn load(dir: &Path, f: &str) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(dir.join(f), &Device::Cpu).unwrap()
}

fn status(r: &check::Report, g: &str) -> Status {
    r.group(g).unwrap_or_else(|| panic!("no group {g}")).status
}

fn failures(r: &check::Report) -> Vec<(&str, &str)> {
    r.checks()
        .filter(|(_, c)| !c.pass)
        .map(|(g, c)| (g, c.name.as_str()))
        .collect()
}

/// A copy of the tiny fixture in a fresh temporary folder.
fn copy_of_tiny(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("masam-parity-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(tiny()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

const GROUPS: [&str; 14] = [
    "config",
    "sam_base",
    "masam_adapter",
    "converted_encoder",
    "plain_outputs",
    "outputs",
    "outputs_merged",
    "grads",
    "bbox_outputs",
    "bbox_outputs_merged",
    "adamw",
    "loss",
    "conv3d",
    "metrics",
];

#[test]
fn tiny_fixture_passes_every_group() {
    let r = check::run(&tiny(), true).unwrap();
    assert!(r.pass && r.complete, "{:?}", failures(&r));
    let names: Vec<&str> = r.groups.iter().map(|g| g.name).collect();
    assert_eq!(names, GROUPS);
    for g in &r.groups {
        assert_eq!(g.status, Status::Pass, "{}: {:?}", g.name, g.note);
    }
    assert!(r.trainable_set.as_ref().unwrap().pass);
    let count = |g: &str| r.group(g).unwrap().checks.len();
    let keys = |f: &str| load(&tiny(), f).len();
    // every output but the trajectory, plus the checkpoint round trip; merged: the same forward
    assert_eq!(count("outputs"), keys("outputs.safetensors"));
    assert_eq!(count("outputs_merged"), keys("outputs.safetensors") - 1);
    assert_eq!(count("grads"), keys("grads.safetensors"));
    assert_eq!(count("bbox_outputs"), keys("bbox_outputs.safetensors") - 1);
    // plain: every tensor but the four inputs; loss: all but logits and labels
    assert_eq!(
        count("plain_outputs"),
        keys("plain_outputs.safetensors") - 4
    );
    assert_eq!(count("loss"), keys("loss.safetensors") - 2);
    assert_eq!(
        count("converted_encoder"),
        keys("converted_encoder.safetensors")
    );
    assert_eq!(count("conv3d"), 4 * 4); // four kernels: y and three gradients each
    assert_eq!((count("metrics"), count("adamw")), (5, 1));
    assert_eq!(count("sam_base"), keys("sam_base.safetensors"));
    let merged = r.group("outputs_merged").unwrap();
    assert!(merged.max_rel <= check::FORWARD_TOL);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["pass"], true);
    assert_eq!(json["groups"][5]["status"], "pass");
}

#[test]
fn removed_and_perturbed_files_are_reported() {
    let dir = copy_of_tiny("modified");
    // one file removed: its groups are missing, the rest still runs (sam_base from the .pth)
    std::fs::remove_file(dir.join("bbox_outputs.safetensors")).unwrap();
    std::fs::remove_file(dir.join("sam_base.safetensors")).unwrap();
    // one output tensor and one conv3d gradient perturbed
    let mut out = load(&dir, "outputs.safetensors");
    let perturbed = (&out["low_res_logits"] + 0.01).unwrap();
    out.insert("low_res_logits".into(), perturbed);
    candle_core::safetensors::save(&out, dir.join("outputs.safetensors")).unwrap();
    let mut conv = load(&dir, "conv3d.safetensors");
    let perturbed = (&conv["k311.grad_weight"] * 1.01).unwrap();
    conv.insert("k311.grad_weight".into(), perturbed);
    candle_core::safetensors::save(&conv, dir.join("conv3d.safetensors")).unwrap();

    let r = check::run(&dir, false);
    std::fs::remove_dir_all(&dir).ok();
    let r = r.unwrap();
    assert!(!r.pass && !r.complete);
    for g in ["bbox_outputs", "bbox_outputs_merged", "sam_base"] {
        assert_eq!(status(&r, g), Status::Missing, "{g}");
    }
    for g in ["outputs", "outputs_merged", "conv3d"] {
        assert_eq!(status(&r, g), Status::Fail, "{g}");
    }
    assert_eq!(
        failures(&r),
        [
            ("outputs", "low_res_logits"),
            ("outputs_merged", "low_res_logits"),
            ("conv3d", "k311.grad_weight")
        ]
    );
    for g in [
        "grads",
        "adamw",
        "plain_outputs",
        "converted_encoder",
        "metrics",
    ] {
        assert_eq!(status(&r, g), Status::Pass, "{g}");
    }
    let json = serde_json::to_value(&r).unwrap();
    let groups = json["groups"].as_array().unwrap();
    let bbox = groups.iter().find(|g| g["name"] == "bbox_outputs").unwrap();
    assert_eq!(bbox["status"], "missing");
}

#[test]
fn folders_without_files_are_reported_not_crashed() {
    let e = check::run(Path::new("/nonexistent/fixture"), false).unwrap_err();
    assert!(e.to_string().contains("not a folder"), "{e:#}");
    // a folder with none of the files: everything missing; passes only when not strict
    let empty = std::env::temp_dir().join(format!("masam-parity-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let r = check::run(&empty, false).unwrap();
    let strict = check::run(&empty, true).unwrap();
    std::fs::remove_dir_all(&empty).ok();
    assert!(r.groups.iter().all(|g| g.status == Status::Missing));
    assert!(r.pass && !r.complete && !strict.pass);
    // an unreadable config is an error, not a crash
    let bad = copy_of_tiny("badconfig");
    std::fs::write(bad.join("config.json"), "{ not json").unwrap();
    let r = check::run(&bad, false).unwrap();
    std::fs::remove_dir_all(&bad).ok();
    assert_eq!(status(&r, "config"), Status::Error);
    assert!(!r.pass);
    // groups that need no configuration still run
    assert_eq!(status(&r, "conv3d"), Status::Pass);
}
