//! The reference's sliding-window volume inference (its `test_single_volume`), memory-bounded.
//!
//! For a volume of N slices and stacks of D adjacent slices (D odd, centre `D/2`), stack `k` is
//! centred on slice `k` (edges replicated). The network returns class probabilities for all D
//! slices of a stack; the probabilities of every window that covers a slice are averaged and the
//! class is the arg-max (first maximum on ties). The reference adds into a buffer whose count starts
//! at 1 (`avg_cnt = ones`); that constant cannot change the arg-max, and we divide by the true count
//! so that the optional probability output is a real average.
//!
//! Unlike the reference, which allocates `(N + D − 1) × H × W × K` probabilities, this keeps only
//! the D slices still receiving windows: a 512×512×300 CT with 13 classes needs ~68 MB instead of
//! 4 GB. Windows are evaluated `batch` at a time.

use candle_core::{DType, Tensor};

use super::window_average::WindowAverage;

/// Result of [`SliceWindowInferer::run`].
#[derive(Debug, Clone)]
pub struct SliceWindowOutput {
    /// Arg-max labels, slice-major (N, H, W) flattened.
    pub labels: Vec<u8>,
    /// Averaged probabilities (N, K, H, W) flattened, when requested.
    pub probabilities: Option<Vec<f32>>,
    /// (N, H, W).
    pub shape: [usize; 3],
    /// K, the number of classes including background.
    pub num_classes: usize,
}

/// Stride-1 sliding window over the slices of a volume, averaging the softmax probabilities of all
/// D output slices of every window (the reference's `test_single_volume`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use masam_adapter::inferers::SliceWindowInferer;
/// # fn main() -> candle_core::Result<()> {
/// // 4 slices of 2×2 pixels; a fake "network" that predicts class 1 where the pixel is > 0.5
/// let vol: Vec<f32> = vec![0.9, 0.1, 0.2, 0.8].repeat(4);
/// let inferer = SliceWindowInferer::new(3, 2);
/// let out = inferer.run(&vol, [4, 2, 2], 2, false, |stacks: &Tensor| {
///     let (b, d, h, w) = stacks.dims4()?;
///     let x = stacks.reshape((b * d, 1, h, w))?;
///     let p1 = x.clone();
///     let p0 = (1.0 - x)?;
///     Tensor::cat(&[p0, p1], 1) // (b·d, 2, h, w)
/// })?;
/// assert_eq!(&out.labels[..4], &[1, 0, 0, 1]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SliceWindowInferer {
    /// Slices per stack (odd).
    pub depth: usize,
    /// Windows per forward call.
    pub batch: usize,
    /// Slices between the centres of consecutive windows: 1 (the reference) centres a window on
    /// every slice; `depth` tiles the volume with windows that do not overlap, `depth` times
    /// fewer forward passes. The last slice always gets a window of its own.
    pub stride: usize,
}

impl SliceWindowInferer {
    /// A window of `depth` slices (odd, e.g. 5), `batch` windows per forward, stride 1.
    pub fn new(depth: usize, batch: usize) -> Self {
        Self {
            depth,
            batch: batch.max(1),
            stride: 1,
        }
    }

    /// The same inferer with windows centred every `stride` slices (1 ≤ stride ≤ depth, checked
    /// when it runs).
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// The centre slices of the windows over a volume of `n` slices: 0, S, 2S, … and `n − 1`.
    ///
    /// ```
    /// use masam_adapter::inferers::SliceWindowInferer;
    /// let inf = SliceWindowInferer::new(5, 4).with_stride(5);
    /// assert_eq!(inf.centres(12), vec![0, 5, 10, 11]);
    /// assert_eq!(SliceWindowInferer::new(5, 4).centres(3), vec![0, 1, 2]);
    /// ```
    pub fn centres(&self, n: usize) -> Vec<usize> {
        let stride = self.stride.max(1);
        let mut c: Vec<usize> = (0..n).step_by(stride).collect();
        if n > 0 && c.last() != Some(&(n - 1)) {
            c.push(n - 1);
        }
        c
    }

