//! The `parity` example's checks (`examples/parity/check.rs`, compiled into this test) on the tiny
//! reference fixture, on a corrupted copy of it, and on bad folders.

#[path = "../examples/parity/check.rs"]
mod check;

use std::path::{Path, PathBuf};

use candle_core::Device;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-tiny")
}

fn failures(r: &check::Report) -> Vec<(&str, &str)> {
    let bad = r.checks.iter().filter(|c| !c.pass);
    bad.map(|c| (c.group, c.name.as_str())).collect()
}

#[test]
fn tiny_fixture_passes_every_check() {
    let r = check::run(&tiny()).unwrap();
    assert!(r.pass && r.trainable_set.pass, "{:?}", failures(&r));
    assert!(failures(&r).is_empty());
    let count = |g: &str| r.checks.iter().filter(|c| c.group == g).count();
    let load = |f: &str| candle_core::safetensors::load(tiny().join(f), &Device::Cpu).unwrap();
    // every key of outputs and grads, both box-prompted tensors, the round trip
    assert_eq!(count("outputs"), load("outputs.safetensors").len());
    assert_eq!(count("grads"), load("grads.safetensors").len());
    assert_eq!((count("bbox_outputs"), count("checkpoint")), (2, 1));
    let worst = r.checks.iter().map(|c| c.error).fold(0f32, f32::max);
    eprintln!("worst error {worst:.3e}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["pass"], true);
    assert_eq!(json["checks"].as_array().unwrap().len(), r.checks.len());
}

#[test]
fn corrupted_copy_fails_on_the_perturbed_tensor() {
    // .pth checkpoints only (the fallback), no bbox file (optional), low_res_logits + 0.01
    let dir = std::env::temp_dir().join(format!("masam-parity-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "config.json",
        "sam_base.pth",
        "masam_adapter.pth",
        "inputs.safetensors",
    ] {
        std::fs::copy(tiny().join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        tiny().join("grads.safetensors"),
        dir.join("grads.safetensors"),
    )
    .unwrap();
    let path = tiny().join("outputs.safetensors");
    let mut out = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let perturbed = (&out["low_res_logits"] + 0.01).unwrap();
    out.insert("low_res_logits".into(), perturbed);
    candle_core::safetensors::save(&out, dir.join("outputs.safetensors")).unwrap();
    let r = check::run(&dir);
    std::fs::remove_dir_all(&dir).ok();
    let r = r.unwrap();
    assert!(!r.pass);
    assert_eq!(failures(&r), [("outputs", "low_res_logits")]);
    assert!(r.trainable_set.pass);
    assert!(r.checks.iter().all(|c| c.group != "bbox_outputs"));
}

#[test]
fn bad_folders_are_clear_errors() {
    let e = check::run(Path::new("/nonexistent/fixture")).unwrap_err();
    assert!(e.to_string().contains("no config.json"), "{e:#}");
    // a folder without config.json
    let e = check::run(tiny().parent().unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("config.json"), "{e:#}");
}
