//! The `masam` binary, run as a user would: help, evaluate with a known answer, a tiny
//! finetune → predict → evaluate pipeline, and the messages for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masam_adapter::TrainerConfig;
use masam_adapter::{Finetune, MaSamConfig};
use masam_app::run_dir;
use masam_app::{DataSource, FinetuneConfig};
use masam_cli::evaluate::{self, EvalOptions};
use masam_cli::CliError;
use masam_train::LrSchedule;
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::NiftiWriter;
use masam_volume::ndarray::{s, Array3};
use masam_volume::phantom::{Phantom, PhantomConfig};
use masam_volume::transforms::IntensityConfig;
use masam_volume::Volume;

fn masam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masam"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the masam binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: Output) -> String {
    let (out, err) = text(&o);
    assert!(o.status.success(), "masam failed:\n{out}\n{err}");
    out
}

fn fails(o: Output) -> String {
    let (out, err) = text(&o);
    assert!(!o.status.success(), "masam should have failed:\n{out}");
    err
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Box label maps (8×16×16 at 2.5 × 0.7 × 0.7 mm).
fn boxes(dir: &Path, name: &str, y0: usize) -> Volume<u8> {
    let mut a = Array3::<u8>::zeros((8, 16, 16));
    a.slice_mut(s![2..6, y0..12, 4..12]).fill(1);
    let v = Volume::with_spacing(a, [0.7, 0.7, 2.5]);
    std::fs::create_dir_all(dir).unwrap();
    NiftiWriter::new()
        .write(dir.join(format!("{name}.nii.gz")), &v)
        .unwrap();
    v
}

fn mean_row(csv: &Path) -> Vec<f64> {
    let t = std::fs::read_to_string(csv).unwrap();
    let row = t.lines().find(|l| l.starts_with("mean,")).unwrap();
    row.split(',').skip(1).map(|v| v.parse().unwrap()).collect()
}

#[test]
fn help_lists_every_subcommand() {
    let out = ok(masam(&["--help"]));
    for sub in ["finetune", "predict", "evaluate", "convert-sam", "RUST_LOG"] {
        assert!(out.contains(sub), "--help lacks {sub}:\n{out}");
    }
    for sub in ["finetune", "predict", "evaluate", "convert-sam"] {
        let out = ok(masam(&[sub, "--help"]));
        assert!(out.contains("Usage: masam"), "{sub} --help:\n{out}");
    }
}

#[test]
fn evaluate_two_folders_gives_the_expected_scores() {
    let dir = temp_dir("eval");
    let (gt, pred, out) = (dir.join("gt"), dir.join("pred"), dir.join("metrics"));
    boxes(&gt, "a", 4);
    boxes(&pred, "a", 5); // one row of 8×4 voxels short: Dice 2·224/(224+256)
    boxes(&gt, "b", 4);
    boxes(&pred, "b", 4); // perfect
    let stdout = ok(masam(&[
        "evaluate",
        "--pred",
        p(&pred),
        "--gt",
        p(&gt),
        "--names",
        "tumour",
        "--nsd-tolerance",
        "1.0",
        "--out",
        p(&out),
    ]));
    let expected = (2.0 * 224.0 / 480.0 + 1.0) / 2.0;
    let dice = mean_row(&out.join("dice.csv"));
    assert!((dice[0] - expected).abs() < 1e-9, "{dice:?} vs {expected}");
    assert!(
        stdout.contains("tumour") && stdout.contains("dice"),
        "{stdout}"
    );
    // case a: the prediction's border is 0.7 mm inside the truth's on one side
    let hd = mean_row(&out.join("hd95.csv"));
    assert!(hd[0] >= 0.0 && hd[0] <= 0.7 + 1e-9, "{hd:?}");
    let asd = mean_row(&out.join("asd.csv"));
    assert!(asd[0] > 0.0 && asd[0] < 0.7, "{asd:?}");
    let nsd = mean_row(&out.join("nsd.csv"));
    assert!(nsd[0] > 0.9 && nsd[0] <= 1.0, "{nsd:?}");
    for f in [
        "dice.json",
        "hd95.json",
        "asd.json",
        "nsd.json",
        "metrics.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn evaluate_errors_are_typed_and_say_what_to_do() {
    let dir = temp_dir("eval-bad");
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    boxes(&gt, "a", 4);
    boxes(&pred, "a", 4);
    boxes(&pred, "extra", 4);
    let err = evaluate::match_cases(&pred, &gt).unwrap_err();
    assert!(
        matches!(&err, CliError::MissingGroundTruth { names, .. } if names == &["extra"]),
        "{err}"
    );
    let msg = fails(masam(&[
        "evaluate",
        "--pred",
        p(&pred),
        "--gt",
        p(&gt),
        "--out",
        p(&dir.join("m")),
    ]));
    assert!(
        msg.contains("extra") && msg.contains("same file name"),
        "{msg}"
    );

    std::fs::remove_file(pred.join("extra.nii.gz")).unwrap();
    boxes(&gt, "missing", 4);
    let err = evaluate::match_cases(&pred, &gt).unwrap_err();
    assert!(matches!(err, CliError::MissingPrediction { .. }), "{err}");

    std::fs::remove_file(gt.join("missing.nii.gz")).unwrap();
    let small = Volume::with_spacing(Array3::<u8>::ones((4, 16, 16)), [1.0; 3]);
    NiftiWriter::new()
        .write(pred.join("a.nii.gz"), &small)
        .unwrap();
    let cases = evaluate::match_cases(&pred, &gt).unwrap();
    let err = evaluate::evaluate(&cases, &EvalOptions::default(), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            CliError::ShapeMismatch {
                pred: [4, 16, 16],
                gt: [8, 16, 16],
                ..
            }
        ),
        "{err}"
    );
    let opts = EvalOptions {
        names: Some(vec!["x".into(), "y".into()]),
        ..EvalOptions::default()
    };
    let err = evaluate::evaluate(&cases, &opts, |_| {}).unwrap_err();
    assert!(err.to_string().contains("--names"), "{err}");

    let msg = fails(masam(&[
        "evaluate",
        "--pred",
        "/no/such/folder",
        "--gt",
        p(&gt),
        "--out",
        p(&dir.join("m")),
    ]));
    assert!(
        msg.contains("/no/such/folder") && msg.contains("does not exist"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_paths_fail_with_a_helpful_message() {
    let msg = fails(masam(&[
        "predict",
        "--run",
        "/no/such/run",
        "--input",
        "/no/such/scan.nii.gz",
        "--output",
        "/tmp/x.nii.gz",
    ]));
    assert!(
        msg.contains("/no/such/scan.nii.gz") && msg.contains("does not exist"),
        "{msg}"
    );
    let msg = fails(masam(&[
        "finetune",
        "--config",
        "/no/such/run.toml",
        "--print-config",
    ]));
    assert!(msg.contains("--print-config > run.toml"), "{msg}");
    let msg = fails(masam(&["finetune", "--data", "/no/such/btcv"]));
    assert!(msg.contains("--sam-checkpoint"), "{msg}");
    let msg = fails(masam(&[
        "convert-sam",
        "--input",
        "/no/such/sam.pth",
        "--output",
        "/tmp/x.safetensors",
    ]));
    assert!(msg.contains("does not exist"), "{msg}");
    // clap: a required flag missing
    let msg = fails(masam(&["predict", "--input", "x.nii.gz"]));
    assert!(msg.contains("--output"), "{msg}");
}

#[test]
fn print_config_is_a_complete_loadable_configuration() {
    let dir = temp_dir("print");
    let out = ok(masam(&[
        "finetune",
        "--print-config",
        "--steps",
        "7",
        "--seed",
        "3",
    ]));
    let f = dir.join("run.toml");
    std::fs::write(&f, out).unwrap();
    let cfg = run_dir::load_config(&f).unwrap();
    assert_eq!(cfg.trainer.steps, 7);
    assert_eq!(cfg.trainer.seed, 3);
    assert!(matches!(cfg.data, DataSource::Phantom { .. }));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn checkpoint_blocks_is_a_trainer_setting_kept_in_the_run_folder() {
    let dir = temp_dir("checkpoint-blocks");
    let load = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        run_dir::load_config(&f).unwrap()
    };
    let on = ok(masam(&[
        "finetune",
        "--print-config",
        "--checkpoint-blocks",
    ]));
    assert!(load("on.toml", &on).trainer.checkpoint_blocks);
    let off = ok(masam(&["finetune", "--print-config"]));
    assert!(!load("off.toml", &off).trainer.checkpoint_blocks);
    // a configuration written before the setting existed reads as off
    let old: Vec<&str> = on
        .lines()
        .filter(|l| !l.trim_start().starts_with("checkpoint_blocks"))
        .collect();
    assert_eq!(
        old.len() + 1,
        on.lines().count(),
        "one line holds the setting"
    );
    assert!(!load("old.toml", &old.join("\n")).trainer.checkpoint_blocks);

    // a tiny run trains with it and keeps it in its config.toml
    let phantom = PhantomConfig {
        height: 64,
        width: 64,
        slices: 12,
        spacing: [6.0, 6.0, 20.0],
        noise_sd_hu: 12.0,
    };
    let cfg_path = dir.join("tiny.toml");
    std::fs::write(
        &cfg_path,
        toml::to_string_pretty(&tiny_run_config(&phantom)).unwrap(),
    )
    .unwrap();
    let run = dir.join("run");
    let out = ok(masam(&[
        "finetune",
        "--config",
        p(&cfg_path),
        "--checkpoint-blocks",
        "--out",
        p(&run),
    ]));
    assert!(out.contains("trained 2 steps"), "{out}");
    let kept = run_dir::load_config(run.join(run_dir::CONFIG_FILE)).unwrap();
    assert!(kept.trainer.checkpoint_blocks);
    std::fs::remove_dir_all(&dir).ok();
}

/// A 2-step run of the fixtures' tiny model on a small phantom.
fn tiny_run_config(phantom: &PhantomConfig) -> FinetuneConfig {
    let mut model = MaSamConfig::tiny();
    model.sam.decoder.num_multimask_outputs = 12;
    model.finetune = Finetune::Full;
    FinetuneConfig {
        model,
        trainer: TrainerConfig {
            steps: 2,
            batch: 1,
            accumulation: 1,
            schedule: LrSchedule::Constant { lr: 1e-3 },
            seed: 5,
            ..TrainerConfig::default()
        },
        data: DataSource::Phantom {
            phantom: phantom.clone(),
            train_cases: 1,
            test_cases: 1,
        },
        sam_checkpoint: None,
        time_budget_s: None,
        augment: false,
        sampling: masam_adapter::data::Sampling::Uniform,
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
    }
}

#[test]
fn finetune_predict_evaluate_pipeline() {
    let dir = temp_dir("pipeline");
    let phantom = PhantomConfig {
        height: 64,
        width: 64,
        slices: 12,
        spacing: [6.0, 6.0, 20.0],
        noise_sd_hu: 12.0,
    };
    let cfg_path = dir.join("tiny.toml");
    std::fs::write(
        &cfg_path,
        toml::to_string_pretty(&tiny_run_config(&phantom)).unwrap(),
    )
    .unwrap();
    let run = dir.join("run");
    let out = ok(masam(&[
        "finetune",
        "--config",
        p(&cfg_path),
        "--out",
        p(&run),
    ]));
    assert!(out.contains("trained 2 steps"), "{out}");
    assert!(out.contains("mean Dice"), "{out}");
    for f in ["config.toml", "model.safetensors", "metrics.csv"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // the same folder again without --resume is refused
    let msg = fails(masam(&[
        "finetune",
        "--config",
        p(&cfg_path),
        "--out",
        p(&run),
    ]));
    assert!(msg.contains("--resume"), "{msg}");

    // a folder of NIfTI volumes in, a folder of label maps out
    let (images, gts, preds) = (dir.join("images"), dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&gts).unwrap();
    let (image, label) = Phantom::new(phantom).unwrap().case(42);
    let mut image = image;
    image.affine[0][3] = -12.5; // a non-trivial origin must survive
    let label = Volume {
        affine: image.affine,
        ..label
    };
    NiftiWriter::new()
        .write(images.join("case42.nii.gz"), &image)
        .unwrap();
    NiftiWriter::new()
        .write(gts.join("case42.nii.gz"), &label)
        .unwrap();
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&images),
        "--output",
        p(&preds),
        "--batch",
        "4",
    ]));
    let back = NiftiReader::new()
        .read::<u8>(preds.join("case42.nii.gz"))
        .unwrap();
    assert_eq!(back.volume.shape_zyx(), image.shape_zyx());
    assert!(back.volume.affine_max_abs_diff(&image.affine) < 1e-6);
    assert!(back.volume.data.iter().all(|&v| v <= 12));

    // the same with --config + --weights, into a single file
    let single = dir.join("single.nii");
    ok(masam(&[
        "predict",
        "--config",
        p(&run.join("config.toml")),
        "--weights",
        p(&run.join("model.safetensors")),
        "--input",
        p(&images.join("case42.nii.gz")),
        "--output",
        p(&single),
    ]));
    let again = NiftiReader::new().read::<u8>(&single).unwrap();
    assert_eq!(again.volume.data, back.volume.data);
    // --run with another weights file of the run
    let copy = run.join("copy.safetensors");
    std::fs::copy(run.join("model.safetensors"), &copy).unwrap();
    let third = dir.join("third.nii.gz");
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--weights",
        p(&copy),
        "--input",
        p(&images.join("case42.nii.gz")),
        "--output",
        p(&third),
    ]));
    let third = NiftiReader::new().read::<u8>(&third).unwrap();
    assert_eq!(third.volume.data, back.volume.data);

    let stdout = ok(masam(&[
        "evaluate",
        "--pred",
        p(&preds),
        "--gt",
        p(&gts),
        "--classes",
        "12",
        "--out",
        p(&dir.join("metrics")),
    ]));
    assert!(stdout.contains("case42"), "{stdout}");
    let dice = mean_row(&dir.join("metrics").join("dice.csv"));
    assert_eq!(dice.len(), 12);

    // overwriting the input is refused
    let msg = fails(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&images.join("case42.nii.gz")),
        "--output",
        p(&images),
    ]));
    assert!(msg.contains("overwrite"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
