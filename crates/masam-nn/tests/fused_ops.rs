//! The fused CPU kernels (`masam_nn::ops`) against the composite reference implementations:
//! forward values and the gradients of `x`, `weight` and `bias` through `sum(y · r)` for a random
//! `r`, over many shapes (rows of length 1, 3, 64, 769, batch dims, non-contiguous inputs, several
//! rayon tasks), large common offsets, the f64 fallback, and bad input.

use candle_core::{DType, Device, Result, Tensor, Var};
use masam_nn::ops::{self, composite};
use masam_nn::{softmax_last_dim, LayerNorm, LayerNorm2d};
use masam_testkit::assert_close;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Tolerance on `max|a − b| / (max|b| + 1e-6)` for values and gradients.
const TOL: f64 = 1e-5;

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], mean: f32, std: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let dist = Normal::new(mean, std).expect("valid normal");
    let v: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn abs_sum(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.abs()?.sum_all()?.to_scalar()
}

/// A view of `shape` that is not contiguous: a transposed tensor transposed back lazily.
fn non_contiguous(rng: &mut ChaCha8Rng, shape: &[usize]) -> Result<Tensor> {
    let r = shape.len();
    let mut swapped = shape.to_vec();
    swapped.swap(0, r - 1);
    let t = randn(rng, &swapped, 0.3, 1.5)?.transpose(0, r - 1)?;
    assert!(!t.is_contiguous());
    Ok(t)
}

/// Runs `f` on fresh variables holding `inputs` and returns the output and the gradient of
/// `sum(y · r)` with respect to each input (`None` when absent).
fn run(
    inputs: &[&Tensor],
    r: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t))
        .collect::<Result<_>>()?;
    // Feed the variable itself when `t` is a lazy (non-contiguous) view, so the op sees it.
    let ts: Vec<Tensor> = vars
        .iter()
        .zip(inputs)
        .map(|(v, t)| {
            if t.is_contiguous() {
                Ok(v.as_tensor().clone())
            } else {
                // Same values, same non-contiguous layout as `t`, still tracked through `v`.
                let rank = t.rank();
                v.as_tensor()
                    .transpose(0, rank - 1)?
                    .contiguous()?
                    .transpose(0, rank - 1)
            }
        })
        .collect::<Result<_>>()?;
    let y = f(&ts)?;
    let grads = (&y * r)?.sum_all()?.backward()?;
    let gs = vars.iter().map(|v| grads.get(v).cloned()).collect();
    Ok((y, gs))
}

fn softmax_case(rng: &mut ChaCha8Rng, x: &Tensor) -> Result<(f64, f64)> {
    let r = randn(rng, x.dims(), 0.0, 1.0)?;
    let (yf, gf) = run(&[x], &r, |t| ops::softmax_last_dim_fused(&t[0]))?;
    let (yc, gc) = run(&[x], &r, |t| composite::softmax_last_dim(&t[0]))?;
    let ef = assert_close("softmax forward", &yf, &yc, TOL);
    let (gf, gc) = (gf[0].as_ref().unwrap(), gc[0].as_ref().unwrap());
    let eg = assert_close("softmax dx", gf, gc, TOL);
    if x.dim(candle_core::D::Minus1)? > 1 {
        assert!(abs_sum(gf)? > 0.0, "softmax: zero gradient");
    }
    // The public function takes the fused path on CPU f32 and must give the same values.
    assert_close("softmax_last_dim", &softmax_last_dim(x)?, &yf, 0.0);
    Ok((ef, eg))
}

