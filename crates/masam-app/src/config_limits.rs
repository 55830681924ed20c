//! Upper bounds on every configuration value that sizes an allocation, so that a hostile or
//! mistyped `config.toml` (or command line) ends in an error naming the key instead of an
//! abort. The bounds are far above any model MA-SAM or SAM uses (ViT-H: width 1280, 32 blocks,
//! 1024 px) and far below what would exhaust a machine's memory before a step runs.

use crate::{AppError, FinetuneConfig, Result};

/// Largest `config.toml` read (bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest input side in pixels (`model.sam.encoder.img_size`).
pub const MAX_IMG_SIZE: usize = 4096;
/// Largest token width, hidden width or channel count of any layer.
pub const MAX_WIDTH: usize = 16_384;
/// Most transformer blocks, heads, decoder stages or adapter kernel taps.
pub const MAX_COUNT: usize = 256;
/// Largest batch, evaluation batch or accumulation count.
pub const MAX_BATCH: usize = 1024;
/// Most optimisation steps.
pub const MAX_STEPS: u64 = 1_000_000_000;
/// Most input elements in one training step (batch × slices × 3 × img_size²): 2^31, i.e. an
/// 8 GiB f32 input before any activation.
pub const MAX_STEP_ELEMENTS: u128 = 1 << 31;

fn at_most(key: &str, value: usize, max: usize) -> Result<()> {
    if value > max {
        return Err(AppError::Config(format!(
            "{key} = {value}: at most {max} is accepted"
        )));
    }
    Ok(())
}

/// Checks `cfg` against the bounds of this module (after the model's own
/// [`validate`](masam_adapter::MaSamConfig::validate)).
///
/// # Errors
/// [`AppError::Config`] naming the first value out of bounds.
///
/// ```
/// use masam_app::FinetuneConfig;
/// let mut cfg = FinetuneConfig::phantom_default(10, 0, "runs/x".into());
/// assert!(masam_app::config_limits::check(&cfg).is_ok());
/// cfg.trainer.batch = 1_000_000;
/// let err = masam_app::config_limits::check(&cfg).unwrap_err();
/// assert!(err.to_string().contains("trainer.batch"));
/// ```
pub fn check(cfg: &FinetuneConfig) -> Result<()> {
    let m = &cfg.model;
    let e = &m.sam.encoder;
    at_most("model.sam.encoder.img_size", e.img_size, MAX_IMG_SIZE)?;
    at_most("model.sam.encoder.patch_size", e.patch_size, MAX_IMG_SIZE)?;
    at_most("model.sam.encoder.embed_dim", e.embed_dim, MAX_WIDTH)?;
    at_most("model.sam.encoder.out_chans", e.out_chans, MAX_WIDTH)?;
    at_most("model.sam.encoder.in_chans", e.in_chans, MAX_COUNT)?;
    at_most("model.sam.encoder.mlp_dim", e.mlp_dim(), 4 * MAX_WIDTH)?;
    at_most("model.sam.encoder.depth", e.depth, MAX_COUNT)?;
    at_most("model.sam.encoder.num_heads", e.num_heads, MAX_COUNT)?;
    at_most("model.sam.encoder.window_size", e.window_size, MAX_IMG_SIZE)?;
    let p = &m.sam.prompt;
    at_most("model.sam.prompt.embed_dim", p.embed_dim, MAX_WIDTH)?;
    at_most("model.sam.prompt.mask_in_chans", p.mask_in_chans, MAX_WIDTH)?;
    for (k, v) in [
        (
            "model.sam.prompt.image_embedding_size",
            p.image_embedding_size,
        ),
        ("model.sam.prompt.input_image_size", p.input_image_size),
    ] {
        at_most(k, v.0.max(v.1), MAX_IMG_SIZE)?;
    }
    let d = &m.sam.decoder;
    at_most(
        "model.sam.decoder.transformer_dim",
        d.transformer_dim,
        MAX_WIDTH,
    )?;
    at_most(
        "model.sam.decoder.num_multimask_outputs",
        d.num_multimask_outputs,
        MAX_COUNT,
    )?;
    at_most(
        "model.sam.decoder.iou_head_depth",
        d.iou_head_depth,
        MAX_COUNT,
    )?;
    at_most(
        "model.sam.decoder.iou_head_hidden_dim",
        d.iou_head_hidden_dim,
        MAX_WIDTH,
    )?;
    at_most(
        "model.sam.decoder.fusion_encoder_dim",
        d.fusion_encoder_dim,
        MAX_WIDTH,
    )?;
    at_most(
        "model.sam.decoder.upscaling_channels (stages)",
        d.upscaling_channels.len(),
        8,
    )?;
    for &c in &d.upscaling_channels {
        at_most("model.sam.decoder.upscaling_channels", c, MAX_WIDTH)?;
    }
    let t = &d.transformer;
    at_most("model.sam.decoder.transformer.depth", t.depth, MAX_COUNT)?;
    at_most(
        "model.sam.decoder.transformer.embedding_dim",
        t.embedding_dim,
        MAX_WIDTH,
    )?;
    at_most(
        "model.sam.decoder.transformer.num_heads",
        t.num_heads,
        MAX_COUNT,
    )?;
    at_most(
        "model.sam.decoder.transformer.mlp_dim",
        t.mlp_dim,
        4 * MAX_WIDTH,
    )?;
    at_most(
        "model.sam.decoder.transformer.attention_downsample_rate",
        t.attention_downsample_rate,
        MAX_WIDTH,
    )?;
    if let Some(a) = &m.adapter {
        at_most("model.adapter.channels", a.channels, MAX_WIDTH)?;
        for k in a.kernel {
            at_most("model.adapter.kernel", k, MAX_COUNT)?;
        }
    }
    if let Some(f) = &m.fact {
        at_most("model.fact.rank", f.rank, MAX_WIDTH)?;
        at_most("model.fact.mlp_ratio", f.mlp_ratio, MAX_COUNT)?;
    }
    let tr = &cfg.trainer;
    at_most("trainer.batch", tr.batch, MAX_BATCH)?;
    at_most("trainer.accumulation", tr.accumulation, MAX_BATCH)?;
    at_most("eval_batch", cfg.eval_batch, MAX_BATCH)?;
    if tr.batch == 0 || tr.accumulation == 0 || cfg.eval_batch == 0 {
        return Err(AppError::Config(
            "trainer.batch, trainer.accumulation and eval_batch must be at least 1".into(),
        ));
    }
    if tr.steps > MAX_STEPS {
        return Err(AppError::Config(format!(
            "trainer.steps = {}: at most {MAX_STEPS} is accepted",
            tr.steps
        )));
    }
    let elements = tr.batch as u128 * m.slices as u128 * 3 * (e.img_size as u128).pow(2);
    if elements > MAX_STEP_ELEMENTS {
        return Err(AppError::Config(format!(
            "trainer.batch × model.slices × 3 × img_size² = {elements} input elements per \
             step: at most {MAX_STEP_ELEMENTS} are accepted"
        )));
    }
    if let Some(s) = cfg.time_budget_s {
        if !(s.is_finite() && s >= 0.0) {
            return Err(AppError::Config(format!(
                "time_budget_s = {s}: a finite number of seconds is expected"
            )));
        }
    }
    Ok(())
}
