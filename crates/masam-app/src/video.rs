//! Video tasks (EndoVis 2018): RGB frame sequences with colour-coded labels, stacks of
//! consecutive RGB frames for training ([`VideoStacks`]), per-frame prediction
//! ([`predict_frames`]) and per-class Dice and IoU ([`VideoScores`]).
//!
//! A sequence is a folder `seq_N/` with `left_frames/frameNNN.png` (RGB) and
//! `labels/frameNNN.png` (colour-coded). The colours are read from a `labels.json`
//! (`[{"name", "color": [r, g, b], "classid"}]`) in the sequence folder or above it when the
//! download has one, else the reference palette ([`ColorMap::endovis18`]).

use std::path::{Path, PathBuf};

use masam_adapter::candle::{Device, Tensor};
use masam_adapter::data::StackSource;
use masam_adapter::volume::augment::Sample;
use masam_adapter::volume::dataset::endovis;
use masam_adapter::volume::io::frames::{read_label_frame, read_rgb_frame, ColorMap};
use masam_adapter::volume::ndarray::{Array2, Array3, Axis};
use masam_adapter::volume::transforms::SliceStack;
use masam_adapter::volume::Volume;
use masam_adapter::{MaSam, Mode};
use serde::Deserialize;

use crate::{AppError, Result};

/// One decoded sequence.
#[derive(Debug, Clone)]
pub struct Video {
    /// Sequence folder name (`seq_3`).
    pub name: String,
    /// Frame file names (`frame000.png`), in order.
    pub frame_names: Vec<String>,
    /// RGB frames (H, W, 3).
    pub frames: Vec<Array3<u8>>,
    /// Class ids per frame (H, W), when the sequence has labels.
    pub labels: Option<Vec<Array2<u8>>>,
}

#[derive(Deserialize)]
struct PaletteEntry {
    color: [u8; 3],
    classid: u8,
}

/// The palette of a sequence: `labels.json` in `seq_dir` or one of its two parents (completed
/// with the reference colours of the ids it does not list), else the reference palette.
///
/// # Errors
/// A `labels.json` that is not the dataset's list of `{name, color, classid}`.
pub fn palette(seq_dir: &Path) -> Result<ColorMap> {
    let found = seq_dir
        .ancestors()
        .take(3)
        .map(|d| d.join("labels.json"))
        .find(|p| p.is_file());
    let Some(path) = found else {
        return Ok(ColorMap::endovis18());
    };
    let text = std::fs::read_to_string(&path).map_err(crate::error::io_at(&path))?;
    let entries: Vec<PaletteEntry> =
        serde_json::from_str(&text).map_err(|e| AppError::Dataset {
            path: path.clone(),
            reason: format!("expected a list of {{name, color: [r, g, b], classid}}: {e}"),
        })?;
    let mut map: Vec<([u8; 3], u8)> = entries
        .into_iter()
        .filter(|e| e.classid > 0)
        .map(|e| (e.color, e.classid))
        .collect();
    // ids the file does not list keep the reference colour (so that every predicted id can be
    // colour-coded)
    for (c, id) in ColorMap::endovis18().entries {
        if !map.iter().any(|e| e.1 == id || e.0 == c) {
            map.push((c, id));
        }
    }
    Ok(ColorMap { entries: map })
}

