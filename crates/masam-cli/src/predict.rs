//! `masam predict`: label maps for NIfTI files, DICOM series and folders of NIfTI files, written
//! as NIfTI on each input's grid (same shape and affine; a NIfTI input's qform/sform are copied).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Args;
use masam_adapter::predict::{predict_volume_with, PredictOptions};
use masam_adapter::MaSam;
use masam_app::{run_dir, FinetuneConfig, RunDir};
use masam_volume::boxes::{expand_box, tight_box, Box3d, BoxError};
use masam_volume::io::nifti::{is_nifti_path, NiftiGeometry, NiftiReader};
use masam_volume::io::NiftiWriter;
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;

use crate::error::{BatchFailure, CliError, Result};
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
    /// Box prompt `z0,y0,x0,z1,y1,x1`: voxel indices of the input volume, BOTH ENDS INCLUSIVE,
    /// z = slice (NIfTI k axis), y = row (j), x = column (i). Stacks that miss the box are
    /// background. For a single input.
    #[arg(long = "box", value_name = "Z0,Y0,X0,Z1,Y1,X1", conflicts_with_all = ["box_from_label", "boxes"])]
    pub box_zyx: Option<String>,
    /// Box prompt from a label map on the input's grid: the tight box of --box-class, grown by
    /// --relax voxels per face. For a single input.
    #[arg(long, value_name = "FILE", conflicts_with = "boxes")]
    pub box_from_label: Option<PathBuf>,
    /// The class of --box-from-label [default: the run's box class, else the highest class].
    #[arg(long, value_name = "K", requires = "box_from_label")]
    pub box_class: Option<u8>,
    /// --box-from-label: voxels added on each face, `N` (in-plane, 1 slice) or `Z,Y,X`
    /// [default: 0, the tight box].
    #[arg(long, value_name = "N|Z,Y,X", requires = "box_from_label")]
    pub relax: Option<String>,
    /// Box prompts for a folder of inputs: a JSON object mapping each input file name to its
    /// box `[z0, y0, x0, z1, y1, x1]` (inclusive voxel indices, as --box), e.g.
    /// `{"case1.nii.gz": [10, 40, 52, 30, 90, 120]}`. Every input needs an entry.
    #[arg(long, value_name = "JSON")]
    pub boxes: Option<PathBuf>,
}

/// Where the box prompt of each input comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BoxSource {
    /// No prompt.
    None,
    /// One box for the single input.
    Fixed(Box3d),
    /// The box of `class` in a label map, grown by `margin_zyx`.
    FromLabel {
        /// The label file.
        label: PathBuf,
        /// The class.
        class: u8,
        /// Voxels added per face (z, y, x).
        margin_zyx: [usize; 3],
    },
    /// Boxes per input file name.
    PerFile(std::collections::BTreeMap<String, Box3d>),
}

impl BoxSource {
    /// The box source the flags describe (`default_class`: when --box-class is not given).
    pub fn from_args(args: &PredictArgs, default_class: u8) -> Result<Self> {
        if let Some(t) = &args.box_zyx {
            let b = Box3d::parse(t).map_err(|source| CliError::Box {
                input: args.input.clone(),
                source,
            })?;
            return Ok(Self::Fixed(b));
        }
        if let Some(l) = &args.box_from_label {
            if !l.is_file() {
                return Err(CliError::not_found("label file", l));
            }
            let margin_zyx = match &args.relax {
                Some(r) => crate::finetune::parse_margin(r)
                    .map_err(|_| CliError::Usage(format!("--relax {r}: give N or Z,Y,X")))?,
                None => [0; 3],
            };
            return Ok(Self::FromLabel {
                label: l.clone(),
                class: args.box_class.unwrap_or(default_class),
                margin_zyx,
            });
        }
        if let Some(j) = &args.boxes {
            return Self::from_json(j);
        }
        Ok(Self::None)
    }

