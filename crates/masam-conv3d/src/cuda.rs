//! CUDA kernels (f32, f16, bf16; f32 accumulation), compiled at run time with NVRTC from
//! `kernels/conv3d.cu` and launched on candle's stream.
//!
//! - forward: one thread per output element (the input gradient reuses it on the transposed
//!   geometry with the flipped weight, see [`crate::op`]);
//! - weight gradient: one block per weight element, reducing over batch and space.
//!
//! NVRTC keeps the build free of nvcc for our own kernels (candle-kernels still needs it) and
//! needs only `libnvrtc` at run time, which candle's `cuda` feature links anyway.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};

use masam_nn::error::into_candle;

use crate::error::Conv3dError;
use crate::geometry::Conv3dGeometry;

const MODULE: &str = "masam_conv3d";
const SRC: &str = include_str!("../kernels/conv3d.cu");
const THREADS: u32 = 256;
const MAX_BLOCKS: u64 = 1 << 20;

/// The PTX of `kernels/conv3d.cu`, compiled once per process.
///
/// # Errors
/// [`Conv3dError::Nvrtc`] (inside the candle error, see [`masam_nn::error`]) with NVRTC's log.
pub fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, nvrtc::CompileError>> = OnceLock::new();
    PTX.get_or_init(|| nvrtc::compile_ptx(SRC).map(|p| p.to_src()))
        .as_deref()
        .map_err(|e| into_candle(Conv3dError::Nvrtc { source: e.clone() }))
}

fn view<'a, T: CudaDType + DeviceRepr>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("conv3d: CUDA operands must be contiguous".into())
    })?;
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// The 16 integer launch arguments after the pointers, checked to fit `i32`.
fn int_args(g: &Conv3dGeometry) -> Result<[i32; 15]> {
    let v: [i64; 15] = [
        g.batch as i64,
        g.in_channels as i64,
        g.out_channels as i64,
        g.input[0] as i64,
        g.input[1] as i64,
        g.input[2] as i64,
        g.kernel[0] as i64,
        g.kernel[1] as i64,
        g.kernel[2] as i64,
        g.output[0] as i64,
        g.output[1] as i64,
        g.output[2] as i64,
        g.pad_front[0] as i64,
        g.pad_front[1] as i64,
        g.pad_front[2] as i64,
    ];
    let mut out = [0i32; 15];
    for (o, x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x)
            .map_err(|source| into_candle(Conv3dError::SizeOverflow { value: x, source }))?;
    }
    Ok(out)
}

fn blocks(work: u64) -> u32 {
    work.clamp(1, MAX_BLOCKS) as u32
}

fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        other => candle_core::bail!("conv3d: dtype {other:?} is not supported on CUDA"),
    }
}

fn launch_forward<T: CudaDType + DeviceRepr>(
    g: &Conv3dGeometry,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: Option<(&CudaStorage, &Layout)>,
) -> Result<CudaStorage> {
    let dev = x.0.device.clone();
    let name = format!("conv3d_fwd_{}", suffix(x.0.dtype())?);
    let xv = view::<T>(x.0, x.1)?;
    let wv = view::<T>(w.0, w.1)?;
    // without a bias the kernel never reads this pointer; pass the weight as a placeholder
    let bv = match b {
        Some((s, l)) => view::<T>(s, l)?,
        None => view::<T>(w.0, w.1)?,
    };
    let has_bias: i32 = b.is_some().into();
    let ints = int_args(g)?;
    let total = (g.batch * g.out_channels) as u64 * g.output.iter().product::<usize>() as u64;
    let mut y = unsafe { dev.alloc::<T>(total as usize)? };
    let func = dev.get_or_load_custom_func(&name, MODULE, ptx()?)?;
    let mut builder = func.builder();
    builder.arg(&xv);
    builder.arg(&wv);
    builder.arg(&bv);
    builder.arg(&mut y);
    builder.arg(&has_bias);
    for v in &ints {
        builder.arg(v);
    }
    let cfg = LaunchConfig {
        grid_dim: (blocks(total.div_ceil(THREADS as u64)), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument list matches `conv3d_fwd_*` in kernels/conv3d.cu; every index the kernel
    // forms is bounded by the geometry, which was validated against the operand shapes.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

fn launch_weight_grad<T: CudaDType + DeviceRepr>(
    g: &Conv3dGeometry,
    x: (&CudaStorage, &Layout),
    gy: (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let dev = x.0.device.clone();
    let name = format!("conv3d_bwd_w_{}", suffix(x.0.dtype())?);
    let xv = view::<T>(x.0, x.1)?;
    let gv = view::<T>(gy.0, gy.1)?;
    let ints = int_args(g)?;
    let nw = (g.out_channels * g.in_channels) as u64 * g.kernel.iter().product::<usize>() as u64;
    let mut gw = unsafe { dev.alloc::<T>(nw as usize)? };
    let func = dev.get_or_load_custom_func(&name, MODULE, ptx()?)?;
    let mut builder = func.builder();
    builder.arg(&xv);
    builder.arg(&gv);
    builder.arg(&mut gw);
    for v in &ints {
        builder.arg(v);
    }
    let cfg = LaunchConfig {
        grid_dim: (blocks(nw), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as in `launch_forward`; the kernel's shared buffer holds exactly THREADS floats.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(gw, dev))
}

/// Forward convolution on CUDA: `y = conv3d(x, w) + b`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W); `w`: (O, C, kd, kh, kw); `b`: (O,); returns (N, O, OD, OH, OW)
pub fn forward(
    g: &Conv3dGeometry,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: Option<(&CudaStorage, &Layout)>,
) -> Result<CudaStorage> {
    match x.0.dtype() {
        DType::F32 => launch_forward::<f32>(g, x, w, b),
        DType::F16 => launch_forward::<half::f16>(g, x, w, b),
        DType::BF16 => launch_forward::<half::bf16>(g, x, w, b),
        other => candle_core::bail!("conv3d: dtype {other:?} is not supported on CUDA"),
    }
}

/// Weight gradient on CUDA.
///
/// # Shapes
/// - `x`: (N, C, D, H, W); `gy`: (N, O, OD, OH, OW); returns (O, C, kd, kh, kw)
pub fn weight_grad(
    g: &Conv3dGeometry,
    x: (&CudaStorage, &Layout),
    gy: (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    match x.0.dtype() {
        DType::F32 => launch_weight_grad::<f32>(g, x, gy),
        DType::F16 => launch_weight_grad::<half::f16>(g, x, gy),
        DType::BF16 => launch_weight_grad::<half::bf16>(g, x, gy),
        other => candle_core::bail!("conv3d: dtype {other:?} is not supported on CUDA"),
    }
}
