//! Fused CPU kernels for LayerNorm, softmax, GELU and bias addition, with analytic backward passes.
//!
//! The layers in this crate ([`crate::LayerNorm`], [`crate::LayerNorm2d`],
//! [`crate::softmax_last_dim`]) were first written as compositions of 6–10 candle ops, each of
//! which allocates a full-size tensor in the forward pass and again in the backward pass. On the
//! CPU that allocation and memory traffic, not the arithmetic, dominated the training step. The
//! ops here do the same computations in one (forward) or one fused (backward) pass per row:
//!
//! - [`softmax_last_dim_fused`]: a `CustomOp1` whose backward is one `CustomOp2` pass computing
//!   `y · (g − Σ g·y)`;
//! - [`layer_norm_fused`]: LayerNorm over the last dimension, a `CustomOp3(x, weight, bias)`
//!   whose backward yields `dx`, `dweight` and `dbias` from one pass over the rows;
//! - [`layer_norm_2d_fused`]: the same normalisation over dimension 1 of an (N, C, …) tensor,
//!   computed in place on NCHW memory (no permutes);
//! - [`attention_fused`]: multi-head `softmax(Q·Kᵀ/√d)·V` as one op, heads read in place;
//! - [`linear_fused`]: `x·Wᵀ + b` as one GEMM into a buffer that starts as the bias, whose
//!   backward computes the weight and bias gradients only for trainable ones.
//!
//! They only run on CPU `f32` tensors; [`fusable`] says when they apply. The public layers call
//! them when they do and fall back to the reference compositions in [`composite`] otherwise
//! (CUDA, `f64`), so every device keeps working.
//!
//! Half precision (bf16, f16; mixed-precision training): the layers compute LayerNorm and
//! softmax in f32 whatever the device, as PyTorch's autocast does: the input (and the
//! parameters) are converted to f32 ([`stat_dtype`]), the f32 op runs (fused on the CPU), and the
//! result is converted back to the input's dtype. GELU does the same on the CPU (candle has no
//! fast half-precision CPU kernels) and runs natively in the half type on other devices. The
//! fused kernels themselves are f32 only.
//!
//! Numerics: per-row statistics use an exact shift (the row mean is kept as a rounded `f32`
//! plus a correction term), so rows with a large common offset (say `1e4 + N(0, 1)`) normalise
//! as accurately as centred ones. Sums run over 8 independent lanes, which vectorises and is
//! more accurate than one running sum.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! let x = Var::new(&[[1f32, 2., 4.], [0., -1., 3.]], &dev)?;
//! let w = Var::new(&[2f32, 1., 0.5], &dev)?;
//! let b = Var::new(&[0.1f32, 0.2, 0.3], &dev)?;
//! let fused = masam_nn::ops::layer_norm_fused(&x, &w, &b, 1e-6)?;
//! let reference = masam_nn::ops::composite::layer_norm(&x, &w, &b, 1e-6)?;
//! let diff: f32 = (&fused - &reference)?.abs()?.max_all()?.to_scalar()?;
//! assert!(diff < 1e-5);
//! let grads = fused.sqr()?.sum_all()?.backward()?;
//! assert!(grads.get(&x).is_some() && grads.get(&w).is_some() && grads.get(&b).is_some());
//! # Ok(()) }
//! ```

pub mod add_columns_op;
pub mod attention_op;
pub mod bias_op;
pub mod composite;
pub mod gelu_op;
pub mod grid_bias_softmax_op;
pub mod layer_norm_op;
pub mod linear_op;
mod simd;
pub mod softmax_op;

pub use add_columns_op::add_columns;
pub use attention_op::attention_fused;
pub use bias_op::bias_add_fused;
pub use gelu_op::gelu_erf_fused;
pub use grid_bias_softmax_op::grid_bias_softmax_fused;
pub use layer_norm_op::{layer_norm_2d_fused, layer_norm_fused};
pub use linear_op::linear_fused;
pub use softmax_op::{softmax_last_dim_fused, softmax_row};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Whether the fused CPU kernels apply to these tensors: all on the CPU and all `f32`. The
/// layers use the [`composite`] implementations otherwise.
pub fn fusable(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Fails unless `t` is a CPU `f32` tensor; `op` names the caller in the message.
/// True for the 16-bit float types (bf16, f16).
///
/// ```
/// use candle_core::DType;
/// assert!(masam_nn::ops::is_half(DType::BF16));
/// assert!(!masam_nn::ops::is_half(DType::F32));
/// ```
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// The dtype in which statistics (LayerNorm, softmax) over an input of `dtype` are computed:
/// f32 for the half types, the input's own dtype otherwise.
///
/// ```
/// use candle_core::DType;
/// assert_eq!(masam_nn::ops::stat_dtype(DType::F16), DType::F32);
/// assert_eq!(masam_nn::ops::stat_dtype(DType::F64), DType::F64);
/// ```
pub fn stat_dtype(dtype: DType) -> DType {
    if is_half(dtype) {
        DType::F32
    } else {
        dtype
    }
}

pub(crate) fn ensure_cpu_f32(t: &Tensor, op: &str) -> Result<()> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 {
        candle_core::bail!(
            "{op}: the fused kernel needs a CPU f32 tensor, got {:?} on {:?}",
            t.dtype(),
            t.device().location()
        );
    }
    Ok(())
}

