//! MA-SAM's 3D adapter: `x + up(act(conv3d(down(norm(x)))))`, mixing information across the
//! adjacent slices of each volume.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{layer_norm, linear_no_bias, LayerNorm, Linear};
use serde::{Deserialize, Serialize};

use crate::conv3d::{conv3d, Conv3d, Conv3dConfig};
use crate::error::{Conv3dError, Result};
use crate::geometry::Conv3dPadding;

/// The adapter's activation between the Conv3d and the up-projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterActivation {
    /// Exact GELU (erf), PyTorch's `nn.GELU()`: the reference.
    #[default]
    GeluErf,
    /// GELU, tanh approximation.
    GeluTanh,
    /// ReLU.
    Relu,
}

impl AdapterActivation {
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => masam_nn::gelu_erf(x),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

/// Configuration of an [`Adapter3d`]. `Default` is the reference (ViT-H width 1280, adapter
/// width 384, kernel (3, 1, 1), `'same'` padding, exact GELU, LayerNorm eps 1e-6, up-projection
/// not zeroed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adapter3dConfig {
    /// C, the token width of the encoder the adapter sits in.
    pub dim: usize,
    /// A, the adapter width (reference 384 for every ViT size).
    pub channels: usize,
    /// Conv3d kernel (kd, kh, kw), reference (3, 1, 1).
    pub kernel: [usize; 3],
    /// Conv3d padding, reference `'same'`.
    pub padding: Conv3dPadding,
    /// Activation after the Conv3d, reference exact GELU.
    pub activation: AdapterActivation,
    /// LayerNorm epsilon, reference 1e-6.
    pub eps: f64,
    /// Zero-initialise the up-projection, so that a fresh adapter is the identity (the
    /// reference does not).
    pub zero_init_up: bool,
}

impl Default for Adapter3dConfig {
    fn default() -> Self {
        Self::vit_h()
    }
}

impl Adapter3dConfig {
    /// Reference adapter for a ViT of width `dim`.
    pub fn for_dim(dim: usize) -> Self {
        Self {
            dim,
            channels: 384,
            kernel: [3, 1, 1],
            padding: Conv3dPadding::Same,
            activation: AdapterActivation::GeluErf,
            eps: 1e-6,
            zero_init_up: false,
        }
    }

    /// ViT-B (C = 768).
    pub fn vit_b() -> Self {
        Self::for_dim(768)
    }

    /// ViT-L (C = 1024).
    pub fn vit_l() -> Self {
        Self::for_dim(1024)
    }

    /// ViT-H (C = 1280), the reference's default encoder.
    pub fn vit_h() -> Self {
        Self::for_dim(1280)
    }

    /// The tiny test model of the reference fixtures (C = 64, A = 16).
    pub fn tiny() -> Self {
        Self::for_dim(64).with_channels(16)
    }

    /// Sets the token width C.
    pub fn with_dim(mut self, dim: usize) -> Self {
        self.dim = dim;
        self
    }

    /// Sets the adapter width A.
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels;
        self
    }

    /// Sets the Conv3d kernel.
    pub fn with_kernel(mut self, kernel: [usize; 3]) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the Conv3d padding.
    pub fn with_padding(mut self, padding: Conv3dPadding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: AdapterActivation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets whether the up-projection starts at zero.
    pub fn with_zero_init_up(mut self, zero: bool) -> Self {
        self.zero_init_up = zero;
        self
    }

    /// Checks the values: non-zero widths and kernel, a positive finite eps.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.channels == 0 || self.kernel.contains(&0) {
            return Err(Conv3dError::Config(format!(
                "adapter dim {}, channels {} and kernel {:?} must be non-zero",
                self.dim, self.channels, self.kernel
            )));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Conv3dError::Config(format!(
                "adapter LayerNorm eps must be positive, got {}",
                self.eps
            )));
        }
        Ok(())
    }
}

