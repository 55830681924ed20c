//! The rolling probability average of the slice window: each volume slice receives the class
//! probabilities of every window that covers it; once no later window can cover it, its average
//! is turned into an arg-max label and its buffer is reused. Only D slices are buffered.

/// Rolling per-slice sums of window probabilities over a volume of `n` slices, for windows of
/// `depth` slices (odd), `classes` classes and planes of `plane` pixels.
///
/// Buffer slice `j` is volume slice `j − depth/2`: window `w` covers buffer slices
/// `w..w + depth`, so the edge windows' out-of-volume slices land in buffer slices that are
/// never written out.
#[derive(Debug, Clone)]
pub struct WindowAverage {
    depth: usize,
    slices: usize,
    classes: usize,
    plane: usize,
    sums: Vec<f32>,
    counts: Vec<u32>,
    labels: Vec<u8>,
    probabilities: Option<Vec<f32>>,
    next_final: usize,
}

impl WindowAverage {
    /// An empty average; `keep_probabilities` also keeps the averaged probabilities of every
    /// slice (N·K·H·W values).
    pub fn new(
        depth: usize,
        slices: usize,
        classes: usize,
        plane: usize,
        keep_probabilities: bool,
    ) -> Self {
        Self {
            depth,
            slices,
            classes,
            plane,
            sums: vec![0f32; depth * classes * plane],
            counts: vec![0u32; depth],
            labels: vec![0u8; slices * plane],
            probabilities: keep_probabilities.then(|| vec![0f32; slices * classes * plane]),
            next_final: 0,
        }
    }

    /// Adds the probabilities of the window centred on volume slice `window` (`depth` slices of
    /// K·H·W values, slice-major), then finalises the slices no later window covers. Windows
    /// must come in increasing order (any stride up to `depth`).
    pub fn add_window(&mut self, window: usize, probabilities: &[f32]) {
        let kp = self.classes * self.plane;
        // slices before this window's first get no more windows; finalise them before their
        // buffer slots are reused (strides above 1)
        while self.next_final < window {
            self.finalise_next();
        }
        for t in 0..self.depth {
            let slot = (window + t) % self.depth;
            let src = &probabilities[t * kp..(t + 1) * kp];
            for (a, v) in self.sums[slot * kp..(slot + 1) * kp].iter_mut().zip(src) {
                *a += v;
            }
            self.counts[slot] += 1;
        }
        // buffer slice `window` receives no more windows after this one
        while self.next_final <= window {
            self.finalise_next();
        }
    }

    /// Finalises every remaining slice and returns (labels N·H·W, probabilities N·K·H·W).
    pub fn finish(mut self) -> (Vec<u8>, Option<Vec<f32>>) {
        while self.next_final < self.slices + self.depth - 1 {
            self.finalise_next();
        }
        (self.labels, self.probabilities)
    }

    fn finalise_next(&mut self) {
        let (j, k, plane) = (self.next_final, self.classes, self.plane);
        self.next_final += 1;
        let pad = self.depth / 2;
        let slot = j % self.depth;
        let buf = &mut self.sums[slot * k * plane..(slot + 1) * k * plane];
        if j >= pad && j < self.slices + pad {
            let z = j - pad;
            let c = self.counts[slot].max(1) as f32;
            for px in 0..plane {
                let mut best = 0usize;
                let mut best_v = f32::NEG_INFINITY;
                for cls in 0..k {
                    let v = buf[cls * plane + px];
                    if v > best_v {
                        best_v = v;
                        best = cls;
                    }
                }
                self.labels[z * plane + px] = best as u8;
            }
            if let Some(p) = self.probabilities.as_mut() {
                for (o, v) in p[z * k * plane..(z + 1) * k * plane]
                    .iter_mut()
                    .zip(buf.iter())
                {
                    *o = v / c;
                }
            }
        }
        buf.iter_mut().for_each(|v| *v = 0.0);
        self.counts[slot] = 0;
    }
}
