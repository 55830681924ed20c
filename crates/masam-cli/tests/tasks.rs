//! `masam finetune --task …` on tiny synthetic datasets written in each task's official layout:
//! a 2-step smoke run of the tiny backbone, then predict and evaluate with the task's classes,
//! predictions on the input's grid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use masam_app::{finetune, run_dir};
use masam_cli::predict::{read_input, Predictor};
use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::NiftiWriter;
use masam_volume::ndarray::{s, Array3};
use masam_volume::Volume;

fn masam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_masam"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the masam binary runs")
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "masam failed:\n{out}\n{err}");
    out
}

fn fails(o: Output) -> String {
    assert!(
        !o.status.success(),
        "masam should have failed:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-task-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A 16 × 32 × 32 case: a box of `label` (values 1..=`max_label` in bands along y) on a
/// background; image intensities `lo` outside and `hi` inside, with a small ramp.
fn write_case(image: &Path, label: &Path, seed: usize, max_label: u8, lo: f32, hi: f32) {
    let mut lab = Array3::<u8>::zeros((16, 32, 32));
    let x0 = 6 + seed % 4;
    for (i, l) in (1..=max_label).enumerate() {
        let y = 1 + 2 * i;
        lab.slice_mut(s![3..13, y..y + 2, x0..x0 + 16]).fill(l);
    }
    let img = Array3::from_shape_fn((16, 32, 32), |(z, y, x)| {
        let base = if lab[[z, y, x]] > 0 { hi } else { lo };
        base + ((x + y + z + seed) % 7) as f32 * (hi - lo) * 0.01
    });
    for (path, write_label) in [(image, false), (label, true)] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if write_label {
            let v = Volume::with_spacing(lab.clone(), [1.5, 1.5, 3.0]);
            NiftiWriter::new().write(path, &v).unwrap();
        } else {
            let v = Volume::with_spacing(img.clone(), [1.5, 1.5, 3.0]);
            NiftiWriter::new().write(path, &v).unwrap();
        }
    }
}

/// Writes a macOS `._` resource-fork file next to `path` (the readers must skip it).
fn stray(path: &Path) {
    let name = format!("._{}", path.file_name().unwrap().to_string_lossy());
    std::fs::write(path.with_file_name(name), b"\0\x05\x16\x07").unwrap();
}

/// finetune (2 steps, tiny backbone) → predict `image` → evaluate against `gt`, with `k`
/// classes; returns the run folder.
fn smoke(dir: &Path, task: &str, data: &Path, extra: &[&str], k: usize, image: &Path, gt: &Path) {
    let run = dir.join("run");
    let mut args = vec![
        "finetune",
        "--task",
        task,
        "--data",
        p(data),
        "--backbone",
        "tiny",
        "--steps",
        "2",
        "--out",
        p(&run),
    ];
    args.extend_from_slice(extra);
    let out = ok(masam(&args));
    assert!(out.contains("trained 2 steps"), "{out}");
    let cfg = run_dir::load_config(run.join("config.toml")).unwrap();
    assert_eq!(cfg.model.num_classes(), k);
    assert_eq!(cfg.model.sam.encoder.img_size, 64);

    let (preds, gts) = (dir.join("pred"), dir.join("gt"));
    std::fs::create_dir_all(&gts).unwrap();
    let gt_copy = gts.join(image.file_name().unwrap());
    std::fs::copy(gt, &gt_copy).unwrap();
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(image),
        "--output",
        p(&preds),
    ]));
    let pred = NiftiReader::new()
        .read::<u8>(preds.join(image.file_name().unwrap()))
        .unwrap();
    let input = NiftiReader::new().read::<f32>(image).unwrap();
    assert_eq!(pred.volume.shape_zyx(), input.volume.shape_zyx());
    assert!(pred.volume.affine_max_abs_diff(&input.volume.affine) < 1e-6);
    assert!(pred.volume.data.iter().all(|&v| v as usize <= k));
    ok(masam(&[
        "evaluate",
        "--task",
        task,
        "--pred",
        p(&preds),
        "--gt",
        p(&gts),
        "--out",
        p(&dir.join("metrics")),
    ]));
    let csv = std::fs::read_to_string(dir.join("metrics").join("dice.csv")).unwrap();
    let mean = csv.lines().find(|l| l.starts_with("mean,")).unwrap();
    assert_eq!(mean.split(',').count(), k + 1, "{csv}");
}

