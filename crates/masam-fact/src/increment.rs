//! The increment `s·Δ(x)` of one adapted projection.

use std::sync::Arc;

use candle_core::{Result as CResult, Tensor};

use crate::dropout_rng::DropoutRng;
use crate::error::{FactError, Result};
use crate::factors::SharedFactors;
use crate::projection::Projection;
use crate::tk::TkCores;

/// Where a projection's core comes from.
#[derive(Debug, Clone)]
pub(crate) enum CoreSource {
    /// FacT-TT: the core itself (a parameter).
    Tt(Tensor),
    /// FacT-TK: computed from the shared core tensor and this projection's mixing columns.
    Tk {
        tk: Arc<TkCores>,
        block: usize,
        projection: Projection,
    },
}

/// The FacT increment of one projection: `s · V · dropout(S · U x)`, i.e. the weight increment
/// `s·ΔW` with `ΔW = V·S·U` applied to `x` without ever forming ΔW.
///
/// The core `S` is written in the layout of a bias-free PyTorch `nn.Linear` weight
/// (out, in) in rank space:
/// - q, k, v, proj: (r, r) (`q_FacTs.weight` of MA-SAM and PETL-ViT's TT);
/// - fc1: (m·r, r); its output is read as m chunks of r, each mapped by V to C features;
/// - fc2: (r, m·r); its input is the m chunks of C features of x, each mapped by U to r.
///
/// So `ΔW` has shape (m_out·C, m_in·C) with block (j, k) equal to `V · S[j, k] · U`, where
/// `S[j, k]` is the (j, k) r×r block of S. Dropout (training only) acts on the rank-space
/// activation `S·U x`, as in the reference; its masks come from a seeded [`DropoutRng`], so a
/// training run repeats bit for bit.
///
/// # Shapes
/// - `x`: (…, m_in·C); [`Increment::delta`] returns (…, m_out·C)
#[derive(Debug, Clone)]
pub struct Increment {
    factors: Arc<SharedFactors>,
    core: CoreSource,
    projection: Projection,
    mlp_ratio: usize,
    scale: f64,
    dropout: f32,
    rng: Arc<DropoutRng>,
}

impl Increment {
    /// An increment with an explicit core `S` (see the type docs for its shape).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use candle_core::{Device, Tensor};
    /// use masam_fact::{Increment, Projection, SharedFactors};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dev = Device::Cpu;
    /// let u = Tensor::new(&[[1f32, 0., 0.]], &dev)?; // r = 1, C = 3
    /// let v = Tensor::new(&[[1f32], [2.], [3.]], &dev)?;
    /// let f = Arc::new(SharedFactors::from_tensors(u, v)?);
    /// let inc = Increment::new(f, Projection::Q, Tensor::new(&[[2f32]], &dev)?, 4, 0.5, 0.0)?;
    /// let x = Tensor::new(&[[1f32, 5., 7.]], &dev)?;
    /// // 0.5 · V · 2 · (U x) = 0.5 · 2 · 1 · [1, 2, 3]
    /// assert_eq!(inc.delta(&x, false)?.to_vec2::<f32>()?, vec![vec![1f32, 2., 3.]]);
    /// # Ok(()) }
    /// ```
    pub fn new(
        factors: Arc<SharedFactors>,
        projection: Projection,
        core: Tensor,
        mlp_ratio: usize,
        scale: f64,
        dropout: f32,
    ) -> Result<Self> {
        let r = factors.rank();
        let (m_in, m_out) = projection.chunks(mlp_ratio);
        let got = core.dims().to_vec();
        if got != [m_out * r, m_in * r] {
            return Err(FactError::ShapeMismatch {
                what: format!("{}_FacTs core", projection.name()),
                expected: vec![m_out * r, m_in * r],
                got,
            });
        }
        Ok(Self::from_source(
            factors,
            CoreSource::Tt(core),
            projection,
            mlp_ratio,
            scale,
            dropout,
            Arc::new(DropoutRng::new(0)),
        ))
    }

    pub(crate) fn from_source(
        factors: Arc<SharedFactors>,
        core: CoreSource,
        projection: Projection,
        mlp_ratio: usize,
        scale: f64,
        dropout: f32,
        rng: Arc<DropoutRng>,
    ) -> Self {
        Self {
            factors,
            core,
            projection,
            mlp_ratio,
            scale,
            dropout,
            rng,
        }
    }

    /// This increment drawing its dropout masks from `rng` (a new increment has its own,
    /// seeded with 0; [`crate::Fact`] gives all of a model's increments the same one).
    pub fn with_dropout_rng(mut self, rng: Arc<DropoutRng>) -> Self {
        self.rng = rng;
        self
    }

