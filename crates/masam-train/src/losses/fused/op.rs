//! [`DiceCeOp`]: the fused loss as one candle `CustomOp2(logits, labels)` with an analytic backward.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Shape, Storage, Tensor};

use super::cpu::{backward, forward_stats, Geometry, Stats};

/// The labels of a CPU storage, borrowed in their own integer type.
pub(crate) enum LabelSlice<'a> {
    /// u8 labels.
    U8(&'a [u8]),
    /// u32 labels.
    U32(&'a [u32]),
    /// i64 labels.
    I64(&'a [i64]),
}

/// Runs `$body` with `$x` bound to the typed label slice.
macro_rules! with_labels {
    ($ls:expr, $x:ident => $body:expr) => {
        match $ls {
            LabelSlice::U8($x) => $body,
            LabelSlice::U32($x) => $body,
            LabelSlice::I64($x) => $body,
        }
    };
}
pub(crate) use with_labels;

/// The contiguous part of a layout: `(start, end)` offsets, or an error.
fn span(l: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    match l.contiguous_offsets() {
        Some(o) => Ok(o),
        None => bail!("fused Dice+CE: {what} must be contiguous"),
    }
}

/// Borrows the labels of a CPU storage (u8, u32 or i64, contiguous).
pub(crate) fn label_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<LabelSlice<'a>> {
    let (a, b) = span(l, "labels")?;
    Ok(match s {
        CpuStorage::U8(v) => LabelSlice::U8(&v[a..b]),
        CpuStorage::U32(v) => LabelSlice::U32(&v[a..b]),
        CpuStorage::I64(v) => LabelSlice::I64(&v[a..b]),
        other => bail!("fused Dice+CE: unsupported label dtype {:?}", other.dtype()),
    })
}

/// Borrows the f32 logits of a CPU storage (contiguous).
fn logit_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let (a, b) = span(l, "logits")?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        other => bail!("fused Dice+CE: logits must be f32, got {:?}", other.dtype()),
    }
}

/// `ce_weight·CE + dice_weight·Dice` of f32 logits (N, K, spatial...) and integer labels
/// (N, spatial...), as one op.
///
/// The output is the packed f32 vector `[total, ce, dice]` (shape (3)); every entry is
/// differentiable w.r.t. the logits (upstream gradients `(g_t, g_ce, g_d)` give
/// `(g_t·w_ce + g_ce)·dCE + (g_t·w_dice + g_d)·dDice`). Labels get no gradient. The forward
/// sums are kept for the backward, which then only recomputes the softmax.
pub(crate) struct DiceCeOp {
    geom: Geometry,
    ce_weight: f64,
    dice_weight: f64,
    smooth: f64,
    stats: OnceLock<Stats>,
}

impl DiceCeOp {
    /// An op for logits of `geom`'s shape with the given weights.
    pub(crate) fn new(geom: Geometry, ce_weight: f64, dice_weight: f64, smooth: f64) -> Self {
        Self {
            geom,
            ce_weight,
            dice_weight,
            smooth,
            stats: OnceLock::new(),
        }
    }

    fn check_sizes(&self, n_logits: usize, n_labels: usize) -> candle_core::Result<()> {
        let g = &self.geom;
        if n_logits != g.n * g.k * g.s || n_labels != g.n * g.s {
            bail!(
                "fused Dice+CE: {n_logits} logits / {n_labels} labels for (N, K, S) = ({}, {}, {})",
                g.n,
                g.k,
                g.s
            );
        }
        Ok(())
    }
}

impl CustomOp2 for DiceCeOp {
    fn name(&self) -> &'static str {
        "masam-dice-ce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let z = logit_slice(s1, l1)?;
        let labels = label_slice(s2, l2)?;
        let n_labels = with_labels!(&labels, x => x.len());
        self.check_sizes(z.len(), n_labels)?;
        let st = with_labels!(labels, x => forward_stats(z, x, &self.geom));
        let ce = st.ce();
        let dice = st.dice(self.smooth);
        let total = self.ce_weight * ce + self.dice_weight * dice;
        // A recomputation (same op applied twice) gives the same sums; keep the first.
        let _ = self.stats.set(st);
        Ok((
            CpuStorage::F32(vec![total as f32, ce as f32, dice as f32]),
            Shape::from(3),
        ))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let up: Vec<f64> = grad_res.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if up.len() != 3 {
            bail!(
                "fused Dice+CE: upstream gradient has {} values, expected 3",
                up.len()
            );
        }
        let a = up[0] * self.ce_weight + up[1];
        let b = up[0] * self.dice_weight + up[2];
        let grad = {
            let (st1, l1) = arg1.storage_and_layout();
            let (st2, l2) = arg2.storage_and_layout();
            let (c1, c2) = match (&*st1, &*st2) {
                (Storage::Cpu(c1), Storage::Cpu(c2)) => (c1, c2),
                _ => bail!("fused Dice+CE: backward runs on CPU only"),
            };
            let z = logit_slice(c1, l1)?;
            let labels = label_slice(c2, l2)?;
            let n_labels = with_labels!(&labels, x => x.len());
            self.check_sizes(z.len(), n_labels)?;
            with_labels!(labels, x => {
                let stats = match self.stats.get() {
                    Some(s) => s.clone(),
                    None => forward_stats(z, x, &self.geom),
                };
                backward(z, x, &self.geom, &stats, self.smooth, a, b)
            })
        };
        let grad = Tensor::from_vec(grad, arg1.shape(), arg1.device())?;
        Ok((Some(grad), None))
    }
}
