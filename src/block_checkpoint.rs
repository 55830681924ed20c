//! Activation checkpointing of the encoder blocks: a training forward pass that keeps only each
//! block's input, and a backward pass that rebuilds one block's activations at a time.
//!
//! candle has no checkpoint primitive: a graph lives as long as its output, and the backward
//! pass needs all of it. [`CheckpointedPass`] therefore stages the pass itself:
//!
//! 1. forward: the patch embedding, then every block on the *detached* output of the one
//!    before; each block's output is detached at once, so its graph (the block's activations)
//!    is freed before the next block runs. Only the block inputs stay, one (N, h, w, C) map
//!    per block;
//! 2. the head (neck, prompt encoder, mask decoder, post-processing) runs with a graph on
//!    leaves made from the last block's output and from the maps a fusion decoder reads as
//!    skips ([`Sam::fusion_sources`](masam_sam::Sam::fusion_sources)); the caller computes the
//!    loss from its outputs;
//! 3. backward ([`CheckpointedPass::backward`]): the objective's backward gives the head's
//!    parameter gradients and the gradient at each leaf; then, from the last block to the
//!    first, the block runs again from its saved input (now a leaf) with a graph, and the
//!    backward of `Σ y·g` (g the gradient arriving at its output) gives its parameters'
//!    gradients, added into the result (FacT's U and V are shared by every block: their
//!    gradients add up), and the gradient at its input, which goes on to the block before.
//!
//! FacT dropout draws the same masks in the rebuilt block as in the first forward pass: the
//! pass notes the [`DropoutRng`](masam_fact::DropoutRng) counter at the start of every block,
//! rewinds it before each rebuild and leaves it, at the end, where the forward pass left it, so
//! that the masks of the next micro-batch are those a pass without checkpointing would draw.
//!
//! The cost is one more forward pass of the encoder blocks per step; the gain is that the
//! activations of one block, not of all of them, are alive at a time (`docs/gpu.md`, "Memory
//! planning"). The results equal [`MaSam::forward`] and `objective.backward()` up to float
//! rounding (the gradients of shared parameters are summed in another order).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use masam_sam::{ForwardContext, MaskSelection, Prompt, SamOutput};
use masam_train::GradAccumulator;

use crate::model::MaSam;
use crate::{Mode, Result};

/// One forward pass of a [`MaSam`] with checkpointed encoder blocks, waiting for its backward
/// pass.
///
/// [`CheckpointedPass::forward`] returns the model's outputs (as [`MaSam::forward`]: f32,
/// (B·D, K, H, W) masks) with a graph that reaches the head's parameters only;
/// [`CheckpointedPass::backward`] takes the scalar computed from them and returns the
/// gradients of every trainable variable, as `objective.backward()` would after
/// [`MaSam::forward`]. [`Trainer`](crate::Trainer) uses it when
/// [`TrainerConfig::checkpoint_blocks`](crate::TrainerConfig::checkpoint_blocks) is set.
///
/// ```
/// use masam_adapter::candle::{Device, Tensor};
/// use masam_adapter::block_checkpoint::CheckpointedPass;
/// use masam_adapter::{MaSam, MaSamConfig, Mode, Prompt};
/// # fn main() -> masam_adapter::Result<()> {
/// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
/// let x = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &Device::Cpu)?;
/// let dropout = model.fact.as_ref().unwrap().dropout_rng();
///
/// dropout.begin_step(0);
/// let (pass, out) = CheckpointedPass::forward(&model, &x, &Prompt::None, Mode::Train)?;
/// let loss = out.masks.sqr()?.mean_all()?;
/// drop(out); // the loss holds what the backward pass needs
/// let grads = pass.backward(loss)?;
///
/// // the same gradients as the whole graph gives (with the same FacT dropout masks)
/// dropout.begin_step(0);
/// let plain = model.forward(&x, &Prompt::None, Mode::Train)?.masks.sqr()?.mean_all()?;
/// let reference = plain.backward()?;
/// for (name, var) in model.trainable_vars() {
///     match (grads.get(var.as_tensor()), reference.get(var.as_tensor())) {
///         (Some(a), Some(b)) => {
///             let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
///             let m = b.abs()?.max_all()?.to_scalar::<f32>()?;
///             assert!(d <= 1e-5 * m.max(1e-6), "{name}: {d} of {m}");
///         }
///         (None, None) => {}
///         _ => panic!("{name}: a gradient on one side only"),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct CheckpointedPass<'m> {
    model: &'m MaSam,
    ctx: ForwardContext,
    /// The input of every block, detached (taken as the backward pass goes).
    inputs: Vec<Option<Tensor>>,
    /// The leaves the head read, by position (0: the patch embedding, `i + 1`: block `i`'s
    /// output).
    leaves: Vec<(usize, Var)>,
    /// The dropout counter when each block started, and after the forward pass.
    draws: Option<(Vec<u64>, u64)>,
    /// The patch embedding with its graph, when that reaches a trainable variable (full
    /// fine-tuning trains the patch embedding).
    embed_graph: Option<Tensor>,
}

