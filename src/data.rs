//! Training batches: adjacent-slice stacks from volumes, augmented, turned into tensors.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use masam_volume::augment::{Recipe, Sample};
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use masam_volume::augment::BoxXyxy;
use masam_volume::boxes::{project_stack, Box3d, BoxPromptConfig, ModelGrid};

use crate::{Error, Result};

/// One image volume and its label map.
#[derive(Debug, Clone)]
pub struct LabelledVolume {
    /// Image (HU for CT), (Z, Y, X).
    pub image: Volume<f32>,
    /// Labels, same grid.
    pub label: Volume<u8>,
}

/// Where training samples come from: `len()` stacks, each turned into an (augmented) [`Sample`].
pub trait StackSource: Send + Sync {
    /// Number of stacks (one per slice of every volume).
    fn len(&self) -> usize;
    /// True when there are no stacks.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stack `index`, augmented deterministically from `(epoch, index)`.
    fn sample(&self, index: usize, epoch: u64) -> Result<Sample>;
    /// The foreground classes present in the centre slice of stack `index` (for
    /// [`Sampling::ClassBalanced`]); sources that do not know return none.
    fn classes(&self, index: usize) -> Vec<u8> {
        let _ = index;
        vec![]
    }
}

/// How the [`BatchLoader`] picks stacks.
///
/// ```
/// use masam_adapter::data::Sampling;
/// let s: Sampling = toml::from_str("class_balanced = 0.5").unwrap();
/// assert_eq!(s, Sampling::ClassBalanced(0.5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every stack once per epoch, shuffled (the reference).
    #[default]
    Uniform,
    /// Each batch position is, with this probability, replaced by a stack whose centre slice
    /// contains a foreground class drawn uniformly from the classes of the training set, so
    /// that small organs (few slices, few pixels) are seen as often as large ones. Like
    /// nnU-Net's foreground oversampling; deterministic in (seed, batch number).
    ClassBalanced(f64),
}

/// Stacks from volumes held in memory: every slice of every volume is the centre of one stack
/// (edges replicated), normalised with the reference chain of `stack`, then augmented by `recipe`.
pub struct InMemoryStacks {
    volumes: Vec<LabelledVolume>,
    stack: SliceStack,
    recipe: Option<Recipe>,
    index: Vec<(usize, usize)>,
    boxes: Option<StackBoxes>,
}

/// Box prompts of an [`InMemoryStacks`]: the configuration, the run seed of the jitter and
/// each volume's 3D box (`None` where the class is absent).
struct StackBoxes {
    cfg: BoxPromptConfig,
    seed: u64,
    per_volume: Vec<Option<Box3d>>,
}

impl InMemoryStacks {
    /// Indexes every slice of `volumes`. Image and label grids must agree.
    pub fn new(
        volumes: Vec<LabelledVolume>,
        stack: SliceStack,
        recipe: Option<Recipe>,
    ) -> Result<Self> {
        let mut index = vec![];
        for (v, lv) in volumes.iter().enumerate() {
            if lv.image.data.shape() != lv.label.data.shape() {
                return Err(Error::Config(format!(
                    "volume {v}: image shape {:?} and label shape {:?} differ",
                    lv.image.data.shape(),
                    lv.label.data.shape()
                )));
            }
            for z in 0..lv.image.data.shape()[0] {
                index.push((v, z));
            }
        }
        Ok(Self {
            volumes,
            stack,
            recipe,
            index,
            boxes: None,
        })
    }

    /// These stacks with box prompts: every sample carries the 3D box of `cfg.class` of its
    /// volume projected onto the model grid (one 2D box per slice, the same for all slices of
    /// the stack), moved by the augmentation like the label, then jittered (seeded by `seed`,
    /// the epoch and the stack). Only stacks that touch their volume's box are kept (the others
    /// are predicted as background without the model); an error when none is left.
    pub fn with_box_prompts(mut self, cfg: BoxPromptConfig, seed: u64) -> Result<Self> {
        if !(cfg.jitter.is_finite() && cfg.jitter >= 0.0) {
            return Err(Error::Config(format!(
                "box jitter must be a finite number of pixels >= 0, got {}",
                cfg.jitter
            )));
        }
        let per_volume: Vec<Option<Box3d>> = self
            .volumes
            .iter()
            .map(|v| cfg.volume_box(&v.label.data))
            .collect();
        let mut kept = Vec::with_capacity(self.index.len());
        for &(v, z) in &self.index {
            let Some(b) = per_volume[v] else { continue };
            let n = self.volumes[v].label.data.shape()[0];
            let idx = self.stack.indices(n, z).map_err(|source| Error::Stack {
                volume: v,
                slice: z,
                source: Box::new(source),
            })?;
            if idx.iter().any(|&s| s >= b.z0 && s <= b.z1) {
                kept.push((v, z));
            }
        }
        if kept.is_empty() {
            return Err(Error::Box(masam_volume::boxes::BoxError::Empty {
                class: cfg.class,
            }));
        }
        self.index = kept;
        self.boxes = Some(StackBoxes {
            cfg,
            seed,
            per_volume,
        });
        Ok(self)
    }