/// Reads one sequence folder (frames, and labels decoded with its palette).
///
/// # Errors
/// Missing `left_frames/`, a label frame missing, undecodable PNGs, frames of different sizes.
pub fn read_video(seq_dir: &Path) -> Result<Video> {
    let case = endovis::sequence(seq_dir)?;
    let cmap = palette(seq_dir)?;
    let frames: Vec<Array3<u8>> = case
        .frames
        .iter()
        .map(read_rgb_frame)
        .collect::<std::result::Result<_, _>>()?;
    if let Some(f) = frames.iter().find(|f| f.dim() != frames[0].dim()) {
        return Err(AppError::Dataset {
            path: seq_dir.to_path_buf(),
            reason: format!(
                "frames of different sizes: {:?} and {:?}",
                frames[0].dim(),
                f.dim()
            ),
        });
    }
    let labels = case
        .labels
        .as_ref()
        .map(|ls| {
            ls.iter()
                .map(|p| read_label_frame(p, &cmap))
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Video {
        name: seq_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        frame_names: case
            .frames
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        frames,
        labels,
    })
}

/// The `seq_*` folders under `dir` (directly, or one level down in release folders such as
/// `miccai_challenge_2018_release_1/`), sorted.
pub fn sequence_dirs(dir: &Path) -> Vec<PathBuf> {
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut out = vec![];
    for d in subdirs(dir) {
        if d.join("left_frames").is_dir() {
            out.push(d);
        } else {
            out.extend(
                subdirs(&d)
                    .into_iter()
                    .filter(|s| s.join("left_frames").is_dir()),
            );
        }
    }
    out
}

/// The labelled sequences of `root/train` and `root/test` (the official split: test = the four
/// test sequences).
///
/// # Errors
/// No labelled training sequence; unreadable sequences.
pub fn endovis_split(root: &Path) -> Result<(Vec<Video>, Vec<Video>)> {
    let read = |d: &str| -> Result<Vec<Video>> {
        sequence_dirs(&root.join(d))
            .iter()
            .map(|s| read_video(s))
            .filter(|v| v.as_ref().map(|v| v.labels.is_some()).unwrap_or(true))
            .collect()
    };
    let train = read("train")?;
    if train.is_empty() {
        return Err(AppError::Dataset {
            path: root.join("train"),
            reason: "no labelled sequence (seq_N/left_frames/*.png with seq_N/labels/*.png)".into(),
        });
    }
    Ok((train, read("test")?))
}

/// Training stacks of consecutive RGB frames: every frame is the centre of one stack of the
/// model's depth (edges replicated), normalised with the run's video intensity chain.
pub struct VideoStacks {
    videos: Vec<(Vec<Array3<u8>>, Volume<u8>)>,
    index: Vec<(usize, usize)>,
    stack: SliceStack,
}

impl VideoStacks {
    /// Stacks of the labelled `videos`.
    ///
    /// # Errors
    /// A sequence without labels, or no frames at all.
    pub fn new(videos: Vec<Video>, stack: SliceStack) -> Result<Self> {
        let mut out = vec![];
        let mut index = vec![];
        for (i, v) in videos.into_iter().enumerate() {
            let labels = v.labels.ok_or_else(|| {
                AppError::Config(format!("sequence {} has no labels to train on", v.name))
            })?;
            let (h, w) = labels[0].dim();
            let mut lab = Array3::<u8>::zeros((labels.len(), h, w));
            for (t, l) in labels.iter().enumerate() {
                lab.index_axis_mut(Axis(0), t).assign(l);
            }
            index.extend((0..v.frames.len()).map(|t| (i, t)));
            out.push((v.frames, Volume::with_spacing(lab, [1.0, 1.0, 1.0])));
        }
        if index.is_empty() {
            return Err(AppError::Config("no video frames to train on".into()));
        }
        Ok(Self {
            videos: out,
            index,
            stack,
        })
    }
}

impl StackSource for VideoStacks {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn sample(&self, index: usize, _epoch: u64) -> masam_adapter::Result<Sample> {
        let (v, t) = self.index[index % self.index.len()];
        let (frames, labels) = &self.videos[v];
        let err = |e: masam_adapter::volume::VolumeError| masam_adapter::Error::Stack {
            volume: v,
            slice: t,
            source: Box::new(e),
        };
        let image = self.stack.rgb_stack(frames, t).map_err(err)?;
        let label = self.stack.label_stack(labels, t).map_err(err)?;
        Sample::new(image, label).map_err(|e| masam_adapter::Error::Augment {
            volume: v,
            slice: t,
            source: Box::new(e),
        })
    }
}

/// Class ids (H, W) of every frame: each frame is the centre of one stack, the centre slice's
/// arg-max is resized (nearest) back to the frame size.
///
/// # Errors
/// Frames that are not RGB; model errors.
pub fn predict_frames(
    model: &MaSam,
    frames: &[Array3<u8>],
    stack: &SliceStack,
    batch: usize,
    device: &Device,
) -> Result<Vec<Array2<u8>>> {
    let Some(first) = frames.first() else {
        return Ok(vec![]);
    };
    let (h, w, _) = first.dim();
    let mut out = Vec::with_capacity(frames.len());
    let batch = batch.max(1);
    for chunk in (0..frames.len()).collect::<Vec<_>>().chunks(batch) {
        let mut data = vec![];
        let mut dims = (0, 0, 0, 0);
        for &t in chunk {
            let s = stack.rgb_stack(frames, t)?;
            dims = s.dim();
            data.extend(s.iter().copied());
        }
        let (d, c, sh, sw) = dims;
        let images = Tensor::from_vec(data, (chunk.len(), d, c, sh, sw), device)?;
        // (B, D, K, H, W) → the centre slice's arg-max
        let logits = model.segment(&images, Mode::Eval)?;
        let ids = logits
            .narrow(1, d / 2, 1)?
            .squeeze(1)?
            .argmax(1)?
            .to_dtype(masam_adapter::candle::DType::U8)?
            .to_device(&Device::Cpu)?;
        let v: Vec<u8> = ids.flatten_all()?.to_vec1()?;
        for b in 0..chunk.len() {
            let m = Array2::from_shape_vec((sh, sw), v[b * sh * sw..(b + 1) * sh * sw].to_vec())
                .map_err(|e| AppError::Config(e.to_string()))?;
            out.push(stack.labels_to_volume_grid(&m.view(), (h, w)));
        }
    }
    Ok(out)
}

/// Dice and IoU per foreground class over a set of frames (pixels pooled over the frames of a
/// sequence, as the challenge scores a sequence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoScores {
    /// Per class 1..=K: (intersection, predicted pixels, ground-truth pixels).
    pub counts: Vec<(u64, u64, u64)>,
}

