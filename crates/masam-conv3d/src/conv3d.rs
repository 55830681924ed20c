//! The `Conv3d` layer, its configuration and the `conv3d` builder.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::channels_last::conv3d_depth_channels_last;
use crate::error::{Conv3dError, Result};
use crate::geometry::{Conv3dGeometry, Conv3dPadding};
use crate::op::conv3d_op;

/// Configuration of a [`Conv3d`] layer (stride 1, dilation 1, groups 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv3dConfig {
    /// Zero padding; the reference adapter uses `Same`.
    pub padding: Conv3dPadding,
    /// Whether the layer has a bias (the reference adapter's conv does).
    pub bias: bool,
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Self {
            padding: Conv3dPadding::Same,
            bias: true,
        }
    }
}

impl Conv3dConfig {
    /// Sets the padding.
    pub fn with_padding(mut self, padding: Conv3dPadding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// A stride-1 3D convolution layer over (N, C, D, H, W), with an explicit backward.
///
/// # Shapes
/// - input: (N, C, D, H, W); weight (O, C, kd, kh, kw); bias (O,)
/// - output: (N, O, OD, OH, OW); (D, H, W) itself with `Same` padding
#[derive(Debug, Clone)]
pub struct Conv3d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv3dConfig,
}

impl Conv3d {
    /// Builds the layer from its tensors. `cfg.bias` is ignored: the layer has a bias iff `bias`
    /// is given.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv3dConfig) -> Result<Self> {
        let dims = weight.dims();
        if dims.len() != 5 {
            return Err(Conv3dError::Rank {
                what: "conv3d weight",
                expected: 5,
                got: dims.to_vec(),
            });
        }
        if dims.contains(&0) {
            return Err(Conv3dError::ZeroSize {
                what: "weight",
                shape: dims.to_vec(),
            });
        }
        if let Some(b) = &bias {
            if b.dims() != [dims[0]] {
                return Err(Conv3dError::BiasShape {
                    out_channels: dims[0],
                    got: b.dims().to_vec(),
                });
            }
        }
        let cfg = Conv3dConfig {
            bias: bias.is_some(),
            ..cfg
        };
        Ok(Self { weight, bias, cfg })
    }

    /// The weight, (O, C, kd, kh, kw).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, (O,), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Conv3dConfig {
        &self.cfg
    }

    /// The geometry this layer would use on an input of shape `x_dims`.
    pub fn geometry(&self, x_dims: &[usize]) -> Result<Conv3dGeometry> {
        Conv3dGeometry::new(x_dims, self.weight.dims(), self.cfg.padding)
    }

    /// Applies the convolution in the input's dtype (weight and bias are converted to it at
    /// use, so f32 master weights serve a bf16 or f16 forward pass). The CPU kernels are f32
    /// only: a bf16 or f16 input on the CPU is convolved in f32 and the result rounded back to
    /// the input's dtype; CUDA runs the half types natively.
    ///
    /// # Shapes
    /// - `x`: (N, C, D, H, W); returns (N, O, OD, OH, OW)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (xc, w, b) = self.operands(x)?;
        let y = conv3d_op(&xc, &w, b.as_ref(), self.cfg.padding)?;
        Ok(y.to_dtype(x.dtype())?)
    }

    /// The input, weight and bias in the dtype the kernels compute in: the input's, except f32
    /// for a half-precision input on the CPU (whose kernels are f32 only).
    fn operands(&self, x: &Tensor) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let dt = x.dtype();
        let cdt = if x.device().is_cpu() && matches!(dt, DType::BF16 | DType::F16) {
            DType::F32
        } else {
            dt
        };
        let w = self.weight.to_dtype(cdt)?;
        let b = self.bias.as_ref().map(|b| b.to_dtype(cdt)).transpose()?;
        Ok((x.to_dtype(cdt)?, w, b))
    }

    /// [`forward`](Self::forward) on channels-last activations: a depth-only `(kd, 1, 1)` kernel
    /// runs [`conv3d_depth_channels_last`] (on the CPU without any permute), other kernels
    /// permute around [`forward`](Self::forward). Dtypes as in `forward`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use masam_conv3d::{conv3d, Conv3dConfig};
    /// use masam_nn::SeededVarMap;
    /// # fn main() -> masam_conv3d::Result<()> {
    /// let params = SeededVarMap::new(0);
    /// let vb = params.var_builder(DType::F32, &Device::Cpu);
    /// let conv = conv3d(4, 6, [3, 1, 1], Conv3dConfig::default(), vb.pp("conv"))?;
    /// let x = Tensor::randn(0f32, 1., (2, 5, 3, 3, 4), &Device::Cpu)?; // (N, D, H, W, C)
    /// let y = conv.forward_channels_last(&x)?;
    /// let first = conv.forward(&x.permute((0, 4, 1, 2, 3))?)?.permute((0, 2, 3, 4, 1))?;
    /// let diff = (y - first)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(diff < 1e-5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Shapes
    /// - `x`: (N, D, H, W, C); returns (N, OD, OH, OW, O)
    pub fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        let depth_only = matches!(self.weight.dims(), [_, _, _, 1, 1]);
        if !depth_only || x.rank() != 5 {
            let y = self.forward(&x.permute((0, 4, 1, 2, 3))?)?;
            return Ok(y.permute((0, 2, 3, 4, 1))?.contiguous()?);
        }
        let (xc, w, b) = self.operands(x)?;
        let y = conv3d_depth_channels_last(&xc, &w, b.as_ref(), self.cfg.padding)?;
        Ok(y.to_dtype(x.dtype())?)
    }
}

impl candle_core::Module for Conv3d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(Conv3d::forward(self, x)?)
    }
}

/// Builds a [`Conv3d`] `in_channels → out_channels` with kernel (kd, kh, kw) from `vb`
/// (`weight`, and `bias` when `cfg.bias`), initialised like PyTorch's `nn.Conv3d`: weight and
/// bias uniform in `±1/√(C·kd·kh·kw)`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_conv3d::{conv3d, Conv3dConfig};
/// use masam_nn::SeededVarMap;
/// # fn main() -> masam_conv3d::Result<()> {
/// let params = SeededVarMap::new(0);
/// let vb = params.var_builder(DType::F32, &Device::Cpu);
/// let conv = conv3d(4, 6, [3, 1, 1], Conv3dConfig::default(), vb.pp("conv"))?;
/// let x = Tensor::zeros((2, 4, 5, 3, 3), DType::F32, &Device::Cpu)?;
/// assert_eq!(conv.forward(&x)?.dims(), &[2, 6, 5, 3, 3]);
/// # Ok(()) }
/// ```
pub fn conv3d(
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 3],
    cfg: Conv3dConfig,
    vb: VarBuilder,
) -> Result<Conv3d> {
    let fan_in = in_channels * kernel.iter().product::<usize>();
    if fan_in == 0 || out_channels == 0 {
        return Err(Conv3dError::ZeroSize {
            what: "conv3d layer",
            shape: vec![out_channels, in_channels, kernel[0], kernel[1], kernel[2]],
        });
    }
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let shape = (out_channels, in_channels, kernel[0], kernel[1], kernel[2]);
    let weight = vb.get_with_hints(shape, "weight", init)?;
    let bias = if cfg.bias {
        Some(vb.get_with_hints(out_channels, "bias", init)?)
    } else {
        None
    };
    Conv3d::new(weight, bias, cfg)
}