/// Names of the adapter's parameter groups under its `VarBuilder`.
///
/// `Default` gives `norm`, `linear_down`, `conv`, `linear_up`; [`AdapterNames::reference`] gives
/// the reference's `adapter_norm`, `adapter_linear_down`, … (with `_2` for the second adapter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterNames {
    /// The LayerNorm (`weight`, `bias`).
    pub norm: String,
    /// The down-projection (`weight`).
    pub linear_down: String,
    /// The Conv3d (`weight`, `bias`).
    pub conv: String,
    /// The up-projection (`weight`).
    pub linear_up: String,
}

impl Default for AdapterNames {
    fn default() -> Self {
        Self {
            norm: "norm".into(),
            linear_down: "linear_down".into(),
            conv: "conv".into(),
            linear_up: "linear_up".into(),
        }
    }
}

impl AdapterNames {
    /// The reference's names inside a `Block`: `adapter_norm{suffix}`,
    /// `adapter_linear_down{suffix}`, `adapter_conv{suffix}`, `adapter_linear_up{suffix}`, with
    /// `suffix` `""` for the adapter before attention and `"_2"` for the one after it.
    ///
    /// ```
    /// let n = masam_conv3d::AdapterNames::reference("_2");
    /// assert_eq!(n.conv, "adapter_conv_2");
    /// ```
    pub fn reference(suffix: &str) -> Self {
        Self {
            norm: format!("adapter_norm{suffix}"),
            linear_down: format!("adapter_linear_down{suffix}"),
            conv: format!("adapter_conv{suffix}"),
            linear_up: format!("adapter_linear_up{suffix}"),
        }
    }
}

/// The 3D adapter: LayerNorm → Linear (C → A, no bias) → Conv3d over (A, D, H, W) → activation →
/// Linear (A → C, no bias), plus the residual.
///
/// # Shapes
/// - `x`: (B·D, H, W, C) tokens, volume-major: the D slices of one volume are consecutive
/// - returns (B·D, H, W, C)
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_conv3d::{Adapter3d, Adapter3dConfig};
/// use masam_nn::SeededVarMap;
/// # fn main() -> masam_conv3d::Result<()> {
/// let params = SeededVarMap::new(0);
/// let vb = params.var_builder(DType::F32, &Device::Cpu);
/// let adapter = Adapter3d::new(Adapter3dConfig::tiny(), vb.pp("adapter"))?;
/// let x = Tensor::randn(0f32, 1., (2 * 5, 4, 4, 64), &Device::Cpu)?; // B = 2 volumes of D = 5
/// assert_eq!(adapter.forward(&x, 5)?.dims(), &[10, 4, 4, 64]);
/// assert_eq!(params.vars().all_vars().len(), 6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Adapter3d {
    norm: LayerNorm,
    linear_down: Linear,
    conv: Conv3d,
    linear_up: Linear,
    cfg: Adapter3dConfig,
}

impl Adapter3d {
    /// Builds the adapter with the default [`AdapterNames`].
    pub fn new(cfg: Adapter3dConfig, vb: VarBuilder) -> Result<Self> {
        Self::new_with_names(cfg, &AdapterNames::default(), vb)
    }

