//! Cost of the three mask decoders (`sam`, `progressive`, `fusion`) at the paper's size: ViT-B
//! features, 512 px (32 × 32 tokens, C 256), 12 classes, one 5-slice stack. Prints the decoder's
//! parameters and the CPU time of a decoder forward and forward + backward (median of 3).
//!
//! ```text
//! cargo run --example decoder_cost
//! ```

use std::time::Instant;

use anyhow::Result;
use masam_adapter::candle::{DType, Device, Tensor};
use masam_adapter::nn::SeededVarMap;
use masam_adapter::sam::mask_decoder::DecoderKind;
use masam_adapter::sam::{MaskDecoder, MaskDecoderConfig};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let (n, c, g, enc) = (5usize, 256usize, 32usize, 768usize);
    let emb = Tensor::randn(0f32, 1., (n, c, g, g), &dev)?;
    let pe = Tensor::randn(0f32, 1., (1, c, g, g), &dev)?;
    let sparse = Tensor::zeros((1, 0, c), DType::F32, &dev)?;
    let dense = Tensor::zeros((1, c, g, g), DType::F32, &dev)?;
    let feats: Vec<Tensor> = (0..4)
        .map(|_| Tensor::randn(0f32, 1., (n, g, g, enc), &dev))
        .collect::<masam_adapter::candle::Result<_>>()?;
    println!("| decoder | parameters | logits | forward s | forward + backward s |");
    println!("|---|---|---|---|---|");
    for kind in [
        DecoderKind::Sam,
        DecoderKind::Progressive,
        DecoderKind::Fusion,
    ] {
        let cfg = MaskDecoderConfig::masam(c, 12).with_kind(kind, enc);
        let params = SeededVarMap::new(0);
        let dec = MaskDecoder::new(&cfg, params.var_builder(DType::F32, &dev))?;
        let count: usize = params.named_vars().values().map(|v| v.elem_count()).sum();
        let stages = cfg.upscaling_channels.len();
        let f = Some(&feats[..stages]);
        let (mut fw, mut bw) = (vec![], vec![]);
        let mut size = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let (m, _) = dec.predict_masks_with_features(&emb, None, f, &pe, &sparse, &dense)?;
            fw.push(t.elapsed().as_secs_f64());
            size = m.dim(2)?;
            let t = Instant::now();
            let (m, _) = dec.predict_masks_with_features(&emb, None, f, &pe, &sparse, &dense)?;
            m.sqr()?.mean_all()?.backward()?;
            bw.push(t.elapsed().as_secs_f64());
        }
        println!(
            "| {kind:?} | {:.2} M | {size}² | {:.2} | {:.2} |",
            count as f64 / 1e6,
            median(fw),
            median(bw)
        );
    }
    Ok(())
}
