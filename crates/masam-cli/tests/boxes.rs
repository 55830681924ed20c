//! Box prompts from the command line: `masam finetune --box`, `masam predict --box`,
//! `--box-from-label`, `--boxes`, and the errors for bad boxes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masam_adapter::data::Sampling;
use masam_adapter::{Finetune, MaSamConfig, TrainerConfig};
use masam_app::{DataSource, FinetuneConfig};
use masam_train::LrSchedule;
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::NiftiWriter;
use masam_volume::phantom::{Phantom, PhantomConfig};
use masam_volume::transforms::IntensityConfig;

fn masam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masam"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the masam binary runs")
}

fn ok(o: Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "masam failed:\n{out}\n{err}");
    out.into_owned()
}

fn fails(o: Output) -> String {
    assert!(!o.status.success(), "masam should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-boxes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn phantom() -> PhantomConfig {
    PhantomConfig {
        height: 64,
        width: 64,
        slices: 12,
        spacing: [6.0, 6.0, 20.0],
        noise_sd_hu: 12.0,
    }
}

fn tiny_config() -> FinetuneConfig {
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
            phantom: phantom(),
            train_cases: 1,
            test_cases: 1,
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
    }
}

#[test]
fn box_prompted_finetune_and_predict() {
    let dir = temp_dir("run");
    let cfg_path = dir.join("tiny.toml");
    std::fs::write(&cfg_path, toml::to_string_pretty(&tiny_config()).unwrap()).unwrap();
    let run = dir.join("run");
    // the liver (class 1) is present in every phantom case
    let args = ["finetune", "--config", p(&cfg_path), "--out", p(&run)];
    let msg = fails(masam(&[&args[..], &["--box-jitter", "2"]].concat()));
    assert!(msg.contains("--box tight"), "{msg}");
    let out = ok(masam(
        &[&args[..], &["--box", "relaxed", "--box-class", "1"]].concat(),
    ));
    assert!(out.contains("trained 2 steps"), "{out}");
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        saved.contains("[box_prompt]") && saved.contains("relaxed"),
        "{saved}"
    );

    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let (image, label) = Phantom::new(phantom()).unwrap().case(42);
    let label = masam_volume::Volume {
        affine: image.affine,
        ..label
    };
    let img = images.join("case42.nii.gz");
    let lab = dir.join("label42.nii.gz");
    NiftiWriter::new().write(&img, &image).unwrap();
    NiftiWriter::new().write(&lab, &label).unwrap();
    let [z, y, x] = image.shape_zyx();
    let predict = |extra: &[&str], out: &Path| {
        masam(
            &[
                &[
                    "predict",
                    "--run",
                    p(&run),
                    "--input",
                    p(&img),
                    "--output",
                    p(out),
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    // an explicit box on slices 0..=1: everything beyond the windows touching it is background
    let o1 = dir.join("box.nii.gz");
    ok(predict(&["--box", "0,10,10,1,40,50"], &o1));
    let pred = NiftiReader::new().read::<u8>(&o1).unwrap().volume;
    assert_eq!(pred.shape_zyx(), [z, y, x]);
    assert!(pred.affine_max_abs_diff(&image.affine) < 1e-6);
    assert!(pred
        .data
        .slice(masam_volume::ndarray::s![4.., .., ..])
        .iter()
        .all(|&v| v == 0));
    // from the label, relaxed
    let o2 = dir.join("label.nii.gz");
    ok(predict(
        &[
            "--box-from-label",
            p(&lab),
            "--box-class",
            "1",
            "--relax",
            "2",
        ],
        &o2,
    ));
    assert_eq!(
        NiftiReader::new()
            .read::<u8>(&o2)
            .unwrap()
            .volume
            .shape_zyx(),
        [z, y, x]
    );
    // a folder with a JSON file of boxes
    let json = dir.join("boxes.json");
    std::fs::write(&json, r#"{"case42.nii.gz": [0, 10, 10, 1, 40, 50]}"#).unwrap();
    let folder = dir.join("pred");
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&images),
        "--output",
        p(&folder),
        "--boxes",
        p(&json),
    ]));
    let again = NiftiReader::new()
        .read::<u8>(folder.join("case42.nii.gz"))
        .unwrap();
    assert_eq!(again.volume.data, pred.data);

    // bad boxes: clear messages, no output written
    let bad = dir.join("bad.nii.gz");
    let outside = format!("0,0,0,{z},5,5");
    for (flags, says) in [
        (vec!["--box", outside.as_str()], "outside the volume"),
        (vec!["--box", "3,0,0,1,5,5"], "inverted"),
        (vec!["--box", "1,2,3"], "expected 6"),
        (
            vec!["--box-from-label", p(&lab), "--box-class", "200"],
            "absent",
        ),
    ] {
        let msg = fails(predict(&flags, &bad));
        assert!(msg.contains(says), "{flags:?}: {msg}");
        assert!(!bad.exists());
    }
    std::fs::write(&json, r#"{"other.nii.gz": [0, 0, 0, 1, 1, 1]}"#).unwrap();
    let msg = fails(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&images),
        "--output",
        p(&folder),
        "--boxes",
        p(&json),
    ]));
    assert!(msg.contains("no box for input `case42.nii.gz`"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_decoder_trains_and_predicts_from_the_cli() {
    let dir = temp_dir("decoders");
    let cfg_path = dir.join("tiny.toml");
    std::fs::write(&cfg_path, toml::to_string_pretty(&tiny_config()).unwrap()).unwrap();
    let (image, _) = Phantom::new(phantom()).unwrap().case(7);
    let img = dir.join("case7.nii.gz");
    NiftiWriter::new().write(&img, &image).unwrap();
    for kind in ["sam", "progressive", "fusion"] {
        let run = dir.join(kind);
        let out = ok(masam(&[
            "finetune",
            "--config",
            p(&cfg_path),
            "--out",
            p(&run),
            "--decoder",
            kind,
        ]));
        assert!(out.contains("trained 2 steps"), "{kind}: {out}");
        let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(
            saved.contains(&format!("kind = \"{kind}\"")),
            "{kind}: {saved}"
        );
        let pred = dir.join(format!("{kind}.nii.gz"));
        ok(masam(&[
            "predict",
            "--run",
            p(&run),
            "--input",
            p(&img),
            "--output",
            p(&pred),
        ]));
        let back = NiftiReader::new().read::<u8>(&pred).unwrap().volume;
        assert_eq!(back.shape_zyx(), image.shape_zyx(), "{kind}");
    }
    let msg = fails(masam(&[
        "finetune",
        "--config",
        p(&cfg_path),
        "--decoder",
        "unet",
    ]));
    assert!(msg.contains("sam") && msg.contains("fusion"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
