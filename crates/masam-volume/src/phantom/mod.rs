//! A **synthetic**, deterministic CT-like abdomen phantom with the 12 BTCV organ labels.
//!
//! This is not patient data. It exists so that the `btcv_finetune` example and the tests run with
//! no downloads, on data that is BTCV-like rather than trivially separable:
//!
//! * **Layout.** Organs sit in a consistent anatomical arrangement (axial slices shown in the
//!   radiological display convention: anterior at the top, the patient's right on the image left),
//!   with per-case variation of position, size, orientation and boundary shape, and they move
//!   smoothly from slice to slice (blobs drift, taper and twist along z; vessels and the pancreas
//!   are swept tubes).
//! * **Labels** (BTCV after the 13 → 12 merge, [`Organ`]): 1 spleen, 2 right kidney, 3 left kidney,
//!   4 gallbladder, 5 esophagus, 6 liver, 7 stomach, 8 aorta, 9 inferior vena cava, 10 portal and
//!   splenic veins, 11 pancreas, 12 adrenal glands; 0 is everything else.
//! * **Intensities** (HU, portal-venous-like) overlap between organs on purpose (liver/spleen/
//!   pancreas, aorta/IVC/portal vein/renal cortex, adrenal/esophagus/muscle/bowel), so position
//!   and shape matter, not just intensity. Unlabelled distractors are included: body wall fat and
//!   muscle, spine and ribs (bone), lung bases, colon and small-bowel loops with gas.
//! * **Texture and noise**: smooth per-tissue value noise, light in-plane partial-volume blur,
//!   Gaussian quantum noise, integer HU.
//!
//! Sizes follow real proportions (liver ≈ 1.5–2 l down to adrenal glands of a few ml), so at
//! coarse spacings the small structures are only a few voxels thick, as in real data.
//!
//! ```
//! use masam_volume::phantom::{Organ, Phantom, PhantomConfig};
//! let cfg = PhantomConfig { height: 64, width: 64, slices: 24, ..PhantomConfig::default() }
//!     .with_fov(380.0, 240.0);
//! let (image, labels) = Phantom::new(cfg)?.case(7);
//! assert_eq!(image.shape_zyx(), [24, 64, 64]);
//! assert!(labels.data.iter().any(|&l| l == Organ::Liver.label()));
//! # Ok::<(), masam_volume::phantom::PhantomError>(())
//! ```

mod anatomy;
mod shapes;
mod texture;

use crate::Volume;
use anatomy::{Anatomy, Tissue, N_TISSUES};
use ndarray::{Array2, Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Errors of the phantom generator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PhantomError {
    /// A config value is out of its valid domain.
    #[error("invalid phantom config `{field}`: {reason}")]
    InvalidConfig {
        /// Config field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The 12 labelled structures, numbered as BTCV after merging label 13 into 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Organ {
    /// 1.
    Spleen = 1,
    /// 2 (image left in the display convention).
    RightKidney = 2,
    /// 3.
    LeftKidney = 3,
    /// 4.
    Gallbladder = 4,
    /// 5.
    Esophagus = 5,
    /// 6.
    Liver = 6,
    /// 7.
    Stomach = 7,
    /// 8.
    Aorta = 8,
    /// 9.
    InferiorVenaCava = 9,
    /// 10.
    PortalSplenicVeins = 10,
    /// 11.
    Pancreas = 11,
    /// 12 (left and right merged).
    AdrenalGlands = 12,
}

impl Organ {
    /// All organs in label order.
    pub const ALL: [Organ; 12] = [
        Organ::Spleen,
        Organ::RightKidney,
        Organ::LeftKidney,
        Organ::Gallbladder,
        Organ::Esophagus,
        Organ::Liver,
        Organ::Stomach,
        Organ::Aorta,
        Organ::InferiorVenaCava,
        Organ::PortalSplenicVeins,
        Organ::Pancreas,
        Organ::AdrenalGlands,
    ];

    /// The label value (1..=12).
    pub fn label(self) -> u8 {
        self as u8
    }

    /// The organ of a label value, if any.
    pub fn from_label(label: u8) -> Option<Self> {
        Self::ALL.get((label as usize).checked_sub(1)?).copied()
    }

    /// BTCV-style name.
    pub fn name(self) -> &'static str {
        match self {
            Organ::Spleen => "spleen",
            Organ::RightKidney => "right kidney",
            Organ::LeftKidney => "left kidney",
            Organ::Gallbladder => "gallbladder",
            Organ::Esophagus => "esophagus",
            Organ::Liver => "liver",
            Organ::Stomach => "stomach",
            Organ::Aorta => "aorta",
            Organ::InferiorVenaCava => "inferior vena cava",
            Organ::PortalSplenicVeins => "portal and splenic veins",
            Organ::Pancreas => "pancreas",
            Organ::AdrenalGlands => "adrenal glands",
        }
    }
}

/// Size and geometry of the generated volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhantomConfig {
    /// Rows H (anterior → posterior).
    pub height: usize,
    /// Columns W (patient right → left).
    pub width: usize,
    /// Slices Z (inferior → superior).
    pub slices: usize,
    /// Voxel size (x, y, z) in mm. The anatomy is about 330 × 260 mm in-plane and the organs span
    /// about 260 mm in z; the scanned range is centred on the kidneys, so fewer slices or thinner
    /// ones see less of it (organs outside the range are simply absent).
    pub spacing: [f64; 3],
    /// Standard deviation of the Gaussian image noise (HU).
    pub noise_sd_hu: f64,
}

