//! Box prompts from label maps: a tight 3D box per target class, a relaxed box (each face moved
//! out by a seeded random margin), and their projection to per-slice 2D boxes
//! `(x0, y0, x1, y1)` in model pixels (SAM order, x = column), following the slice orientation and
//! the zoom mapping of [`crate::transforms::SliceStack`].
//!
//! The authors' box-prompt variant ships no box generation (and is not wired into their
//! training script); it uses one 3D box projection for every slice of a 5-slice sample, which is
//! what [`project_stack`] returns.
//!
//! ```
//! use masam_volume::boxes::{tight_box, project_to_slice, ModelGrid};
//! let mut lab = ndarray::Array3::<u8>::zeros((4, 10, 20));
//! lab[[1, 2, 3]] = 1;
//! lab[[2, 5, 7]] = 1;
//! let b = tight_box(&lab, 1).unwrap();
//! assert_eq!((b.z0, b.z1, b.y0, b.y1, b.x0, b.x1), (1, 2, 2, 5, 3, 7));
//! let grid = ModelGrid { shape_yx: (10, 20), model_hw: (10, 20), orient: false };
//! assert_eq!(project_to_slice(&b, 1, &grid), Some([3.0, 2.0, 7.0, 5.0]));
//! assert_eq!(project_to_slice(&b, 3, &grid), None);
//! ```

use ndarray::{Array3, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// An inclusive voxel box (z, y, x ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Box3d {
    /// First slice.
    pub z0: usize,
    /// Last slice (inclusive).
    pub z1: usize,
    /// First row.
    pub y0: usize,
    /// Last row (inclusive).
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// Last column (inclusive).
    pub x1: usize,
}

/// Tight bounding box of `class` in a (Z, Y, X) label map; `None` if the class is absent.
pub fn tight_box(label: &Array3<u8>, class: u8) -> Option<Box3d> {
    let mut b: Option<Box3d> = None;
    for ((z, y, x), &v) in label.indexed_iter() {
        if v != class {
            continue;
        }
        b = Some(match b {
            None => Box3d {
                z0: z,
                z1: z,
                y0: y,
                y1: y,
                x0: x,
                x1: x,
            },
            Some(b) => Box3d {
                z0: b.z0.min(z),
                z1: b.z1.max(z),
                y0: b.y0.min(y),
                y1: b.y1.max(y),
                x0: b.x0.min(x),
                x1: b.x1.max(x),
            },
        });
    }
    b
}

/// Tight boxes of every non-zero class present, sorted by class.
pub fn tight_boxes(label: &Array3<u8>) -> Vec<(u8, Box3d)> {
    let mut present = [false; 256];
    label.iter().for_each(|&v| present[v as usize] = true);
    (1..=255u8)
        .filter(|&c| present[c as usize])
        .filter_map(|c| tight_box(label, c).map(|b| (c, b)))
        .collect()
}

/// Relaxation margins (voxels), drawn uniformly in `[0, max]` per face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaxConfig {
    /// Largest margin along (z, y, x).
    pub max_margin_zyx: [usize; 3],
}

impl Default for RelaxConfig {
    /// 0 slices, 10 pixels in-plane (a choice: the reference does not publish its margins).
    fn default() -> Self {
        Self {
            max_margin_zyx: [0, 10, 10],
        }
    }
}

/// Expands each face of `b` by an independent random margin, clamped to `shape_zyx`.
pub fn relax_box<R: Rng + ?Sized>(
    b: &Box3d,
    cfg: &RelaxConfig,
    shape_zyx: [usize; 3],
    rng: &mut R,
) -> Box3d {
    let mut draw = |m: usize| if m == 0 { 0 } else { rng.random_range(0..=m) };
    let [mz, my, mx] = cfg.max_margin_zyx;
    let (a, bz, c, d, e, f) = (draw(mz), draw(mz), draw(my), draw(my), draw(mx), draw(mx));
    Box3d {
        z0: b.z0.saturating_sub(a),
        z1: (b.z1 + bz).min(shape_zyx[0].saturating_sub(1)),
        y0: b.y0.saturating_sub(c),
        y1: (b.y1 + d).min(shape_zyx[1].saturating_sub(1)),
        x0: b.x0.saturating_sub(e),
        x1: (b.x1 + f).min(shape_zyx[2].saturating_sub(1)),
    }
}

/// Which 3D box a box prompt is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxMode {
    /// The tight box of the class.
    #[default]
    Tight,
    /// The tight box grown by a fixed margin per face ([`BoxPromptConfig::margin_zyx`]),
    /// clamped to the volume.
    Relaxed,
}