#[test]
fn softmax_matches_composite() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let shapes: &[&[usize]] = &[
        &[5, 1],
        &[4, 3],
        &[7],
        &[2, 3, 64],
        &[3, 769],
        &[2, 2, 5, 64],
        &[300, 64],
    ];
    let (mut wf, mut wg) = (0f64, 0f64);
    for s in shapes {
        let x = randn(&mut rng, s, 0.0, 3.0)?;
        let (ef, eg) = softmax_case(&mut rng, &x)?;
        wf = wf.max(ef);
        wg = wg.max(eg);
    }
    for s in [&[3usize, 5, 64][..], &[769, 4], &[3, 2]] {
        let x = non_contiguous(&mut rng, s)?;
        let (ef, eg) = softmax_case(&mut rng, &x)?;
        wf = wf.max(ef);
        wg = wg.max(eg);
    }
    println!("softmax: max rel error forward {wf:e}, gradient {wg:e}");
    Ok(())
}

/// Which normalisation a case exercises.
#[derive(Clone, Copy, Debug)]
enum Norm {
    LastDim,
    Channels,
}

fn layer_norm_case(rng: &mut ChaCha8Rng, x: &Tensor, norm: Norm) -> Result<(f64, f64)> {
    let axis = match norm {
        Norm::LastDim => x.rank() - 1,
        Norm::Channels => 1,
    };
    let c = x.dim(axis)?;
    let w = randn(rng, &[c], 1.0, 0.5)?;
    let b = randn(rng, &[c], 0.0, 0.5)?;
    let r = randn(rng, x.dims(), 0.0, 1.0)?;
    let eps = 1e-6;
    let (yf, gf) = run(&[x, &w, &b], &r, |t| match norm {
        Norm::LastDim => ops::layer_norm_fused(&t[0], &t[1], &t[2], eps),
        Norm::Channels => ops::layer_norm_2d_fused(&t[0], &t[1], &t[2], eps),
    })?;
    let (yc, gc) = run(&[x, &w, &b], &r, |t| match norm {
        Norm::LastDim => composite::layer_norm(&t[0], &t[1], &t[2], eps),
        Norm::Channels => composite::layer_norm_2d(&t[0], &t[1], &t[2], eps),
    })?;
    let what = format!("{norm:?} {:?}", x.dims());
    let ef = assert_close(&format!("{what} forward"), &yf, &yc, TOL);
    let mut eg = 0f64;
    for (i, name) in ["dx", "dweight", "dbias"].iter().enumerate() {
        let (a, e) = (gf[i].as_ref(), gc[i].as_ref());
        let (a, e) = (
            a.unwrap_or_else(|| panic!("{what}: fused {name} missing")),
            e.unwrap_or_else(|| panic!("{what}: composite {name} missing")),
        );
        eg = eg.max(assert_close(&format!("{what} {name}"), a, e, TOL));
        // With one channel x̂ ≡ 0, so only the bias gradient can be non-zero.
        if c > 1 || *name == "dbias" {
            assert!(abs_sum(a)? > 0.0, "{what}: {name} is zero");
        }
    }
    Ok((ef, eg))
}

#[test]
fn layer_norm_matches_composite() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let shapes: &[&[usize]] = &[
        &[5, 1],
        &[4, 3],
        &[3],
        &[2, 3, 64],
        &[3, 769],
        &[2, 2, 5, 96],
        &[700, 96],
    ];
    let (mut wf, mut wg) = (0f64, 0f64);
    for s in shapes {
        let x = randn(&mut rng, s, 0.5, 2.0)?;
        let (ef, eg) = layer_norm_case(&mut rng, &x, Norm::LastDim)?;
        wf = wf.max(ef);
        wg = wg.max(eg);
    }
    for s in [&[3usize, 5, 64][..], &[769, 4], &[2, 3]] {
        let x = non_contiguous(&mut rng, s)?;
        let (ef, eg) = layer_norm_case(&mut rng, &x, Norm::LastDim)?;
        wf = wf.max(ef);
        wg = wg.max(eg);
    }
    println!("layer_norm: max rel error forward {wf:e}, gradient {wg:e}");
    Ok(())
}

