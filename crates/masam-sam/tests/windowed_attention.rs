//! `Attention::forward_windowed` (real tokens only, padding projected once) against SAM's padded
//! path (zero-pad, partition, attention on every window, unpartition, crop): same outputs and
//! same gradients, with relative positions and a qkv hook whose output at a zero token is not
//! zero. On CPU `f32` tensors `forward_windowed` runs the fused attention kernel (with and
//! without a graph), so these tests check the kernel's outputs and gradients.

use candle_core::{DType, Device, Result, Tensor, Var};
use masam_nn::SeededVarMap;
use masam_sam::attention::Attention;
use masam_sam::window::{window_partition, window_unpartition};
use masam_sam::{BlockContext, LinearHook};

/// `y + x·M + c`: an affine increment, so the padded tokens' q/k/v differ from the bias alone
/// (`M` and `c` plain tensors, or the tensors of `Var`s to get their gradients).
#[derive(Debug)]
struct AffineHook {
    m: Tensor,
    c: Tensor,
}

impl LinearHook for AffineHook {
    fn forward(&self, x: &Tensor, y: &Tensor, _ctx: &BlockContext) -> Result<Tensor> {
        let dims = x.dims();
        let (lead, cin) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let d = x
            .reshape((rows, cin[0]))?
            .matmul(&self.m)?
            .broadcast_add(&self.c)?;
        y + d.reshape(y.shape())?
    }
}

/// The padded reference path the block used before `forward_windowed`.
fn padded_path(
    attn: &Attention,
    x: &Tensor,
    ws: usize,
    hook: &dyn LinearHook,
    ctx: &BlockContext,
) -> Result<Tensor> {
    if ws == 0 {
        return attn.forward_with_hooks(x, Some(hook), None, ctx);
    }
    let (_, h, w, _) = x.dims4()?;
    let (win, padded) = window_partition(x, ws)?;
    let a = attn.forward_with_hooks(&win, Some(hook), None, ctx)?;
    window_unpartition(&a, ws, padded, (h, w))
}

/// Block 0 of a 2D evaluation pass.
fn eval_ctx() -> BlockContext {
    BlockContext {
        block: 0,
        slices: 1,
        train: false,
        compute: None,
    }
}

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let m = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(d / m.max(1e-12))
}

