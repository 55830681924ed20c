//! The abdomen layout: tissues with CT numbers, and the per-case list of shapes painted in order.
//!
//! Positions are in mm in the world frame of [`shapes`](super::shapes) relative to the body centre;
//! heights are on a fixed anatomical axis (0 ≈ iliac crest, 140 ≈ renal hilum, 260 ≈ liver dome).

use super::shapes::{Blob, Shape, Tube};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use std::f64::consts::PI;

/// Tissue classes; each has a per-case CT number and a texture amplitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tissue {
    Air = 0,
    SubcutFat,
    Muscle,
    VisceralFat,
    Lung,
    Bone,
    Marrow,
    Disc,
    Csf,
    Bowel,
    Gas,
    Liver,
    Gallbladder,
    Spleen,
    Stomach,
    Esophagus,
    KidneyCortex,
    KidneyMedulla,
    Adrenal,
    Pancreas,
    Aorta,
    Ivc,
    PortalVein,
}

/// Number of [`Tissue`] variants.
pub(crate) const N_TISSUES: usize = 23;

/// `(mean HU, per-case sd, texture amplitude HU)` per tissue, portal-venous-phase CT.
/// Organ ranges overlap on purpose: spleen/liver/pancreas/kidney medulla, aorta/IVC/portal vein/
/// kidney cortex, adrenal/esophagus/muscle/bowel, gallbladder/stomach contents.
const HU: [(f64, f64, f64); N_TISSUES] = [
    (-1000.0, 0.0, 2.0),   // air
    (-105.0, 8.0, 10.0),   // subcutaneous fat
    (50.0, 6.0, 10.0),     // muscle
    (-95.0, 10.0, 18.0),   // visceral fat
    (-850.0, 30.0, 40.0),  // lung
    (650.0, 100.0, 120.0), // cortical bone
    (230.0, 40.0, 60.0),   // marrow
    (90.0, 10.0, 10.0),    // disc
    (15.0, 5.0, 5.0),      // csf
    (35.0, 12.0, 25.0),    // bowel
    (-880.0, 40.0, 60.0),  // gas
    (115.0, 12.0, 9.0),    // liver
    (12.0, 8.0, 4.0),      // gallbladder
    (120.0, 12.0, 8.0),    // spleen
    (35.0, 12.0, 18.0),    // stomach
    (45.0, 8.0, 10.0),     // esophagus
    (175.0, 20.0, 12.0),   // kidney cortex
    (125.0, 15.0, 10.0),   // kidney medulla
    (45.0, 10.0, 10.0),    // adrenal
    (100.0, 12.0, 18.0),   // pancreas (lobulated)
    (170.0, 25.0, 6.0),    // aorta
    (140.0, 20.0, 8.0),    // IVC
    (160.0, 20.0, 8.0),    // portal / splenic vein
];

/// One paint operation: pixels inside `shape` (and, if set, currently of a tissue in `only_in`)
/// get `tissue` and `label`.
#[derive(Debug, Clone)]
pub(crate) struct PaintOp {
    pub shape: Shape,
    pub tissue: Tissue,
    pub label: u8,
    pub only_in: Option<Vec<Tissue>>,
}

/// A sampled case: tissue CT numbers and the ordered paint list.
pub(crate) struct Anatomy {
    /// `(base HU, texture amplitude)` per tissue.
    pub hu: [(f32, f32); N_TISSUES],
    /// Shapes painted in order (later ones win).
    pub ops: Vec<PaintOp>,
    /// Anatomical height at the centre of the scanned range.
    pub z_centre: f64,
}

/// The nominal shape of an organ blob, before the per-case jitter of [`Jit::blob`].
#[derive(Debug, Clone, Copy)]
struct BlobSpec {
    /// Centre (x, y, z) mm, on the anatomical axes.
    centre: [f64; 3],
    /// Semi-axes (along the rotated x, the rotated y, z) mm.
    semi: [f64; 3],
    /// In-plane rotation (degrees).
    angle_deg: f64,
    /// Centre drift (dx/dz, dy/dz).
    drift: [f64; 2],
    /// Relative in-plane size change per unit of normalised height (0: none).
    taper: f64,
    /// Profile exponent along z (2 = ellipsoid, larger = flatter ends).
    power: f64,
    /// Relative size variation between cases (size × U(1 − v, 1 + v)).
    size_var: f64,
    /// Amplitude of the boundary harmonics (a wavy outline).
    wavy: f64,
}