#[test]
fn layer_norm_2d_matches_composite() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let shapes: &[&[usize]] = &[
        &[2, 5, 3, 4],
        &[1, 1, 4, 4],
        &[2, 3, 1, 1],
        &[1, 16, 9, 9],
        &[2, 64, 17, 13],
        &[3, 16, 40, 40],
        &[1, 769, 2, 3],
    ];
    let (mut wf, mut wg) = (0f64, 0f64);
    for s in shapes {
        let x = randn(&mut rng, s, -0.5, 2.0)?;
        let (ef, eg) = layer_norm_case(&mut rng, &x, Norm::Channels)?;
        wf = wf.max(ef);
        wg = wg.max(eg);
    }
    // Channels-last memory seen as NCHW, as after a permute.
    let x = randn(&mut rng, &[2, 9, 7, 32], 0.0, 1.0)?.permute((0, 3, 1, 2))?;
    assert!(!x.is_contiguous());
    let (ef, eg) = layer_norm_case(&mut rng, &x.contiguous()?, Norm::Channels)?;
    wf = wf.max(ef);
    wg = wg.max(eg);
    let w = randn(&mut rng, &[32], 1.0, 0.5)?;
    let b = randn(&mut rng, &[32], 0.0, 0.5)?;
    assert_close(
        "LayerNorm2d on a permuted view",
        &ops::layer_norm_2d_fused(&x, &w, &b, 1e-6)?,
        &composite::layer_norm_2d(&x, &w, &b, 1e-6)?,
        TOL,
    );
    println!("layer_norm_2d: max rel error forward {wf:e}, gradient {wg:e}");
    Ok(())
}

/// Rows `1e4 + N(0, 1)`: the fused f32 kernels must match an f64 evaluation of the composite on
/// the same (f32-rounded) inputs.
#[test]
fn large_offsets_stay_accurate() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let to64 = |t: &Tensor| t.to_dtype(DType::F64);
    let cases: [(&[usize], Norm); 3] = [
        (&[6, 769], Norm::LastDim),
        (&[40, 96], Norm::LastDim),
        (&[2, 96, 5, 7], Norm::Channels),
    ];
    for (shape, norm) in cases {
        let axis = match norm {
            Norm::LastDim => shape.len() - 1,
            Norm::Channels => 1,
        };
        let x = randn(&mut rng, shape, 1e4, 1.0)?;
        let w = randn(&mut rng, &[shape[axis]], 1.0, 0.5)?;
        let b = randn(&mut rng, &[shape[axis]], 0.0, 0.5)?;
        let r = randn(&mut rng, shape, 0.0, 1.0)?;
        let f = |t: &[Tensor]| match norm {
            Norm::LastDim => LayerNorm::new(t[1].clone(), t[2].clone(), 1e-6).forward(&t[0]),
            Norm::Channels => LayerNorm2d::new(t[1].clone(), t[2].clone(), 1e-6).forward(&t[0]),
        };
        let (yf, gf) = run(&[&x, &w, &b], &r, f)?;
        let (y64, g64) = run(&[&to64(&x)?, &to64(&w)?, &to64(&b)?], &to64(&r)?, f)?;
        assert_eq!(y64.dtype(), DType::F64);
        let e = assert_close("offset forward", &yf, &y64, TOL);
        let mut eg = 0f64;
        for i in 0..3 {
            let (a, e) = (gf[i].as_ref().unwrap(), g64[i].as_ref().unwrap());
            eg = eg.max(assert_close("offset gradient", a, e, TOL));
        }
        println!("{norm:?} {shape:?} at 1e4: forward {e:e}, gradients {eg:e}");
    }
    let x = randn(&mut rng, &[5, 300], 1e4, 3.0)?;
    let r = randn(&mut rng, &[5, 300], 0.0, 1.0)?;
    let (yf, gf) = run(&[&x], &r, |t| softmax_last_dim(&t[0]))?;
    let (y64, g64) = run(&[&to64(&x)?], &to64(&r)?, |t| softmax_last_dim(&t[0]))?;
    assert_close("softmax offset forward", &yf, &y64, TOL);
    assert_close(
        "softmax offset gradient",
        gf[0].as_ref().unwrap(),
        g64[0].as_ref().unwrap(),
        TOL,
    );
    Ok(())
}

