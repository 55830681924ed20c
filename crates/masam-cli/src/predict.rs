//! `masam predict`: label maps for NIfTI files, DICOM series and folders of NIfTI files, written
//! as NIfTI on each input's grid (same shape and affine; a NIfTI input's qform/sform are copied).

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;
use masam_adapter::predict::{predict_volume_with, PredictOptions};
use masam_adapter::MaSam;
use masam_app::{run_dir, FinetuneConfig, RunDir};
use masam_volume::io::nifti::{is_nifti_path, stem_of, NiftiGeometry, NiftiReader};
use masam_volume::io::NiftiWriter;
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;

use crate::error::{CliError, Result};
use crate::progress;

/// Flags of `masam predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Run folder written by `masam finetune` (holds config.toml and model.safetensors).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["config", "backbone"],
        conflicts_with = "config"
    )]
    pub run: Option<PathBuf>,
    /// Run configuration (TOML), instead of --run; needs --weights.
    #[arg(long, value_name = "FILE", requires = "weights")]
    pub config: Option<PathBuf>,
    /// Trained tensors: with --config; with --run, another file than the run's
    /// model.safetensors (e.g. its model_best.safetensors).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Where the run's SAM checkpoint is now, if it moved since training (frozen-encoder runs).
    #[arg(long, value_name = "FILE")]
    pub sam_checkpoint: Option<PathBuf>,
    /// A NIfTI file (.nii/.nii.gz), a DICOM series folder, or a folder of NIfTI files.
    #[arg(long, value_name = "PATH")]
    pub input: PathBuf,
    /// Output NIfTI file (a name ending in .nii or .nii.gz), or a folder: each prediction is
    /// written there under its input's file name (a DICOM series as FOLDER_NAME.nii.gz).
    #[arg(long, value_name = "PATH")]
    pub output: PathBuf,
    /// Stacks per forward pass (more is faster and needs more memory).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub batch: usize,
    /// Slices between window centres: 1 (default, the reference: a window of D slices centred
    /// on every slice) up to D (non-overlapping windows: D times fewer forward passes, slightly
    /// lower Dice; see docs/performance.md).
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub stride: usize,
    /// Device for the forward passes: cpu (default), cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`).
    #[arg(long, value_name = "DEV", default_value = "cpu")]
    pub device: String,
    /// The authors' released MA-SAM checkpoint: with --backbone vit_b|vit_l|vit_h (instead of
    /// --run/--config), --weights is their `.pth` (trainable tensors only) and --sam-checkpoint
    /// the official SAM weights of the frozen encoder; the model is the paper's at 512 px
    /// (`tiny`: the model of the reference test fixtures).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["run", "config"], requires_all = ["weights", "sam_checkpoint"])]
    pub backbone: Option<String>,
    /// With --backbone: foreground classes of the checkpoint [default: the task's, else 12].
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// With --backbone: the task whose preprocessing (intensity, orientation) to apply
    /// [default: btcv].
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Video runs (EndoVis18): write colour-coded label PNGs (the dataset's palette) instead of
    /// class ids.
    #[arg(long)]
    pub color: bool,
}

/// One volume to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// NIfTI file or DICOM series folder.
    pub input: PathBuf,
    /// Output NIfTI file.
    pub output: PathBuf,
}

/// What an input path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// One NIfTI file.
    NiftiFile,
    /// One DICOM file (a single slice, or a multi-frame image).
    DicomFile,
    /// A folder of DICOM files of one series.
    DicomSeries,
    /// A folder of NIfTI files.
    NiftiFolder,
}

fn is_dicom_file(p: &Path) -> bool {
    p.extension()
        .map(|e| e.eq_ignore_ascii_case("dcm"))
        .unwrap_or(false)
}