impl BlobSpec {
    /// An ellipsoid with the common defaults: no rotation, drift or taper, ±10 % size and a
    /// mildly wavy outline (0.1).
    fn new(centre: [f64; 3], semi: [f64; 3]) -> Self {
        Self {
            centre,
            semi,
            angle_deg: 0.0,
            drift: [0.0, 0.0],
            taper: 0.0,
            power: 2.0,
            size_var: 0.1,
            wavy: 0.1,
        }
    }
}

/// Per-case random placement helpers.
struct Jit<'a, R: Rng + ?Sized> {
    rng: &'a mut R,
    /// Body centre offset (x, y) mm.
    off: [f64; 2],
    /// In-plane scale.
    s: f64,
    /// Height scale about z = 140.
    sz: f64,
}

impl<R: Rng + ?Sized> Jit<'_, R> {
    fn u(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.random::<f64>()
    }
    fn n(&mut self, sd: f64) -> f64 {
        Normal::new(0.0, sd).map_or(0.0, |d| d.sample(self.rng))
    }
    /// Anatomical point → world point with the case's body placement and a jitter.
    fn p(&mut self, p: [f64; 3], sd_xy: f64, sd_z: f64) -> [f64; 3] {
        let (jx, jy, jz) = (self.n(sd_xy), self.n(sd_xy), self.n(sd_z));
        [
            self.off[0] + self.s * (p[0] + jx),
            self.off[1] + self.s * (p[1] + jy),
            140.0 + self.sz * (p[2] - 140.0 + jz),
        ]
    }
    fn harmonics(&mut self, amp: f64) -> Vec<(f64, f64, f64, f64)> {
        (2..=4)
            .map(|k| {
                let a = self.u(0.0, amp) / (k as f64).sqrt();
                let ph = self.u(0.0, 2.0 * PI);
                let tw = self.u(-1.2, 1.2);
                (k as f64, a, ph, tw)
            })
            .collect()
    }
    /// An organ blob with jittered centre, size, angle and shape.
    fn blob(&mut self, spec: BlobSpec) -> Shape {
        let BlobSpec {
            centre: c,
            semi,
            angle_deg,
            drift,
            taper,
            power,
            size_var,
            wavy,
        } = spec;
        let centre = self.p(c, 5.0, 6.0);
        let k = self.u(1.0 - size_var, 1.0 + size_var);
        let semi = [
            semi[0] * k * self.s * self.u(0.94, 1.06),
            semi[1] * k * self.s * self.u(0.94, 1.06),
            semi[2] * k.sqrt() * self.sz * self.u(0.94, 1.06),
        ];
        let angle = (angle_deg + self.n(6.0)).to_radians();
        let drift = [drift[0] + self.n(0.05), drift[1] + self.n(0.05)];
        let harmonics = self.harmonics(wavy);
        Shape::Blob(Blob {
            centre,
            semi,
            angle,
            drift,
            taper,
            power,
            harmonics,
        })
    }
    /// A fixed-shape blob (no jitter beyond the body placement): body wall, spine.
    fn rigid(
        &mut self,
        c: [f64; 3],
        semi: [f64; 3],
        power: f64,
        h: &[(f64, f64, f64, f64)],
    ) -> Shape {
        Shape::Blob(Blob {
            centre: [
                self.off[0] + self.s * c[0],
                self.off[1] + self.s * c[1],
                c[2],
            ],
            semi: [semi[0] * self.s, semi[1] * self.s, semi[2]],
            angle: 0.0,
            drift: [0.0, 0.0],
            taper: 0.0,
            power,
            harmonics: h.to_vec(),
        })
    }
    /// A tube through jittered points with jittered radii.
    fn tube(&mut self, pts: &[[f64; 3]], radii: &[f64], aspect: f64, sd: f64) -> Shape {
        let shift = [self.n(sd), self.n(sd), self.n(sd)];
        let k = self.u(0.88, 1.12);
        let pts: Vec<[f64; 3]> = pts
            .iter()
            .map(|&q| {
                let q = [q[0] + shift[0], q[1] + shift[1], q[2] + shift[2]];
                self.p(q, sd * 0.5, sd * 0.5)
            })
            .collect();
        let radii: Vec<f64> = radii.iter().map(|r| r * k * self.s).collect();
        Shape::Tube(Tube::new(&pts, &radii, aspect))
    }
}