/// The public layers dispatch on dtype: f64 goes through the composite and agrees with f32.
#[test]
fn layers_fall_back_for_f64() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = randn(&mut rng, &[2, 8, 3, 5], 0.0, 1.0)?;
    let w = randn(&mut rng, &[8], 1.0, 0.5)?;
    let b = randn(&mut rng, &[8], 0.0, 0.5)?;
    let ln2d = LayerNorm2d::new(w.clone(), b.clone(), 1e-6);
    let ln2d64 = LayerNorm2d::new(w.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?, 1e-6);
    let y64 = ln2d64.forward(&x.to_dtype(DType::F64)?)?;
    assert_eq!(y64.dtype(), DType::F64);
    assert_close("LayerNorm2d f32 vs f64", &ln2d.forward(&x)?, &y64, TOL);
    let x = x.permute((0, 2, 3, 1))?;
    let ln = LayerNorm::new(w.clone(), b.clone(), 1e-6);
    let ln64 = LayerNorm::new(w.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?, 1e-6);
    let y64 = ln64.forward(&x.to_dtype(DType::F64)?)?;
    assert_close("LayerNorm f32 vs f64", &ln.forward(&x)?, &y64, TOL);
    Ok(())
}

/// A weight and bias that are plain tensors (frozen) get no gradient entry; x still does.
#[test]
fn frozen_affine_gets_no_gradient() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = Var::from_tensor(&randn(&mut rng, &[4, 16], 0.0, 1.0)?)?;
    let w = randn(&mut rng, &[16], 1.0, 0.5)?;
    let b = randn(&mut rng, &[16], 0.0, 0.5)?;
    let y = LayerNorm::new(w.clone(), b.clone(), 1e-6).forward(&x)?;
    let grads = (&y * &randn(&mut rng, &[4, 16], 0.0, 1.0)?)?
        .sum_all()?
        .backward()?;
    assert!(grads.get(&x).is_some());
    assert!(grads.get(&w).is_none() && grads.get(&b).is_none());
    Ok(())
}

#[test]
fn bad_input_is_an_error() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 4), DType::F32, &dev)?;
    let w3 = Tensor::ones(3, DType::F32, &dev)?;
    let w4 = Tensor::ones(4, DType::F32, &dev)?;
    assert!(ops::layer_norm_fused(&x, &w3, &w3, 1e-6).is_err());
    assert!(ops::layer_norm_fused(&x, &w4, &w3, 1e-6).is_err());
    assert!(ops::layer_norm_2d_fused(&x.flatten_all()?, &w4, &w4, 1e-6).is_err());
    assert!(LayerNorm::new(w3.clone(), w3.clone(), 1e-6)
        .forward(&x)
        .is_err());
    let x64 = x.to_dtype(DType::F64)?;
    assert!(ops::softmax_last_dim_fused(&x64).is_err());
    assert!(ops::layer_norm_fused(&x64, &w4, &w4, 1e-6).is_err());
    assert!(ops::softmax_last_dim_fused(&Tensor::new(1f32, &dev)?).is_err());
    assert!(!ops::fusable(&[&x64]) && ops::fusable(&[&x, &w4]));
    // Empty tensors stay empty (the composite's reductions would fail on them).
    let e = Tensor::zeros((0, 4), DType::F32, &dev)?;
    assert_eq!(softmax_last_dim(&e)?.dims(), &[0, 4]);
    let ln = LayerNorm::new(w4.clone(), w4.clone(), 1e-6);
    assert_eq!(ln.forward(&e)?.dims(), &[0, 4]);
    let e2d = Tensor::zeros((0, 4, 3, 3), DType::F32, &dev)?;
    let ln2d = LayerNorm2d::new(w4.clone(), w4.clone(), 1e-6);
    assert_eq!(ln2d.forward(&e2d)?.dims(), &[0, 4, 3, 3]);
    Ok(())
}