fn nifti_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))?;
    let mut files = vec![];
    for entry in rd {
        let p = entry.map_err(|e| CliError::io(dir, e))?.path();
        // macOS archives leave a `._name` resource fork beside every file
        let fork = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("._"));
        if p.is_file() && is_nifti_path(&p) && !fork {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Classifies `input`.
///
/// # Errors
/// [`CliError::NotFound`] when it does not exist, [`CliError::Usage`] for other file types.
pub fn input_kind(input: &Path) -> Result<InputKind> {
    if input.is_dir() {
        return Ok(if nifti_files(input)?.is_empty() {
            InputKind::DicomSeries
        } else {
            InputKind::NiftiFolder
        });
    }
    if !input.exists() {
        return Err(CliError::not_found_hint(
            "input",
            input,
            "pass a .nii/.nii.gz file, a DICOM series folder or a folder of NIfTI files",
        ));
    }
    if is_nifti_path(input) {
        Ok(InputKind::NiftiFile)
    } else if is_dicom_file(input) {
        Ok(InputKind::DicomFile)
    } else {
        Err(CliError::Usage(format!(
            "{}: not a NIfTI (.nii, .nii.gz) or DICOM (.dcm) file, nor a folder",
            input.display()
        )))
    }
}

/// The output file name for one input placed in an output folder: a NIfTI input keeps its name,
/// a DICOM file or series becomes `<name>.nii.gz`.
pub fn output_name(input: &Path) -> String {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "prediction".into());
    if is_nifti_path(input) {
        name
    } else {
        format!("{}.nii.gz", stem_of(input))
    }
}

/// The volumes to predict and where each prediction goes (see [`PredictArgs`]).
///
/// # Errors
/// A missing input, an empty folder, a file output for a folder of inputs, or an output that
/// would overwrite its input.
pub fn plan(input: &Path, output: &Path) -> Result<Vec<Job>> {
    let kind = input_kind(input)?;
    let output_is_file = is_nifti_path(output) && !output.is_dir();
    let jobs = match kind {
        InputKind::NiftiFolder => {
            if output_is_file {
                return Err(CliError::Usage(format!(
                    "--input {} is a folder of NIfTI files: --output must be a folder, not the \
                     file {}",
                    input.display(),
                    output.display()
                )));
            }
            nifti_files(input)?
                .into_iter()
                .map(|p| Job {
                    output: output.join(output_name(&p)),
                    input: p,
                })
                .collect()
        }
        InputKind::NiftiFile | InputKind::DicomFile | InputKind::DicomSeries => {
            let out = if output_is_file {
                output.to_path_buf()
            } else {
                output.join(output_name(input))
            };
            vec![Job {
                input: input.to_path_buf(),
                output: out,
            }]
        }
    };
    for j in &jobs {
        let same = match (j.input.canonicalize(), j.output.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(CliError::Usage(format!(
                "the prediction would overwrite its input {}; choose another --output",
                j.input.display()
            )));
        }
    }
    Ok(jobs)
}

/// Reads an input volume: a NIfTI file with its header geometry (to copy to the output), or a
/// DICOM file/series (the output gets the series' affine).
pub fn read_input(input: &Path) -> Result<(Volume<f32>, Option<NiftiGeometry>)> {
    if is_nifti_path(input) && input.is_file() {
        let img = NiftiReader::new().read::<f32>(input)?;
        Ok((img.volume, Some(img.geometry)))
    } else {
        Ok((masam_volume::io::read_volume(input)?, None))
    }
}

/// Writes a label map atomically on the input's grid (`geometry` from [`read_input`]).
pub fn write_labels(
    path: &Path,
    labels: &Volume<u8>,
    geometry: Option<&NiftiGeometry>,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    }
    let w = NiftiWriter::new().description("masam prediction");
    match geometry {
        Some(g) => w.reference(g).write(path, labels)?,
        None => w.write(path, labels)?,
    }
    Ok(())
}

/// A trained model with the stack pipeline of its run.
pub struct Predictor {
    /// The run configuration.
    pub config: FinetuneConfig,
    /// The model.
    pub model: MaSam,
    /// Preprocessing, as in training.
    pub stack: SliceStack,
    /// Where the forward passes run.
    pub device: Device,
    /// Slices between window centres (1: the reference).
    pub stride: usize,
}

