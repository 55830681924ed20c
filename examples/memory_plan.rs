//! Memory plan of MA-SAM training on one GPU, computed from the model's shapes: parameters,
//! optimiser state, and the activations the backward pass keeps per training sample (one
//! stack of D slices), with and without activation checkpointing of the encoder blocks; then
//! how many samples fit a GPU. Prints JSON. See docs/gpu.md, "Memory planning".
//!
//! `cargo run --release --example memory_plan -- [--gpu-gib 80] [--slices 5] [--img 512]`
//!
//! The activation count is the set of tensors a backward pass of the encoder needs per block
//! (inputs of every matrix product and normalisation, the attention probabilities, the MLP's
//! hidden activations, the adapters' maps, the window padding), which is what an autograd
//! that keeps no more than it needs holds. candle's graph keeps every intermediate output
//! until the backward ends (reshapes made contiguous, the pre-softmax scores), so measured
//! peaks are higher: `extra_factor` (default 1.5) covers that until the GPU check measures it.

use masam_adapter::{ImageEncoderConfig, MaSamConfig};
use serde_json::json;

const GIB: f64 = (1u64 << 30) as f64;

/// Elements kept for the backward by one encoder block over one slice.
fn block_activations(
    e: &ImageEncoderConfig,
    global: bool,
    adapter_ch: usize,
    adapters: usize,
) -> f64 {
    let g = e.img_size / e.patch_size; // token grid side
    let n = (g * g) as f64;
    let c = e.embed_dim as f64;
    let hidden = c * e.mlp_ratio;
    let (tokens_attn, attn) = if global {
        (n, (e.num_heads * g * g * g * g) as f64)
    } else {
        let w = e.window_size;
        let padded = g.div_ceil(w) * w;
        let windows = (padded / w) * (padded / w);
        (
            (padded * padded) as f64,
            (e.num_heads * windows * w * w * w * w) as f64,
        )
    };
    // residual input, LN1 output, qkv output (3C), attention output, projection, residual sum
    let attention_path = n * c + tokens_attn * c * (1.0 + 3.0 + 1.0) + n * c * 2.0;
    // attention probabilities (the softmax output) and the scores with relative positions
    let attention_maps = 2.0 * attn;
    // LN2 output, MLP hidden before and after GELU, fc2 output, residual sum
    let mlp = n * c + 2.0 * n * hidden + 2.0 * n * c;
    // each 3D adapter: LN output, up-projection output (C); down, conv3d, GELU maps (channels)
    let adapter = adapters as f64 * (2.0 * n * c + 3.0 * n * adapter_ch as f64);
    attention_path + attention_maps + mlp + adapter
}

fn encoder_params(e: &ImageEncoderConfig) -> f64 {
    let c = e.embed_dim as f64;
    let hidden = c * e.mlp_ratio;
    let g = e.img_size / e.patch_size;
    let hd = (e.embed_dim / e.num_heads) as f64;
    let mut p = (e.in_chans * e.patch_size * e.patch_size) as f64 * c + c; // patch embedding
    p += (g * g) as f64 * c; // absolute positions
    for i in 0..e.depth {
        let span = if e.global_attn_indexes.contains(&i) {
            g
        } else {
            e.window_size
        };
        p += 4.0 * c; // two LayerNorms
        p += 3.0 * c * c + 3.0 * c + c * c + c; // qkv, proj
        p += 2.0 * (2 * span - 1) as f64 * hd; // relative positions
        p += 2.0 * c * hidden + hidden + c; // MLP
    }
    let o = e.out_chans as f64;
    p + c * o + 9.0 * o * o + 4.0 * o // neck
}

