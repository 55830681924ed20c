//! `masam evaluate`: Dice, HD95, ASD and NSD per class between a folder of predicted label maps
//! and a folder of ground truths, matched by file name, with each volume's voxel spacing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use masam_metrics::{
    Classes, DiceConfig, DiceMetric, Hd95Metric, Metric, MetricReport, SurfaceDiceConfig,
    SurfaceDiceMetric, SurfaceDistanceConfig, SurfaceDistanceMetric,
};
use masam_volume::dataset::LabelMap;
use masam_volume::io::nifti::is_nifti_path;
use masam_volume::Volume;

use crate::error::{BatchFailure, CliError, Result};
use crate::label_check::{self, MAX_CLASSES};
use crate::progress;

/// Flags of `masam evaluate`.
#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Folder of predicted label maps (NIfTI), e.g. the --output of `masam predict`.
    #[arg(long, value_name = "DIR")]
    pub pred: PathBuf,
    /// Folder of ground-truth label maps with the same file names.
    #[arg(long, value_name = "DIR")]
    pub gt: PathBuf,
    /// Foreground classes 1..=K to score [default: the largest label in the ground truth].
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// Class names, comma-separated, one per class (e.g. spleen,kidney_r,kidney_l).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub names: Option<Vec<String>>,
    /// NSD tolerance in mm.
    #[arg(long, value_name = "MM", default_value_t = 1.0)]
    pub nsd_tolerance: f64,
    /// Where to write dice, hd95, asd and nsd .json/.csv files and metrics.json (all metrics).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The task of the ground truth (btcv, prostate, endovis18, amos, msd-pancreas): its class
    /// count and names, and its label mapping applied to the stored ground truth (BTCV 13 → 12,
    /// prostate labels > 1 → 1).
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// With --task amos: score in BTCV's 12 classes (AMOS labels mapped to the shared organs;
    /// zero-shot transfer of a BTCV run).
    #[arg(long, requires = "task")]
    pub btcv_classes: bool,
    /// With --task amos: score only the CT (case ids below 500) or only the MRI cases.
    #[arg(long, value_name = "ct|mri", requires = "task")]
    pub modality: Option<String>,
    /// Score predictions whose affine differs from their ground truth's (same shape, e.g. a
    /// mirrored axis) voxel by voxel instead of refusing them.
    #[arg(long)]
    pub accept_geometry_mismatch: bool,
}

/// A prediction and its ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// File name without `.nii`/`.nii.gz`.
    pub name: String,
    /// Predicted label map.
    pub pred: PathBuf,
    /// Ground-truth label map.
    pub gt: PathBuf,
}

/// Evaluation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Number of foreground classes (`None`: the largest ground-truth label).
    pub classes: Option<usize>,
    /// Class names (one per class).
    pub names: Option<Vec<String>>,
    /// NSD tolerance (mm).
    pub nsd_tolerance_mm: f64,
    /// Applied to every stored ground-truth label before scoring.
    pub gt_map: LabelMap,
    /// Score a prediction whose affine differs from its ground truth's (same shape) voxel by
    /// voxel instead of refusing it.
    pub accept_geometry_mismatch: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            classes: None,
            names: None,
            nsd_tolerance_mm: 1.0,
            gt_map: LabelMap::Identity,
            accept_geometry_mismatch: false,
        }
    }
}

/// Short file stems of the reports, in the order [`evaluate`] returns them.
pub const REPORT_FILES: [&str; 4] = ["dice", "hd95", "asd", "nsd"];

/// A file name without `.nii.gz` or `.nii` (any case), kept as an `OsString` so that names
/// which are not UTF-8 stay distinct.
fn case_stem(path: &Path) -> OsString {
    let name = path.file_name().unwrap_or_default();
    let lower = name.as_encoded_bytes().to_ascii_lowercase();
    let stem = Path::new(name).file_stem();
    let stem = if lower.ends_with(b".nii.gz") {
        stem.and_then(|s| Path::new(s).file_stem())
    } else if lower.ends_with(b".nii") {
        stem
    } else {
        None
    };
    stem.unwrap_or(name).to_os_string()
}

