//! `masam predict` over a folder where one file is bad: the good ones are predicted and written,
//! the bad one is reported at the end, and the command exits with status 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masam_adapter::data::Sampling;
use masam_adapter::{Finetune, MaSamConfig, TrainerConfig};
use masam_app::{DataSource, FinetuneConfig};
use masam_train::LrSchedule;
use masam_volume::io::NiftiWriter;
use masam_volume::phantom::{Phantom, PhantomConfig};
use masam_volume::transforms::IntensityConfig;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-predbatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn masam(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masam"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the masam binary runs")
}

fn phantom() -> PhantomConfig {
    PhantomConfig {
        height: 64,
        width: 64,
        slices: 8,
        spacing: [6.0, 6.0, 20.0],
        noise_sd_hu: 12.0,
    }
}

/// A one-step run of the fixtures' tiny model.
fn train(dir: &Path) -> PathBuf {
    let mut model = MaSamConfig::tiny();
    model.sam.decoder.num_multimask_outputs = 12;
    model.finetune = Finetune::Full;
    let cfg = FinetuneConfig {
        model,
        trainer: TrainerConfig {
            steps: 1,
            batch: 1,
            accumulation: 1,
            schedule: LrSchedule::Constant { lr: 1e-3 },
            ..TrainerConfig::default()
        },
        data: DataSource::Phantom {
            phantom: phantom(),
            train_cases: 1,
            test_cases: 0,
        },
        sam_checkpoint: None,
        time_budget_s: None,
        augment: false,
        sampling: Sampling::Uniform,
        device: "cpu".into(),
        eval_batch: 8,
        intensity: IntensityConfig::ct_abdomen(),
        out_dir: "unused".into(),
        checkpoint_every: 0,
        resume: false,
        eval_every: 0,
        export_reference: false,
        box_prompt: None,
        fit_schedule_to_budget: false,
    };
    let path = dir.join("run.toml");
    std::fs::write(&path, toml::to_string_pretty(&cfg).unwrap()).unwrap();
    let run = dir.join("run");
    let o = masam(&[
        "finetune".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

#[test]
fn a_bad_file_does_not_stop_a_folder() {
    let dir = temp_dir("folder");
    let run = train(&dir);
    let (inputs, outputs) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    let (image, _) = Phantom::new(phantom()).unwrap().case(3);
    for name in ["a.nii.gz", "c.nii.gz"] {
        NiftiWriter::new().write(inputs.join(name), &image).unwrap();
    }
    std::fs::write(inputs.join("b.nii.gz"), b"\x1f\x8b garbage, not gzip").unwrap();
    let o = masam(&[
        "predict".as_ref(),
        "--run".as_ref(),
        run.as_os_str(),
        "--input".as_ref(),
        inputs.as_os_str(),
        "--output".as_ref(),
        outputs.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 of 3 volumes failed") && err.contains("b.nii.gz"),
        "{err}"
    );
    assert!(outputs.join("a.nii.gz").is_file() && outputs.join("c.nii.gz").is_file());
    assert!(
        !outputs.join("b.nii.gz").exists(),
        "no output for the bad file"
    );
    std::fs::remove_dir_all(&dir).ok();
}
