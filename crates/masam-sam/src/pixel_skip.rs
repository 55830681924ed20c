//! Pixel skips: full-resolution image features for the mask decoder's upscaling stages, so that
//! structures smaller than one encoder token can still be delineated. (Not the paper's
//! multi-scale fusion decoder, which fuses encoder features:
//! [`DecoderKind::Fusion`](crate::mask_decoder::DecoderKind::Fusion).)
//!
//! SAM's decoder sees the image only through the encoder's token grid (1/16 of the input side
//! for patch 16); its upscaling stages invent the finer detail. With `pixel_skip` on, a small
//! convolutional pyramid over the (preprocessed) input image adds a feature map to the output
//! of every transposed convolution, at that stage's resolution and width, like the skip
//! connections of a U-Net:
//!
//! ```text
//! finest   f[n−1] = GELU(conv3×3(image pooled to the mask size)) , c[n−1] channels
//! coarser  f[s]   = GELU(conv3×3(avgpool2(f[s+1])))                , c[s]   channels
//! stage s  up     = GELU(LN(convT(up) + f[s]))
//! ```
//!
//! Weights: `pixel_skip.{s}.weight` `(c[s], c_in, 3, 3)` and `.bias` `(c[s],)`, stage 0 the
//! coarsest; initialised like PyTorch's `Conv2d`. Not part of SAM or of the MA-SAM reference:
//! off by default, used by the small phantom preset.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::conv_gemm::conv2d_same_nhwc;

/// The convolutional pyramid of [`crate::MaskDecoder`]'s pixel skips.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::SeededVarMap;
/// use masam_sam::pixel_skip::PixelSkip;
/// # fn main() -> candle_core::Result<()> {
/// let params = SeededVarMap::new(0);
/// let skip = PixelSkip::new(3, &[16, 8], params.var_builder(DType::F32, &Device::Cpu))?;
/// let image = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?;
/// let f = skip.forward(&image, (16, 16))?;
/// assert_eq!((f[0].dims(), f[1].dims()), (&[2, 8, 8, 16][..], &[2, 16, 16, 8][..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PixelSkip {
    /// `(weight, bias)` per upscaling stage, coarsest first.
    convs: Vec<(Tensor, Tensor)>,
}

impl PixelSkip {
    /// Builds the pyramid for upscaling stages of the given widths (coarsest first) over an
    /// image of `in_chans` channels.
    pub fn new(in_chans: usize, channels: &[usize], vb: VarBuilder) -> Result<Self> {
        let n = channels.len();
        let mut convs = Vec::with_capacity(n);
        for s in 0..n {
            let cin = if s + 1 == n {
                in_chans
            } else {
                channels[s + 1]
            };
            let b = 1.0 / ((cin * 9) as f64).sqrt();
            let init = Init::Uniform { lo: -b, up: b };
            let vbs = vb.pp(s.to_string());
            let w = vbs.get_with_hints((channels[s], cin, 3, 3), "weight", init)?;
            let bias = vbs.get_with_hints(channels[s], "bias", init)?;
            convs.push((w, bias));
        }
        Ok(Self { convs })
    }

    /// Feature maps for every stage, coarsest first, channels-last. `finest` is the size of the last
    /// stage's output (the mask size); the image is average-pooled to it by an integer factor.
    ///
    /// # Shapes
    /// - `image`: (N, in_chans, H, W), H and W multiples of `finest`
    /// - returns, for stage `s` of `n`: `(N, finest / 2^(n−1−s), c[s])` (NHWC)
    pub fn forward(&self, image: &Tensor, finest: (usize, usize)) -> Result<Vec<Tensor>> {
        let (_, _, h, w) = image.dims4()?;
        let (fh, fw) = finest;
        let stages = self.convs.len();
        let coarse = 1usize << stages.saturating_sub(1);
        if fh == 0 || fw == 0 || h % fh != 0 || w % fw != 0 || fh % coarse != 0 || fw % coarse != 0
        {
            candle_core::bail!(
                "pixel skip: image {h}×{w} cannot be pooled to the mask size {fh}×{fw} \
                 over {stages} stages"
            );
        }
        let mut x = image.permute((0, 2, 3, 1))?;
        if (h, w) != (fh, fw) {
            x = avg_pool_nhwc(&x, h / fh, w / fw)?;
        }
        let mut out = Vec::with_capacity(stages);
        for s in (0..stages).rev() {
            if s + 1 < stages {
                x = avg_pool_nhwc(&x, 2, 2)?;
            }
            let (wt, b) = &self.convs[s];
            x = masam_nn::gelu_erf(&conv2d_same_nhwc(&x.contiguous()?, wt, Some(b))?)?;
            out.push(x.clone());
        }
        out.reverse();
        Ok(out)
    }
}

