//! The unit every augmentation works on: image stack, label stack and optional per-slice boxes.

use super::{AugmentError, Result};
use ndarray::{Array3, Array4, ArrayView2, Axis};

/// An axis-aligned box in continuous pixel-edge coordinates (x = column, y = row).
///
/// Pixel `(col, row)` covers `[col, col + 1) × [row, row + 1)`, so the tight box of a mask whose
/// columns span `cmin..=cmax` and rows `rmin..=rmax` is `(cmin, rmin, cmax + 1, rmax + 1)`. In these
/// coordinates the reference's rot90 box rule (`x' = y, y' = W − x`) is exact. SAM's prompt
/// encoder expects inclusive pixel indices instead: use [`BoxXyxy::to_inclusive`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxXyxy {
    /// Left edge (column).
    pub x0: f32,
    /// Top edge (row).
    pub y0: f32,
    /// Right edge (exclusive).
    pub x1: f32,
    /// Bottom edge (exclusive).
    pub y1: f32,
}

impl BoxXyxy {
    /// A box from its edges.
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// The tight box of `label == class` in one slice `(H, W)`, or `None` if the class is absent.
    ///
    /// ```
    /// use masam_volume::augment::BoxXyxy;
    /// let mut m = ndarray::Array2::<u8>::zeros((8, 8));
    /// m[[2, 5]] = 1;
    /// m[[3, 6]] = 1;
    /// assert_eq!(BoxXyxy::from_mask(m.view(), 1), Some(BoxXyxy::new(5.0, 2.0, 7.0, 4.0)));
    /// ```
    pub fn from_mask(label: ArrayView2<'_, u8>, class: u8) -> Option<Self> {
        let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
        for ((r, c), &v) in label.indexed_iter() {
            if v == class {
                r0 = r0.min(r);
                r1 = r1.max(r);
                c0 = c0.min(c);
                c1 = c1.max(c);
            }
        }
        (r0 != usize::MAX)
            .then(|| Self::new(c0 as f32, r0 as f32, (c1 + 1) as f32, (r1 + 1) as f32))
    }

    /// The tight box of all foreground (`label != 0`) in one slice, or `None` if it is empty.
    pub fn from_foreground(label: ArrayView2<'_, u8>) -> Option<Self> {
        let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
        for ((r, c), &v) in label.indexed_iter() {
            if v != 0 {
                r0 = r0.min(r);
                r1 = r1.max(r);
                c0 = c0.min(c);
                c1 = c1.max(c);
            }
        }
        (r0 != usize::MAX)
            .then(|| Self::new(c0 as f32, r0 as f32, (c1 + 1) as f32, (r1 + 1) as f32))
    }

    /// SAM convention: inclusive pixel indices `[x_min, y_min, x_max, y_max]`.
    pub fn to_inclusive(&self) -> [f32; 4] {
        [self.x0, self.y0, self.x1 - 1.0, self.y1 - 1.0]
    }

    /// Maps the four corners through `f` (edge coordinates in, edge coordinates out), takes their
    /// bounding box and clips it to a `w × h` image; `None` when nothing is left inside.
    pub(crate) fn map_corners(
        &self,
        w: usize,
        h: usize,
        f: impl Fn(f64, f64) -> (f64, f64),
    ) -> Option<Self> {
        let corners = [
            (self.x0, self.y0),
            (self.x1, self.y0),
            (self.x0, self.y1),
            (self.x1, self.y1),
        ];
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            let (u, v) = f(x as f64, y as f64);
            x0 = x0.min(u);
            y0 = y0.min(v);
            x1 = x1.max(u);
            y1 = y1.max(v);
        }
        let x0 = x0.clamp(0.0, w as f64);
        let x1 = x1.clamp(0.0, w as f64);
        let y0 = y0.clamp(0.0, h as f64);
        let y1 = y1.clamp(0.0, h as f64);
        (x1 > x0 && y1 > y0).then(|| Self::new(x0 as f32, y0 as f32, x1 as f32, y1 as f32))
    }
}

/// One training sample: `D` slices of image, label and (optionally) one box per slice.
///
/// # Shapes
/// - `image`: (D, C, H, W) `f32`, C = 1 (grey) or 3 (RGB), values expected in [0, 1]
/// - `label`: (D, H, W) class ids
/// - `boxes`: `D` entries, `None` for a slice without a box
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Image stack (D, C, H, W).
    pub image: Array4<f32>,
    /// Label stack (D, H, W).
    pub label: Array3<u8>,
    /// Optional per-slice boxes (x0, y0, x1, y1) in pixel-edge coordinates.
    pub boxes: Option<Vec<Option<BoxXyxy>>>,
}

impl Sample {
    /// A sample from an image (D, C, H, W) and a label (D, H, W); checks the shapes.
    pub fn new(image: Array4<f32>, label: Array3<u8>) -> Result<Self> {
        let s = Self {
            image: image.as_standard_layout().into_owned(),
            label: label.as_standard_layout().into_owned(),
            boxes: None,
        };
        s.validate()?;
        Ok(s)
    }

    /// A grey sample from an image (D, H, W) and a label (D, H, W).
    pub fn grey(image: Array3<f32>, label: Array3<u8>) -> Result<Self> {
        Self::new(image.insert_axis(Axis(1)), label)
    }

    /// Attaches one box per slice (checked).
    pub fn with_boxes(mut self, boxes: Vec<Option<BoxXyxy>>) -> Result<Self> {
        self.boxes = Some(boxes);
        self.validate()?;
        Ok(self)
    }

    /// Checks the shapes, the channel count and the boxes.
    pub fn validate(&self) -> Result<()> {
        let i = self.image.shape();
        let l = self.label.shape();
        let image = [i[0], i[1], i[2], i[3]];
        let label = [l[0], l[1], l[2]];
        if image[1] != 1 && image[1] != 3 {
            return Err(AugmentError::Channels { channels: image[1] });
        }
        if image[0] != label[0] || image[2] != label[1] || image[3] != label[2] {
            return Err(AugmentError::ShapeMismatch { image, label });
        }
        if image.contains(&0) {
            return Err(AugmentError::Empty { shape: image });
        }
        if let Some(boxes) = &self.boxes {
            if boxes.len() != image[0] {
                return Err(AugmentError::BoxCount {
                    boxes: boxes.len(),
                    depth: image[0],
                });
            }
            for b in boxes.iter().flatten() {
                let c = [b.x0, b.y0, b.x1, b.y1];
                if c.iter().any(|v| !v.is_finite()) || b.x1 < b.x0 || b.y1 < b.y0 {
                    return Err(AugmentError::InvalidBox { coords: c });
                }
            }
        }
        Ok(())
    }

    /// Slices D.
    pub fn depth(&self) -> usize {
        self.image.shape()[0]
    }

    /// Channels C (1 or 3).
    pub fn channels(&self) -> usize {
        self.image.shape()[1]
    }

    /// Height H (rows).
    pub fn height(&self) -> usize {
        self.image.shape()[2]
    }

    /// Width W (columns).
    pub fn width(&self) -> usize {
        self.image.shape()[3]
    }

    /// Replaces every box by `f(box)` (a `None` result drops it).
    pub(crate) fn map_boxes(&mut self, f: impl Fn(&BoxXyxy) -> Option<BoxXyxy>) {
        if let Some(boxes) = &mut self.boxes {
            for b in boxes.iter_mut() {
                *b = b.as_ref().and_then(&f);
            }
        }
    }
}