impl VideoScores {
    /// Empty counts for `k` foreground classes.
    pub fn new(k: usize) -> Self {
        Self {
            counts: vec![(0, 0, 0); k],
        }
    }

    /// Adds one frame.
    ///
    /// # Errors
    /// Frames of different sizes.
    pub fn add(&mut self, pred: &Array2<u8>, gt: &Array2<u8>) -> Result<()> {
        if pred.dim() != gt.dim() {
            return Err(AppError::Config(format!(
                "prediction {:?} and ground truth {:?} differ in size",
                pred.dim(),
                gt.dim()
            )));
        }
        for (&p, &g) in pred.iter().zip(gt.iter()) {
            for (c, n) in self.counts.iter_mut().enumerate() {
                let id = c as u8 + 1;
                let (pi, gi) = (p == id, g == id);
                n.0 += (pi && gi) as u64;
                n.1 += pi as u64;
                n.2 += gi as u64;
            }
        }
        Ok(())
    }

    /// Dice per class (`None` where neither prediction nor ground truth has the class).
    pub fn dice(&self) -> Vec<Option<f64>> {
        self.counts
            .iter()
            .map(|&(i, p, g)| (p + g > 0).then(|| 2.0 * i as f64 / (p + g) as f64))
            .collect()
    }

    /// IoU per class (`None` where neither has the class).
    pub fn iou(&self) -> Vec<Option<f64>> {
        self.counts
            .iter()
            .map(|&(i, p, g)| (p + g > 0).then(|| i as f64 / (p + g - i) as f64))
            .collect()
    }
}

/// The mean of the defined values.
pub fn mean_defined(v: &[Option<f64>]) -> Option<f64> {
    let d: Vec<f64> = v.iter().flatten().copied().collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// CSV of per-sequence Dice and IoU: `case,metric,<class names>,mean`.
pub fn scores_csv(rows: &[(String, VideoScores)], class_names: &[String]) -> String {
    let mut csv = format!("case,metric,{},mean\n", class_names.join(","));
    let fmt = |v: &[Option<f64>]| -> String {
        let mut cells: Vec<String> = v
            .iter()
            .map(|x| x.map(|x| format!("{x:.4}")).unwrap_or_else(|| "nan".into()))
            .collect();
        cells.push(
            mean_defined(v)
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "nan".into()),
        );
        cells.join(",")
    };
    for (name, s) in rows {
        csv.push_str(&format!("{name},dice,{}\n", fmt(&s.dice())));
        csv.push_str(&format!("{name},iou,{}\n", fmt(&s.iou())));
    }
    csv
}

/// Writes class ids as a grey PNG (one byte per pixel), or colour-coded with `cmap`.
///
/// # Errors
/// Ids without a colour; write failures.
pub fn write_label_png(path: &Path, ids: &Array2<u8>, cmap: Option<&ColorMap>) -> Result<()> {
    match cmap {
        Some(c) => {
            let rgb = masam_adapter::volume::io::frames::encode_label_frame(ids, c)?;
            masam_adapter::volume::io::frames::write_rgb_png(path, &rgb)?;
        }
        None => masam_adapter::volume::io::frames::write_grey_png(path, ids)?,
    }
    Ok(())
}

/// Reads a prediction PNG of class ids (grey) back.
///
/// # Errors
/// Unreadable files.
pub fn read_id_png(path: &Path) -> Result<Array2<u8>> {
    Ok(masam_adapter::volume::io::frames::read_grey_frame(path)?)
}
