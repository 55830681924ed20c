//! Adding increments into column ranges of a frozen projection's output.

use candle_core::{DType, Result as CResult, Tensor};

use crate::error::{FactError, Result};
use crate::increment::Increment;

/// The FacT increments of one linear layer, each added into its own column range of the layer's
/// output. This is the "hook" form: given the layer input `x` and the frozen output
/// `y = x·Wᵀ + b`, [`FactHook::forward`] returns `y + s·Δ(x)` in the right columns (the
/// signature of masam-sam's `LinearHook`).
///
/// For MA-SAM's fused qkv (output `[q | k | v]`, each C wide) the parts are q at column 0 and
/// v at column 2C; k's columns pass through unchanged. The result is built by adding to
/// narrowed pieces and concatenating, never by editing `y` in place.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_fact::{Fact, FactConfig};
/// use masam_nn::SeededVarMap;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let params = SeededVarMap::new(0);
/// let fact = Fact::new(&FactConfig::tiny(), 8, 2, params.var_builder(DType::F32, &Device::Cpu))?;
/// let hook = fact.qkv(1)?.expect("q and v are adapted");
/// let x = Tensor::ones((3, 8), DType::F32, &Device::Cpu)?;
/// let y = Tensor::zeros((3, 24), DType::F32, &Device::Cpu)?;
/// // V starts at zero, so the increment does too.
/// let out = hook.forward(&x, &y, false)?;
/// assert_eq!(out.dims(), &[3, 24]);
/// assert_eq!(out.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FactHook {
    parts: Vec<(usize, Increment)>,
}

impl FactHook {
    /// Increments with the first output column each one writes to. Ranges must not overlap,
    /// and all increments must read inputs of the same width.
    pub fn new(mut parts: Vec<(usize, Increment)>) -> Result<Self> {
        if parts.is_empty() {
            return Err(FactError::Columns(
                "a hook needs at least one increment".into(),
            ));
        }
        parts.sort_by_key(|(c, _)| *c);
        let in_features = parts[0].1.in_features();
        let mut end = 0;
        for (col, inc) in &parts {
            if *col < end {
                return Err(FactError::Columns(format!(
                    "{:?} starts at column {col}, inside the previous range (ends at {end})",
                    inc.projection()
                )));
            }
            if inc.in_features() != in_features {
                return Err(FactError::Columns(format!(
                    "{:?} reads {} features, another increment reads {in_features}",
                    inc.projection(),
                    inc.in_features()
                )));
            }
            end = col + inc.out_features();
        }
        Ok(Self { parts })
    }

    /// The increments and their first columns, sorted by column.
    pub fn parts(&self) -> &[(usize, Increment)] {
        &self.parts
    }

    /// Input features of the wrapped layer.
    pub fn in_features(&self) -> usize {
        self.parts[0].1.in_features()
    }

    /// The smallest output width the hook fits (end of the last column range).
    pub fn min_out_features(&self) -> usize {
        self.parts
            .last()
            .map(|(c, inc)| c + inc.out_features())
            .unwrap_or(0)
    }

    /// `y + s·Δ(x)` in the increments' column ranges; other columns of `y` are unchanged.
    /// Dropout is applied when `train` is set. `U x` is computed once and shared by all parts.
    ///
    /// # Shapes
    /// - `x`: (…, in); `y`: (…, out) with the same leading dims; returns (…, out)
    pub fn forward(&self, x: &Tensor, y: &Tensor, train: bool) -> CResult<Tensor> {
        let xd = x.dims();
        let yd = y.dims();
        if xd.len() != yd.len() || xd[..xd.len() - 1] != yd[..yd.len() - 1] {
            candle_core::bail!("FacT hook: input {xd:?} and output {yd:?} disagree");
        }
        let out = *yd.last().unwrap_or(&0);
        if out < self.min_out_features() {
            candle_core::bail!(
                "FacT hook: output has {out} columns, the increments need {}",
                self.min_out_features()
            );
        }
        let lead = &yd[..yd.len() - 1];
        let last = yd.len() - 1;
        let z = self.parts[0].1.project_in(x)?;
        if masam_nn::ops::fusable(&[y, &z]) {
            // each increment added into its columns in place: no narrow/cat nodes
            let mut out = y.clone();
            for (col, inc) in &self.parts {
                let d = inc.delta_from_projected(&z, lead, train)?;
                out = masam_nn::ops::add_columns(&out, &d, *col)?;
            }
            return Ok(out);
        }
        let mut pieces = Vec::with_capacity(2 * self.parts.len() + 1);
        let mut pos = 0;
        for (col, inc) in &self.parts {
            if *col > pos {
                pieces.push(y.narrow(last, pos, col - pos)?);
            }
            let width = inc.out_features();
            let d = inc.delta_from_projected(&z, lead, train)?;
            pieces.push((y.narrow(last, *col, width)? + d.to_dtype(y.dtype())?)?);
            pos = col + width;
        }
        if pos < out {
            pieces.push(y.narrow(last, pos, out - pos)?);
        }
        if pieces.len() == 1 {
            Ok(pieces.pop().expect("one piece"))
        } else {
            Tensor::cat(&pieces, last)
        }
    }

    /// The full-width weight increment (out, in): each part's `s·ΔW` in its rows, zeros
    /// elsewhere, so that `forward(x, y, false) = y + x · (delta_weight)ᵀ`.
    pub fn delta_weight(&self, out_features: usize, dtype: DType) -> CResult<Tensor> {
        if out_features < self.min_out_features() {
            candle_core::bail!(
                "FacT hook: {out_features} output rows, the increments need {}",
                self.min_out_features()
            );
        }
        let in_features = self.in_features();
        let dev = self.parts[0].1.factors().u().device().clone();
        let mut blocks = Vec::with_capacity(2 * self.parts.len() + 1);
        let mut pos = 0;
        for (row, inc) in &self.parts {
            if *row > pos {
                blocks.push(Tensor::zeros((row - pos, in_features), dtype, &dev)?);
            }
            blocks.push(inc.delta_weight()?.to_dtype(dtype)?);
            pos = row + inc.out_features();
        }
        if pos < out_features {
            blocks.push(Tensor::zeros(
                (out_features - pos, in_features),
                dtype,
                &dev,
            )?);
        }
        Tensor::cat(&blocks, 0)
    }

    /// `W + s·ΔW` for a frozen weight `W` of shape (out, in): the merged weight.
    pub fn merge_weight(&self, weight: &Tensor) -> CResult<Tensor> {
        let (out, inp) = weight.dims2()?;
        if inp != self.in_features() {
            candle_core::bail!(
                "FacT merge: weight has {inp} inputs, the increments read {}",
                self.in_features()
            );
        }
        let dw = self.delta_weight(out, weight.dtype())?;
        weight.detach() + dw.detach()
    }
}