fn nifti_by_stem(dir: &Path, what: &'static str) -> Result<BTreeMap<OsString, PathBuf>> {
    if !dir.is_dir() {
        return Err(CliError::not_found_hint(
            what,
            dir,
            "pass a folder of NIfTI label maps (.nii or .nii.gz)",
        ));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))?;
    let mut found: BTreeMap<OsString, Vec<PathBuf>> = BTreeMap::new();
    for entry in rd {
        let p = entry.map_err(|e| CliError::io(dir, e))?.path();
        // macOS archives leave a `._name` resource fork beside every file
        let fork = p
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"._"));
        if p.is_file() && is_nifti_path(&p) && !fork {
            found.entry(case_stem(&p)).or_default().push(p);
        }
    }
    if found.is_empty() {
        return Err(CliError::NoInputs {
            what: "NIfTI files (.nii, .nii.gz)",
            dir: dir.to_path_buf(),
            hint: String::new(),
        });
    }
    let mut out = BTreeMap::new();
    for (stem, mut files) in found {
        if files.len() > 1 {
            files.sort();
            return Err(CliError::DuplicateCase {
                dir: dir.to_path_buf(),
                case: stem.to_string_lossy().into_owned(),
                files,
            });
        }
        out.insert(stem, files.remove(0));
    }
    Ok(out)
}

/// Pairs every prediction with the ground truth of the same name.
///
/// # Errors
/// Missing or empty folders; [`CliError::MissingGroundTruth`] / [`CliError::MissingPrediction`]
/// listing the unpaired names.
pub fn match_cases(pred_dir: &Path, gt_dir: &Path) -> Result<Vec<Case>> {
    let preds = nifti_by_stem(pred_dir, "prediction folder")?;
    let gts = nifti_by_stem(gt_dir, "ground truth folder")?;
    let no_gt: Vec<String> = preds
        .keys()
        .filter(|k| !gts.contains_key(*k))
        .map(|k| k.to_string_lossy().into_owned())
        .collect();
    if !no_gt.is_empty() {
        return Err(CliError::MissingGroundTruth {
            names: no_gt,
            gt_dir: gt_dir.to_path_buf(),
        });
    }
    let no_pred: Vec<String> = gts
        .keys()
        .filter(|k| !preds.contains_key(*k))
        .map(|k| k.to_string_lossy().into_owned())
        .collect();
    if !no_pred.is_empty() {
        return Err(CliError::MissingPrediction {
            names: no_pred,
            pred_dir: pred_dir.to_path_buf(),
        });
    }
    Ok(preds
        .into_iter()
        .map(|(stem, pred)| Case {
            gt: gts[&stem].clone(),
            name: stem.to_string_lossy().into_owned(),
            pred,
        })
        .collect())
}

/// The classes to score: `opts.classes` or the largest label of the ground truths (read here;
/// files that cannot be read or hold values that are not labels up to [`MAX_CLASSES`] are left
/// out of the count and reported when they are scored).
///
/// # Errors
/// More than [`MAX_CLASSES`] classes, names that do not match the count, no foreground at all
/// without `classes` ([`CliError::BatchFailed`] with each file's error when some ground truths
/// were left out).
pub fn classes_for(cases: &[Case], opts: &EvalOptions) -> Result<Classes> {
    let k = match opts.classes {
        Some(k) => k,
        None => {
            let (mut max, mut failures) = (0u16, vec![]);
            for c in cases {
                match label_check::largest_label(&c.gt) {
                    Ok(m) => max = max.max(m),
                    Err(e) => failures.push(BatchFailure::new(&c.gt, e)),
                }
            }
            if max == 0 && !failures.is_empty() {
                // nothing to count the classes on: the files' own errors say more
                return Err(CliError::BatchFailed {
                    what: "ground truth files",
                    total: cases.len(),
                    failures,
                });
            }
            tracing::info!(classes = max, "number of classes from the ground truth");
            usize::from(max)
        }
    };
    if k == 0 {
        return Err(CliError::Usage(
            "the ground truth holds no foreground label: pass --classes K".into(),
        ));
    }
    if k > MAX_CLASSES {
        return Err(CliError::Usage(format!(
            "--classes {k}: at most {MAX_CLASSES} classes are scored"
        )));
    }
    let classes = Classes::foreground(k);
    Ok(match &opts.names {
        Some(n) => {
            if n.len() != k {
                return Err(CliError::Usage(format!(
                    "--names gives {} name(s) for {k} class(es); give one per class 1..={k}",
                    n.len()
                )));
            }
            classes.with_names(n.iter().map(|s| s.trim().to_string()))?
        }
        None => classes,
    })
}