impl Default for PhantomConfig {
    /// 128 × 128 × 48 covering 380 × 380 × 240 mm (2.97 × 2.97 × 5 mm voxels), 12 HU noise.
    fn default() -> Self {
        Self {
            height: 128,
            width: 128,
            slices: 48,
            spacing: [380.0 / 128.0, 380.0 / 128.0, 5.0],
            noise_sd_hu: 12.0,
        }
    }
}

impl PhantomConfig {
    /// BTCV-like geometry: 512 × 512 in-plane at ≈ 0.74 mm, `slices` slices at 2.5 mm.
    pub fn btcv(slices: usize) -> Self {
        Self {
            height: 512,
            width: 512,
            slices,
            spacing: [380.0 / 512.0, 380.0 / 512.0, 2.5],
            noise_sd_hu: 12.0,
        }
    }

    /// Sets the spacing so that the grid covers a `fov_mm` square in-plane and `extent_z_mm` in z.
    pub fn with_fov(mut self, fov_mm: f64, extent_z_mm: f64) -> Self {
        self.spacing = [
            fov_mm / self.width.max(1) as f64,
            fov_mm / self.height.max(1) as f64,
            extent_z_mm / self.slices.max(1) as f64,
        ];
        self
    }

    /// Checks sizes (1..=4096 in-plane, 1..=4096 slices), spacing (finite, > 0) and noise (≥ 0).
    pub fn validate(&self) -> Result<(), PhantomError> {
        let bad = |field, reason: String| Err(PhantomError::InvalidConfig { field, reason });
        for (field, n) in [
            ("height", self.height),
            ("width", self.width),
            ("slices", self.slices),
        ] {
            if n == 0 || n > 4096 {
                return bad(field, format!("{n} is outside 1..=4096"));
            }
        }
        if self.spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return bad(
                "spacing",
                format!("{:?} must be finite and positive", self.spacing),
            );
        }
        if !self.noise_sd_hu.is_finite() || self.noise_sd_hu < 0.0 {
            return bad("noise_sd_hu", format!("{} must be ≥ 0", self.noise_sd_hu));
        }
        Ok(())
    }
}

/// The phantom generator: [`Phantom::case`] turns a seed into an (image, label) pair.
#[derive(Debug, Clone)]
pub struct Phantom {
    cfg: PhantomConfig,
}

