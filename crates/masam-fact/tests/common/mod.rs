//! Naive f64 reference maths for the FacT tests (independent of candle's ops).
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use masam_nn::SeededVarMap;

/// A dense row-major matrix in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }
    pub fn add(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.cols + c] += v;
    }
    /// From a tensor of any rank: all leading dims are flattened into rows.
    pub fn from_tensor(t: &Tensor) -> Self {
        let dims = t.dims();
        let cols = *dims.last().unwrap();
        let data: Vec<f64> = t
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        Self {
            rows: data.len() / cols,
            cols,
            data,
        }
    }
    pub fn max_abs(&self) -> f64 {
        self.data.iter().fold(0.0, |m, v| m.max(v.abs()))
    }
}

/// max|a-b| / (max|b| + 1e-6), the fixtures README's relative error.
pub fn rel_err(a: &Mat, b: &Mat) -> f64 {
    assert_eq!((a.rows, a.cols), (b.rows, b.cols), "shape mismatch");
    let d = a
        .data
        .iter()
        .zip(&b.data)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    d / (b.max_abs() + 1e-6)
}

pub fn rel_err_t(a: &Tensor, b: &Mat) -> f64 {
    rel_err(&Mat::from_tensor(a), b)
}

/// Deterministic pseudo-random tensor (standard normal) from a seed.
pub fn randn(seed: u64, shape: &[usize]) -> Tensor {
    SeededVarMap::new(seed)
        .sample(
            &shape.into(),
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
}

/// Result of the naive increment: output and gradients for an upstream gradient `g`.
pub struct Naive {
    pub out: Mat,
    pub du: Mat,
    pub dv: Mat,
    pub ds: Mat,
    pub dx: Mat,
}

/// The parameters of one increment for [`increment`]: shared factors U (r, C) and V (C, r),
/// core S (m_out·r, m_in·r), input and output chunk counts, and scale s.
pub struct NaiveParams<'a> {
    pub u: &'a Mat,
    pub v: &'a Mat,
    pub core: &'a Mat,
    pub m_in: usize,
    pub m_out: usize,
    pub scale: f64,
}

impl<'a> NaiveParams<'a> {
    pub fn new(
        u: &'a Mat,
        v: &'a Mat,
        core: &'a Mat,
        m_in: usize,
        m_out: usize,
        scale: f64,
    ) -> Self {
        Self {
            u,
            v,
            core,
            m_in,
            m_out,
            scale,
        }
    }
}

/// `out[n, j·C + c] = s · Σ_t V[c,t] · h[n, j·r + t]` with
/// `h[n] = S · concat_k(U · x[n, k·C .. (k+1)·C])`, and the gradients of `Σ g ⊙ out`.
pub fn increment(x: &Mat, p: &NaiveParams, g: &Mat) -> Naive {
    let NaiveParams {
        u,
        v,
        core: s_core,
        m_in,
        m_out,
        scale,
    } = *p;
    let r = u.rows;
    let c = u.cols;
    assert_eq!(x.cols, m_in * c);
    assert_eq!((s_core.rows, s_core.cols), (m_out * r, m_in * r));
    let n = x.rows;
    let mut out = Mat::zeros(n, m_out * c);
    let mut du = Mat::zeros(r, c);
    let mut dv = Mat::zeros(c, r);
    let mut ds = Mat::zeros(m_out * r, m_in * r);
    let mut dx = Mat::zeros(n, m_in * c);
    for row in 0..n {
        let mut z = vec![0.0; m_in * r];
        for k in 0..m_in {
            for t in 0..r {
                z[k * r + t] = (0..c).map(|cc| u.at(t, cc) * x.at(row, k * c + cc)).sum();
            }
        }
        let mut h = vec![0.0; m_out * r];
        for a in 0..m_out * r {
            h[a] = (0..m_in * r).map(|b| s_core.at(a, b) * z[b]).sum();
        }
        for j in 0..m_out {
            for cc in 0..c {
                let val: f64 = (0..r).map(|t| v.at(cc, t) * h[j * r + t]).sum();
                out.data[row * m_out * c + j * c + cc] = scale * val;
            }
        }
        // Backward.
        let mut dh = vec![0.0; m_out * r];
        for j in 0..m_out {
            for t in 0..r {
                let mut acc = 0.0;
                for cc in 0..c {
                    let gv = g.at(row, j * c + cc);
                    acc += gv * v.at(cc, t);
                    dv.add(cc, t, scale * gv * h[j * r + t]);
                }
                dh[j * r + t] = scale * acc;
            }
        }
        let mut dz = vec![0.0; m_in * r];
        for a in 0..m_out * r {
            for b in 0..m_in * r {
                ds.add(a, b, dh[a] * z[b]);
                dz[b] += dh[a] * s_core.at(a, b);
            }
        }
        for k in 0..m_in {
            for t in 0..r {
                for cc in 0..c {
                    du.add(t, cc, dz[k * r + t] * x.at(row, k * c + cc));
                    dx.add(row, k * c + cc, dz[k * r + t] * u.at(t, cc));
                }
            }
        }
    }
    Naive {
        out,
        du,
        dv,
        ds,
        dx,
    }
}

/// `x · Wᵀ + b` and its input gradient `g · W`.
pub fn linear(x: &Mat, w: &Mat, b: Option<&Mat>) -> Mat {
    let mut y = Mat::zeros(x.rows, w.rows);
    for n in 0..x.rows {
        for o in 0..w.rows {
            let mut acc: f64 = (0..w.cols).map(|i| x.at(n, i) * w.at(o, i)).sum();
            if let Some(b) = b {
                acc += b.data[o];
            }
            y.data[n * w.rows + o] = acc;
        }
    }
    y
}

pub fn matmul(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.rows);
    let mut y = Mat::zeros(a.rows, b.cols);
    for i in 0..a.rows {
        for j in 0..b.cols {
            y.data[i * b.cols + j] = (0..a.cols).map(|k| a.at(i, k) * b.at(k, j)).sum();
        }
    }
    y
}

/// Columns `[start, start + width)` of `m`.
pub fn cols(m: &Mat, start: usize, width: usize) -> Mat {
    let mut out = Mat::zeros(m.rows, width);
    for r in 0..m.rows {
        for c in 0..width {
            out.data[r * width + c] = m.at(r, start + c);
        }
    }
    out
}