    /// Where the dropout masks come from.
    pub fn dropout_rng(&self) -> &Arc<DropoutRng> {
        &self.rng
    }

    /// The adapted projection.
    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// The shared factors.
    pub fn factors(&self) -> &Arc<SharedFactors> {
        &self.factors
    }

    /// The scale s.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Input features m_in·C.
    pub fn in_features(&self) -> usize {
        self.projection.chunks(self.mlp_ratio).0 * self.factors.dim()
    }

    /// Output features m_out·C.
    pub fn out_features(&self) -> usize {
        self.projection.chunks(self.mlp_ratio).1 * self.factors.dim()
    }

    /// The core `S` in linear-weight layout (m_out·r, m_in·r). For FacT-TK it is computed from
    /// the core tensor and the mixing columns, so gradients reach both.
    pub fn core(&self) -> CResult<Tensor> {
        match &self.core {
            CoreSource::Tt(s) => Ok(s.clone()),
            CoreSource::Tk {
                tk,
                block,
                projection,
            } => tk.core(*block, *projection),
        }
    }

    /// `x · Uᵀ` regrouped for this projection: (…, m_in·C) → (rows, m_in·r), where rows is
    /// the product of the leading dimensions.
    pub(crate) fn project_in(&self, x: &Tensor) -> CResult<Tensor> {
        let c = self.factors.dim();
        let r = self.factors.rank();
        let (m_in, _) = self.projection.chunks(self.mlp_ratio);
        let last = x.dims().last().copied().unwrap_or(0);
        if last != m_in * c {
            candle_core::bail!(
                "FacT {}: input has {last} features, expected {}",
                self.projection.name(),
                m_in * c
            );
        }
        let rows = x.elem_count() / last;
        // one chunk: project x as it is, so that only the rank-sized result is reshaped
        let x = if m_in == 1 {
            x.clone()
        } else {
            x.reshape((rows * m_in, c))?
        };
        self.factors.project_in(&x)?.reshape((rows, m_in * r))
    }

    /// The increment from an input already projected by [`Increment::project_in`].
    pub(crate) fn delta_from_projected(
        &self,
        z: &Tensor,
        lead: &[usize],
        train: bool,
    ) -> CResult<Tensor> {
        let c = self.factors.dim();
        let r = self.factors.rank();
        let (_, m_out) = self.projection.chunks(self.mlp_ratio);
        let rows: usize = lead.iter().product();
        // Rank space: h = z · Sᵀ, (rows, m_out·r).
        let mut h = z.matmul(&self.core()?.to_dtype(z.dtype())?.t()?)?;
        if train && self.dropout > 0.0 {
            let mask = self
                .rng
                .mask(h.shape(), self.dropout, h.dtype(), h.device())?;
            h = (h * mask)?;
        }
        if self.scale != 1.0 {
            h = (h * self.scale)?;
        }
        let mut shape = lead.to_vec();
        if m_out == 1 {
            // reshape the rank-sized h, not the output: (…, r) → (…, C) directly
            shape.push(r);
            return self.factors.project_out(&h.reshape(shape)?);
        }
        let out = self.factors.project_out(&h.reshape((rows * m_out, r))?)?;
        shape.push(m_out * c);
        out.reshape(shape)
    }

    /// `s · Δ(x)`, with dropout when `train` is set.
    ///
    /// # Shapes
    /// - `x`: (…, m_in·C); returns (…, m_out·C)
    pub fn delta(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let dims = x.dims();
        let lead = &dims[..dims.len().saturating_sub(1)];
        let z = self.project_in(x)?;
        self.delta_from_projected(&z, lead, train)
    }

    /// The weight increment `s · ΔW`, shape (m_out·C, m_in·C), such that
    /// `delta(x) = x · (s·ΔW)ᵀ` in evaluation mode.
    pub fn delta_weight(&self) -> CResult<Tensor> {
        let r = self.factors.rank();
        let (m_in, m_out) = self.projection.chunks(self.mlp_ratio);
        let s = self.core()?;
        let u = self.factors.u();
        let v = self.factors.v();
        let mut rows = Vec::with_capacity(m_out);
        for j in 0..m_out {
            // V · S[j, :] : (C, m_in·r)
            let vs = v.matmul(&s.narrow(0, j * r, r)?)?;
            let mut blocks = Vec::with_capacity(m_in);
            for k in 0..m_in {
                blocks.push(vs.narrow(1, k * r, r)?.matmul(u)?);
            }
            rows.push(Tensor::cat(&blocks, 1)?);
        }
        let dw = Tensor::cat(&rows, 0)?;
        if self.scale != 1.0 {
            dw * self.scale
        } else {
            Ok(dw)
        }
    }
}