/// How box prompts are made from a label map, for training and for evaluation.
///
/// The box of a volume is the 3D box of `class` ([`BoxMode::Tight`] or [`BoxMode::Relaxed`]).
/// For every D-slice stack that touches it, its in-plane extent is projected onto the model grid
/// and the same 2D box is given to every slice of the stack; stacks that miss the box entirely
/// are not trained on and are predicted as background. In training each face of the projected
/// box is moved by a seeded uniform random offset in `[-jitter, jitter]` model pixels.
///
/// ```
/// use masam_volume::boxes::{BoxMode, BoxPromptConfig};
/// let c: BoxPromptConfig = serde_json::from_str(r#"{"class": 2, "mode": "relaxed"}"#).unwrap();
/// assert_eq!((c.class, c.mode, c.margin_zyx), (2, BoxMode::Relaxed, [1, 5, 5]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxPromptConfig {
    /// The class whose box is the prompt.
    pub class: u8,
    /// Tight or relaxed.
    #[serde(default)]
    pub mode: BoxMode,
    /// Relaxed mode: voxels added on each face along (z, y, x).
    #[serde(default = "default_margin")]
    pub margin_zyx: [usize; 3],
    /// Training only: largest random shift of each face of the 2D box, in model pixels.
    #[serde(default = "default_jitter")]
    pub jitter: f32,
}

fn default_margin() -> [usize; 3] {
    [1, 5, 5]
}

fn default_jitter() -> f32 {
    4.0
}

impl BoxPromptConfig {
    /// Tight boxes of `class`, no jitter.
    pub fn tight(class: u8) -> Self {
        Self {
            class,
            mode: BoxMode::Tight,
            margin_zyx: default_margin(),
            jitter: 0.0,
        }
    }

    /// The 3D box of a volume's label map; `None` when the class is absent.
    pub fn volume_box(&self, label: &Array3<u8>) -> Option<Box3d> {
        let b = tight_box(label, self.class)?;
        let (z, y, x) = label.dim();
        Some(match self.mode {
            BoxMode::Tight => b,
            BoxMode::Relaxed => expand_box(&b, self.margin_zyx, [z, y, x]),
        })
    }
}

/// `b` grown by `margin_zyx` voxels on every face, clamped to a volume of shape `shape_zyx`.
pub fn expand_box(b: &Box3d, margin_zyx: [usize; 3], shape_zyx: [usize; 3]) -> Box3d {
    let [mz, my, mx] = margin_zyx;
    Box3d {
        z0: b.z0.saturating_sub(mz),
        z1: (b.z1 + mz).min(shape_zyx[0].saturating_sub(1)),
        y0: b.y0.saturating_sub(my),
        y1: (b.y1 + my).min(shape_zyx[1].saturating_sub(1)),
        x0: b.x0.saturating_sub(mx),
        x1: (b.x1 + mx).min(shape_zyx[2].saturating_sub(1)),
    }
}

/// Why a box given by a user does not fit a volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoxError {
    /// A start index after its end index.
    #[error("inverted box: {axis}0 = {start} > {axis}1 = {end}")]
    Inverted {
        /// `z`, `y` or `x`.
        axis: char,
        /// Start index.
        start: usize,
        /// End index.
        end: usize,
    },
    /// An end index past the volume.
    #[error("box {axis}1 = {end} is outside the volume ({axis} has {size} voxels, 0..={last})", last = size.saturating_sub(1))]
    Outside {
        /// `z`, `y` or `x`.
        axis: char,
        /// End index.
        end: usize,
        /// Volume size along the axis.
        size: usize,
    },
    /// The class is absent from the label map.
    #[error("class {class} is absent from the label map: no box")]
    Empty {
        /// The class asked for.
        class: u8,
    },
    /// A box that cannot be parsed.
    #[error("bad box `{text}`: {reason}")]
    Parse {
        /// The text.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

impl Box3d {
    /// Checks that the box is not inverted and lies inside a volume of shape `shape_zyx`.
    pub fn check(&self, shape_zyx: [usize; 3]) -> std::result::Result<(), BoxError> {
        let axes = [
            ('z', self.z0, self.z1, shape_zyx[0]),
            ('y', self.y0, self.y1, shape_zyx[1]),
            ('x', self.x0, self.x1, shape_zyx[2]),
        ];
        for (axis, start, end, size) in axes {
            if start > end {
                return Err(BoxError::Inverted { axis, start, end });
            }
            if end >= size {
                return Err(BoxError::Outside { axis, end, size });
            }
        }
        Ok(())
    }

    /// Parses `z0,y0,x0,z1,y1,x1` (voxel indices, both ends inclusive); checks the order.
    ///
    /// ```
    /// use masam_volume::boxes::Box3d;
    /// let b = Box3d::parse("1,2,3,4,5,6").unwrap();
    /// assert_eq!((b.z0, b.y0, b.x0, b.z1, b.y1, b.x1), (1, 2, 3, 4, 5, 6));
    /// assert!(Box3d::parse("4,2,3,1,5,6").is_err()); // inverted
    /// assert!(Box3d::parse("1,2,3").is_err());
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, BoxError> {
        let err = |reason: String| BoxError::Parse {
            text: text.to_string(),
            reason,
        };
        let v: Vec<usize> = text
            .split(',')
            .map(|t| t.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| err(format!("{e} (expected 6 non-negative integers)")))?;
        let [z0, y0, x0, z1, y1, x1] = v[..] else {
            return Err(err(format!(
                "{} numbers, expected 6: z0,y0,x0,z1,y1,x1",
                v.len()
            )));
        };
        let b = Self {
            z0,
            z1,
            y0,
            y1,
            x0,
            x1,
        };
        b.check([usize::MAX; 3])?;
        Ok(b)
    }
}

/// How voxel (y, x) maps to model pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelGrid {
    /// Source slice shape (Y, X).
    pub shape_yx: (usize, usize),
    /// Model input (H, W).
    pub model_hw: (usize, usize),
    /// Whether the reference orientation (180° rotation) is applied.
    pub orient: bool,
}

