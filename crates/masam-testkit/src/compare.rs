//! Comparisons of computed values against expected ones.
//!
//! The error measure of the fixtures is `max|a − b| / (max|b| + 1e-6)` over all elements
//! ([`rel_err`]); [`assert_close`] fails with the tensor's name, the worst element's index and
//! both values there. Everything is computed in f64 whatever the dtype. A NaN where the other
//! side is not NaN counts as an infinite difference.

use std::fmt;

use candle_core::{DType, Tensor};

/// The `ε` of the relative error `max|a − b| / (max|b| + ε)`.
pub const REL_EPS: f64 = 1e-6;

/// How far `actual` is from `expected`, element by element.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The shape compared.
    pub shape: Vec<usize>,
    /// `max|a − b|`.
    pub max_abs_diff: f64,
    /// `max|b|`, the scale of the expected values.
    pub scale: f64,
    /// Multi-index of the element with the largest difference (empty for no element).
    pub worst: Vec<usize>,
    /// The actual value there.
    pub actual: f64,
    /// The expected value there.
    pub expected: f64,
}

impl Comparison {
    /// `max|a − b| / (max|b| + 1e-6)`.
    pub fn rel(&self) -> f64 {
        self.rel_with_eps(REL_EPS)
    }

    /// `max|a − b| / (max|b| + eps)`.
    pub fn rel_with_eps(&self, eps: f64) -> f64 {
        self.max_abs_diff / (self.scale + eps)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "relative error {:.3e} (max |a − b| = {:.3e} at {:?} of {:?}: actual {}, expected {}; \
             max |expected| = {:.3e})",
            self.rel(),
            self.max_abs_diff,
            self.worst,
            self.shape,
            self.actual,
            self.expected,
            self.scale
        )
    }
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .unwrap_or_else(|e| panic!("cannot read a {:?} tensor as f64: {e}", t.dtype()))
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

fn compare_flat(shape: &[usize], a: &[f64], b: &[f64]) -> Comparison {
    assert_eq!(a.len(), b.len(), "{} values against {}", a.len(), b.len());
    let mut c = Comparison {
        shape: shape.to_vec(),
        max_abs_diff: 0.0,
        scale: 0.0,
        worst: Vec::new(),
        actual: f64::NAN,
        expected: f64::NAN,
    };
    let mut worst = None;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) if x == y => 0.0, // equal infinities too
            (false, false) => (x - y).abs(),
            _ => f64::INFINITY,
        };
        if worst.is_none() || d > c.max_abs_diff {
            c.max_abs_diff = d;
            worst = Some(i);
        }
        if y.abs() > c.scale {
            c.scale = y.abs();
        }
    }
    if let Some(i) = worst {
        c.worst = unravel(i, shape);
        c.actual = a[i];
        c.expected = b[i];
    }
    c
}

/// Compares two tensors of the same shape (any dtype, any device).
///
/// # Panics
/// When the shapes differ (naming both).
pub fn compare(actual: &Tensor, expected: &Tensor) -> Comparison {
    assert_eq!(
        actual.dims(),
        expected.dims(),
        "shape mismatch: actual {:?}, expected {:?}",
        actual.dims(),
        expected.dims()
    );
    compare_flat(actual.dims(), &to_f64(actual), &to_f64(expected))
}

/// Compares two slices of the same length (`f32` or `f64`).
///
/// # Panics
/// When the lengths differ.
pub fn compare_slices<T: Copy + Into<f64>>(actual: &[T], expected: &[T]) -> Comparison {
    let a: Vec<f64> = actual.iter().map(|&v| v.into()).collect();
    let b: Vec<f64> = expected.iter().map(|&v| v.into()).collect();
    compare_flat(&[a.len()], &a, &b)
}

/// `max|a − b| / (max|b| + 1e-6)`, the fixtures' error measure.
///
/// # Panics
/// When the shapes differ.
pub fn rel_err(actual: &Tensor, expected: &Tensor) -> f64 {
    compare(actual, expected).rel()
}

/// Asserts `rel_err(actual, expected) <= tol` and returns the error (printed too, for
/// `--nocapture` runs).
///
/// # Panics
/// When the error exceeds `tol`: the message names `what`, the worst element and both values.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) -> f64 {
    let c = compare(actual, expected);
    let e = c.rel();
    println!("{what}: max relative error {e:.3e}");
    assert!(e <= tol, "{what}: {c} > tolerance {tol:.1e}");
    e
}

/// `max|t|` over all elements, in f64.
pub fn max_abs(t: &Tensor) -> f64 {
    to_f64(t).iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The bit patterns of an f32 tensor, for bit-exact comparisons.
pub fn f32_bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_else(|e| panic!("not an f32 tensor ({:?}): {e}", t.dtype()))
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_the_worst_element() {
        let a = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.5]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let c = compare(&a, &b);
        assert_eq!(c.worst, [1, 1]);
        assert_eq!(
            (c.actual, c.expected, c.max_abs_diff, c.scale),
            (4.5, 4.0, 0.5, 4.0)
        );
        let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_close("logits", &a, &b, 1e-3)
        }))
        .unwrap_err()
        .downcast::<String>()
        .unwrap();
        assert!(msg.contains("logits") && msg.contains("[1, 1]"), "{msg}");
    }

    #[test]
    fn nan_against_a_number_is_infinitely_wrong() {
        let c = compare_slices(&[1.0f32, f32::NAN], &[1.0, 2.0]);
        assert!(c.rel().is_infinite());
        assert_eq!(compare_slices(&[f64::NAN], &[f64::NAN]).max_abs_diff, 0.0);
    }
}
