//! FacT-TT and FacT-TK against hand-written formulas (naive f64 loops): forward and the
//! gradients of U, V and the cores, with scale, on fused-qkv column ranges and on fc1 / fc2.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use masam_fact::{Fact, FactConfig, FactError, FactKind, FactLinear, Projection};
use masam_nn::{FrozenLinear, SeededVarMap};

const C: usize = 6;
const R: usize = 3;
const TOL_FWD: f64 = 1e-5;
const TOL_GRAD: f64 = 1e-5;

/// A FacT with every factor random and non-zero (V is zero at init, which would hide the
/// gradients of U and the cores).
fn fact(cfg: &FactConfig, depth: usize, seed: u64) -> (SeededVarMap, Fact) {
    let params = SeededVarMap::new(seed);
    params
        .insert("FacTv.weight", &randn(seed + 100, &[C, cfg.rank]))
        .unwrap();
    let f = Fact::new(cfg, C, depth, params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (params, f)
}

fn grad(grads: &candle_core::backprop::GradStore, t: &Tensor) -> Mat {
    Mat::from_tensor(grads.get(t).expect("missing gradient"))
}

#[test]
fn tt_fused_qkv_forward_and_gradients() {
    let cfg = FactConfig::tiny().with_rank(R).with_scale(0.5);
    let (_params, fact) = fact(&cfg, 2, 1);
    let block = 1;
    let w = randn(2, &[3 * C, C]);
    let b = randn(3, &[3 * C]);
    let layer = FactLinear::new(
        FrozenLinear::new(w.clone(), Some(b.clone())),
        fact.qkv(block).unwrap().unwrap(),
    )
    .unwrap();
    let x = Var::from_tensor(&randn(4, &[2, 5, C])).unwrap();
    let g = randn(5, &[2, 5, 3 * C]);
    let out = layer.forward(x.as_tensor(), false).unwrap();
    assert_eq!(out.dims(), &[2, 5, 3 * C]);
    let grads = (&out * &g).unwrap().sum_all().unwrap().backward().unwrap();

    let (xm, gm) = (Mat::from_tensor(&x), Mat::from_tensor(&g));
    let u = Mat::from_tensor(fact.factors().u());
    let v = Mat::from_tensor(fact.factors().v());
    let sq_t = fact.tt_core(block, Projection::Q).unwrap();
    let sv_t = fact.tt_core(block, Projection::V).unwrap();
    let (sq, sv) = (Mat::from_tensor(sq_t), Mat::from_tensor(sv_t));
    let q = increment(
        &xm,
        &NaiveParams::new(&u, &v, &sq, 1, 1, 0.5),
        &cols(&gm, 0, C),
    );
    let vv = increment(
        &xm,
        &NaiveParams::new(&u, &v, &sv, 1, 1, 0.5),
        &cols(&gm, 2 * C, C),
    );

    // Forward: qkv + s·[V Σq U x | 0 | V Σv U x].
    let mut expect = linear(&xm, &Mat::from_tensor(&w), Some(&Mat::from_tensor(&b)));
    for n in 0..expect.rows {
        for c in 0..C {
            expect.add(n, c, q.out.at(n, c));
            expect.add(n, 2 * C + c, vv.out.at(n, c));
        }
    }
    let e = rel_err_t(&out, &expect);
    assert!(e < TOL_FWD, "forward rel err {e}");

    // Gradients: U and V collect both parts; each core its own.
    let mut du = q.du.clone();
    let mut dv = q.dv.clone();
    for i in 0..du.data.len() {
        du.data[i] += vv.du.data[i];
        dv.data[i] += vv.dv.data[i];
    }
    let checks = [
        ("U", rel_err(&grad(&grads, fact.factors().u()), &du)),
        ("V", rel_err(&grad(&grads, fact.factors().v()), &dv)),
        ("q core", rel_err(&grad(&grads, sq_t), &q.ds)),
        ("v core", rel_err(&grad(&grads, sv_t), &vv.ds)),
    ];
    for (name, e) in checks {
        assert!(e < TOL_GRAD, "{name} grad rel err {e}");
    }
    // Input gradient: through the frozen weight (g·W) plus both increments.
    let mut dx = matmul(&gm, &Mat::from_tensor(&w));
    for i in 0..dx.data.len() {
        dx.data[i] += q.dx.data[i] + vv.dx.data[i];
    }
    let e = rel_err(&grad(&grads, x.as_tensor()), &dx);
    assert!(e < TOL_GRAD, "x grad rel err {e}");
    // No gradient for the frozen weight or bias.
    assert!(grads.get(&w).is_none() && grads.get(&b).is_none());
    // k's columns are the frozen output, untouched.
    let k_cols = out.narrow(2, C, C).unwrap();
    let y = FrozenLinear::new(w, Some(b))
        .forward(x.as_tensor())
        .unwrap()
        .narrow(2, C, C)
        .unwrap();
    let d: f32 = (k_cols - y)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn tt_every_projection_matches_formula() {
    // PETL-ViT layout: q, k, v, proj (r×r), fc1 (4r×r, output in 4 chunks), fc2 (r×4r, input
    // in 4 chunks).
    let cfg = FactConfig::petl_vit_tt().with_rank(R).with_scale(0.7);
    let (_params, fact) = fact(&cfg, 2, 11);
    for (i, p) in Projection::ALL.into_iter().enumerate() {
        let inc = fact.increment(1, p).unwrap();
        let (m_in, m_out) = p.chunks(4);
        let x = Var::from_tensor(&randn(20 + i as u64, &[3, 2, m_in * C])).unwrap();
        let g = randn(40 + i as u64, &[3, 2, m_out * C]);
        let out = inc.delta(x.as_tensor(), false).unwrap();
        let grads = (&out * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let core = fact.tt_core(1, p).unwrap();
        assert_eq!(core.dims(), &[m_out * R, m_in * R], "{p:?} core shape");
        let (u, v, s) = (
            Mat::from_tensor(fact.factors().u()),
            Mat::from_tensor(fact.factors().v()),
            Mat::from_tensor(core),
        );
        let nv = increment(
            &Mat::from_tensor(&x),
            &NaiveParams::new(&u, &v, &s, m_in, m_out, 0.7),
            &Mat::from_tensor(&g),
        );
        let checks = [
            ("out", rel_err_t(&out, &nv.out)),
            ("U", rel_err(&grad(&grads, fact.factors().u()), &nv.du)),
            ("V", rel_err(&grad(&grads, fact.factors().v()), &nv.dv)),
            ("core", rel_err(&grad(&grads, core), &nv.ds)),
            ("x", rel_err(&grad(&grads, x.as_tensor()), &nv.dx)),
        ];
        for (name, e) in checks {
            assert!(e < TOL_GRAD, "{p:?} {name} rel err {e}");
        }
        // ΔW agrees with the applied increment: delta(x) = x · (s·ΔW)ᵀ.
        let dw = inc.delta_weight().unwrap();
        assert_eq!(dw.dims(), &[m_out * C, m_in * C]);
        let via_w = linear(&Mat::from_tensor(&x), &Mat::from_tensor(&dw), None);
        let e = rel_err(&via_w, &nv.out);
        assert!(e < TOL_FWD, "{p:?} ΔW rel err {e}");
    }
}

/// The TK core of `p` in linear-weight layout, from `FacTc`, `FacTp` by index formulas:
/// `T[a,b,k] = Σ_c Cc[a,b,c] P[c, col+k]`; q/k/v/proj: `S[b][a] = T[a][b][0]`;
/// fc1: `S[b·m+j][a] = T[a][b][j]`; fc2: `S[a][b·m+j] = T[a][b][j]`.
fn tk_core(cc: &[f64], p: &Mat, col: usize, proj: Projection, m: usize) -> (Mat, Vec<f64>) {
    let n = proj.tk_columns(m);
    let mut t = vec![0.0; R * R * n];
    for a in 0..R {
        for b in 0..R {
            for k in 0..n {
                t[(a * R + b) * n + k] = (0..R)
                    .map(|c| cc[(a * R + b) * R + c] * p.at(c, col + k))
                    .sum();
            }
        }
    }
    let s = match proj {
        Projection::Fc1 => {
            let mut s = Mat::zeros(m * R, R);
            for a in 0..R {
                for b in 0..R {
                    for j in 0..m {
                        s.data[(b * m + j) * R + a] = t[(a * R + b) * n + j];
                    }
                }
            }
            s
        }
        Projection::Fc2 => {
            let mut s = Mat::zeros(R, m * R);
            for a in 0..R {
                for b in 0..R {
                    for j in 0..m {
                        s.data[a * m * R + b * m + j] = t[(a * R + b) * n + j];
                    }
                }
            }
            s
        }
        _ => {
            let mut s = Mat::zeros(R, R);
            for a in 0..R {
                for b in 0..R {
                    s.data[b * R + a] = t[(a * R + b) * n];
                }
            }
            s
        }
    };
    (s, t)
}

#[test]
fn tk_every_projection_matches_formula() {
    let m = 4;
    let cfg = FactConfig::petl_vit_tk().with_rank(R).with_scale(0.1);
    assert_eq!(cfg.kind, FactKind::Tk);
    let (params, fact) = fact(&cfg, 2, 21);
    // U, V, FacTc, FacTp.
    assert_eq!(params.vars().all_vars().len(), 4);
    let tk = fact.tk_cores().unwrap();
    assert_eq!(tk.core_tensor().dims(), &[R, R, R]);
    assert_eq!(tk.mixing().dims(), &[R, 2 * 12]);
    let cc = Mat::from_tensor(tk.core_tensor()).data;
    let pm = Mat::from_tensor(tk.mixing());
    // Block 1's columns: q 12, k 13, v 14, proj 15, fc1 16..20, fc2 20..24.
    let cols_expected = [12, 13, 14, 15, 16, 20];
    for (i, p) in Projection::ALL.into_iter().enumerate() {
        let col = cols_expected[i];
        assert_eq!(tk.column(1, p), Some(col));
        let inc = fact.increment(1, p).unwrap();
        let (m_in, m_out) = p.chunks(m);
        let n = p.tk_columns(m);
        let x = Var::from_tensor(&randn(60 + i as u64, &[4, m_in * C])).unwrap();
        let g = randn(80 + i as u64, &[4, m_out * C]);
        let out = inc.delta(x.as_tensor(), false).unwrap();
        let grads = (&out * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let (s, _t) = tk_core(&cc, &pm, col, p, m);
        let e = rel_err_t(&inc.core().unwrap(), &s);
        assert!(e < 1e-6, "{p:?} core rel err {e}");
        let (u, v) = (
            Mat::from_tensor(fact.factors().u()),
            Mat::from_tensor(fact.factors().v()),
        );
        let nv = increment(
            &Mat::from_tensor(&x),
            &NaiveParams::new(&u, &v, &s, m_in, m_out, 0.1),
            &Mat::from_tensor(&g),
        );
        // dS → dT (inverse of the layout above) → dFacTc, dFacTp.
        let mut dt = vec![0.0; R * R * n];
        for a in 0..R {
            for b in 0..R {
                for j in 0..n {
                    dt[(a * R + b) * n + j] = match p {
                        Projection::Fc1 => nv.ds.at(b * m + j, a),
                        Projection::Fc2 => nv.ds.at(a, b * m + j),
                        _ => nv.ds.at(b, a),
                    };
                }
            }
        }
        let mut dc = Mat::zeros(R * R, R);
        let mut dp = Mat::zeros(R, pm.cols);
        for a in 0..R {
            for b in 0..R {
                for c in 0..R {
                    for k in 0..n {
                        let d = dt[(a * R + b) * n + k];
                        dc.add(a * R + b, c, d * pm.at(c, col + k));
                        dp.add(c, col + k, d * cc[(a * R + b) * R + c]);
                    }
                }
            }
        }
        let checks = [
            ("out", rel_err_t(&out, &nv.out)),
            ("U", rel_err(&grad(&grads, fact.factors().u()), &nv.du)),
            ("V", rel_err(&grad(&grads, fact.factors().v()), &nv.dv)),
            ("FacTc", rel_err(&grad(&grads, tk.core_tensor()), &dc)),
            ("FacTp", rel_err(&grad(&grads, tk.mixing()), &dp)),
        ];
        for (name, e) in checks {
            assert!(e < TOL_GRAD, "TK {p:?} {name} rel err {e}");
        }
    }
}

#[test]
fn dropout_only_in_training() {
    let cfg = FactConfig::tiny().with_rank(R).with_dropout(0.5);
    let (_params, fact) = fact(&cfg, 1, 31);
    let inc = fact.increment(0, Projection::Q).unwrap();
    let x = randn(32, &[64, C]);
    let e1 = inc.delta(&x, false).unwrap();
    let e2 = inc.delta(&x, false).unwrap();
    let same: f32 = (&e1 - &e2)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(same, 0.0, "evaluation is deterministic");
    let t = inc.delta(&x, true).unwrap();
    let diff: f32 = (&t - &e1)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff > 0.0, "training applies dropout");
}

#[test]
fn bad_shapes_and_placements_are_errors() {
    let cfg = FactConfig::tiny().with_rank(R);
    let (_params, fact) = fact(&cfg, 2, 41);
    assert!(matches!(
        fact.qkv(2),
        Err(FactError::BlockOutOfRange { block: 2, depth: 2 })
    ));
    assert!(matches!(
        fact.increment(0, Projection::K),
        Err(FactError::NotAdapted(Projection::K))
    ));
    // Overlapping column ranges.
    assert!(matches!(
        fact.hook(0, &[(Projection::Q, 0), (Projection::V, C - 1)]),
        Err(FactError::Columns(_))
    ));
    let hook = fact.qkv(0).unwrap().unwrap();
    let x = Tensor::zeros((2, C), DType::F32, &Device::Cpu).unwrap();
    // Output narrower than 3C, input of the wrong width, mismatched leading dims.
    let narrow = Tensor::zeros((2, 2 * C), DType::F32, &Device::Cpu).unwrap();
    assert!(hook.forward(&x, &narrow, false).is_err());
    let wide_x = Tensor::zeros((2, C + 1), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros((2, 3 * C), DType::F32, &Device::Cpu).unwrap();
    assert!(hook.forward(&wide_x, &y, false).is_err());
    let y3 = Tensor::zeros((3, 3 * C), DType::F32, &Device::Cpu).unwrap();
    assert!(hook.forward(&x, &y3, false).is_err());
    // A FactLinear whose base is too narrow for the hook.
    let base = FrozenLinear::new(
        Tensor::zeros((2 * C, C), DType::F32, &Device::Cpu).unwrap(),
        None,
    );
    assert!(matches!(
        FactLinear::new(base, hook),
        Err(FactError::ShapeMismatch { .. })
    ));
}