    /// Builds the adapter, naming its parameters with `names` under `vb`. Fresh parameters get
    /// PyTorch's default inits: LayerNorm 1 / 0, linears `U(±1/√fan_in)`, Conv3d weight and bias
    /// `U(±1/√(A·kd·kh·kw))`, and the up-projection zero if `cfg.zero_init_up`.
    pub fn new_with_names(
        cfg: Adapter3dConfig,
        names: &AdapterNames,
        vb: VarBuilder,
    ) -> Result<Self> {
        cfg.validate()?;
        let norm = layer_norm(cfg.dim, cfg.eps, vb.pp(&names.norm))?;
        let linear_down = linear_no_bias(cfg.dim, cfg.channels, vb.pp(&names.linear_down))?;
        let conv_cfg = Conv3dConfig::default()
            .with_padding(cfg.padding)
            .with_bias(true);
        let conv = conv3d(
            cfg.channels,
            cfg.channels,
            cfg.kernel,
            conv_cfg,
            vb.pp(&names.conv),
        )?;
        let linear_up = if cfg.zero_init_up {
            let w = vb.pp(&names.linear_up).get_with_hints(
                (cfg.dim, cfg.channels),
                "weight",
                Init::Const(0.0),
            )?;
            Linear::new(w, None)
        } else {
            linear_no_bias(cfg.channels, cfg.dim, vb.pp(&names.linear_up))?
        };
        Ok(Self {
            norm,
            linear_down,
            conv,
            linear_up,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Adapter3dConfig {
        &self.cfg
    }

    /// The LayerNorm.
    pub fn norm(&self) -> &LayerNorm {
        &self.norm
    }

    /// The down-projection, weight (A, C).
    pub fn linear_down(&self) -> &Linear {
        &self.linear_down
    }

    /// The Conv3d, weight (A, A, kd, kh, kw).
    pub fn conv(&self) -> &Conv3d {
        &self.conv
    }

    /// The up-projection, weight (C, A).
    pub fn linear_up(&self) -> &Linear {
        &self.linear_up
    }

    /// The adapter's branch without the residual: `up(act(conv3d(down(norm(x)))))`.
    ///
    /// # Shapes
    /// - `x`: (B·D, H, W, C) with `slices` = D; returns (B·D, H, W, C)
    pub fn delta(&self, x: &Tensor, slices: usize) -> Result<Tensor> {
        self.delta_in(x, slices, x.dtype())
    }

    /// [`delta`](Self::delta) in mixed precision: the LayerNorm reads `x` in its own dtype (the
    /// residual stream, f32), everything after it computes in `compute` (bf16, f16), and the
    /// result is in `compute`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::VarBuilder;
    /// use masam_conv3d::{Adapter3d, Adapter3dConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    /// let adapter = Adapter3d::new(Adapter3dConfig::for_dim(8), vb)?;
    /// let x = Tensor::rand(0f32, 1., (2, 3, 3, 8), &Device::Cpu)?; // 1 volume of 2 slices
    /// let d = adapter.delta_in(&x, 2, DType::BF16)?;
    /// assert_eq!(d.dtype(), DType::BF16);
    /// # Ok(()) }
    /// ```
    pub fn delta_in(&self, x: &Tensor, slices: usize, compute: DType) -> Result<Tensor> {
        let (bd, h, w, c) = match *x.dims() {
            [bd, h, w, c] => (bd, h, w, c),
            _ => {
                return Err(Conv3dError::Rank {
                    what: "adapter input (B·D, H, W, C)",
                    expected: 4,
                    got: x.dims().to_vec(),
                })
            }
        };
        if c != self.cfg.dim {
            return Err(Conv3dError::ChannelMismatch {
                input: c,
                weight: self.cfg.dim,
            });
        }
        if slices == 0 || bd % slices != 0 {
            return Err(Conv3dError::SlicesNotDivisor { batch: bd, slices });
        }
        let (b, a) = (bd / slices, self.cfg.channels);
        let y = self
            .linear_down
            .forward(&self.norm.forward(x)?.to_dtype(compute)?)?;
        // the convolution over the slices runs on the channels-last tokens (no permutes)
        let y = self
            .conv
            .forward_channels_last(&y.reshape((b, slices, h, w, a))?)?
            .reshape((bd, h, w, a))?;
        let y = self.cfg.activation.apply(&y)?;
        Ok(self.linear_up.forward(&y)?)
    }

    /// `x + delta(x)`.
    ///
    /// # Shapes
    /// - `x`: (B·D, H, W, C), the D = `slices` slices of each volume consecutive; returns the same
    pub fn forward(&self, x: &Tensor, slices: usize) -> Result<Tensor> {
        Ok((x + self.delta(x, slices)?)?)
    }
}

/// Builds an [`Adapter3d`] with the default names (same as [`Adapter3d::new`]).
pub fn adapter3d(cfg: Adapter3dConfig, vb: VarBuilder) -> Result<Adapter3d> {
    Adapter3d::new(cfg, vb)
}
