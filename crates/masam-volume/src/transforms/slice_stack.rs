//! Adjacent-slice stacks: D slices (default 5) centred on slice k, with the volume ends replicated
//! (the reference pads two copies of the first and last slice and takes `vol[k:k+5]`), oriented
//! for the model, resized, and normalised per stack.
//!
//! ```
//! use masam_volume::transforms::{SliceStack, StackConfig};
//! let s = SliceStack::new(StackConfig::default()).unwrap();
//! assert_eq!(s.indices(10, 0).unwrap(), vec![0, 0, 0, 1, 2]);
//! assert_eq!(s.indices(10, 9).unwrap(), vec![7, 8, 9, 9, 9]);
//! ```

use ndarray::{Array2, Array3, Array4, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::intensity::IntensityConfig;
use super::orientation::{from_model_orientation, to_model_orientation};
use super::resize::{resize_2d, Interpolation};
use crate::error::{Result, VolumeError};
use crate::io::Voxel;
use crate::volume::Volume;

/// Stack settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StackConfig {
    /// Slices per stack D (the reference: 5). The centre slice is at index D / 2.
    pub depth: usize,
    /// Intensity chain.
    pub intensity: IntensityConfig,
    /// Model input size (H, W); `None` keeps the native in-plane size.
    pub out_size: Option<(usize, usize)>,
    /// Apply the reference slice orientation (`s.T[::-1, ::-1]`).
    pub orient: bool,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            depth: 5,
            intensity: IntensityConfig::ct_abdomen(),
            out_size: Some((512, 512)),
            orient: true,
        }
    }
}

impl StackConfig {
    /// Sets the model input size.
    pub fn with_out_size(mut self, h: usize, w: usize) -> Self {
        self.out_size = Some((h, w));
        self
    }

    /// Sets the stack depth.
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Sets the intensity chain.
    pub fn with_intensity(mut self, intensity: IntensityConfig) -> Self {
        self.intensity = intensity;
        self
    }

    /// Checks depth, size and intensity settings.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 {
            return Err(VolumeError::InvalidConfig("stack depth must be ≥ 1".into()));
        }
        if let Some((h, w)) = self.out_size {
            if h == 0 || w == 0 {
                return Err(VolumeError::InvalidConfig(format!(
                    "out_size ({h}, {w}) has a zero"
                )));
            }
        }
        self.intensity.validate()
    }
}

/// Builds stacks from volumes (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct SliceStack {
    cfg: StackConfig,
}