impl Predictor {
    /// The model of a run folder; `weights` replaces its `model.safetensors`.
    pub fn from_run(
        dir: &Path,
        weights: Option<&Path>,
        sam_checkpoint: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(CliError::not_found_hint(
                "run folder",
                dir,
                "pass the --out folder of `masam finetune`",
            ));
        }
        match weights {
            Some(w) => Self::from_files(&dir.join(run_dir::CONFIG_FILE), w, sam_checkpoint, device),
            None => {
                let run = RunDir::open(dir)?;
                let model = run.load_model(sam_checkpoint, device)?;
                Self::new(run.config, model, device.clone())
            }
        }
    }

    /// The model of a configuration file and a weights file.
    pub fn from_files(
        config: &Path,
        weights: &Path,
        sam_checkpoint: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        if !config.is_file() {
            return Err(CliError::not_found("configuration file", config));
        }
        if !weights.is_file() {
            return Err(CliError::not_found("weights file", weights));
        }
        let cfg = run_dir::load_config(config)?;
        let model = run_dir::load_model(&cfg, weights, sam_checkpoint, device)?;
        Self::new(cfg, model, device.clone())
    }

    /// The authors' released checkpoint (`weights`, reference format) on the official SAM
    /// weights of `args.sam_checkpoint`: the paper's model on `args.backbone` at 512 px with
    /// `args.classes` (default: the task's) and the task's preprocessing.
    pub fn from_reference(args: &PredictArgs, weights: &Path, device: &Device) -> Result<Self> {
        let task: masam_app::Task = args.task.as_deref().unwrap_or("btcv").parse()?;
        let backbone =
            masam_adapter::ImageEncoderConfig::preset(args.backbone.as_deref().unwrap_or("vit_b"))?;
        let sam = args.sam_checkpoint.as_deref().ok_or_else(|| {
            CliError::Usage("--backbone needs --sam-checkpoint (the official SAM weights)".into())
        })?;
        for (what, p) in [("MA-SAM checkpoint", weights), ("SAM checkpoint", sam)] {
            if !p.is_file() {
                return Err(CliError::not_found(what, p));
            }
        }
        let k = args.classes.unwrap_or(task.num_classes());
        let data = masam_app::DataSource::Files {
            train: vec![],
            test: vec![],
        };
        let mut cfg =
            FinetuneConfig::paper(data, backbone, k, 0, "unused".into()).with_sam_checkpoint(sam);
        cfg.intensity = task.intensity(Default::default());
        if args.backbone.as_deref() == Some("tiny") {
            // the model of the reference fixtures (64 px, rank 4, 16 adapter channels)
            cfg.model = masam_adapter::MaSamConfig::tiny();
            cfg.model.sam.decoder.num_multimask_outputs = k;
        }
        let model = masam_adapter::MaSam::from_sam_checkpoint(
            &cfg.model,
            &masam_adapter::SamCheckpoint::load(sam)?,
            cfg.trainer.seed,
            device,
        )?;
        model.load_reference(weights)?;
        Self::new(cfg, model, device.clone())
    }

    /// Wraps a model (e.g. one just trained) with its run's preprocessing; the model is turned
    /// into its inference form once (no graph, FacT merged).
    pub fn new(config: FinetuneConfig, model: MaSam, device: Device) -> Result<Self> {
        let stack = SliceStack::new(config.stack_config())?;
        let model = if model.is_inference() {
            model
        } else {
            model.to_inference()?
        };
        Ok(Self {
            config,
            model,
            stack,
            device,
            stride: 1,
        })
    }

    /// The image after the run's volume-level intensity step (the MRI percentile
    /// normalisation of prostate and AMOS MRI runs; unchanged for CT), exactly as training
    /// prepared its volumes ([`masam_app::finetune::prepared_data`]).
    pub fn prepare<'a>(&self, image: &'a Volume<f32>) -> std::borrow::Cow<'a, Volume<f32>> {
        if self.config.intensity.mri_percentile.is_none() {
            return std::borrow::Cow::Borrowed(image);
        }
        let mut v = image.clone();
        masam_app::task::prepare_image(&self.config.intensity, &mut v);
        std::borrow::Cow::Owned(v)
    }

    /// The same predictor with windows centred every `stride` slices.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Predicts one volume (labels on its grid).
    pub fn predict(&self, image: &Volume<f32>, batch: usize) -> Result<Volume<u8>> {
        if batch == 0 {
            return Err(CliError::Usage("--batch must be at least 1".into()));
        }
        let image = self.prepare(image);
        let opts = PredictOptions {
            batch,
            stride: self.stride,
            device: self.device.clone(),
        };
        Ok(predict_volume_with(
            &self.model,
            &image,
            &self.stack,
            &opts,
        )?)
    }

    /// Reads `job.input`, predicts it and writes `job.output`; returns the labels.
    pub fn run_job(&self, job: &Job, batch: usize) -> Result<Volume<u8>> {
        let (image, geometry) = read_input(&job.input)?;
        let labels = self.predict(&image, batch)?;
        write_labels(&job.output, &labels, geometry.as_ref())?;
        Ok(labels)
    }
}