    /// Runs inference on a preprocessed volume `volume` (N, H, W) slice-major: stack `k` is made
    /// of slices `k − D/2 … k + D/2`, edges replicated.
    ///
    /// `forward` receives stacks (b, D, H, W) and must return class probabilities
    /// (b·D, K, H, W) (softmax already applied), in the same slice order.
    ///
    /// The closures' error type `E` is the caller's (anything a candle error converts into).
    pub fn run<F, E>(
        &self,
        volume: &[f32],
        shape: [usize; 3],
        num_classes: usize,
        keep_probabilities: bool,
        forward: F,
    ) -> std::result::Result<SliceWindowOutput, E>
    where
        F: FnMut(&Tensor) -> std::result::Result<Tensor, E>,
        E: From<candle_core::Error>,
    {
        let [n, h, w] = shape;
        if volume.len() != n * h * w || n == 0 {
            return Err(candle_core::Error::Msg(format!(
                "volume has {} values, shape {:?} needs {}",
                volume.len(),
                shape,
                n * h * w
            ))
            .into());
        }
        let d = self.depth;
        let pad = d / 2;
        let plane = h * w;
        let make_stack = |center: usize| -> std::result::Result<Vec<f32>, E> {
            let mut out = Vec::with_capacity(d * plane);
            for t in 0..d {
                let z =
                    (center as isize + t as isize - pad as isize).clamp(0, n as isize - 1) as usize;
                out.extend_from_slice(&volume[z * plane..(z + 1) * plane]);
            }
            Ok(out)
        };
        self.run_with_stacks(shape, num_classes, keep_probabilities, make_stack, forward)
    }