fn plan(
    name: &str,
    backbone: ImageEncoderConfig,
    img: usize,
    slices: usize,
    gpu_gib: f64,
    extra: f64,
) -> serde_json::Value {
    let mut cfg = MaSamConfig::paper(backbone, 12); // BTCV: 12 organs
    cfg.sam.encoder.img_size = img;
    let e = cfg.encoder();
    let (ch, adapters) = cfg.adapter.map(|a| (a.channels, 2)).unwrap_or((0, 0));
    let c = e.embed_dim as f64;
    let frozen = encoder_params(e);
    let adapter_params = cfg.adapter.map_or(0.0, |a| {
        let k: usize = a.kernel.iter().product();
        let ch = a.channels as f64;
        2.0 * c + c * ch + ch + (k as f64) * ch * ch + ch + ch * c + c
    }) * (adapters * e.depth) as f64;
    let fact_params = cfg.fact.as_ref().map_or(0.0, |f| {
        let r = f.rank as f64;
        2.0 * c * r + (e.depth * f.targets.len()) as f64 * r * r
    });
    let decoder_params = 5.3e6; // measured: docs/architecture.md (progressive decoder, C 256)
    let trainable = adapter_params + fact_params + decoder_params;
    let per_slice: f64 = (0..e.depth)
        .map(|i| block_activations(e, e.global_attn_indexes.contains(&i), ch, adapters))
        .sum();
    let worst_block = (0..e.depth)
        .map(|i| block_activations(e, e.global_attn_indexes.contains(&i), ch, adapters))
        .fold(0.0, f64::max);
    let g = (e.img_size / e.patch_size) as f64;
    let block_inputs = e.depth as f64 * g * g * c;
    // progressive decoder at full resolution: ~10 maps of its stages plus logits, softmax and
    // the loss's gradient (K channels each) per slice
    let k = (cfg.num_classes() + 1) as f64;
    let decoder_acts = (img * img) as f64 * (4.0 * k + 10.0 * 8.0);
    // mixed precision keeps the residual stream (each block's input, its two skip sums and the
    // adapters' sums) and the decoder in f32: those elements take 4 bytes in every precision
    let stream = (e.depth as f64 * g * g * c * (3.0 + adapters as f64)).min(per_slice);
    let per_sample = |bytes: f64, ckpt: bool| -> f64 {
        let (half, full) = if ckpt {
            (worst_block, block_inputs)
        } else {
            (per_slice - stream, stream)
        };
        (half * bytes + (full + decoder_acts) * 4.0) * slices as f64 * extra / GIB
    };
    let fixed = |weight_bytes: f64| -> f64 {
        // frozen weights; trainable: f32 master, gradient, AdamW m and v; 2 GiB for the CUDA
        // context, cuBLAS workspaces and allocator slack
        (frozen * weight_bytes + trainable * 16.0) / GIB + 2.0
    };
    let fit = |bytes: f64, ckpt: bool| -> f64 {
        ((gpu_gib - fixed(bytes)) / per_sample(bytes, ckpt))
            .floor()
            .max(0.0)
    };
    json!({
        "backbone": name,
        "img_size": img,
        "slices": slices,
        "frozen_params_m": frozen / 1e6,
        "trainable_params_m": trainable / 1e6,
        "fixed_gib_bf16": fixed(2.0),
        "fixed_gib_f32": fixed(4.0),
        "activations_per_sample_gib": {
            "bf16": per_sample(2.0, false),
            "f32": per_sample(4.0, false),
            "bf16_block_checkpointing": per_sample(2.0, true),
            "f32_block_checkpointing": per_sample(4.0, true),
        },
        "samples_per_gpu": {
            "bf16": fit(2.0, false),
            "f32": fit(4.0, false),
            "bf16_block_checkpointing": fit(2.0, true),
            "f32_block_checkpointing": fit(4.0, true),
        },
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: f64| -> f64 {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let gpu = get("--gpu-gib", 80.0);
    let slices = get("--slices", 5.0) as usize;
    let img = get("--img", 512.0) as usize;
    let extra = get("--extra-factor", 1.5);
    let backbones = [
        ("vit_b", ImageEncoderConfig::vit_b()),
        ("vit_l", ImageEncoderConfig::vit_l()),
        ("vit_h", ImageEncoderConfig::vit_h()),
    ];
    let plans: Vec<_> = backbones
        .into_iter()
        .map(|(name, b)| plan(name, b, img, slices, gpu, extra))
        .collect();
    let out = json!({ "gpu_gib": gpu, "extra_factor": extra, "plans": plans });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