/// Mean over non-overlapping `fy × fx` windows of an NHWC map (sizes must divide).
fn avg_pool_nhwc(x: &Tensor, fy: usize, fx: usize) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    x.reshape((n, h / fy, fy, w / fx, fx, c))?
        .sum(4)?
        .sum(2)?
        .affine(1.0 / (fy * fx) as f64, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MaskDecoder, MaskDecoderConfig, MaskSelection};
    use candle_core::{DType, Device};
    use masam_nn::SeededVarMap;

    fn inputs(dev: &Device) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let emb = Tensor::randn(0f32, 1., (2, 64, 2, 2), dev)?;
        let pe = Tensor::randn(0f32, 1., (1, 64, 2, 2), dev)?;
        let sparse = Tensor::zeros((1, 0, 64), DType::F32, dev)?;
        let dense = Tensor::zeros((1, 64, 2, 2), DType::F32, dev)?;
        Ok((emb, pe, sparse, dense))
    }

    #[test]
    fn decoder_uses_the_image_and_every_skip_weight_gets_a_gradient() -> crate::Result<()> {
        let dev = Device::Cpu;
        let cfg = MaskDecoderConfig {
            pixel_skip: true,
            ..MaskDecoderConfig::tiny()
        };
        let params = SeededVarMap::new(1);
        let dec = MaskDecoder::new(&cfg, params.var_builder(DType::F32, &dev))?;
        let (emb, pe, sparse, dense) = inputs(&dev)?;
        // 2×2 tokens, 4 stages → 32×32 masks; a 64×64 image is pooled by 2.
        let img_a = Tensor::randn(0f32, 1., (2, 3, 64, 64), &dev)?;
        let img_b = Tensor::randn(0f32, 1., (2, 3, 64, 64), &dev)?;
        let sel = MaskSelection::All;
        let (ma, _) = dec.forward_with_image(&emb, Some(&img_a), &pe, &sparse, &dense, sel)?;
        let (mb, _) = dec.forward_with_image(&emb, Some(&img_b), &pe, &sparse, &dense, sel)?;
        assert_eq!(ma.dims(), &[2, 4, 32, 32]);
        let diff = (&ma - &mb)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff > 1e-4, "the masks ignore the image ({diff})");
        let grads = ma.sqr()?.sum_all()?.backward()?;
        let skip_vars: Vec<_> = params
            .named_vars()
            .into_iter()
            .filter(|(k, _)| k.starts_with("pixel_skip."))
            .collect();
        assert_eq!(skip_vars.len(), 8);
        for (name, var) in skip_vars {
            let g = grads.get(&var).expect("gradient");
            let norm = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(norm > 0.0, "{name} has a zero gradient");
        }
        // Without the image the decoder refuses instead of silently skipping the skips.
        assert!(dec.forward(&emb, &pe, &sparse, &dense, sel).is_err());
        // A wrong image size is a clear error.
        let bad = Tensor::zeros((2, 3, 48, 48), DType::F32, &dev)?;
        assert!(dec
            .forward_with_image(&emb, Some(&bad), &pe, &sparse, &dense, sel)
            .is_err());
        Ok(())
    }
}