impl SliceStack {
    /// Validates `cfg`.
    pub fn new(cfg: StackConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    /// Source slice indices of the stack centred on `center`, ends replicated.
    pub fn indices(&self, n_slices: usize, center: usize) -> Result<Vec<usize>> {
        if center >= n_slices {
            return Err(VolumeError::InvalidArgument(format!(
                "slice {center} out of range for {n_slices} slices"
            )));
        }
        let half = (self.cfg.depth / 2) as isize;
        Ok((0..self.cfg.depth as isize)
            .map(|t| (center as isize - half + t).clamp(0, n_slices as isize - 1) as usize)
            .collect())
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        self.cfg.out_size.unwrap_or((h, w))
    }

    /// One slice (Y, X) → model orientation and size, as f64 (before the intensity chain).
    fn slice_to_model<T: Voxel>(&self, slice: ArrayView2<T>) -> Array2<f64> {
        let s = slice.mapv(|v| v.to_f64());
        let s = if self.cfg.orient {
            to_model_orientation(&s.view())
        } else {
            s
        };
        let (h, w) = s.dim();
        let (oh, ow) = self.out_hw(h, w);
        if (oh, ow) == (h, w) {
            s
        } else {
            resize_2d(&s.view(), oh, ow, Interpolation::CubicSpline)
        }
    }

    /// The normalised image stack (D, H, W) centred on slice `center` of `vol`.
    pub fn image_stack<T: Voxel>(&self, vol: &Volume<T>, center: usize) -> Result<Array3<f32>> {
        let [n, h, w] = vol.shape_zyx();
        let idx = self.indices(n, center)?;
        let (oh, ow) = self.out_hw(h, w);
        let mut raw: Vec<f64> = Vec::with_capacity(idx.len() * oh * ow);
        let mut prev: Option<(usize, Array2<f64>)> = None;
        for &k in &idx {
            let s = match &prev {
                Some((pk, ps)) if *pk == k => ps.clone(),
                _ => self.slice_to_model(vol.data.index_axis(Axis(0), k)),
            };
            raw.extend(s.iter());
            prev = Some((k, s));
        }
        let out = self.cfg.intensity.normalize_stack(&raw);
        Array3::from_shape_vec((idx.len(), oh, ow), out).map_err(|source| VolumeError::Shape {
            what: "image stack (D, H, W)",
            source,
        })
    }

    /// The label stack (D, H, W) for all D slices (nearest-neighbour resize).
    pub fn label_stack(&self, label: &Volume<u8>, center: usize) -> Result<Array3<u8>> {
        let [n, h, w] = label.shape_zyx();
        let idx = self.indices(n, center)?;
        let (oh, ow) = self.out_hw(h, w);
        let mut out = Array3::<u8>::zeros((idx.len(), oh, ow));
        for (t, &k) in idx.iter().enumerate() {
            let s = label.data.index_axis(Axis(0), k);
            let s = if self.cfg.orient {
                to_model_orientation(&s)
            } else {
                s.to_owned()
            };
            let s = if (oh, ow) == (h, w) {
                s
            } else {
                resize_2d(&s.view(), oh, ow, Interpolation::Nearest)
            };
            out.index_axis_mut(Axis(0), t).assign(&s);
        }
        Ok(out)
    }

    /// An RGB video stack (D, 3, H, W) from frames of shape (H, W, 3), centred on `center`;
    /// frames are resized (cubic) but not re-oriented unless `orient` is set.
    pub fn rgb_stack(&self, frames: &[Array3<u8>], center: usize) -> Result<Array4<f32>> {
        let idx = self.indices(frames.len(), center)?;
        let (h, w, c) = frames[idx[0]].dim();
        if c != 3 {
            return Err(VolumeError::InvalidArgument(format!(
                "frame has {c} channels, expected 3"
            )));
        }
        let (oh, ow) = self.out_hw(h, w);
        let mut raw: Vec<f64> = Vec::with_capacity(idx.len() * 3 * oh * ow);
        for &k in &idx {
            let f = &frames[k];
            if f.dim() != (h, w, 3) {
                return Err(VolumeError::InvalidArgument(format!(
                    "frame {k} is {:?}, expected {:?}",
                    f.dim(),
                    (h, w, 3)
                )));
            }
            for ch in 0..3 {
                let s = f.index_axis(Axis(2), ch).mapv(|v| v as f64);
                let s = if self.cfg.orient {
                    to_model_orientation(&s.view())
                } else {
                    s
                };
                let s = if (oh, ow) == (h, w) {
                    s
                } else {
                    resize_2d(&s.view(), oh, ow, Interpolation::CubicSpline)
                };
                raw.extend(s.iter());
            }
        }
        let out = self.cfg.intensity.normalize_stack(&raw);
        Array4::from_shape_vec((idx.len(), 3, oh, ow), out).map_err(|source| VolumeError::Shape {
            what: "RGB stack (D, 3, H, W)",
            source,
        })
    }

    /// Model-space labels (H, W) → the voxel grid (Y, X) of the source volume: nearest resize
    /// back, then the inverse orientation.
    pub fn labels_to_volume_grid(
        &self,
        labels: &ArrayView2<u8>,
        shape_yx: (usize, usize),
    ) -> Array2<u8> {
        let back = resize_2d(labels, shape_yx.0, shape_yx.1, Interpolation::Nearest);
        if self.cfg.orient {
            from_model_orientation(&back.view())
        } else {
            back
        }
    }

    /// Model-space probabilities (H, W) → the voxel grid (Y, X): cubic resize back (as the
    /// reference's `zoom(order=3)` on the output path), then the inverse orientation.
    pub fn probs_to_volume_grid(
        &self,
        probs: &ArrayView2<f32>,
        shape_yx: (usize, usize),
    ) -> Array2<f32> {
        let back = resize_2d(probs, shape_yx.0, shape_yx.1, Interpolation::CubicSpline);
        if self.cfg.orient {
            from_model_orientation(&back.view())
        } else {
            back
        }
    }
}

/// Replicates a grey stack (D, H, W) to 3 channels (D, 3, H, W), as the reference trainer does.
pub fn replicate_channels(stack: &Array3<f32>) -> Array4<f32> {
    let (d, h, w) = stack.dim();
    Array4::from_shape_fn((d, 3, h, w), |(k, _, y, x)| stack[[k, y, x]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_depth_and_depth_one() {
        let s = SliceStack::new(StackConfig::default().with_depth(4)).unwrap();
        assert_eq!(s.indices(3, 1).unwrap(), vec![0, 0, 1, 2]);
        let s1 = SliceStack::new(StackConfig::default().with_depth(1)).unwrap();
        assert_eq!(s1.indices(3, 2).unwrap(), vec![2]);
        assert!(s1.indices(3, 3).is_err());
        assert!(SliceStack::new(StackConfig::default().with_depth(0)).is_err());
    }

    #[test]
    fn replicate_has_three_equal_channels() {
        let a = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| (z + y + x) as f32);
        let r = replicate_channels(&a);
        assert_eq!(r.dim(), (2, 3, 3, 4));
        for c in 0..3 {
            assert_eq!(r.index_axis(Axis(1), c), a);
        }
    }
}