#[test]
fn btcv_official_layout_smoke_run() {
    let dir = temp_dir("btcv");
    let data = dir.join("BTCV");
    let tr = data.join("RawData").join("Training");
    for (i, id) in ["0001", "0002", "0035"].iter().enumerate() {
        let (img, lab) = (
            tr.join("img").join(format!("img{id}.nii.gz")),
            tr.join("label").join(format!("label{id}.nii.gz")),
        );
        write_case(&img, &lab, i, 13, -100.0, 200.0);
        stray(&img);
    }
    std::fs::create_dir_all(data.join("RawData").join("Testing").join("img")).unwrap();
    let img = tr.join("img").join("img0035.nii.gz");
    let lab = tr.join("label").join("label0035.nii.gz");
    smoke(&dir, "btcv", &data, &[], 12, &img, &lab);
    let cfg = run_dir::load_config(dir.join("run").join("config.toml")).unwrap();
    let loaded = cfg.data.load().unwrap();
    // the reference split holds 0035 out; label 13 is merged into 12
    assert_eq!((loaded.train.len(), loaded.test.len()), (2, 1));
    assert_eq!(loaded.train[0].label.data.iter().max(), Some(&12));
    assert_eq!(loaded.class_names.len(), 12);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn prostate_cross_site_and_predict_uses_the_training_normalisation() {
    let dir = temp_dir("prostate");
    let data = dir.join("Prostate");
    // RUNMC (site A): Case03 is a reference test case; BMC (site B) and HK (site F) test cases
    for (site, case, suffix) in [
        ("RUNMC", "Case00", "_segmentation"),
        ("RUNMC", "Case01", "_segmentation"),
        ("RUNMC", "Case03", "_segmentation"),
        ("BMC", "Case03", "_segmentation"),
        ("HK", "Case38", "_Segmentation"),
    ] {
        let img = data.join(site).join(format!("{case}.nii.gz"));
        let lab = data.join(site).join(format!("{case}{suffix}.nii.gz"));
        write_case(&img, &lab, case.len() + site.len(), 2, 80.0, 900.0);
        stray(&img);
    }
    let img = data.join("HK").join("Case38.nii.gz");
    let lab = data.join("HK").join("Case38_Segmentation.nii.gz");
    smoke(
        &dir,
        "prostate",
        &data,
        &["--protocol", "cross-site", "--site", "A"],
        1,
        &img,
        &lab,
    );
    let run = dir.join("run");
    let cfg = run_dir::load_config(run.join("config.toml")).unwrap();
    let data = finetune::prepared_data(&cfg).unwrap();
    // trained on RUNMC's 2 training cases, tested on the test cases of BMC and HK
    assert_eq!((data.train.len(), data.test.len()), (2, 2));
    assert!(data.train[0].label.data.iter().all(|&v| v <= 1));
    // the HK case as training saw it, and as predict prepares it from the file
    let trained = &data.test[1].image;
    let predictor =
        Predictor::from_run(&run, None, None, &masam_adapter::candle::Device::Cpu).unwrap();
    let (raw, _) = read_input(&img).unwrap();
    let predicted = predictor.prepare(&raw);
    assert_eq!(predicted.data, trained.data);
    assert!(raw.data.iter().any(|&v| v > 1.0));
    assert!(predicted.data.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let stack = |v: &Volume<f32>| predictor.stack.image_stack(v, 8).unwrap();
    assert_eq!(stack(&predicted), stack(trained));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn msd_pancreas_smoke_run() {
    let dir = temp_dir("msd");
    let data = dir.join("Task07_Pancreas");
    let mut training = vec![];
    for i in [1, 4, 5] {
        let name = format!("pancreas_{i:03}.nii.gz");
        let (img, lab) = (
            data.join("imagesTr").join(&name),
            data.join("labelsTr").join(&name),
        );
        write_case(&img, &lab, i, 2, -20.0, 150.0);
        stray(&img);
        stray(&lab);
        training.push(format!(
            "{{\"image\":\"./imagesTr/{name}\",\"label\":\"./labelsTr/{name}\"}}"
        ));
    }
    std::fs::create_dir_all(data.join("imagesTs")).unwrap();
    std::fs::write(
        data.join("dataset.json"),
        format!(
            "{{\"name\":\"Pancreas\",\"labels\":{{\"0\":\"background\",\"1\":\"pancreas\",\
             \"2\":\"cancer\"}},\"numTraining\":3,\"training\":[{}],\"test\":[]}}",
            training.join(",")
        ),
    )
    .unwrap();
    let cfg_dir = dir.clone();
    let img = data.join("imagesTr").join("pancreas_001.nii.gz");
    let lab = data.join("labelsTr").join("pancreas_001.nii.gz");
    smoke(&cfg_dir, "msd-pancreas", &data, &[], 2, &img, &lab);
    let cfg = run_dir::load_config(dir.join("run").join("config.toml")).unwrap();
    assert_eq!(cfg.intensity.window.a_min, -50.0);
    let loaded = cfg.data.load().unwrap();
    assert_eq!((loaded.train.len(), loaded.test.len()), (2, 1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn amos_ct_and_mri_are_told_apart_by_case_id() {
    let dir = temp_dir("amos");
    let data = dir.join("amos22");
    for (split, id) in [("Tr", 1), ("Tr", 2), ("Tr", 540), ("Va", 3), ("Va", 580)] {
        let name = format!("amos_{id:04}.nii.gz");
        let img = data.join(format!("images{split}")).join(&name);
        let lab = data.join(format!("labels{split}")).join(&name);
        let (lo, hi) = if id >= 500 {
            (50.0, 700.0)
        } else {
            (-100.0, 200.0)
        };
        write_case(&img, &lab, id, 15, lo, hi);
    }
    let img = data.join("imagesVa").join("amos_0580.nii.gz");
    let lab = data.join("labelsVa").join("amos_0580.nii.gz");
    smoke(&dir, "amos", &data, &["--modality", "mri"], 15, &img, &lab);
    let cfg = run_dir::load_config(dir.join("run").join("config.toml")).unwrap();
    assert_eq!(cfg.intensity.mri_percentile, Some(99.0));
    let loaded = cfg.data.load().unwrap();
    // only the MRI case trains; the MRI validation case is held out
    assert_eq!((loaded.train.len(), loaded.test.len()), (1, 1));
    // the CT / MRI columns of an evaluation
    let eval = |m: &str| {
        masam(&[
            "evaluate",
            "--task",
            "amos",
            "--modality",
            m,
            "--pred",
            p(&dir.join("pred")),
            "--gt",
            p(&dir.join("gt")),
            "--out",
            p(&dir.join(format!("metrics-{m}"))),
        ])
    };
    assert!(ok(eval("mri")).contains("amos_0580"));
    assert!(fails(eval("ct")).contains("ids below 500 are CT"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn task_errors_name_the_expected_layout() {
    let dir = temp_dir("errors");
    let msg = fails(masam(&["finetune", "--task", "btcv"]));
    assert!(
        msg.contains("--data") && msg.contains("RawData/Training"),
        "{msg}"
    );
    let msg = fails(masam(&[
        "finetune",
        "--task",
        "msd-pancreas",
        "--data",
        p(&dir),
        "--backbone",
        "tiny",
    ]));
    assert!(msg.contains("dataset.json"), "{msg}");
    let msg = fails(masam(&["finetune", "--task", "lits", "--data", p(&dir)]));
    assert!(msg.contains("msd-pancreas"), "{msg}");
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let msg = fails(masam(&["finetune", "--task", "btcv", "--data", p(&dir)]));
    assert!(
        msg.contains("--sam-checkpoint") && msg.contains("--backbone tiny"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ablation_flags_compose_with_config_in_either_order() {
    let dir = temp_dir("ablation");
    // the paper's recipe on a BTCV folder, written with --print-config
    let data = dir.join("BTCV");
    std::fs::create_dir_all(data.join("img")).unwrap();
    let base = ok(masam(&[
        "finetune",
        "--task",
        "btcv",
        "--data",
        p(&data),
        "--no-sam-weights",
        "--print-config",
    ]));
    let f = dir.join("paper.toml");
    std::fs::write(&f, base).unwrap();
    let paper = run_dir::load_config(&f).unwrap();
    assert_eq!(paper.model.num_classes(), 12);
    assert!(paper.model.fact.is_some());
    let flags = [
        "--fact",
        "off",
        "--adapters",
        "before",
        "--full-ft",
        "--backbone",
        "vit_l",
        "--print-config",
    ];
    let mut a = vec!["finetune", "--config", p(&f)];
    a.extend_from_slice(&flags);
    let mut b = vec!["finetune"];
    b.extend_from_slice(&flags);
    b.extend_from_slice(&["--config", p(&f)]);
    let (ta, tb) = (ok(masam(&a)), ok(masam(&b)));
    assert_eq!(ta, tb);
    let fa = dir.join("a.toml");
    std::fs::write(&fa, ta).unwrap();
    let cfg = run_dir::load_config(&fa).unwrap();
    assert!(cfg.model.fact.is_none());
    assert_eq!(
        cfg.model.adapter_placement,
        masam_adapter::AdapterPlacement::Before
    );
    assert_eq!(cfg.model.finetune, masam_adapter::Finetune::Full);
    // --backbone keeps the rest: image size, classes, slices, the task's intensity
    assert_eq!(cfg.model.sam.encoder.embed_dim, 1024);
    assert_eq!(cfg.model.adapter.unwrap().dim, 1024);
    assert_eq!(cfg.model.sam.encoder.img_size, 512);
    assert_eq!(cfg.model.num_classes(), 12);
    assert_eq!(cfg.intensity, paper.intensity);
    assert_eq!(cfg.data, paper.data);
    // rank on FacT, and bad values are usage errors
    let r = ok(masam(&[
        "finetune",
        "--config",
        p(&f),
        "--rank",
        "8",
        "--print-config",
    ]));
    let fr = dir.join("r.toml");
    std::fs::write(&fr, r).unwrap();
    let cfg = run_dir::load_config(&fr).unwrap();
    assert_eq!(cfg.model.fact.unwrap().rank, 8);
    let msg = fails(masam(&[
        "finetune",
        "--config",
        p(&f),
        "--adapters",
        "middle",
    ]));
    assert!(msg.contains("none, before, after or both"), "{msg}");
    let msg = fails(masam(&[
        "finetune",
        "--config",
        p(&f),
        "--fact",
        "off",
        "--rank",
        "4",
    ]));
    assert!(msg.contains("--fact on"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An EndoVis18 sequence of 6 RGB frames (24 × 40) with colour-coded labels: an instrument
/// shaft (green) and a kidney (orange-red) moving across the frames.
fn write_sequence(dir: &Path, shift: usize) {
    use masam_volume::io::frames::write_rgb_png;
    for sub in ["left_frames", "labels"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for t in 0..6 {
        let x0 = 4 + (t + shift) % 8;
        let mut img = Array3::<u8>::from_elem((24, 40, 3), 30);
        let mut lab = Array3::<u8>::zeros((24, 40, 3));
        for y in 4..20 {
            for x in 0..40 {
                let (c, l) = if (x0..x0 + 8).contains(&x) && y < 12 {
                    ([200, 200, 210], [0, 255, 0])
                } else if (20..34).contains(&x) && y >= 12 {
                    ([160, 40, 40], [255, 55, 0])
                } else {
                    continue;
                };
                for ch in 0..3 {
                    img[[y, x, ch]] = c[ch];
                    lab[[y, x, ch]] = l[ch];
                }
            }
        }
        let name = format!("frame{t:03}.png");
        write_rgb_png(dir.join("left_frames").join(&name), &img).unwrap();
        write_rgb_png(dir.join("labels").join(&name), &lab).unwrap();
    }
    stray(&dir.join("left_frames").join("frame000.png"));
}

#[test]
fn endovis18_rgb_frames_smoke_run() {
    let dir = temp_dir("endovis");
    let data = dir.join("EndoVis18");
    write_sequence(&data.join("train").join("seq_1"), 0);
    write_sequence(&data.join("train").join("seq_2"), 3);
    write_sequence(&data.join("test").join("seq_1"), 5);
    std::fs::write(
        data.join("labels.json"),
        r#"[{"name":"background-tissue","color":[0,0,0],"classid":0},
            {"name":"instrument-shaft","color":[0,255,0],"classid":1},
            {"name":"kidney-parenchyma","color":[255,55,0],"classid":4}]"#,
    )
    .unwrap();
    let run = dir.join("run");
    let out = ok(masam(&[
        "finetune",
        "--task",
        "endovis18",
        "--data",
        p(&data),
        "--backbone",
        "tiny",
        "--steps",
        "2",
        "--out",
        p(&run),
    ]));
    assert!(out.contains("trained 2 steps"), "{out}");
    let cfg = run_dir::load_config(run.join("config.toml")).unwrap();
    assert_eq!(cfg.model.num_classes(), 11);
    let csv = std::fs::read_to_string(run.join("metrics_video.csv")).unwrap();
    assert!(csv.starts_with("case,metric,instrument shaft"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    let seq = data.join("test").join("seq_1");
    let pred = dir.join("pred");
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&seq),
        "--output",
        p(&pred),
    ]));
    let frames: Vec<_> = std::fs::read_dir(&pred).unwrap().collect();
    assert_eq!(frames.len(), 6);
    let ids = masam_app::video::read_id_png(&pred.join("frame003.png")).unwrap();
    assert_eq!(ids.dim(), (24, 40));
    assert!(ids.iter().all(|&v| v <= 11));
    let colour = dir.join("colour");
    ok(masam(&[
        "predict",
        "--run",
        p(&run),
        "--input",
        p(&seq),
        "--output",
        p(&colour),
        "--color",
    ]));
    let rgb = masam_volume::io::frames::read_rgb_frame(colour.join("frame003.png")).unwrap();
    assert_eq!(rgb.dim(), (24, 40, 3));

    let stdout = ok(masam(&[
        "evaluate",
        "--task",
        "endovis18",
        "--pred",
        p(&pred),
        "--gt",
        p(&seq),
        "--out",
        p(&dir.join("metrics")),
    ]));
    assert!(stdout.contains("mIoU"), "{stdout}");
    let csv = std::fs::read_to_string(dir.join("metrics").join("video_metrics.csv")).unwrap();
    assert!(
        csv.contains("seq_1,dice,") && csv.contains("seq_1,iou,"),
        "{csv}"
    );
    // a perfect prediction scores 1 on the classes present
    let perfect = dir.join("perfect");
    std::fs::create_dir_all(&perfect).unwrap();
    let cmap = masam_app::video::palette(&seq).unwrap();
    for t in 0..6 {
        let name = format!("frame{t:03}.png");
        let gt = masam_volume::io::frames::read_label_frame(seq.join("labels").join(&name), &cmap)
            .unwrap();
        masam_app::video::write_label_png(&perfect.join(&name), &gt, None).unwrap();
    }
    let stdout = ok(masam(&[
        "evaluate",
        "--task",
        "endovis18",
        "--pred",
        p(&perfect),
        "--gt",
        p(&seq),
        "--out",
        p(&dir.join("m2")),
    ]));
    assert!(stdout.contains("mean Dice 1.0000  mIoU 1.0000"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn predict_with_the_authors_checkpoint_format() {
    let dir = temp_dir("reference");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference-tiny");
    let (img, lab) = (dir.join("img.nii.gz"), dir.join("lab.nii.gz"));
    write_case(&img, &lab, 0, 3, -100.0, 200.0);
    let out = dir.join("pred.nii.gz");
    ok(masam(&[
        "predict",
        "--weights",
        p(&fx.join("masam_adapter.pth")),
        "--backbone",
        "tiny",
        "--classes",
        "3",
        "--sam-checkpoint",
        p(&fx.join("sam_base.pth")),
        "--input",
        p(&img),
        "--output",
        p(&out),
    ]));
    let pred = NiftiReader::new().read::<u8>(&out).unwrap();
    assert_eq!(pred.volume.shape_zyx(), [16, 32, 32]);
    assert!(pred.volume.data.iter().all(|&v| v <= 3));
    // a class count that does not match the checkpoint is refused, not a panic
    let msg = fails(masam(&[
        "predict",
        "--weights",
        p(&fx.join("masam_adapter.pth")),
        "--backbone",
        "tiny",
        "--classes",
        "5",
        "--sam-checkpoint",
        p(&fx.join("sam_base.pth")),
        "--input",
        p(&img),
        "--output",
        p(&out),
    ]));
    assert!(msg.contains("error:") && !msg.contains("panicked"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn amos_few_shot_continues_a_btcv_run_in_btcv_classes() {
    let dir = temp_dir("fewshot");
    let btcv = dir.join("BTCV");
    for (i, id) in ["0001", "0035"].iter().enumerate() {
        write_case(
            &btcv.join("img").join(format!("img{id}.nii.gz")),
            &btcv.join("label").join(format!("label{id}.nii.gz")),
            i,
            13,
            -100.0,
            200.0,
        );
    }
    let amos = dir.join("amos22");
    for (split, id) in [("Tr", 1), ("Tr", 2), ("Va", 3)] {
        let name = format!("amos_{id:04}.nii.gz");
        write_case(
            &amos.join(format!("images{split}")).join(&name),
            &amos.join(format!("labels{split}")).join(&name),
            id,
            15,
            -100.0,
            200.0,
        );
    }
    let (run, few) = (dir.join("btcv-run"), dir.join("amos-5shot"));
    let base = ["finetune", "--backbone", "tiny", "--steps", "2", "--data"];
    let mut a = base.to_vec();
    a.extend_from_slice(&[p(&btcv), "--task", "btcv", "--out", p(&run)]);
    ok(masam(&a));
    let mut b = base.to_vec();
    b.extend_from_slice(&[
        p(&amos),
        "--task",
        "amos",
        "--init-from",
        p(&run),
        "--shots",
        "1",
        "--out",
        p(&few),
    ]);
    assert!(ok(masam(&b)).contains("trained 2 steps"));
    assert!(few.join("init_from.txt").is_file());
    let cfg = run_dir::load_config(few.join("config.toml")).unwrap();
    let src = run_dir::load_config(run.join("config.toml")).unwrap();
    assert_eq!(cfg.model, src.model);
    assert_eq!(cfg.model.num_classes(), 12);
    let data = cfg.data.load().unwrap();
    assert_eq!((data.train.len(), data.test.len()), (1, 1));
    // AMOS 10 (pancreas) → BTCV 11, both adrenals (11, 12) → 12, duodenum and beyond → 0
    let labels: std::collections::BTreeSet<u8> = data.train[0].label.data.iter().copied().collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    );
    std::fs::remove_dir_all(&dir).ok();
}