    /// The tiled, unaugmented edge boxes of stack (volume `v`, centre `z`) on the model grid.
    fn stack_boxes(&self, v: usize, z: usize) -> Result<Option<Vec<Option<BoxXyxy>>>> {
        let Some(sb) = &self.boxes else {
            return Ok(None);
        };
        let Some(b) = sb.per_volume[v] else {
            return Ok(None);
        };
        let [n, y, x] = self.volumes[v].label.shape_zyx();
        let idx = self.stack.indices(n, z).map_err(|source| Error::Stack {
            volume: v,
            slice: z,
            source: Box::new(source),
        })?;
        let grid = ModelGrid {
            shape_yx: (y, x),
            model_hw: self.stack.config().out_size.unwrap_or((y, x)),
            orient: self.stack.config().orient,
        };
        // inclusive pixel indices -> pixel edges (what the augmentations move)
        Ok(project_stack(&b, &idx, &grid).map(|v| {
            v.into_iter()
                .map(|[x0, y0, x1, y1]| Some(BoxXyxy::new(x0, y0, x1 + 1.0, y1 + 1.0)))
                .collect()
        }))
    }
}

/// Moves each face of `b` by a uniform random offset in `[-jitter, jitter]` pixels, keeping at
/// least one pixel and staying inside a `w × h` image.
fn jitter_box<R: Rng + ?Sized>(
    b: BoxXyxy,
    jitter: f32,
    w: usize,
    h: usize,
    rng: &mut R,
) -> BoxXyxy {
    let mut d = || {
        if jitter > 0.0 {
            rng.random_range(-jitter..=jitter)
        } else {
            0.0
        }
    };
    let (w, h) = (w as f32, h as f32);
    let x0 = (b.x0 + d()).clamp(0.0, w - 1.0);
    let y0 = (b.y0 + d()).clamp(0.0, h - 1.0);
    let x1 = (b.x1 + d()).clamp(x0 + 1.0, w);
    let y1 = (b.y1 + d()).clamp(y0 + 1.0, h);
    BoxXyxy::new(x0, y0, x1, y1)
}

impl StackSource for InMemoryStacks {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn classes(&self, index: usize) -> Vec<u8> {
        let (v, z) = self.index[index % self.index.len()];
        let mut seen = [false; 256];
        for &l in self.volumes[v]
            .label
            .data
            .index_axis(ndarray::Axis(0), z)
            .iter()
        {
            seen[l as usize] = true;
        }
        (1..=255u8).filter(|&c| seen[c as usize]).collect()
    }

    fn sample(&self, index: usize, epoch: u64) -> Result<Sample> {
        let (v, z) = self.index[index % self.index.len()];
        let lv = &self.volumes[v];
        let vol_err = |source| Error::Stack {
            volume: v,
            slice: z,
            source: Box::new(source),
        };
        let image = self.stack.image_stack(&lv.image, z).map_err(vol_err)?;
        let label = self.stack.label_stack(&lv.label, z).map_err(vol_err)?;
        let aug_err = |source| Error::Augment {
            volume: v,
            slice: z,
            source: Box::new(source),
        };
        let mut sample = Sample::grey(image, label).map_err(aug_err)?;
        sample.boxes = self.stack_boxes(v, z)?;
        let mut sample = match &self.recipe {
            Some(r) => r.apply(sample, epoch, index as u64).map_err(aug_err)?,
            None => sample,
        };
        if let (Some(sb), Some(boxes)) = (&self.boxes, sample.boxes.as_mut()) {
            let (_, _, h, w) = sample.image.dim();
            // one draw per sample, the same box on every slice (the reference tiles one box)
            let mut rng = ChaCha8Rng::seed_from_u64(
                sb.seed
                    ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ (index as u64).rotate_left(32),
            );
            let first = boxes.iter().flatten().next().copied();
            // a box pushed out of the image by the augmentation: the whole image
            let base = first.unwrap_or(BoxXyxy::new(0.0, 0.0, w as f32, h as f32));
            let j = jitter_box(base, sb.cfg.jitter, w, h, &mut rng);
            boxes.iter_mut().for_each(|b| *b = Some(j));
        }
        Ok(sample)
    }
}