/// Largest difference (mm) between the affines of a prediction and its ground truth that is
/// still the same grid: NIfTI stores them in single precision.
pub const AFFINE_TOLERANCE_MM: f64 = 1e-3;

/// A prediction and its ground truth, checked: labels in `0..=k` (after `opts.gt_map` for the
/// ground truth), same shape, and same affine unless `opts.accept_geometry_mismatch`.
fn load_pair(c: &Case, opts: &EvalOptions, k: u16) -> Result<(Volume<u16>, Volume<u16>)> {
    let pred = label_check::read_labels(&c.pred, "prediction", k)?;
    let gt = if opts.gt_map == LabelMap::Identity {
        label_check::read_labels(&c.gt, "ground truth", k)?
    } else {
        // the stored labels of a task are bytes; its mapping must land in 0..=k
        let stored = label_check::read_labels(&c.gt, "ground truth", u16::from(u8::MAX))?;
        let mapped = stored.data.mapv(|v| f32::from(opts.gt_map.apply(v as u8)));
        let mapped = Volume {
            data: mapped,
            spacing: stored.spacing,
            affine: stored.affine,
        };
        label_check::labels_within(&mapped, k).map_err(|found| CliError::InvalidLabels {
            file: c.gt.clone(),
            what: "ground truth (after the task's label mapping)",
            max_label: k,
            found,
        })?
    };
    if pred.shape_zyx() != gt.shape_zyx() {
        return Err(CliError::ShapeMismatch {
            case: c.name.clone(),
            pred: pred.shape_zyx(),
            gt: gt.shape_zyx(),
        });
    }
    let d = gt.affine_max_abs_diff(&pred.affine);
    if d.is_nan() || d > AFFINE_TOLERANCE_MM {
        if !opts.accept_geometry_mismatch {
            return Err(CliError::GeometryMismatch {
                case: c.name.clone(),
                max_abs_diff: d,
                tolerance: AFFINE_TOLERANCE_MM,
                pred: Box::new(pred.affine),
                gt: Box::new(gt.affine),
            });
        }
        tracing::warn!(
            case = %c.name,
            max_abs_diff_mm = d,
            "prediction and ground truth affines differ (--accept-geometry-mismatch): scoring \
             voxel by voxel on the ground truth's spacing"
        );
    }
    Ok((pred, gt))
}

/// Scores every case: Dice, HD95 (mm), ASD (mm, prediction → ground truth, medpy `asd`) and NSD
/// at the tolerance, in that order ([`REPORT_FILES`]). `on_case` is called after each case.
/// Stops at the first case that fails; [`evaluate_batch`] goes on past them.
///
/// # Errors
/// Unreadable files, [`CliError::InvalidLabels`], [`CliError::ShapeMismatch`],
/// [`CliError::GeometryMismatch`], metric errors.
pub fn evaluate(
    cases: &[Case],
    opts: &EvalOptions,
    on_case: impl FnMut(&Case),
) -> Result<Vec<MetricReport>> {
    let (reports, mut failures) = evaluate_batch(cases, opts, on_case)?;
    if failures.is_empty() {
        Ok(reports)
    } else {
        Err(*failures.swap_remove(0).error)
    }
}