impl std::fmt::Debug for CheckpointedPass<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointedPass")
            .field("blocks", &self.inputs.len())
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl<'m> CheckpointedPass<'m> {
    /// Runs `model` on `images` (B, D, 3, H, W) keeping only the encoder blocks' inputs;
    /// returns the pass and the outputs of [`MaSam::forward`] (f32).
    ///
    /// # Errors
    /// What [`MaSam::forward`] fails on (shapes, slices, prompts), and a model without
    /// trainable parameters ([`MaSam::to_inference`]), which has nothing to checkpoint for.
    pub fn forward(
        model: &'m MaSam,
        images: &Tensor,
        prompt: &Prompt,
        mode: Mode,
    ) -> Result<(Self, SamOutput)> {
        if model.is_inference() {
            return Err(crate::Error::Config(
                "an inference model has no gradients to checkpoint for".into(),
            ));
        }
        let (x, _, d) = model.flatten(images)?;
        let (_, _, h, w) = x.dims4()?;
        let ctx = model.forward_context(d, mode);
        let sam = &model.sam;
        let encoder = &sam.image_encoder;
        let depth = encoder.blocks.len();
        let rng = model.fact.as_ref().map(|f| f.dropout_rng());

        let image = sam.preprocess(&x)?;
        let embedded = encoder.forward_embed(&image, &ctx)?;
        let embed_graph = embedded.track_op().then(|| embedded.clone());
        // position k: the input of block k (k < depth) or the last block's output (k = depth)
        let mut tokens = Vec::with_capacity(depth + 1);
        tokens.push(embedded.detach());
        let mut starts = Vec::with_capacity(depth);
        for i in 0..depth {
            starts.push(rng.map_or(0, |r| r.draws()));
            // the block's graph dies with `y` at the end of this iteration
            let y = encoder.forward_block(i, &tokens[i], &ctx)?;
            tokens.push(y.detach());
        }

        // the head reads the last output and the fusion decoder's skips through leaves
        let mut leaves: Vec<(usize, Var)> = Vec::new();
        let mut leaf = |k: usize| -> Result<Tensor> {
            if let Some((_, v)) = leaves.iter().find(|(p, _)| *p == k) {
                return Ok(v.as_tensor().clone());
            }
            let v = Var::from_tensor(&tokens[k])?;
            let t = v.as_tensor().clone();
            leaves.push((k, v));
            Ok(t)
        };
        let last = leaf(depth)?;
        let sources = sam.fusion_sources();
        let features = sources
            .iter()
            .map(|s| leaf(s.map_or(0, |i| i + 1)))
            .collect::<Result<Vec<_>>>()?;
        let out = sam.forward_head(
            &image,
            (h, w),
            &last,
            (!sources.is_empty()).then_some(features.as_slice()),
            prompt,
            MaskSelection::All,
            &ctx,
        )?;
        let out = MaSam::outputs_to_f32(out)?;
        let draws = rng.map(|r| (starts, r.draws()));
        tokens.truncate(depth); // the last output lives on as a leaf
        Ok((
            Self {
                model,
                ctx,
                inputs: tokens.into_iter().map(Some).collect(),
                leaves,
                draws,
                embed_graph,
            },
            out,
        ))
    }

    /// The backward pass of `objective` (a scalar computed from the outputs of
    /// [`forward`](Self::forward)): the head's backward, then every block rebuilt from its
    /// input and differentiated, last block first. Returns the gradients of the model's
    /// trainable variables (only those: no entry for the pass's own leaves).
    ///
    /// `objective` is taken by value so that the head's graph can be freed before the blocks
    /// are rebuilt: drop the outputs of `forward` (and anything else computed from them) before
    /// calling this, or their graph stays alive until it returns.
    ///
    /// # Errors
    /// `objective` is not a scalar, or a rebuilt block fails.
    pub fn backward(mut self, objective: Tensor) -> Result<GradStore> {
        let vars: Vec<Var> = self.model.trainable().named_vars().into_values().collect();
        let mut sums = GradAccumulator::new(&vars);
        let depth = self.inputs.len();
        let mut grads = objective.backward()?;
        drop(objective);
        // the gradient arriving at each position, summed over the head's reads
        let mut arriving: Vec<Option<Tensor>> = vec![None; depth + 1];
        for (k, v) in std::mem::take(&mut self.leaves) {
            if let Some(g) = grads.remove(v.as_tensor()) {
                add_into(&mut arriving[k], g)?;
            }
        }
        // the head's parameter gradients; the store's other entries are freed here
        sums.add(grads)?;
        let rng = self.model.fact.as_ref().map(|f| f.dropout_rng());
        let encoder = &self.model.sam.image_encoder;
        for i in (0..depth).rev() {
            let input = self.inputs[i].take();
            let (Some(g), Some(input)) = (arriving[i + 1].take(), input) else {
                continue; // nothing reaches this block's output: no gradient through it
            };
            if let (Some(r), Some((starts, _))) = (rng, &self.draws) {
                r.set_draws(starts[i]); // replay block i's dropout masks
            }
            let x = Var::from_tensor(&input)?;
            drop(input);
            let y = encoder.forward_block(i, x.as_tensor(), &self.ctx)?;
            let mut block = (y * g)?.sum_all()?.backward()?;
            if let Some(gx) = block.remove(x.as_tensor()) {
                add_into(&mut arriving[i], gx)?;
            }
            sums.add(block)?;
        }
        if let (Some(pe), Some(g)) = (self.embed_graph.take(), arriving[0].take()) {
            sums.add((pe * g)?.sum_all()?.backward()?)?;
        }
        if let (Some(r), Some((_, end))) = (rng, &self.draws) {
            r.set_draws(*end); // where a pass without checkpointing would be
        }
        Ok(sums.sum())
    }
}

/// `slot += g` (or `slot = g` when empty).
fn add_into(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(s) => (s + g)?,
        None => g,
    });
    Ok(())
}