/// A training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (B, D, 3, H, W) in [0, 1], grey replicated to 3 channels.
    pub images: Tensor,
    /// (B·D, H, W) class ids (i64), volume-major like the images.
    pub labels: Tensor,
    /// Box prompts (B, D, 4) `(x0, y0, x1, y1)`, inclusive model pixels (SAM's convention), or
    /// `None` for prompt-free training.
    pub boxes: Option<Tensor>,
}

impl Batch {
    /// A prompt-free batch.
    pub fn new(images: Tensor, labels: Tensor) -> Self {
        Self {
            images,
            labels,
            boxes: None,
        }
    }
}

/// Stacks samples into a [`Batch`] on `device`.
pub fn collate(samples: &[Sample], device: &Device) -> Result<Batch> {
    let first = samples
        .first()
        .ok_or_else(|| Error::Config("empty batch".into()))?;
    let (d, c, h, w) = first.image.dim();
    let mut img = Vec::with_capacity(samples.len() * d * 3 * h * w);
    let mut lab = Vec::with_capacity(samples.len() * d * h * w);
    let with_boxes = first.boxes.is_some();
    let mut boxes = Vec::with_capacity(samples.len() * d * 4);
    for s in samples {
        match (&s.boxes, with_boxes) {
            (Some(bs), true) if bs.len() == d => {
                for b in bs {
                    // a slice without a box (cannot happen after `with_box_prompts`): the image
                    let b = b.unwrap_or(BoxXyxy::new(0.0, 0.0, w as f32, h as f32));
                    boxes.extend(b.to_inclusive());
                }
            }
            (None, false) => {}
            _ => {
                return Err(Error::Config(
                    "a batch mixes samples with and without box prompts".into(),
                ))
            }
        }
        if s.image.dim() != (d, c, h, w) {
            return Err(Error::Config(
                "samples of different shapes in one batch".into(),
            ));
        }
        for z in 0..d {
            for ch in 0..3 {
                let src = if c == 1 { 0 } else { ch };
                img.extend(s.image.slice(ndarray::s![z, src, .., ..]).iter().copied());
            }
        }
        lab.extend(s.label.iter().map(|&v| v as i64));
    }
    let b = samples.len();
    Ok(Batch {
        images: Tensor::from_vec(img, (b, d, 3, h, w), device)?,
        labels: Tensor::from_vec(lab, (b * d, h, w), device)?,
        boxes: if with_boxes {
            Some(Tensor::from_vec(boxes, (b, d, 4), device)?)
        } else {
            None
        },
    })
}

/// Which share of each global batch a [`BatchLoader`] loads: rank `rank` of `world_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks sharing each global batch.
    pub world_size: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard {
        rank: 0,
        world_size: 1,
    };
}

/// Background loading: a thread prepares batches (shuffled per epoch from `seed`) while the model
/// trains. Batch `k` is the same whatever the machine's speed or thread count.
pub struct BatchLoader {
    rx: Receiver<Result<(u64, Batch)>>,
    handle: Option<JoinHandle<()>>,
}

impl BatchLoader {
    /// Starts loading batches of `batch` stacks, `prefetch` batches ahead, starting at batch
    /// number `start` (for resuming), for ever (the consumer stops when it has enough).
    pub fn spawn(
        source: Arc<dyn StackSource>,
        batch: usize,
        seed: u64,
        start: u64,
        prefetch: usize,
    ) -> Result<Self> {
        Self::spawn_with(source, batch, seed, start, prefetch, Sampling::Uniform)
    }

    /// [`spawn`](Self::spawn) with a [`Sampling`] strategy.
    pub fn spawn_with(
        source: Arc<dyn StackSource>,
        batch: usize,
        seed: u64,
        start: u64,
        prefetch: usize,
        sampling: Sampling,
    ) -> Result<Self> {
        Self::spawn_sharded(source, batch, seed, start, prefetch, sampling, Shard::WHOLE)
    }