fn op(shape: Shape, tissue: Tissue, label: u8) -> PaintOp {
    PaintOp {
        shape,
        tissue,
        label,
        only_in: None,
    }
}

fn op_in(shape: Shape, tissue: Tissue, label: u8, only_in: &[Tissue]) -> PaintOp {
    PaintOp {
        shape,
        tissue,
        label,
        only_in: Some(only_in.to_vec()),
    }
}

impl Anatomy {
    /// Samples one case.
    pub(crate) fn sample<R: Rng + ?Sized>(rng: &mut R) -> Self {
        use Tissue as T;
        let mut hu = [(0f32, 0f32); N_TISSUES];
        for (i, &(m, sd, amp)) in HU.iter().enumerate() {
            let d = Normal::new(m, sd.max(1e-9)).expect("finite");
            hu[i] = (d.sample(rng) as f32, amp as f32);
        }
        let off = [
            Normal::new(0.0, 6.0).expect("finite").sample(rng),
            5.0 + Normal::new(0.0, 5.0).expect("finite").sample(rng),
        ];
        let s = 0.9 + 0.2 * rng.random::<f64>();
        let sz = 0.93 + 0.14 * rng.random::<f64>();
        let z_centre = 140.0 + 20.0 * (rng.random::<f64>() - 0.5);
        let mut j = Jit { rng, off, s, sz };
        let mut ops = Vec::new();
        let tall = 400.0;

        // Body: skin/subcutaneous fat, muscle wall, visceral fat (nested, same wavy outline).
        let body_h = {
            let mut h = j.harmonics(0.05);
            h.push((2.0, 0.04, 0.0, 0.0)); // flatter back
            h
        };
        let (bw, bd) = (j.u(140.0, 160.0), j.u(112.0, 125.0));
        let by = 14.0; // the body centre lies behind the organ frame's origin
        let fat = j.u(10.0, 25.0);
        ops.push(op(
            j.rigid([0.0, by, 140.0], [bw, bd, tall], 8.0, &body_h),
            T::SubcutFat,
            0,
        ));
        ops.push(op(
            j.rigid([0.0, by, 140.0], [bw - fat, bd - fat, tall], 8.0, &body_h),
            T::Muscle,
            0,
        ));
        let wall = fat + j.u(7.0, 11.0);
        ops.push(op(
            j.rigid([0.0, by, 140.0], [bw - wall, bd - wall, tall], 8.0, &body_h),
            T::VisceralFat,
            0,
        ));
        // Lung bases, posterior, at the top.
        for sx in [-1.0, 1.0] {
            let lung = j.blob(BlobSpec {
                wavy: 0.05,
                ..BlobSpec::new([sx * 75.0, 45.0, 290.0], [58.0, 55.0, 70.0])
            });
            ops.push(op(lung, T::Lung, 0));
        }
        // Ribs: arcs inside the wall, sloping down anteriorly.
        let (ra, rb) = (bw - fat - 4.0, bd - fat - 4.0);
        for i in 0..5 {
            let z0 = 175.0 + 22.0 * i as f64;
            for sx in [-1.0, 1.0] {
                let pts: Vec<[f64; 3]> = (0..=10)
                    .map(|q| {
                        let th = (75.0 - 11.5 * q as f64).to_radians();
                        [sx * ra * th.cos(), by + rb * th.sin(), z0 - 4.5 * q as f64]
                    })
                    .collect();
                let radii = vec![5.0; pts.len()];
                let rib = j.tube(&pts, &radii, 0.8, 1.5);
                ops.push(op_in(
                    rib,
                    T::Bone,
                    0,
                    &[T::Muscle, T::VisceralFat, T::SubcutFat, T::Lung],
                ));
            }
        }
        // Spine: vertebral body (bone shell, marrow, discs), arch, canal, processes; muscles.
        for sx in [-1.0, 1.0] {
            let para = j.rigid([sx * 32.0, 98.0, 140.0], [20.0, 15.0, tall], 8.0, &[]);
            ops.push(op(para, T::Muscle, 0));
            let psoas = j.blob(BlobSpec {
                taper: -0.6,
                wavy: 0.04,
                ..BlobSpec::new([sx * 38.0, 55.0, 20.0], [18.0, 19.0, 110.0])
            });
            ops.push(op(psoas, T::Muscle, 0));
        }
        ops.push(op(
            j.rigid([0.0, 62.0, 140.0], [21.0, 19.0, tall], 8.0, &[]),
            T::Bone,
            0,
        ));
        ops.push(op(
            j.rigid([0.0, 62.0, 140.0], [18.0, 16.0, tall], 8.0, &[]),
            T::Marrow,
            0,
        ));
        let disc_phase = j.u(0.0, 34.0);
        for q in -2..10 {
            let zc = disc_phase + 34.0 * q as f64;
            let disc = j.rigid([0.0, 62.0, zc], [21.0, 19.0, 4.5], 6.0, &[]);
            ops.push(op(disc, T::Disc, 0));
        }
        ops.push(op(
            j.rigid([0.0, 92.0, 140.0], [15.0, 13.0, tall], 8.0, &[]),
            T::Bone,
            0,
        ));
        ops.push(op(
            j.rigid([0.0, 92.0, 140.0], [9.0, 7.5, tall], 8.0, &[]),
            T::Csf,
            0,
        ));
        ops.push(op(
            j.rigid([0.0, 111.0, 140.0], [5.0, 10.0, tall], 8.0, &[]),
            T::Bone,
            0,
        ));
        for sx in [-1.0, 1.0] {
            let tp = j.rigid([sx * 24.0, 85.0, 140.0], [12.0, 5.0, tall], 8.0, &[]);
            ops.push(op(tp, T::Bone, 0));
        }
        // Bowel: colon frame and small-bowel loops, some with gas (hard negatives).
        let colon = [
            (
                vec![
                    [-100.0, -5.0, 10.0],
                    [-105.0, -15.0, 80.0],
                    [-95.0, -35.0, 130.0],
                ],
                19.0,
            ),
            (
                vec![
                    [-95.0, -35.0, 130.0],
                    [-30.0, -75.0, 125.0],
                    [40.0, -75.0, 130.0],
                    [95.0, -30.0, 150.0],
                ],
                17.0,
            ),
            (
                vec![
                    [95.0, -30.0, 150.0],
                    [105.0, 10.0, 100.0],
                    [100.0, 5.0, 10.0],
                ],
                15.0,
            ),
        ];
        for (pts, r) in colon {
            let radii = vec![r; pts.len()];
            let c = j.tube(&pts, &radii, 0.9, 4.0);
            ops.push(op(c.clone(), T::Bowel, 0));
            if j.u(0.0, 1.0) < 0.7 {
                let radii = vec![r * 0.5; pts.len()];
                let g = j.tube(&pts, &radii, 0.9, 3.0);
                ops.push(op_in(g, T::Gas, 0, &[T::Bowel]));
            }
        }
        for _ in 0..14 {
            let c = [j.u(-80.0, 80.0), j.u(-80.0, 15.0), j.u(5.0, 120.0)];
            let semi = [j.u(12.0, 24.0), j.u(10.0, 20.0), j.u(15.0, 35.0)];
            let ang = j.u(0.0, 180.0);
            let loop_ = j.blob(BlobSpec {
                angle_deg: ang,
                wavy: 0.15,
                ..BlobSpec::new(c, semi)
            });
            ops.push(op(loop_, T::Bowel, 0));
            if j.u(0.0, 1.0) < 0.3 {
                let g = j.blob(BlobSpec::new(
                    [c[0], c[1] - 4.0, c[2]],
                    [semi[0] * 0.4, semi[1] * 0.3, semi[2] * 0.5],
                ));
                ops.push(op_in(g, T::Gas, 0, &[T::Bowel]));
            }
        }
        // 6 liver: right lobe, inferior tip, left lobe.
        let liver = j.blob(BlobSpec {
            drift: [0.05, 0.0],
            taper: 0.25,
            power: 2.5,
            size_var: 0.12,
            wavy: 0.08,
            ..BlobSpec::new([-62.0, -5.0, 190.0], [72.0, 78.0, 62.0])
        });
        ops.push(op(liver, T::Liver, 6));
        let tip = j.blob(BlobSpec {
            angle_deg: 10.0,
            size_var: 0.25,
            ..BlobSpec::new([-92.0, 5.0, 142.0], [32.0, 48.0, 34.0])
        });
        ops.push(op(tip, T::Liver, 6));
        let left = j.blob(BlobSpec {
            angle_deg: -15.0,
            taper: 0.2,
            size_var: 0.15,
            ..BlobSpec::new([15.0, -50.0, 200.0], [58.0, 28.0, 38.0])
        });
        ops.push(op(left, T::Liver, 6));
        // 4 gallbladder, under the liver.
        let gb = j.blob(BlobSpec {
            angle_deg: 30.0,
            drift: [0.2, -0.3],
            size_var: 0.2,
            wavy: 0.06,
            ..BlobSpec::new([-40.0, -45.0, 140.0], [15.0, 17.0, 30.0])
        });
        ops.push(op(gb, T::Gallbladder, 4));
        // 5 esophagus (before the stomach, which covers the junction), with a collapsed lumen.
        let eso_pts = [
            [-2.0, 30.0, 290.0],
            [8.0, 16.0, 248.0],
            [32.0, -18.0, 222.0],
        ];
        let eso = j.tube(&eso_pts, &[8.0, 8.0, 8.5], 0.85, 2.0);
        ops.push(op(eso, T::Esophagus, 5));
        if j.u(0.0, 1.0) < 0.5 {
            let lumen = j.tube(&eso_pts, &[2.5, 2.5, 2.5], 1.0, 0.5);
            ops.push(op_in(lumen, T::Gas, 5, &[T::Esophagus]));
        }
        // 7 stomach: body + antrum, gas cap in the fundus.
        let st = j.blob(BlobSpec {
            angle_deg: 20.0,
            drift: [-0.4, -0.1],
            taper: 0.2,
            size_var: 0.2,
            wavy: 0.12,
            ..BlobSpec::new([55.0, -35.0, 185.0], [45.0, 38.0, 52.0])
        });
        ops.push(op(st, T::Stomach, 7));
        let antrum = j.blob(BlobSpec {
            angle_deg: -10.0,
            size_var: 0.2,
            ..BlobSpec::new([5.0, -52.0, 150.0], [35.0, 17.0, 18.0])
        });
        ops.push(op(antrum, T::Stomach, 7));
        if j.u(0.0, 1.0) < 0.75 {
            let cap = j.blob(BlobSpec {
                angle_deg: 10.0,
                size_var: 0.3,
                wavy: 0.05,
                ..BlobSpec::new([55.0, -62.0, 212.0], [32.0, 16.0, 22.0])
            });
            ops.push(op_in(cap, T::Gas, 7, &[T::Stomach]));
        }
        // 1 spleen, posterolateral left.
        let sp = j.blob(BlobSpec {
            angle_deg: -30.0,
            power: 2.2,
            size_var: 0.2,
            ..BlobSpec::new([92.0, 40.0, 195.0], [26.0, 55.0, 45.0])
        });
        ops.push(op(sp, T::Spleen, 1));
        // 2 right kidney (image left, lower), 3 left kidney; medulla and sinus fat inside.
        for (label, sx, zc, ang) in [(2u8, -1.0, 112.0, 30.0), (3u8, 1.0, 126.0, -30.0)] {
            let c = [sx * 72.0, 50.0, zc];
            let k = j.blob(BlobSpec {
                angle_deg: ang,
                size_var: 0.15,
                wavy: 0.05,
                ..BlobSpec::new(c, [27.0, 24.0, 52.0])
            });
            let Shape::Blob(kb) = &k else { unreachable!() };
            let kb = kb.clone();
            ops.push(op(k, T::KidneyCortex, label));
            let mut med = kb.clone();
            med.semi = [kb.semi[0] * 0.62, kb.semi[1] * 0.62, kb.semi[2] * 0.75];
            med.harmonics.clear();
            ops.push(op_in(
                Shape::Blob(med),
                T::KidneyMedulla,
                label,
                &[T::KidneyCortex],
            ));
            // Renal sinus fat opening medially (toward the spine, slightly anterior).
            let mut sinus = kb.clone();
            sinus.centre = [
                kb.centre[0] - sx * 16.0 * j.s,
                kb.centre[1] - 6.0 * j.s,
                kb.centre[2],
            ];
            sinus.semi = [kb.semi[0] * 0.45, kb.semi[1] * 0.35, kb.semi[2] * 0.4];
            sinus.harmonics.clear();
            ops.push(op_in(
                Shape::Blob(sinus),
                T::VisceralFat,
                0,
                &[T::KidneyCortex, T::KidneyMedulla],
            ));
        }
        // 12 adrenal glands: thin inverted-Y limbs above and medial to the kidneys.
        for (sx, z) in [(-1.0, 182.0), (1.0, 178.0)] {
            let apex = [sx * 48.0, 22.0, z];
            let limbs = [
                [sx * 56.0, 45.0, z - 9.0],
                [sx * 42.0, 47.0, z - 11.0],
                [sx * 50.0, 25.0, z + 14.0],
            ];
            let shift = [j.n(3.0), j.n(3.0), j.n(4.0)];
            for l in limbs {
                let pts = [
                    [apex[0] + shift[0], apex[1] + shift[1], apex[2] + shift[2]],
                    [l[0] + shift[0], l[1] + shift[1], l[2] + shift[2]],
                ];
                let limb = j.tube(&pts, &[3.4, 2.8], 1.0, 1.0);
                ops.push(op(limb, T::Adrenal, 12));
            }
        }
        // 11 pancreas: head → neck → body → tail toward the splenic hilum.
        let pan = j.tube(
            &[
                [-35.0, 5.0, 128.0],
                [-5.0, -15.0, 138.0],
                [35.0, -8.0, 148.0],
                [75.0, 22.0, 160.0],
            ],
            &[15.0, 11.0, 11.0, 9.0],
            0.85,
            3.0,
        );
        ops.push(op(pan, T::Pancreas, 11));
        // 10 portal vein (into the liver hilum) and splenic vein (behind the pancreas).
        let pv = j.tube(
            &[
                [-55.0, -5.0, 168.0],
                [-30.0, 5.0, 155.0],
                [-8.0, 12.0, 143.0],
            ],
            &[7.0, 7.0, 6.5],
            1.0,
            2.0,
        );
        ops.push(op(pv, T::PortalVein, 10));
        let sv = j.tube(
            &[
                [-8.0, 12.0, 143.0],
                [30.0, 9.0, 150.0],
                [70.0, 30.0, 162.0],
                [86.0, 38.0, 172.0],
            ],
            &[5.5, 4.8, 4.5, 4.5],
            1.0,
            2.0,
        );
        ops.push(op(sv, T::PortalVein, 10));
        // 8 aorta, left of midline in front of the spine.
        let ao = j.tube(
            &[
                [12.0, 30.0, -20.0],
                [10.0, 30.0, 120.0],
                [5.0, 33.0, 200.0],
                [0.0, 36.0, 300.0],
            ],
            &[10.0, 11.0, 11.5, 12.0],
            1.0,
            2.0,
        );
        ops.push(op(ao, T::Aorta, 8));
        // 9 IVC, right of the aorta, entering the liver superiorly.
        let ivc = j.tube(
            &[
                [-25.0, 26.0, -20.0],
                [-28.0, 20.0, 150.0],
                [-35.0, 2.0, 230.0],
                [-35.0, -3.0, 262.0],
            ],
            &[11.0, 11.5, 12.0, 12.0],
            0.8,
            2.0,
        );
        ops.push(op(ivc, T::Ivc, 9));

        Self { hu, ops, z_centre }
    }
}