/// SplitMix64 mixer for seed derivation.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Phantom {
    /// Validates the config.
    pub fn new(cfg: PhantomConfig) -> Result<Self, PhantomError> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The config.
    pub fn config(&self) -> &PhantomConfig {
        &self.cfg
    }

    /// Generates case `seed`: `(image in HU, labels 0..=12)`, both (Z, Y, X).
    ///
    /// Deterministic in `(config, seed)` on any thread count. The arrays are already in the
    /// display orientation the model sees (row 0 anterior, column 0 the patient's right, slice 0
    /// inferior), i.e. what the reference gets after its `s.T[::-1, ::-1]` step, so the BTCV file
    /// orientation step must not be applied to phantom cases. The affine maps voxels to RAS+ mm
    /// accordingly (`x = −i·sx`, `y = −j·sy`, `z = k·sz`, centred in-plane).
    pub fn case(&self, seed: u64) -> (Volume<f32>, Volume<u8>) {
        let cfg = &self.cfg;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x7068_616E_746F_6D00));
        let anatomy = Anatomy::sample(&mut rng);
        let [sx, sy, sz] = cfg.spacing;
        let (h, w, d) = (cfg.height, cfg.width, cfg.slices);
        let z_of = |k: usize| anatomy.z_centre + (k as f64 - (d as f64 - 1.0) / 2.0) * sz;
        let x_of = |c: usize| (c as f64 + 0.5 - w as f64 / 2.0) * sx;
        let y_of = |r: usize| (r as f64 + 0.5 - h as f64 / 2.0) * sy;
        let lo = [x_of(0) - 20.0, y_of(0) - 20.0, z_of(0) - 20.0];
        let hi = [x_of(w - 1) + 20.0, y_of(h - 1) + 20.0, z_of(d - 1) + 20.0];
        let coarse = texture::ValueNoise::new(&mut rng, lo, hi, 12.0);
        let fine = texture::ValueNoise::new(&mut rng, lo, hi, 4.0);
        let noise_seed = rng.random::<u64>();

        let slices: Vec<(Array2<f32>, Array2<u8>)> = (0..d)
            .into_par_iter()
            .map(|k| {
                let z = z_of(k);
                let mut tissue = Array2::<u8>::from_elem((h, w), Tissue::Air as u8);
                let mut label = Array2::<u8>::zeros((h, w));
                for op in &anatomy.ops {
                    let Some(sec) = op.shape.section(z) else {
                        continue;
                    };
                    let [x0, y0, x1, y1] = sec.bbox();
                    let c0 = ((x0 / sx + w as f64 / 2.0 - 0.5).floor().max(0.0)) as usize;
                    let c1 = ((x1 / sx + w as f64 / 2.0 - 0.5).ceil().max(-1.0) + 1.0) as usize;
                    let r0 = ((y0 / sy + h as f64 / 2.0 - 0.5).floor().max(0.0)) as usize;
                    let r1 = ((y1 / sy + h as f64 / 2.0 - 0.5).ceil().max(-1.0) + 1.0) as usize;
                    for r in r0..r1.min(h) {
                        let y = y_of(r);
                        for c in c0..c1.min(w) {
                            if let Some(allowed) = &op.only_in {
                                let t = tissue[[r, c]];
                                if !allowed.iter().any(|a| *a as u8 == t) {
                                    continue;
                                }
                            }
                            if sec.contains(x_of(c), y) {
                                tissue[[r, c]] = op.tissue as u8;
                                label[[r, c]] = op.label;
                            }
                        }
                    }
                }
                // Tissue CT numbers with smooth texture.
                let mut hu = Array2::<f32>::zeros((h, w));
                for ((r, c), v) in hu.indexed_iter_mut() {
                    let t = tissue[[r, c]] as usize;
                    let (base, amp) = anatomy.hu[t.min(N_TISSUES - 1)];
                    let p = [x_of(c), y_of(r), z];
                    let n = 0.65 * coarse.sample(p) + 0.35 * fine.sample(p);
                    *v = base + amp * 1.6 * n;
                }
                // Partial-volume blur ([1, 2, 1] ⊗ [1, 2, 1] / 16, edges replicated).
                let hu = blur121(&hu);
                // Quantum noise and integer HU.
                let mut nrng = ChaCha8Rng::seed_from_u64(mix(noise_seed ^ mix(k as u64)));
                let sd = cfg.noise_sd_hu as f32;
                let hu = hu.mapv(|v| {
                    let e: f32 = nrng.sample(StandardNormal);
                    (v + sd * e).round().clamp(-1024.0, 3071.0)
                });
                (hu, label)
            })
            .collect();

        let mut image = Array3::<f32>::zeros((d, h, w));
        let mut labels = Array3::<u8>::zeros((d, h, w));
        for (k, (hu, lab)) in slices.into_iter().enumerate() {
            image.index_axis_mut(Axis(0), k).assign(&hu);
            labels.index_axis_mut(Axis(0), k).assign(&lab);
        }
        let affine = [
            [-sx, 0.0, 0.0, (w as f64 / 2.0 - 0.5) * sx],
            [0.0, -sy, 0.0, (h as f64 / 2.0 - 0.5) * sy],
            [0.0, 0.0, sz, z_of(0)],
            [0.0, 0.0, 0.0, 1.0],
        ];
        (
            Volume {
                data: image,
                spacing: cfg.spacing,
                affine,
            },
            Volume {
                data: labels,
                spacing: cfg.spacing,
                affine,
            },
        )
    }
}

/// Separable [1, 2, 1] / 4 blur in both in-plane directions with replicated edges.
fn blur121(a: &Array2<f32>) -> Array2<f32> {
    let (h, w) = a.dim();
    let mut tmp = Array2::<f32>::zeros((h, w));
    for r in 0..h {
        for c in 0..w {
            let l = a[[r, c.saturating_sub(1)]];
            let rr = a[[r, (c + 1).min(w - 1)]];
            tmp[[r, c]] = 0.25 * l + 0.5 * a[[r, c]] + 0.25 * rr;
        }
    }
    let mut out = Array2::<f32>::zeros((h, w));
    for r in 0..h {
        for c in 0..w {
            let u = tmp[[r.saturating_sub(1), c]];
            let d = tmp[[(r + 1).min(h - 1), c]];
            out[[r, c]] = 0.25 * u + 0.5 * tmp[[r, c]] + 0.25 * d;
        }
    }
    out
}
