//! `masam finetune --deterministic` killed with SIGKILL at several points and continued with
//! `--resume` ends with the same model, bit for bit, and the same `loss.csv` (every step once)
//! as an uninterrupted run. The model keeps FacT with dropout, so the dropout masks must repeat
//! too. Separate processes with 1 and 3 threads end with the same model, bit for bit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use masam_adapter::data::Sampling;
use masam_adapter::{MaSamConfig, TrainerConfig};
use masam_app::{DataSource, FinetuneConfig};
use masam_train::LrSchedule;
use masam_volume::phantom::PhantomConfig;
use masam_volume::transforms::IntensityConfig;

const STEPS: u64 = 6;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fixtures' tiny MA-SAM (FacT with dropout 0.1, 3D adapters) on a small phantom, with
/// augmentation and a checkpoint after every step.
fn config() -> FinetuneConfig {
    let mut model = MaSamConfig::tiny();
    model.sam.decoder.num_multimask_outputs = 12;
    assert!(model.fact.as_ref().is_some_and(|f| f.dropout > 0.0));
    FinetuneConfig {
        model,
        trainer: TrainerConfig {
            steps: STEPS,
            batch: 1,
            accumulation: 2,
            schedule: LrSchedule::Constant { lr: 1e-3 },
            seed: 9,
            ..TrainerConfig::default()
        },
        data: DataSource::Phantom {
            phantom: PhantomConfig {
                height: 64,
                width: 64,
                slices: 12,
                spacing: [6.0, 6.0, 20.0],
                noise_sd_hu: 12.0,
            },
            train_cases: 2,
            test_cases: 0,
        },
        sam_checkpoint: None,
        time_budget_s: None,
        augment: true,
        sampling: Sampling::Uniform,
        device: "cpu".into(),
        eval_batch: 8,
        intensity: IntensityConfig::ct_abdomen(),
        out_dir: "unused".into(),
        checkpoint_every: 1,
        resume: false,
        eval_every: 0,
        export_reference: false,
        box_prompt: None,
        fit_schedule_to_budget: false,
    }
}

fn finetune(cfg: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_masam"));
    c.args(["finetune", "--deterministic", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

fn loss_rows(out: &Path) -> usize {
    std::fs::read_to_string(out.join("loss.csv"))
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| l.ends_with(char::is_numeric))
                .count()
        })
        .unwrap_or(0)
}

/// Runs a training process until `loss.csv` has `rows` rows (or for `after` when `rows` is 0),
/// then kills it with SIGKILL. Returns whether the process was still running when killed.
fn kill_at(cfg: &Path, out: &Path, resume: bool, rows: usize, after: Duration) -> bool {
    let mut child = finetune(cfg, out, resume).spawn().expect("masam starts");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // finished (or failed) before the kill point
            assert!(status.success(), "masam failed before being killed");
            return false;
        }
        let reached = if rows == 0 {
            start.elapsed() >= after
        } else {
            loss_rows(out) >= rows
        };
        if reached {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return true;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "training hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let dir = temp_dir("resume");
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, toml::to_string_pretty(&config()).unwrap()).unwrap();

    let whole = dir.join("whole");
    let o = finetune(&cfg, &whole, false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(loss_rows(&whole), STEPS as usize);

    let cut = dir.join("cut");
    // during start-up (before any step), after steps 1, 3 (mid-step or mid-checkpoint) and 5
    let mut kills = 0;
    kills += kill_at(&cfg, &cut, false, 0, Duration::from_millis(300)) as usize;
    for rows in [1, 3, 5] {
        kills += kill_at(&cfg, &cut, true, rows, Duration::ZERO) as usize;
    }
    assert!(kills >= 3, "only {kills} of the runs were killed");
    let o = finetune(&cfg, &cut, true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        model(&whole) == model(&cut),
        "the resumed model differs from the uninterrupted one"
    );
    let losses = |d: &Path| std::fs::read_to_string(d.join("loss.csv")).unwrap();
    assert_eq!(losses(&whole), losses(&cut), "loss.csv differs");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_thread_count_changes_no_bit_of_the_model() {
    let dir = temp_dir("threads");
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, toml::to_string_pretty(&config()).unwrap()).unwrap();
    let run = |threads: &str, name: &str| {
        let out = dir.join(name);
        let o = finetune(&cfg, &out, false)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            std::fs::read(out.join("model.safetensors")).unwrap(),
            std::fs::read_to_string(out.join("loss.csv")).unwrap(),
        )
    };
    let (one, one_losses) = run("1", "first");
    for (threads, name) in [("3", "three"), ("1", "again")] {
        let (m, losses) = run(threads, name);
        assert_eq!(losses, one_losses, "loss.csv with {threads} thread(s)");
        assert!(m == one, "the model with {threads} thread(s) differs");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn deterministic_refuses_a_time_budget() {
    let o = Command::new(env!("CARGO_BIN_EXE_masam"))
        .args(["finetune", "--phantom", "--deterministic", "--minutes", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--minutes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
