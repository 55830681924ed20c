//! The ViT-B/L/H presets build with the shapes of the official SAM checkpoints
//! (`sam_vit_{b,l,h}_*.pth`, built at 1024), without allocating real weights.

use std::collections::BTreeMap;

use candle_core::{DType, Device};
use masam_sam::checkpoint::{encoder_param_shapes, ShapeRecorder, ENCODER_PREFIX};
use masam_sam::{ImageEncoder, ImageEncoderConfig};

fn shapes(cfg: &ImageEncoderConfig) -> BTreeMap<String, Vec<usize>> {
    encoder_param_shapes(cfg, ENCODER_PREFIX)
        .unwrap()
        .into_iter()
        .collect()
}

/// (config, C, depth, hd, global blocks, image_encoder key count)
fn official() -> Vec<(ImageEncoderConfig, usize, usize, usize, [usize; 4], usize)> {
    vec![
        (ImageEncoderConfig::vit_b(), 768, 12, 64, [2, 5, 8, 11], 177),
        (
            ImageEncoderConfig::vit_l(),
            1024,
            24,
            64,
            [5, 11, 17, 23],
            345,
        ),
        (
            ImageEncoderConfig::vit_h(),
            1280,
            32,
            80,
            [7, 15, 23, 31],
            457,
        ),
    ]
}

#[test]
fn official_shapes_at_1024() {
    for (cfg, c, depth, hd, global, count) in official() {
        let s = shapes(&cfg);
        let name = cfg.describe();
        assert_eq!(s.len(), count, "{name}: image_encoder key count");
        let k = |key: &str| s[&format!("image_encoder.{key}")].clone();
        assert_eq!(k("pos_embed"), vec![1, 64, 64, c], "{name}");
        assert_eq!(k("patch_embed.proj.weight"), vec![c, 3, 16, 16]);
        assert_eq!(k("patch_embed.proj.bias"), vec![c]);
        for i in 0..depth {
            let b = |p: &str| k(&format!("blocks.{i}.{p}"));
            let rows = if global.contains(&i) { 127 } else { 27 };
            assert_eq!(b("attn.rel_pos_h"), vec![rows, hd], "{name} block {i}");
            assert_eq!(b("attn.rel_pos_w"), vec![rows, hd], "{name} block {i}");
            assert_eq!(b("norm1.weight"), vec![c]);
            assert_eq!(b("norm1.bias"), vec![c]);
            assert_eq!(b("attn.qkv.weight"), vec![3 * c, c]);
            assert_eq!(b("attn.qkv.bias"), vec![3 * c]);
            assert_eq!(b("attn.proj.weight"), vec![c, c]);
            assert_eq!(b("attn.proj.bias"), vec![c]);
            assert_eq!(b("norm2.weight"), vec![c]);
            assert_eq!(b("norm2.bias"), vec![c]);
            assert_eq!(b("mlp.lin1.weight"), vec![4 * c, c]);
            assert_eq!(b("mlp.lin1.bias"), vec![4 * c]);
            assert_eq!(b("mlp.lin2.weight"), vec![c, 4 * c]);
            assert_eq!(b("mlp.lin2.bias"), vec![c]);
        }
        assert_eq!(k("neck.0.weight"), vec![256, c, 1, 1]);
        assert_eq!(k("neck.1.weight"), vec![256]);
        assert_eq!(k("neck.1.bias"), vec![256]);
        assert_eq!(k("neck.2.weight"), vec![256, 256, 3, 3]);
        assert_eq!(k("neck.3.weight"), vec![256]);
        assert_eq!(k("neck.3.bias"), vec![256]);
    }
    // SAM ViT-B's image encoder has 89,670,912 parameters.
    let n: usize = shapes(&ImageEncoderConfig::vit_b())
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert_eq!(n, 89_670_912);
}

#[test]
fn official_shapes_at_512() {
    for (cfg, c, depth, hd, global, count) in official() {
        let cfg = cfg.with_img_size(512);
        let s = shapes(&cfg);
        assert_eq!(s.len(), count);
        assert_eq!(s["image_encoder.pos_embed"], vec![1, 32, 32, c]);
        for i in 0..depth {
            let rows = if global.contains(&i) { 63 } else { 27 };
            let key = format!("image_encoder.blocks.{i}.attn.rel_pos_h");
            assert_eq!(s[&key], vec![rows, hd], "{key}");
        }
    }
    assert_eq!(
        ImageEncoderConfig::default(),
        ImageEncoderConfig::vit_b().with_img_size(512)
    );
}

#[test]
fn built_encoder_structure() {
    // The real ImageEncoder type builds over zero-cost placeholders, e.g. for ViT-H.
    let rec = ShapeRecorder::default();
    let vb = rec.var_builder(DType::F32, &Device::Cpu);
    let cfg = ImageEncoderConfig::vit_h().with_img_size(512);
    let enc = ImageEncoder::new(&cfg, vb.pp("image_encoder")).unwrap();
    assert_eq!(enc.blocks.len(), 32);
    let globals: Vec<usize> = (0..32).filter(|&i| enc.blocks[i].is_global()).collect();
    assert_eq!(globals, vec![7, 15, 23, 31]);
    assert!(enc
        .blocks
        .iter()
        .all(|b| b.is_global() || b.window_size == 14));
    assert!(enc.blocks.iter().all(|b| b.hooks.is_empty()));
    assert_eq!(enc.blocks[0].attn.num_heads, 16);
    assert!((enc.blocks[0].attn.scale - 80f64.powf(-0.5)).abs() < 1e-12);
}

#[test]
fn custom_config_and_validation() {
    let cfg = ImageEncoderConfig {
        embed_dim: 96,
        depth: 3,
        num_heads: 6,
        global_attn_indexes: vec![2],
        window_size: 5,
        img_size: 160,
        out_chans: 32,
        qkv_bias: false,
        use_abs_pos: false,
        ..ImageEncoderConfig::default()
    };
    let s = shapes(&cfg);
    assert!(!s.contains_key("image_encoder.pos_embed"));
    assert!(!s.contains_key("image_encoder.blocks.0.attn.qkv.bias"));
    assert_eq!(s["image_encoder.blocks.0.attn.rel_pos_h"], vec![9, 16]);
    assert_eq!(s["image_encoder.blocks.2.attn.rel_pos_w"], vec![19, 16]);
    assert_eq!(s["image_encoder.neck.2.weight"], vec![32, 32, 3, 3]);
    for bad in [
        ImageEncoderConfig::vit_b().with_img_size(500),
        ImageEncoderConfig {
            num_heads: 7,
            ..ImageEncoderConfig::vit_b()
        },
        ImageEncoderConfig {
            global_attn_indexes: vec![12],
            ..ImageEncoderConfig::vit_b()
        },
        ImageEncoderConfig {
            patch_size: 0,
            ..ImageEncoderConfig::vit_b()
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(masam_sam::Error::Config(_))),
            "{bad:?}"
        );
        assert!(encoder_param_shapes(&bad, ENCODER_PREFIX).is_err());
    }
}