    /// Like [`run`](Self::run), but `make_stack(k)` builds stack `k` (D·H·W values, slice-major)
    /// itself, so that per-stack preprocessing (the reference's per-stack min-max) applies.
    pub fn run_with_stacks<S, F, E>(
        &self,
        shape: [usize; 3],
        num_classes: usize,
        keep_probabilities: bool,
        mut make_stack: S,
        mut forward: F,
    ) -> std::result::Result<SliceWindowOutput, E>
    where
        S: FnMut(usize) -> std::result::Result<Vec<f32>, E>,
        F: FnMut(&Tensor) -> std::result::Result<Tensor, E>,
        E: From<candle_core::Error>,
    {
        let [n, h, w] = shape;
        let d = self.depth;
        if d == 0 || d.is_multiple_of(2) {
            return Err(candle_core::Error::Msg(format!(
                "slice window depth must be odd, got {d}"
            ))
            .into());
        }
        if n == 0 || h == 0 || w == 0 {
            return Err(candle_core::Error::Msg(format!("empty volume shape {shape:?}")).into());
        }
        if num_classes == 0 || num_classes > 256 {
            return Err(candle_core::Error::Msg(format!(
                "num_classes must be in 1..=256, got {num_classes}"
            ))
            .into());
        }
        let plane = h * w;
        let k = num_classes;
        if self.stride == 0 || self.stride > d {
            return Err(candle_core::Error::Msg(format!(
                "slice window stride must be in 1..={d} (the window depth), got {}",
                self.stride
            ))
            .into());
        }
        let mut average = WindowAverage::new(d, n, k, plane, keep_probabilities);
        for batch in self.centres(n).chunks(self.batch) {
            let b = batch.len();
            let mut stack = Vec::with_capacity(b * d * plane);
            for &s in batch {
                let one = make_stack(s)?;
                if one.len() != d * plane {
                    return Err(candle_core::Error::Msg(format!(
                        "stack {s} has {} values, expected {}",
                        one.len(),
                        d * plane
                    ))
                    .into());
                }
                stack.extend_from_slice(&one);
            }
            let x = Tensor::from_vec(stack, (b, d, h, w), &candle_core::Device::Cpu)?;
            let p = forward(&x)?;
            let dims = p.dims().to_vec();
            if dims != [b * d, k, h, w] {
                return Err(candle_core::Error::Msg(format!(
                    "forward returned shape {dims:?}, expected {:?}",
                    [b * d, k, h, w]
                ))
                .into());
            }
            let p: Vec<f32> = p.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            for (wi, &centre) in batch.iter().enumerate() {
                average.add_window(centre, &p[wi * d * k * plane..(wi + 1) * d * k * plane]);
            }
        }
        let (labels, probs) = average.finish();
        Ok(SliceWindowOutput {
            labels,
            probabilities: probs,
            shape,
            num_classes: k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The reference algorithm, verbatim (full buffer, avg_cnt starting at 1).
    fn reference(
        vol: &[f32],
        n: usize,
        plane: usize,
        k: usize,
        d: usize,
        net: &dyn Fn(&[f32]) -> Vec<f32>,
    ) -> Vec<u8> {
        let pad = d / 2;
        let mut prob = vec![0f32; (n + 2 * pad) * k * plane];
        let mut cnt = vec![1f32; n + 2 * pad];
        for ind in 0..n {
            let mut stack = vec![];
            for t in 0..d {
                let z =
                    (ind as isize + t as isize - pad as isize).clamp(0, n as isize - 1) as usize;
                stack.extend_from_slice(&vol[z * plane..(z + 1) * plane]);
            }
            let p = net(&stack);
            for t in 0..d {
                for i in 0..k * plane {
                    prob[(ind + t) * k * plane + i] += p[t * k * plane + i];
                }
                cnt[ind + t] += 1.0;
            }
        }
        let mut out = vec![0u8; n * plane];
        for z in 0..n {
            let j = z + pad;
            for px in 0..plane {
                let mut best = 0;
                let mut bv = f32::NEG_INFINITY;
                for c in 0..k {
                    let v = prob[j * k * plane + c * plane + px] / cnt[j];
                    if v > bv {
                        bv = v;
                        best = c;
                    }
                }
                out[z * plane + px] = best as u8;
            }
        }
        out
    }

    #[test]
    fn matches_reference_aggregation() -> candle_core::Result<()> {
        let (n, h, w, k, d) = (7usize, 3usize, 2usize, 3usize, 5usize);
        let plane = h * w;
        let vol: Vec<f32> = (0..n * plane)
            .map(|i| ((i * 37) % 11) as f32 / 11.0)
            .collect();
        // a deterministic "network" whose output depends on position within the stack
        let net = |stack: &[f32]| -> Vec<f32> {
            let mut out = vec![0f32; d * k * plane];
            for t in 0..d {
                for px in 0..plane {
                    let v = stack[t * plane + px];
                    let logits = [v * (t as f32 + 1.0), 1.0 - v, (v - 0.5).abs() * 2.0];
                    let m = logits.iter().cloned().fold(f32::MIN, f32::max);
                    let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
                    let s: f32 = e.iter().sum();
                    for c in 0..k {
                        out[t * k * plane + c * plane + px] = e[c] / s;
                    }
                }
            }
            out
        };
        let expect = reference(&vol, n, plane, k, d, &net);
        for batch in [1, 2, 3, 7] {
            let inferer = SliceWindowInferer::new(d, batch);
            let out = inferer.run(&vol, [n, h, w], k, true, |x: &Tensor| {
                let (b, dd, hh, ww) = x.dims4()?;
                let v: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let mut all = vec![];
                for bi in 0..b {
                    all.extend(net(&v[bi * dd * hh * ww..(bi + 1) * dd * hh * ww]));
                }
                Tensor::from_vec(all, (b * dd, k, hh, ww), &Device::Cpu)
            })?;
            assert_eq!(out.labels, expect, "batch {batch}");
            let p = out.probabilities.unwrap();
            for z in 0..n {
                for px in 0..plane {
                    let s: f32 = (0..k).map(|c| p[z * k * plane + c * plane + px]).sum();
                    assert!((s - 1.0).abs() < 1e-5);
                }
            }
        }
        Ok(())
    }

    /// Full-buffer average over the windows centred on `centres` (the oracle for strides > 1).
    fn strided_oracle(
        vol: &[f32],
        n: usize,
        plane: usize,
        k: usize,
        d: usize,
        centres: &[usize],
        net: &dyn Fn(&[f32]) -> Vec<f32>,
    ) -> Vec<u8> {
        let pad = d / 2;
        let mut prob = vec![0f32; n * k * plane];
        for &c in centres {
            let mut stack = vec![];
            for t in 0..d {
                let z = (c as isize + t as isize - pad as isize).clamp(0, n as isize - 1) as usize;
                stack.extend_from_slice(&vol[z * plane..(z + 1) * plane]);
            }
            let p = net(&stack);
            for t in 0..d {
                let z = c as isize + t as isize - pad as isize;
                if (0..n as isize).contains(&z) {
                    let z = z as usize;
                    for i in 0..k * plane {
                        prob[z * k * plane + i] += p[t * k * plane + i];
                    }
                }
            }
        }
        (0..n * plane)
            .map(|i| {
                let (z, px) = (i / plane, i % plane);
                let mut best = 0;
                for c in 1..k {
                    if prob[z * k * plane + c * plane + px]
                        > prob[z * k * plane + best * plane + px]
                    {
                        best = c;
                    }
                }
                best as u8
            })
            .collect()
    }

    #[test]
    fn strided_windows_match_the_oracle_and_cover_every_slice() -> candle_core::Result<()> {
        let (h, w, k, d) = (2usize, 3usize, 3usize, 5usize);
        let plane = h * w;
        let net = |stack: &[f32]| -> Vec<f32> {
            let mut out = vec![0f32; d * k * plane];
            for t in 0..d {
                for px in 0..plane {
                    let v = stack[t * plane + px];
                    let raw = [v * (t as f32 + 0.5), 1.0 - v, (v - 0.4).abs() * 1.7];
                    let s: f32 = raw.iter().sum();
                    for c in 0..k {
                        out[t * k * plane + c * plane + px] = raw[c] / s;
                    }
                }
            }
            out
        };
        for n in [1usize, 4, 7, 12] {
            let vol: Vec<f32> = (0..n * plane)
                .map(|i| ((i * 29) % 13) as f32 / 13.0 + 0.05)
                .collect();
            for stride in [1usize, 2, 3, 5] {
                for batch in [1usize, 2, 4] {
                    let inf = SliceWindowInferer::new(d, batch).with_stride(stride);
                    let centres = inf.centres(n);
                    assert_eq!(centres.last(), Some(&(n - 1)));
                    let mut calls = 0;
                    let out = inf.run(&vol, [n, h, w], k, true, |x: &Tensor| {
                        let (b, dd, hh, ww) = x.dims4()?;
                        calls += b;
                        let v: Vec<f32> = x.flatten_all()?.to_vec1()?;
                        let mut all = vec![];
                        for bi in 0..b {
                            all.extend(net(&v[bi * dd * hh * ww..(bi + 1) * dd * hh * ww]));
                        }
                        Tensor::from_vec(all, (b * dd, k, hh, ww), &Device::Cpu)
                    })?;
                    assert_eq!(calls, centres.len(), "n {n} stride {stride}");
                    let expect = strided_oracle(&vol, n, plane, k, d, &centres, &net);
                    assert_eq!(out.labels, expect, "n {n} stride {stride} batch {batch}");
                    // every slice was covered: its averaged probabilities sum to 1
                    let p = out.probabilities.unwrap();
                    for z in 0..n {
                        let s: f32 = (0..k).map(|c| p[z * k * plane + c * plane]).sum();
                        assert!(
                            (s - 1.0).abs() < 1e-5,
                            "slice {z} uncovered (stride {stride})"
                        );
                    }
                }
            }
        }
        let too_far = SliceWindowInferer::new(d, 1).with_stride(d + 1);
        assert!(too_far
            .run(&[0.5; 6], [1, 2, 3], 2, false, |x| Ok::<
                _,
                candle_core::Error,
            >(x.clone()))
            .is_err());
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() {
        let inf = SliceWindowInferer::new(4, 1);
        assert!(inf
            .run(&[0.0; 4], [1, 2, 2], 2, false, |x| Ok::<
                _,
                candle_core::Error,
            >(x.clone()))
            .is_err());
        let inf = SliceWindowInferer::new(3, 1);
        assert!(inf
            .run(&[0.0; 3], [1, 2, 2], 2, false, |x| Ok::<
                _,
                candle_core::Error,
            >(x.clone()))
            .is_err());
        assert!(inf
            .run(&[0.0; 4], [1, 2, 2], 2, false, |x| Ok::<
                _,
                candle_core::Error,
            >(x.clone()))
            .is_err());
    }
}