impl ModelGrid {
    fn scale(n_in: usize, n_out: usize) -> f32 {
        if n_in <= 1 {
            0.0
        } else {
            (n_out as f32 - 1.0) / (n_in as f32 - 1.0)
        }
    }

    /// Model (col, row) of voxel (x, y), as continuous pixel coordinates.
    pub fn map_xy(&self, x: usize, y: usize) -> (f32, f32) {
        let (h, w) = self.shape_yx;
        let (x, y) = if self.orient {
            (w - 1 - x, h - 1 - y)
        } else {
            (x, y)
        };
        (
            x as f32 * Self::scale(w, self.model_hw.1),
            y as f32 * Self::scale(h, self.model_hw.0),
        )
    }
}

/// The 2D box `[x0, y0, x1, y1]` (model pixels) of `b` on slice `z`; `None` outside `z0..=z1`.
pub fn project_to_slice(b: &Box3d, z: usize, grid: &ModelGrid) -> Option<[f32; 4]> {
    if z < b.z0 || z > b.z1 {
        return None;
    }
    let (ax, ay) = grid.map_xy(b.x0, b.y0);
    let (bx, by) = grid.map_xy(b.x1, b.y1);
    Some([ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)])
}

/// One box per stack slice: the 3D box projected in-plane for every slice of the stack (as the
/// reference tiles one box over its 5 slices); `None` when the box misses the whole stack.
pub fn project_stack(b: &Box3d, indices: &[usize], grid: &ModelGrid) -> Option<Vec<[f32; 4]>> {
    if !indices.iter().any(|&z| z >= b.z0 && z <= b.z1) {
        return None;
    }
    let mid = Box3d {
        z0: 0,
        z1: usize::MAX,
        ..*b
    };
    let bx = project_to_slice(&mid, 0, grid)?;
    Some(vec![bx; indices.len()])
}

/// Tight per-slice 2D boxes of `class` for slices `indices` (model pixels), `None` where the
/// slice does not contain the class.
pub fn slice_boxes(
    label: &Array3<u8>,
    class: u8,
    indices: &[usize],
    grid: &ModelGrid,
) -> Vec<Option<[f32; 4]>> {
    indices
        .iter()
        .map(|&z| {
            if z >= label.shape()[0] {
                return None;
            }
            let s = label.index_axis(Axis(0), z).to_owned().insert_axis(Axis(0));
            tight_box(&s, class)
                .and_then(|b| project_to_slice(&Box3d { z0: 0, z1: 0, ..b }, 0, grid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn relaxed_contains_tight_and_is_seeded() {
        let b = Box3d {
            z0: 3,
            z1: 5,
            y0: 10,
            y1: 20,
            x0: 2,
            x1: 30,
        };
        let cfg = RelaxConfig {
            max_margin_zyx: [1, 5, 5],
        };
        let shape = [8, 32, 33];
        let r1 = relax_box(
            &b,
            &cfg,
            shape,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
        );
        let r2 = relax_box(
            &b,
            &cfg,
            shape,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(r1, r2);
        assert!(r1.z0 <= b.z0 && r1.z1 >= b.z1 && r1.y0 <= b.y0 && r1.y1 >= b.y1);
        assert!(r1.x0 <= b.x0 && r1.x1 >= b.x1 && r1.x1 <= 32 && r1.y0 + 5 >= b.y0);
        let mut any_diff = false;
        for s in 0..20 {
            let r = relax_box(
                &b,
                &cfg,
                shape,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(s),
            );
            any_diff |= r != b;
        }
        assert!(any_diff);
    }

    #[test]
    fn projection_follows_orientation_and_zoom() {
        let mut lab = Array3::<u8>::zeros((3, 5, 9));
        lab[[1, 1, 2]] = 2;
        lab[[1, 3, 6]] = 2;
        let b = tight_box(&lab, 2).unwrap();
        // orientation: col = 8 − x, row = 4 − y; zoom 9→17 (×2), 5→9 (×2)
        let g = ModelGrid {
            shape_yx: (5, 9),
            model_hw: (9, 17),
            orient: true,
        };
        assert_eq!(project_to_slice(&b, 1, &g), Some([4.0, 2.0, 12.0, 6.0]));
        assert_eq!(project_stack(&b, &[0, 0, 0, 1, 2], &g).unwrap().len(), 5);
        assert_eq!(project_stack(&b, &[2, 2, 2], &g), None);
        let per = slice_boxes(&lab, 2, &[0, 1], &g);
        assert_eq!(per, vec![None, Some([4.0, 2.0, 12.0, 6.0])]);
        assert_eq!(tight_boxes(&lab), vec![(2, b)]);
    }
}