/// Runs `masam predict`.
///
/// # Errors
/// Missing or unreadable run/config/weights/input, or a failed prediction or write.
pub fn run(args: &PredictArgs) -> Result<()> {
    if !args.input.exists() {
        return Err(CliError::not_found_hint(
            "input",
            &args.input,
            "pass a .nii/.nii.gz file, a DICOM series folder or a folder of NIfTI files (video \
             runs: a sequence folder or a folder of PNG frames)",
        ));
    }
    let sam = args.sam_checkpoint.as_deref();
    let device = masam_app::device::parse_device(&args.device)?;
    if args.stride == 0 {
        return Err(CliError::Usage(
            "--stride must be at least 1 (1: a window centred on every slice)".into(),
        ));
    }
    let predictor = match (&args.run, &args.config, &args.weights) {
        (Some(dir), _, w) => Predictor::from_run(dir, w.as_deref(), sam, &device)?,
        (None, Some(c), Some(w)) => Predictor::from_files(c, w, sam, &device)?,
        (None, None, Some(w)) if args.backbone.is_some() => {
            Predictor::from_reference(args, w, &device)?
        }
        _ => {
            return Err(CliError::Usage(
                "give the trained model: --run <run folder>, or --config <config.toml> \
                 --weights <model.safetensors>"
                    .into(),
            ))
        }
    }
    .with_stride(args.stride);
    if matches!(
        predictor.config.data,
        masam_app::DataSource::Endovis18 { .. }
    ) {
        return predict_video(&predictor, args);
    }
    let jobs = plan(&args.input, &args.output)?;
    if jobs.is_empty() {
        return Err(CliError::NoInputs {
            what: "NIfTI files",
            dir: args.input.clone(),
            hint: String::new(),
        });
    }
    tracing::info!(
        volumes = jobs.len(),
        classes = predictor.model.config.num_classes(),
        img = predictor.model.config.sam.encoder.img_size,
        "predicting"
    );
    let pb = progress::bar(jobs.len() as u64, "volumes");
    for job in &jobs {
        pb.set_message(output_name(&job.input));
        let labels = predictor.run_job(job, args.batch)?;
        let fg = labels.data.iter().filter(|&&v| v > 0).count();
        pb.suspend(|| {
            tracing::info!(
                input = %job.input.display(),
                output = %job.output.display(),
                shape = ?labels.shape_zyx(),
                foreground_voxels = fg,
                "wrote prediction"
            )
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!(
        "wrote {} prediction(s) to {}",
        jobs.len(),
        args.output.display()
    );
    Ok(())
}

/// `masam predict` for a video run: `--input` is a sequence folder (`seq_N/` with
/// `left_frames/`) or a folder of RGB frames; one label PNG per frame, same file name, in the
/// `--output` folder (class ids, or colours with `--color`).
///
/// # Errors
/// No frames; unreadable frames; write failures.
pub fn predict_video(predictor: &Predictor, args: &PredictArgs) -> Result<()> {
    let seq = &args.input;
    let frames_dir = if seq.join("left_frames").is_dir() {
        seq.join("left_frames")
    } else {
        seq.clone()
    };
    let files = masam_volume::io::frames::list_frames(&frames_dir)?;
    let frames = files
        .iter()
        .map(masam_volume::io::frames::read_rgb_frame)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if args.output == frames_dir {
        return Err(CliError::Usage(
            "--output is the frames folder: choose another folder, predictions would \
             overwrite the input"
                .into(),
        ));
    }
    std::fs::create_dir_all(&args.output).map_err(|e| CliError::io(&args.output, e))?;
    let labels = masam_app::video::predict_frames(
        &predictor.model,
        &frames,
        &predictor.stack,
        args.batch.max(1),
        &predictor.device,
    )?;
    let cmap = if args.color {
        Some(masam_app::video::palette(seq)?)
    } else {
        None
    };
    for (f, l) in files.iter().zip(&labels) {
        let out = args.output.join(f.file_name().unwrap_or_default());
        masam_app::video::write_label_png(&out, l, cmap.as_ref())?;
    }
    println!(
        "wrote {} label frame(s) to {}",
        labels.len(),
        args.output.display()
    );
    Ok(())
}