    /// Reads a `--boxes` file.
    pub fn from_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
        let raw: std::collections::BTreeMap<String, Vec<usize>> = serde_json::from_str(&text)
            .map_err(|e| CliError::Box {
                input: path.to_path_buf(),
                source: BoxError::Parse {
                    text: "boxes file".into(),
                    reason: format!(
                        "{e}; expected {{\"<input file name>\": [z0, y0, x0, z1, y1, x1], ...}}"
                    ),
                },
            })?;
        let mut out = std::collections::BTreeMap::new();
        for (name, v) in raw {
            let t = v
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let b = Box3d::parse(&t).map_err(|source| CliError::Box {
                input: path.join(&name),
                source,
            })?;
            out.insert(name, b);
        }
        Ok(Self::PerFile(out))
    }

    /// The box of one input (`None`: no prompt), checked against the image.
    pub fn box_for(&self, input: &Path, image: &Volume<f32>) -> Result<Option<Box3d>> {
        let shape = image.shape_zyx();
        let err = |source| CliError::Box {
            input: input.to_path_buf(),
            source,
        };
        let b = match self {
            Self::None => return Ok(None),
            Self::Fixed(b) => *b,
            Self::FromLabel {
                label,
                class,
                margin_zyx,
            } => {
                let lab = NiftiReader::new().read::<u8>(label)?.volume;
                if lab.shape_zyx() != shape {
                    return Err(CliError::ShapeMismatch {
                        case: label.display().to_string(),
                        pred: shape,
                        gt: lab.shape_zyx(),
                    });
                }
                let t = tight_box(&lab.data, *class).ok_or(BoxError::Empty { class: *class });
                expand_box(&t.map_err(err)?, *margin_zyx, shape)
            }
            Self::PerFile(m) => {
                let name = input
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                *m.get(&name).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--boxes has no box for input `{name}` (keys are input file names)"
                    ))
                })?
            }
        };
        b.check(shape).map_err(err)?;
        Ok(Some(b))
    }
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
/// a DICOM file or series becomes `<name>.nii.gz`. Names that are not UTF-8 are kept as they are
/// (two such inputs never share an output).
pub fn output_name(input: &Path) -> OsString {
    let Some(name) = input.file_name() else {
        return OsString::from("prediction.nii.gz");
    };
    if is_nifti_path(input) {
        return name.to_os_string();
    }
    let mut out = Path::new(name).file_stem().unwrap_or(name).to_os_string();
    out.push(".nii.gz");
    out
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

    /// The same predictor with windows centred every `stride` slices.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
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

    /// Predicts one volume (labels on its grid).
    pub fn predict(&self, image: &Volume<f32>, batch: usize) -> Result<Volume<u8>> {
        self.predict_with_box(image, batch, None)
    }

    /// Predicts one volume, with a box prompt (inclusive voxel indices of `image`) when given.
    pub fn predict_with_box(
        &self,
        image: &Volume<f32>,
        batch: usize,
        box3d: Option<&Box3d>,
    ) -> Result<Volume<u8>> {
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
            box3d,
        )?)
    }

    /// The class a box made from a label map prompts by default: the run's box class, else the
    /// highest class.
    pub fn default_box_class(&self) -> u8 {
        self.config
            .box_prompt
            .map(|b| b.class)
            .unwrap_or(self.model.config.num_classes().min(255) as u8)
    }

    /// Reads `job.input`, predicts it and writes `job.output`; returns the labels.
    pub fn run_job(&self, job: &Job, batch: usize) -> Result<Volume<u8>> {
        self.run_job_with_boxes(job, batch, &BoxSource::None)
    }

    /// [`Predictor::run_job`] with the box prompt `boxes` gives this input.
    pub fn run_job_with_boxes(
        &self,
        job: &Job,
        batch: usize,
        boxes: &BoxSource,
    ) -> Result<Volume<u8>> {
        let (image, geometry) = read_input(&job.input)?;
        let b = boxes.box_for(&job.input, &image)?;
        let labels = self.predict_with_box(&image, batch, b.as_ref())?;
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
    let boxes = BoxSource::from_args(args, predictor.default_box_class())?;
    if jobs.len() > 1 && matches!(boxes, BoxSource::Fixed(_) | BoxSource::FromLabel { .. }) {
        return Err(CliError::Usage(
            "--box and --box-from-label are for a single input; for a folder pass --boxes \
             <json> (one box per input file name)"
                .into(),
        ));
    }
    let pb = progress::bar(jobs.len() as u64, "volumes");
    let mut failures = vec![];
    for job in &jobs {
        pb.set_message(output_name(&job.input).to_string_lossy().into_owned());
        let labels = match predictor.run_job_with_boxes(job, args.batch, &boxes) {
            Ok(l) => l,
            Err(e) => {
                pb.suspend(|| tracing::warn!(input = %job.input.display(), error = %e, "failed"));
                failures.push(BatchFailure::new(&job.input, e));
                pb.inc(1);
                continue;
            }
        };
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
        jobs.len() - failures.len(),
        args.output.display()
    );
    if !failures.is_empty() {
        return Err(CliError::BatchFailed {
            what: "volumes",
            total: jobs.len(),
            failures,
        });
    }
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