    /// [`spawn_with`](Self::spawn_with) for one rank of a data-parallel run: batch `k` of this
    /// loader is the `shard.rank`-th slice of `batch` stacks of the global batch `k` of
    /// `batch × shard.world_size` stacks (drawn from `seed` exactly as one loader with that
    /// batch would draw it), so the ranks together see what one process would see.
    pub fn spawn_sharded(
        source: Arc<dyn StackSource>,
        batch: usize,
        seed: u64,
        start: u64,
        prefetch: usize,
        sampling: Sampling,
        shard: Shard,
    ) -> Result<Self> {
        if source.is_empty() || batch == 0 {
            return Err(Error::Config("no training stacks, or batch size 0".into()));
        }
        if shard.rank >= shard.world_size {
            return Err(Error::Config(format!(
                "shard {} of a world of {}",
                shard.rank, shard.world_size
            )));
        }
        let global = batch * shard.world_size;
        let mine = shard.rank * batch..(shard.rank + 1) * batch;
        let balance = match sampling {
            Sampling::Uniform => 0.0,
            Sampling::ClassBalanced(p) if (0.0..=1.0).contains(&p) => p,
            Sampling::ClassBalanced(p) => {
                return Err(Error::Config(format!(
                    "class-balanced sampling probability {p} is not in [0, 1]"
                )))
            }
        };
        // class → stacks whose centre slice shows it
        let mut by_class: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
        if balance > 0.0 {
            for i in 0..source.len() {
                for c in source.classes(i) {
                    by_class.entry(c).or_default().push(i);
                }
            }
        }
        let pools: Vec<Vec<usize>> = by_class.into_values().collect();
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::spawn(move || {
            let n = source.len();
            let per_epoch = (n / global).max(1) as u64;
            let mut k = start;
            loop {
                let epoch = k / per_epoch;
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
                let pos = ((k % per_epoch) as usize) * global;
                let mut idx: Vec<usize> = (0..global).map(|i| order[(pos + i) % n]).collect();
                if balance > 0.0 && !pools.is_empty() {
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        seed.wrapping_add(0xC1A5_5BA1) ^ k.wrapping_mul(0x2545_F491_4F6C_DD1D),
                    );
                    for slot in idx.iter_mut() {
                        if rng.random::<f64>() < balance {
                            let pool = &pools[rng.random_range(0..pools.len())];
                            *slot = pool[rng.random_range(0..pool.len())];
                        }
                    }
                }
                let samples: Result<Vec<Sample>> = idx[mine.clone()]
                    .iter()
                    .map(|&i| source.sample(i, epoch))
                    .collect();
                let item = samples
                    .and_then(|s| collate(&s, &Device::Cpu))
                    .map(|b| (k, b));
                if tx.send(item).is_err() {
                    return;
                }
                k += 1;
            }
        });
        Ok(Self {
            rx,
            handle: Some(handle),
        })
    }

    /// The next batch and its number.
    pub fn next_batch(&mut self) -> Result<(u64, Batch)> {
        self.rx
            .recv()
            .map_err(|_| Error::Config("the batch loader stopped".into()))?
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // closing the channel stops the thread at its next send
        let (_tx, rx) = sync_channel(1);
        let old = std::mem::replace(&mut self.rx, rx);
        drop(old);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masam_volume::transforms::StackConfig;
    use ndarray::Array3;

    /// 3 volumes of 10 slices of 8×8; class 1 fills slices 0..8 of every volume, class 2 shows
    /// only in slice 9 of volume 2 (1 stack in 30).
    fn source() -> Arc<dyn StackSource> {
        let vols = (0..3)
            .map(|v| {
                let image = Volume::with_spacing(Array3::<f32>::zeros((10, 8, 8)), [1.0; 3]);
                let mut lab = Array3::<u8>::zeros((10, 8, 8));
                for z in 0..8 {
                    lab[[z, 2, 2]] = 1;
                }
                if v == 2 {
                    lab[[9, 4, 4]] = 2;
                }
                LabelledVolume {
                    image,
                    label: Volume::with_spacing(lab, [1.0; 3]),
                }
            })
            .collect();
        let stack = SliceStack::new(StackConfig {
            out_size: None,
            ..StackConfig::default()
        })
        .unwrap();
        Arc::new(InMemoryStacks::new(vols, stack, None).unwrap())
    }

    fn drawn(sampling: Sampling, seed: u64) -> Vec<Vec<u8>> {
        let src = source();
        let mut loader = BatchLoader::spawn_with(src, 2, seed, 0, 2, sampling).unwrap();
        (0..200)
            .flat_map(|_| {
                let (_, b) = loader.next_batch().unwrap();
                // centre slice of each stack: labels are (B·D, H, W), D = 5, centre 2
                let l = b.labels.to_dtype(candle_core::DType::U32).unwrap();
                (0..2)
                    .map(|i| {
                        let s = l.get(i * 5 + 2).unwrap().flatten_all().unwrap();
                        let v = s.to_vec1::<u32>().unwrap();
                        let mut c: Vec<u8> =
                            v.iter().filter(|&&x| x > 0).map(|&x| x as u8).collect();
                        c.sort();
                        c.dedup();
                        c
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// [`source`] with every slice's image a distinct constant, so that batches tell their
    /// stacks apart.
    fn numbered_source() -> Arc<dyn StackSource> {
        let vols = (0..3)
            .map(|v| {
                let mut img = Array3::<f32>::zeros((10, 8, 8));
                let mut lab = Array3::<u8>::zeros((10, 8, 8));
                for z in 0..10 {
                    img.slice_mut(ndarray::s![z, .., ..])
                        .fill((v * 10 + z) as f32 * 10.0);
                    lab[[z, 2, 2]] = 1 + (z == 9 && v == 2) as u8;
                }
                LabelledVolume {
                    image: Volume::with_spacing(img, [1.0; 3]),
                    label: Volume::with_spacing(lab, [1.0; 3]),
                }
            })
            .collect();
        let stack = SliceStack::new(StackConfig {
            out_size: None,
            ..StackConfig::default()
        })
        .unwrap();
        Arc::new(InMemoryStacks::new(vols, stack, None).unwrap())
    }

    #[test]
    fn shards_of_two_ranks_make_up_the_global_batch() {
        let images = |b: &Batch| b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let source = numbered_source;
        for sampling in [Sampling::Uniform, Sampling::ClassBalanced(0.5)] {
            let mut whole = BatchLoader::spawn_with(source(), 4, 9, 3, 2, sampling).unwrap();
            let mut ranks: Vec<_> = (0..2)
                .map(|rank| {
                    let shard = Shard {
                        rank,
                        world_size: 2,
                    };
                    BatchLoader::spawn_sharded(source(), 2, 9, 3, 2, sampling, shard).unwrap()
                })
                .collect();
            for _ in 0..12 {
                let (k, w) = whole.next_batch().unwrap();
                let mut joined = vec![];
                for r in ranks.iter_mut() {
                    let (kr, b) = r.next_batch().unwrap();
                    assert_eq!(kr, k);
                    joined.extend(images(&b));
                }
                assert_eq!(joined, images(&w));
            }
        }
        let bad = Shard {
            rank: 2,
            world_size: 2,
        };
        assert!(BatchLoader::spawn_sharded(source(), 2, 9, 0, 2, Sampling::Uniform, bad).is_err());
    }

    #[test]
    fn class_balanced_sampling_oversamples_rare_classes_deterministically() {
        let count = |d: &[Vec<u8>], c: u8| d.iter().filter(|s| s.contains(&c)).count();
        let uniform = drawn(Sampling::Uniform, 7);
        let balanced = drawn(Sampling::ClassBalanced(1.0), 7);
        // uniform: class 2 in about 1/30 of 400 draws; balanced: in about half of them
        assert!(
            count(&uniform, 2) < 40,
            "uniform drew class 2 {} times",
            count(&uniform, 2)
        );
        assert!(
            count(&balanced, 2) > 150,
            "balanced drew class 2 {} times",
            count(&balanced, 2)
        );
        // with probability 1 every draw shows a foreground class
        assert!(balanced.iter().all(|s| !s.is_empty()));
        assert_eq!(balanced, drawn(Sampling::ClassBalanced(1.0), 7));
        assert!(
            BatchLoader::spawn_with(source(), 2, 0, 0, 1, Sampling::ClassBalanced(1.5)).is_err()
        );
    }
}