/// [`evaluate`] over a batch: a case that fails (unreadable, invalid labels, other grid) is
/// left out of the reports and returned with its error; the others are scored. `on_case` is
/// called after each case, scored or not.
///
/// # Errors
/// What concerns every case: the class count and names ([`classes_for`]), metric set-up.
pub fn evaluate_batch(
    cases: &[Case],
    opts: &EvalOptions,
    mut on_case: impl FnMut(&Case),
) -> Result<(Vec<MetricReport>, Vec<BatchFailure>)> {
    let classes = classes_for(cases, opts)?;
    // classes_for bounds the count by MAX_CLASSES
    let k = u16::try_from(classes.len()).unwrap_or(u16::MAX);
    let mut dice = DiceMetric::new(DiceConfig::default(), classes.clone())?;
    let mut hd95 = Hd95Metric::hd95(classes.clone())?;
    let mut asd = SurfaceDistanceMetric::new(SurfaceDistanceConfig::default(), classes.clone())?;
    let mut nsd = SurfaceDiceMetric::new(
        SurfaceDiceConfig::default().with_tolerance_mm(opts.nsd_tolerance_mm),
        classes,
    )?;
    let mut failures = vec![];
    for c in cases {
        let scored = load_pair(c, opts, k).and_then(|(pred, gt)| {
            let s = gt.spacing;
            let spacing_zyx = [s[2], s[1], s[0]];
            let (p, g) = (pred.data.view(), gt.data.view());
            dice.update_case(c.name.clone(), p, g, spacing_zyx)?;
            hd95.update_case(c.name.clone(), p, g, spacing_zyx)?;
            asd.update_case(c.name.clone(), p, g, spacing_zyx)?;
            nsd.update_case(c.name.clone(), p, g, spacing_zyx)?;
            Ok(())
        });
        if let Err(e) = scored {
            failures.push(BatchFailure::new(&c.pred, e));
        }
        on_case(c);
    }
    let reports = vec![
        dice.aggregate(),
        hd95.aggregate(),
        asd.aggregate(),
        nsd.aggregate(),
    ];
    Ok((reports, failures))
}

/// Writes `<name>.json` and `<name>.csv` per report ([`REPORT_FILES`] names) and `metrics.json`
/// with all of them, atomically; returns the files written.
pub fn write_reports(reports: &[MetricReport], out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| CliError::io(out, e))?;
    let mut written = vec![];
    for (r, name) in reports.iter().zip(REPORT_FILES) {
        let j = out.join(format!("{name}.json"));
        let c = out.join(format!("{name}.csv"));
        r.write_json(&j)?;
        r.write_csv(&c)?;
        written.extend([j, c]);
    }
    let all = out.join("metrics.json");
    masam_metrics::write_reports_json(reports, &all)?;
    written.push(all);
    Ok(written)
}