/// The `f32` elements of a contiguous CPU storage, as laid out by `layout` (for custom ops'
/// `cpu_fwd`); `op` names the caller in the error for other dtypes or strided layouts.
///
/// ```
/// use candle_core::{Device, Storage, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let t = Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?;
/// let (storage, layout) = t.storage_and_layout();
/// let Storage::Cpu(cpu) = &*storage else { unreachable!() };
/// assert_eq!(masam_nn::ops::contiguous_f32(cpu, layout, "example")?, &[1., 2., 3.]);
/// # Ok(()) }
/// ```
pub fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32 storage, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!(
            "{op}: expected a contiguous input, got strides {:?}",
            layout.stride()
        );
    };
    Ok(&data[start..end])
}

/// A new vector of `len` elements written chunk by chunk in parallel (`fill(index, chunk)`, chunks
/// of `chunk` elements, the last one shorter), without zero-filling it first: for outputs that a
/// kernel overwrites completely anyway. `fill` must write every element of its chunk.
pub(crate) fn par_new_f32(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: the first `len` elements were allocated above and every one of them was written
    // by `fill` (its contract: each chunk is written completely; the chunks tile `0..len`).
    unsafe { v.set_len(len) };
    v
}

/// A new vector of `len` elements holding `row` repeated (`len` a multiple of its length),
/// written in parallel without a zero-fill first: the bias-filled destination of a GEMM that
/// accumulates into it.
///
/// ```
/// assert_eq!(masam_nn::ops::fill_rows_f32(6, &[1.0, 2.0]), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
/// ```
///
/// # Panics
/// When `len` is not a multiple of `row.len()` (or `row` is empty and `len` is not zero).
pub fn fill_rows_f32(len: usize, row: &[f32]) -> Vec<f32> {
    let n = row.len();
    assert!(
        (n == 0 && len == 0) || (n > 0 && len.is_multiple_of(n)),
        "fill_rows_f32: {len} elements are not rows of {n}"
    );
    if len == 0 {
        return Vec::new();
    }
    par_new_f32(len, rows_per_task(n) * n, |_, chunk| {
        for r in chunk.chunks_exact_mut(n) {
            for (o, &v) in r.iter_mut().zip(row) {
                o.write(v);
            }
        }
    })
}

/// Runs `f` on the elements of a CPU `f32` tensor, read in place when it is contiguous (copied
/// once otherwise): the backward passes of the fused ops read their inputs and output gradient
/// this way instead of copying them into new vectors.
///
/// ```
/// use candle_core::{Device, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
/// let total = masam_nn::ops::with_f32(&t.t()?, "example", |v| v.iter().sum::<f32>())?;
/// assert_eq!(total, 10.0);
/// # Ok(()) }
/// ```
///
/// # Errors
/// A tensor that is not a CPU `f32` tensor.
pub fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op}: expected a CPU tensor");
    };
    Ok(f(contiguous_f32(cpu, layout, op)?))
}

/// Column sums of a row-major (rows × `cols`) buffer, summed in fixed blocks of rows and then
/// in block order, so that the result does not depend on the number of threads (the bias
/// gradient of the fused kernels).
///
/// ```
/// assert_eq!(masam_nn::ops::column_sums(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2), vec![9.0, 12.0]);
/// ```
pub fn column_sums(data: &[f32], cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const BLOCK_ROWS: usize = 256;
    if cols == 0 {
        return Vec::new();
    }
    let partials: Vec<Vec<f32>> = data
        .par_chunks(BLOCK_ROWS * cols)
        .map(|block| {
            let mut acc = vec![0f32; cols];
            for row in block.chunks_exact(cols) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0f32; cols];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Number of independent accumulators in the reductions below (two SSE / one AVX register).
const LANES: usize = 8;

/// Elements of work per rayon task: big enough to amortise scheduling, small enough to balance.
const TASK_ELEMS: usize = 8192;

/// Rows of length `c` per rayon task.
pub(crate) fn rows_per_task(c: usize) -> usize {
    (TASK_ELEMS / c.max(1)).max(1)
}

/// `Σ a`, accumulated over 8 lanes (vectorises; more accurate than one running sum).
///
/// ```
/// assert_eq!(masam_nn::ops::sum(&[1.0, 2.0, 3.5]), 6.5);
/// ```
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..LANES {
            acc[l] += ch[l];
        }
    }
    let mut s = 0f32;
    for v in rest {
        s += v;
    }
    lanes_total(&acc) + s
}

/// `Σ a·b` over the common length, accumulated over 8 lanes (vectorises; more accurate than one
/// running sum).
///
/// ```
/// assert_eq!(masam_nn::ops::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    lanes_total(&acc) + s
}

/// Pairwise total of the lane accumulators.
#[inline]
fn lanes_total(acc: &[f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Below this, `exp` returns 0 (`exp(-87) ≈ 1.6e-38`, the bottom of the normal range).
pub(crate) const EXP_LO: f32 = -87.0;

/// `exp(v)` for `v ≤ 0` (as in a max-subtracted softmax), written so that loops over it
/// vectorise: Cephes' `expf` range reduction `v = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6
/// polynomial for `exp(r)` (≈ 1 ulp) and `2ⁿ` built from its bits. Inputs below [`EXP_LO`]
/// (and −∞) give 0; NaN stays NaN. Not valid for `v > 0`.
#[inline(always)]
pub(crate) fn exp_nonpositive(v: f32) -> f32 {
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer (|t| < 2²²).
    const ROUND: f32 = 12_582_912.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split into a part exact in few bits and the rest (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let t = v * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (v - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // n is in the low mantissa bits of t; 2ⁿ has exponent field n + 127 (in 1..=127 here).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let pow2 = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if v < EXP_LO {
        0.0
    } else {
        e * pow2
    }
}