#[test]
fn equals_the_padded_path_with_gradients() -> Result<()> {
    let dev = Device::Cpu;
    let ctx = eval_ctx();
    // (batch, h, w, window): partial last row and column, window larger than the grid, an exact
    // tiling, global attention, and SAM's 512 px case (32 × 32 tokens, windows of 14).
    for (b, h, w, ws) in [
        (2usize, 5usize, 7usize, 3usize),
        (1, 3, 3, 4),
        (2, 6, 6, 3),
        (2, 4, 6, 0),
        (1, 32, 32, 14),
    ] {
        let (c, heads) = (8usize, 2usize);
        let params = SeededVarMap::new(7);
        let vb = params.var_builder(DType::F32, &dev);
        let size = if ws == 0 { (h, w) } else { (ws, ws) };
        let mut attn = Attention::new(c, heads, true, true, size, vb.pp("attn"))?;
        let hd = c / heads;
        let th = Var::randn(0f32, 0.5, (2 * size.0 - 1, hd), &dev)?;
        let tw = Var::randn(0f32, 0.5, (2 * size.1 - 1, hd), &dev)?;
        attn.rel_pos_h = Some(th.as_tensor().clone());
        attn.rel_pos_w = Some(tw.as_tensor().clone());
        let hook = AffineHook {
            m: Var::randn(0f32, 0.2, (c, 3 * c), &dev)?.as_tensor().clone(),
            c: Var::randn(0f32, 0.5, 3 * c, &dev)?.as_tensor().clone(),
        };
        let x = Var::randn(0f32, 1., (b, h, w, c), &dev)?;
        let g = Tensor::randn(0f32, 1., (b, h, w, c), &dev)?;

        let ours = attn.forward_windowed(x.as_tensor(), ws, Some(&hook), None, &ctx)?;
        let theirs = padded_path(&attn, x.as_tensor(), ws, &hook, &ctx)?;
        assert_eq!(ours.dims(), &[b, h, w, c]);
        let e = rel_err(&ours, &theirs)?;
        assert!(e < 1e-5, "({b},{h},{w},ws {ws}): outputs differ by {e}");
        // one window·head per attention product: the same result in many chunks
        let hooks: (Option<&dyn LinearHook>, Option<&dyn LinearHook>) = (Some(&hook), None);
        let chunked = attn.forward_windowed_chunked(x.as_tensor(), ws, hooks, &ctx, 1)?;
        let e = rel_err(&chunked, &ours)?;
        assert!(
            e < 1e-6,
            "({b},{h},{w},ws {ws}): chunked output differs by {e}"
        );

        let ga = (&ours * &g)?.sum_all()?.backward()?;
        let gb = (&theirs * &g)?.sum_all()?.backward()?;
        let qkv_w = attn.qkv.weight();
        let named: [(&str, &Tensor); 6] = [
            ("x", x.as_tensor()),
            ("qkv.weight", qkv_w),
            ("rel_pos_h", th.as_tensor()),
            ("rel_pos_w", tw.as_tensor()),
            ("hook.m", &hook.m),
            ("hook.c", &hook.c),
        ];
        for (name, t) in named {
            let (a, r) = (ga.get(t), gb.get(t));
            let (Some(a), Some(r)) = (a, r) else {
                panic!("({b},{h},{w},ws {ws}): no gradient for {name}");
            };
            let e = rel_err(a, r)?;
            assert!(
                e < 1e-4,
                "({b},{h},{w},ws {ws}): {name} gradient differs by {e}"
            );
        }
    }
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> Result<()> {
    let dev = Device::Cpu;
    let params = SeededVarMap::new(0);
    let attn = Attention::new(
        8,
        2,
        true,
        true,
        (3, 3),
        params.var_builder(DType::F32, &dev),
    )?;
    let ctx = eval_ctx();
    let wrong_width = Tensor::zeros((1, 4, 4, 6), DType::F32, &dev)?;
    assert!(attn
        .forward_windowed(&wrong_width, 3, None, None, &ctx)
        .is_err());
    let empty = Tensor::zeros((1, 0, 4, 8), DType::F32, &dev)?;
    assert!(attn.forward_windowed(&empty, 3, None, None, &ctx).is_err());
    let rank3 = Tensor::zeros((4, 4, 8), DType::F32, &dev)?;
    assert!(attn.forward_windowed(&rank3, 3, None, None, &ctx).is_err());
    Ok(())
}

/// Plain tensors (no graph) through the CPU kernel must give the padded path's outputs: partial windows, windows larger than the grid, exact tilings, global attention,
/// SAM's 512 px geometry, several images, with and without relative positions, and padded
/// tokens whose q/k/v are not the bias alone.
#[test]
fn the_inference_kernel_equals_the_padded_path() -> Result<()> {
    let dev = Device::Cpu;
    let ctx = eval_ctx();
    for (b, h, w, ws) in [
        (2usize, 5usize, 7usize, 3usize),
        (1, 3, 3, 4),
        (2, 6, 6, 3),
        (2, 4, 6, 0),
        (1, 32, 32, 14),
        (3, 17, 9, 0),
        (1, 14, 28, 14),
    ] {
        for with_rel in [true, false] {
            let (c, heads) = (16usize, 2usize);
            let params = SeededVarMap::new(11);
            let vb = params.var_builder(DType::F32, &dev);
            let size = if ws == 0 { (h, w) } else { (ws, ws) };
            let attn = Attention::new(c, heads, true, with_rel, size, vb.pp("attn"))?;
            let detach = |l: &masam_nn::Linear| {
                masam_nn::Linear::new(l.weight().detach(), l.bias().map(|b| b.detach()))
            };
            let mut plain = attn.clone();
            plain.qkv = detach(&attn.qkv);
            plain.proj = detach(&attn.proj);
            if with_rel {
                let hd = c / heads;
                plain.rel_pos_h = Some(Tensor::randn(0f32, 0.5, (2 * size.0 - 1, hd), &dev)?);
                plain.rel_pos_w = Some(Tensor::randn(0f32, 0.5, (2 * size.1 - 1, hd), &dev)?);
            }
            let hook = AffineHook {
                m: Tensor::randn(0f32, 0.2, (c, 3 * c), &dev)?,
                c: Tensor::randn(0f32, 0.5, 3 * c, &dev)?,
            };
            let x = Tensor::randn(0f32, 1., (b, h, w, c), &dev)?;
            let ours = plain.forward_windowed(&x, ws, Some(&hook), None, &ctx)?;
            assert!(!ours.track_op());
            // the oracle: the padded path on the same weights (plain candle ops over the
            // partitioned windows, never the kernel), here recording a graph as well
            let xv = Var::from_tensor(&x)?;
            let theirs = padded_path(&plain, xv.as_tensor(), ws, &hook, &ctx)?;
            assert!(theirs.track_op());
            assert_eq!(ours.dims(), &[b, h, w, c]);
            let e = rel_err(&ours, &theirs)?;
            assert!(
                e < 2e-5,
                "({b},{h},{w},ws {ws}, rel {with_rel}): kernel differs by {e}"
            );
        }
    }
    Ok(())
}