/// Runs `masam evaluate`: returns the reports it printed and wrote.
///
/// # Errors
/// See [`match_cases`], [`evaluate`], [`write_reports`].
pub fn run(args: &EvaluateArgs) -> Result<Vec<MetricReport>> {
    if !(args.nsd_tolerance.is_finite() && args.nsd_tolerance >= 0.0) {
        return Err(CliError::Usage(format!(
            "--nsd-tolerance {}: give a distance in mm (>= 0)",
            args.nsd_tolerance
        )));
    }
    let task: Option<masam_app::Task> = args.task.as_deref().map(str::parse).transpose()?;
    if task == Some(masam_app::Task::Endovis18) {
        return evaluate_video(args);
    }
    let mut cases = match_cases(&args.pred, &args.gt)?;
    if let Some(m) = &args.modality {
        let mri = match m.to_ascii_lowercase().as_str() {
            "ct" => false,
            "mri" | "mr" => true,
            _ => return Err(CliError::Usage(format!("--modality {m}: give ct or mri"))),
        };
        cases.retain(|c| {
            masam_volume::dataset::numeric_id(&c.name)
                .and_then(|id| id.parse::<u32>().ok())
                .is_some_and(|n| (n >= 500) == mri)
        });
        if cases.is_empty() {
            return Err(CliError::NoInputs {
                what: "cases of that modality (AMOS: ids below 500 are CT, from 500 on MRI)",
                dir: args.pred.clone(),
                hint: String::new(),
            });
        }
    }
    let _task: Option<masam_app::Task> = args.task.as_deref().map(str::parse).transpose()?;
    let opts = match _task {
        Some(t) => {
            let names: Vec<String> = if args.btcv_classes {
                masam_app::task::BTCV_CLASSES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                t.class_names()
            };
            EvalOptions {
                classes: Some(args.classes.unwrap_or(names.len())),
                names: args.names.clone().or(Some(names)),
                nsd_tolerance_mm: args.nsd_tolerance,
                gt_map: t.label_map(args.btcv_classes),
                accept_geometry_mismatch: args.accept_geometry_mismatch,
            }
        }
        None => EvalOptions {
            classes: args.classes,
            names: args.names.clone(),
            nsd_tolerance_mm: args.nsd_tolerance,
            gt_map: LabelMap::Identity,
            accept_geometry_mismatch: args.accept_geometry_mismatch,
        },
    };
    let pb = progress::bar(cases.len() as u64, "volumes");
    let (reports, failures) = evaluate_batch(&cases, &opts, |c| {
        pb.set_message(c.name.clone());
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    let scored = cases.len() - failures.len();
    if scored > 0 {
        for r in &reports {
            println!("{r:.4}\n");
        }
        let files = write_reports(&reports, &args.out)?;
        println!(
            "{scored} case(s); wrote {} files to {}",
            files.len(),
            args.out.display()
        );
    }
    if !failures.is_empty() {
        return Err(CliError::BatchFailed {
            what: "cases",
            total: cases.len(),
            failures,
        });
    }
    Ok(reports)
}

/// `masam evaluate --task endovis18`: `--pred` holds class-id PNGs (`masam predict` of a video
/// run), `--gt` the colour-coded label PNGs of the same names (a sequence's `labels/` folder, or
/// the sequence folder itself); per-class Dice and IoU pooled over the frames, their means
/// (mean Dice, mIoU), written to `<out>/video_metrics.csv`.
///
/// # Errors
/// Missing folders or frames, frames of different sizes.
pub fn evaluate_video(args: &EvaluateArgs) -> Result<Vec<MetricReport>> {
    use masam_app::video;
    let gt_dir = if args.gt.join("labels").is_dir() {
        args.gt.join("labels")
    } else {
        args.gt.clone()
    };
    let cmap = video::palette(&gt_dir)?;
    let gts = masam_volume::io::frames::list_frames(&gt_dir)?;
    let names: Vec<String> = args
        .names
        .clone()
        .unwrap_or_else(|| masam_app::Task::Endovis18.class_names());
    let k = args.classes.unwrap_or(names.len());
    let mut scores = video::VideoScores::new(k);
    let mut missing = vec![];
    for g in &gts {
        let name = g.file_name().unwrap_or_default();
        let p = args.pred.join(name);
        if !p.is_file() {
            missing.push(name.to_string_lossy().into_owned());
            continue;
        }
        let gt = masam_volume::io::frames::read_label_frame(g, &cmap)?;
        scores.add(&video::read_id_png(&p)?, &gt)?;
    }
    if !missing.is_empty() {
        return Err(CliError::MissingPrediction {
            names: missing,
            pred_dir: args.pred.clone(),
        });
    }
    let case = args
        .gt
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".into());
    let names: Vec<String> = (0..k)
        .map(|i| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {}", i + 1))
        })
        .collect();
    let rows = vec![(case, scores.clone())];
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    let csv = args.out.join("video_metrics.csv");
    std::fs::write(&csv, video::scores_csv(&rows, &names)).map_err(|e| CliError::io(&csv, e))?;
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into());
    for (i, n) in names.iter().enumerate() {
        println!(
            "{n:<22} dice {}  iou {}",
            fmt(scores.dice()[i]),
            fmt(scores.iou()[i])
        );
    }
    println!(
        "mean Dice {}  mIoU {} over {} frame(s); wrote {}",
        fmt(video::mean_defined(&scores.dice())),
        fmt(video::mean_defined(&scores.iou())),
        gts.len(),
        csv.display()
    );
    Ok(vec![])
}
