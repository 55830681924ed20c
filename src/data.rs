//! Training batches: adjacent-slice stacks from volumes, augmented, turned into tensors.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use masam_volume::augment::{Recipe, Sample};
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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
}

/// Stacks from volumes held in memory: every slice of every volume is the centre of one stack
/// (edges replicated), normalised with the reference chain of `stack`, then augmented by `recipe`.
pub struct InMemoryStacks {
    volumes: Vec<LabelledVolume>,
    stack: SliceStack,
    recipe: Option<Recipe>,
    index: Vec<(usize, usize)>,
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
        })
    }
}

impl StackSource for InMemoryStacks {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn sample(&self, index: usize, epoch: u64) -> Result<Sample> {
        let (v, z) = self.index[index % self.index.len()];
        let lv = &self.volumes[v];
        let vol_err =
            |e: masam_volume::VolumeError| Error::Config(format!("volume {v}, slice {z}: {e}"));
        let image = self.stack.image_stack(&lv.image, z).map_err(vol_err)?;
        let label = self.stack.label_stack(&lv.label, z).map_err(vol_err)?;
        let sample = Sample::grey(image, label).map_err(|e| Error::Config(e.to_string()))?;
        match &self.recipe {
            Some(r) => r
                .apply(sample, epoch, index as u64)
                .map_err(|e| Error::Config(e.to_string())),
            None => Ok(sample),
        }
    }
}

/// A training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (B, D, 3, H, W) in [0, 1], grey replicated to 3 channels.
    pub images: Tensor,
    /// (B·D, H, W) class ids (i64), volume-major like the images.
    pub labels: Tensor,
}

/// Stacks samples into a [`Batch`] on `device`.
pub fn collate(samples: &[Sample], device: &Device) -> Result<Batch> {
    let first = samples
        .first()
        .ok_or_else(|| Error::Config("empty batch".into()))?;
    let (d, c, h, w) = first.image.dim();
    let mut img = Vec::with_capacity(samples.len() * d * 3 * h * w);
    let mut lab = Vec::with_capacity(samples.len() * d * h * w);
    for s in samples {
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
    })
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
        if source.is_empty() || batch == 0 {
            return Err(Error::Config("no training stacks, or batch size 0".into()));
        }
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::spawn(move || {
            let n = source.len();
            let per_epoch = (n / batch).max(1) as u64;
            let mut k = start;
            loop {
                let epoch = k / per_epoch;
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
                let pos = ((k % per_epoch) as usize) * batch;
                let idx: Vec<usize> = (0..batch).map(|i| order[(pos + i) % n]).collect();
                let samples: Result<Vec<Sample>> =
                    idx.iter().map(|&i| source.sample(i, epoch)).collect();
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
