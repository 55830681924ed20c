//! Hostile `config.toml` files end in errors naming the value, without aborting, blocking or
//! allocating what they ask for.

use std::path::PathBuf;

use masam_app::run_dir::load_config;
use masam_app::{AppError, FinetuneConfig};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-app-limits-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn base() -> FinetuneConfig {
    FinetuneConfig::phantom_default(10, 0, "runs/x".into())
}

/// Writes `cfg` edited by `edit` (on its TOML text) and loads it back.
fn load_edited(tag: &str, edit: impl Fn(String) -> String) -> masam_app::Result<FinetuneConfig> {
    let d = dir(tag);
    let path = d.join("config.toml");
    let text = edit(toml::to_string_pretty(&base()).unwrap());
    std::fs::write(&path, text).unwrap();
    let out = load_config(&path);
    std::fs::remove_dir_all(&d).unwrap();
    out
}

fn replace_key(text: String, section: &str, key: &str, value: &str) -> String {
    let mut in_section = section.is_empty();
    let mut done = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_section = line.trim() == format!("[{section}]");
        }
        if in_section && !done && line.starts_with(&format!("{key} = ")) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(done, "no {key} in [{section}]");
    out
}

#[test]
fn the_default_round_trips() {
    assert_eq!(load_edited("ok", |t| t).unwrap(), base());
}

#[test]
fn values_that_size_allocations_are_bounded() {
    for (section, key, value, named) in [
        ("model", "slices", "100001", "slices"),
        ("model.sam.encoder", "img_size", "1048576", "img_size"),
        ("model.sam.encoder", "embed_dim", "4000000000", "embed_dim"),
        ("model.sam.encoder", "depth", "100000", "depth"),
        ("trainer", "batch", "1000000", "trainer.batch"),
        ("trainer", "batch", "0", "trainer.batch"),
        ("trainer", "steps", "18446744073709551615", "trainer.steps"),
        ("", "eval_batch", "1000000000", "eval_batch"),
    ] {
        let err = load_edited(key, |t| replace_key(t, section, key, value)).unwrap_err();
        assert!(err.to_string().contains(named), "{key} = {value}: {err}");
    }
    // Each value within bounds, the product over the input budget.
    let err = load_edited("product", |t| {
        let t = replace_key(t, "model.sam.encoder", "img_size", "4096");
        replace_key(t, "trainer", "batch", "1000")
    })
    .unwrap_err();
    assert!(err.to_string().contains("input elements"), "{err}");
}

#[test]
fn oversized_non_utf8_and_non_regular_files_are_refused() {
    let d = dir("files");
    let big = d.join("big.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    assert!(matches!(load_config(&big), Err(AppError::Io { .. })));
    let bin = d.join("bin.toml");
    std::fs::write(&bin, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    assert!(matches!(load_config(&bin), Err(AppError::Io { .. })));
    assert!(matches!(load_config(&d), Err(AppError::Fs(_))));
    #[cfg(unix)]
    {
        let fifo = d.join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let t0 = std::time::Instant::now();
        assert!(matches!(load_config(&fifo), Err(AppError::Fs(_))));
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }
    std::fs::remove_dir_all(&d).unwrap();
}
