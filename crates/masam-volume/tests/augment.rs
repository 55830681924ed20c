//! Geometry, label-safety, determinism and error tests of `masam_volume::augment`.

use masam_volume::augment::*;
use ndarray::{s, Array3, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// A grey (D, H, W) sample whose image encodes the position (so moves are visible) and whose label
/// holds a rectangle of class `cls` at rows `r0..r1`, cols `c0..c1` on every slice.
fn rect_sample(
    d: usize,
    h: usize,
    w: usize,
    (r0, r1, c0, c1): (usize, usize, usize, usize),
    cls: u8,
) -> Sample {
    let image = Array3::from_shape_fn((d, h, w), |(k, r, c)| {
        ((k * 7 + r * w + c) % 251) as f32 / 250.0
    });
    let mut label = Array3::<u8>::zeros((d, h, w));
    label.slice_mut(s![.., r0..r1, c0..c1]).fill(cls);
    let boxes = (0..d)
        .map(|k| BoxXyxy::from_mask(label.slice(s![k, .., ..]), cls))
        .collect();
    Sample::grey(image, label)
        .unwrap()
        .with_boxes(boxes)
        .unwrap()
}

/// Tight boxes of `cls` per slice.
fn tight_boxes(s: &Sample, cls: u8) -> Vec<Option<BoxXyxy>> {
    (0..s.depth())
        .map(|k| BoxXyxy::from_mask(s.label.slice(s![k, .., ..]), cls))
        .collect()
}

fn labels_of(s: &Sample) -> BTreeSet<u8> {
    s.label.iter().copied().collect()
}

#[test]
fn rot90_moves_a_known_pixel_and_the_box_follows_exactly() {
    // Non-square 6 × 10 (H × W), object rows 1..3, cols 6..9.
    for k in 0..4u8 {
        let mut s = rect_sample(2, 6, 10, (1, 3, 6, 9), 5);
        let marker = (1usize, 8usize); // (row, col) inside the object
        s.image[[0, 0, marker.0, marker.1]] = 2.0; // unique value
        rot90(&mut s, k);
        let (h, w) = (6usize, 10usize);
        let expect = match k {
            0 => (marker.0, marker.1),
            1 => (w - 1 - marker.1, marker.0),
            2 => (h - 1 - marker.0, w - 1 - marker.1),
            _ => (marker.1, h - 1 - marker.0),
        };
        let expect_shape = if k % 2 == 1 {
            [2, 1, w, h]
        } else {
            [2, 1, h, w]
        };
        assert_eq!(s.image.shape(), &expect_shape, "k={k}");
        assert_eq!(s.image[[0, 0, expect.0, expect.1]], 2.0, "k={k}");
        assert_eq!(s.label[[0, expect.0, expect.1]], 5, "k={k}");
        assert_eq!(s.boxes.clone().unwrap(), tight_boxes(&s, 5), "k={k}");
    }
}

#[test]
fn rot90_matches_numpy_formula_on_every_pixel() {
    // np.rot90(m, 1, axes=(0, 1)): out[i, j] = m[j, W-1-i].
    let mut s = rect_sample(1, 5, 7, (0, 1, 0, 1), 1);
    let orig = s.image.clone();
    rot90(&mut s, 1);
    for i in 0..7 {
        for j in 0..5 {
            assert_eq!(s.image[[0, 0, i, j]], orig[[0, 0, j, 7 - 1 - i]]);
        }
    }
}

#[test]
fn flip_moves_pixels_and_boxes() {
    let mut s = rect_sample(3, 8, 12, (2, 4, 1, 5), 2);
    let orig = s.clone();
    flip(&mut s, FlipAxis::Rows);
    assert_eq!(s.image[[1, 0, 7 - 2, 3]], orig.image[[1, 0, 2, 3]]);
    assert_eq!(s.boxes.clone().unwrap(), tight_boxes(&s, 2));
    assert_eq!(
        s.boxes.as_ref().unwrap()[0],
        Some(BoxXyxy::new(1.0, 4.0, 5.0, 6.0))
    );
    let mut s = orig.clone();
    flip(&mut s, FlipAxis::Cols);
    assert_eq!(s.image[[2, 0, 3, 11 - 4]], orig.image[[2, 0, 3, 4]]);
    assert_eq!(s.boxes.clone().unwrap(), tight_boxes(&s, 2));
    flip(&mut s, FlipAxis::Cols);
    assert_eq!(s, orig, "flip is an involution");
}

#[test]
fn rotate_90_equals_rot90_and_small_angles_keep_the_box_around_the_label() {
    let base = rect_sample(2, 16, 16, (3, 7, 9, 14), 4);
    let mut a = base.clone();
    let mut b = base.clone();
    rotate(&mut a, 90.0, Interp::Nearest);
    rot90(&mut b, 1);
    assert_eq!(a.image, b.image);
    assert_eq!(a.label, b.label);
    assert_eq!(a.boxes, b.boxes);

    // Angle 0 is the identity.
    let mut z = base.clone();
    rotate(&mut z, 0.0, Interp::Nearest);
    assert_eq!(z, base);

    for angle in [-15.0, -7.0, 5.0, 14.0] {
        let mut r = rect_sample(1, 64, 64, (20, 30, 30, 50), 4);
        rotate(&mut r, angle, Interp::Nearest);
        let tight = tight_boxes(&r, 4)[0].unwrap();
        let rb = r.boxes.as_ref().unwrap()[0].unwrap();
        // The rotated box encloses the label (up to the half-pixel of nearest rounding) and is
        // not much larger than the rotated rectangle's bounding box.
        assert!(
            rb.x0 <= tight.x0 + 0.5 && rb.y0 <= tight.y0 + 0.5,
            "{angle}: {rb:?} {tight:?}"
        );
        assert!(
            rb.x1 >= tight.x1 - 0.5 && rb.y1 >= tight.y1 - 0.5,
            "{angle}: {rb:?} {tight:?}"
        );
        assert!((rb.x1 - rb.x0) - (tight.x1 - tight.x0) < 2.0);
        assert!((rb.y1 - rb.y0) - (tight.y1 - tight.y0) < 2.0);
        // Centre of rotation: the image centre is fixed, so the object's centroid rotates about it.
        let (cx, cy) = (32.0f64, 32.0f64);
        let (ox, oy) = (40.0 - cx, 25.0 - cy); // object centre before
        let t = angle.to_radians();
        // Forward map: x' = sin·dr + cos·dc, y' = cos·dr − sin·dc.
        let ex = t.sin() * oy + t.cos() * ox + cx;
        let ey = t.cos() * oy - t.sin() * ox + cy;
        let gx = (tight.x0 + tight.x1) as f64 / 2.0;
        let gy = (tight.y0 + tight.y1) as f64 / 2.0;
        assert!(
            (gx - ex).abs() < 1.0 && (gy - ey).abs() < 1.0,
            "{angle}: {gx},{gy} vs {ex},{ey}"
        );
    }
}

#[test]
fn rotate_bilinear_changes_only_the_image_interpolation() {
    let base = rect_sample(1, 32, 32, (8, 20, 10, 22), 9);
    let mut n = base.clone();
    let mut b = base.clone();
    rotate(&mut n, 11.0, Interp::Nearest);
    rotate(&mut b, 11.0, Interp::Bilinear);
    assert_eq!(n.label, b.label);
    assert_eq!(n.boxes, b.boxes);
    assert_ne!(n.image, b.image);
    // Bilinear of a constant image is that constant away from the border.
    let mut c = Sample::grey(
        Array3::from_elem((1, 32, 32), 0.25),
        Array3::zeros((1, 32, 32)),
    )
    .unwrap();
    rotate(&mut c, 7.0, Interp::Bilinear);
    assert!((c.image[[0, 0, 16, 16]] - 0.25).abs() < 1e-6);
}

#[test]
fn pillow_affine_translate_scale_and_shear_geometry() {
    // Translate: content moves by −v·W columns; box equals the new tight box.
    let mut t = rect_sample(1, 20, 20, (4, 8, 4, 8), 3);
    affine(&mut t, &AffineCoeffs::translate_x(-0.2, 20));
    assert_eq!(t.label[[0, 4, 8]], 3);
    assert_eq!(t.label[[0, 4, 7]], 0);
    assert_eq!(t.boxes.clone().unwrap(), tight_boxes(&t, 3));
    let mut t = rect_sample(1, 20, 20, (4, 8, 4, 8), 3);
    affine(&mut t, &AffineCoeffs::translate_y(0.1, 20));
    assert_eq!(t.boxes.clone().unwrap(), tight_boxes(&t, 3));
    assert_eq!(t.boxes.unwrap()[0], Some(BoxXyxy::new(4.0, 2.0, 8.0, 6.0)));

    // Scale 0.5 about the top-left corner: input (x, y) → output (2x, 2y).
    let mut sc = rect_sample(1, 20, 20, (2, 4, 3, 5), 1);
    affine(
        &mut sc,
        &AffineCoeffs::scale(0.5, ScaleAnchor::TopLeft, 20, 20),
    );
    assert_eq!(
        tight_boxes(&sc, 1)[0],
        Some(BoxXyxy::new(6.0, 4.0, 10.0, 8.0))
    );
    assert_eq!(sc.boxes.clone().unwrap(), tight_boxes(&sc, 1));
    // About the centre the centre stays put.
    let mut cc = rect_sample(1, 20, 20, (9, 11, 9, 11), 1);
    affine(
        &mut cc,
        &AffineCoeffs::scale(0.5, ScaleAnchor::Centre, 20, 20),
    );
    assert_eq!(
        tight_boxes(&cc, 1)[0],
        Some(BoxXyxy::new(8.0, 8.0, 12.0, 12.0))
    );
    assert_eq!(cc.boxes.clone().unwrap(), tight_boxes(&cc, 1));

    // Shear about the middle row: the middle row is fixed, others shift by −v·(y − H/2).
    let mut sh = rect_sample(1, 20, 20, (0, 20, 9, 11), 6);
    affine(&mut sh, &AffineCoeffs::shear_x(0.3, 20));
    assert_eq!(sh.label[[0, 10, 9]], 6);
    assert_eq!(sh.label[[0, 10, 10]], 6);
    let top = tight_boxes(&sh, 6)[0].unwrap();
    let b = sh.boxes.as_ref().unwrap()[0].unwrap();
    assert!(b.x0 <= top.x0 && b.x1 >= top.x1 && b.y0 <= top.y0 && b.y1 >= top.y1);

    // Composition: translate then its inverse is the identity on the interior.
    let c = AffineCoeffs::translate_x(0.1, 20).then(&AffineCoeffs::translate_x(-0.1, 20));
    assert_eq!(c, AffineCoeffs::IDENTITY);
}

#[test]
fn gamma_matches_the_reference_lut() {
    let image = Array3::from_shape_vec((1, 1, 4), vec![0.0, 0.5, 0.9, 1.0]).unwrap();
    let mut s = Sample::grey(image, Array3::zeros((1, 1, 4))).unwrap();
    gamma(&mut s, 2.0, true);
    // trunc(0.5·255) = 127 → trunc(sqrt(127/255)·255) = 179.
    let expect = |x: f32| {
        let v = (x * 255.0) as u8;
        (((v as f64 / 255.0).powf(0.5) * 255.0) as u8) as f32 / 255.0
    };
    assert_eq!(s.image[[0, 0, 0, 1]], 179.0 / 255.0);
    for (i, x) in [0.0f32, 0.5, 0.9, 1.0].into_iter().enumerate() {
        assert_eq!(s.image[[0, 0, 0, i]], expect(x));
    }
}

#[test]
fn erase_fills_the_same_noise_on_every_slice_and_clears_the_label() {
    let mut s = rect_sample(5, 40, 40, (0, 40, 0, 40), 7);
    let e = RandErase::new(RandEraseConfig {
        prob: 1.0,
        ..Default::default()
    })
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let p = e.apply(&mut s, &mut rng).unwrap().expect("prob 1");
    let area = (p.nx * p.ny) as f64 / 1600.0;
    assert!(area > 0.005 && area <= 0.05, "{area}");
    for d in 0..5 {
        let block = s
            .image
            .slice(s![d, 0, p.y0..p.y0 + p.ny, p.x0..p.x0 + p.nx]);
        assert_eq!(block, p.noise.slice(s![0, .., ..]));
        assert!(s
            .label
            .slice(s![d, p.y0..p.y0 + p.ny, p.x0..p.x0 + p.nx])
            .iter()
            .all(|&v| v == 0));
    }
    let zeros = s.label.iter().filter(|&&v| v == 0).count();
    assert_eq!(zeros, 5 * p.nx * p.ny);
    assert!(p.noise.iter().all(|&v| (0.0..1.0).contains(&v)));
}

#[test]
fn pillow_intensity_ops() {
    let mut a = Array3::<u8>::from_elem((1, 4, 4), 0xAB);
    posterize(a.view_mut(), 4);
    assert!(a.iter().all(|&v| v == 0xA0));
    let mut a = Array3::<u8>::from_elem((1, 4, 4), 201);
    brightness(a.view_mut(), 0.5);
    assert!(a.iter().all(|&v| v == 100));
    let mut a = Array3::<u8>::from_elem((1, 4, 4), 250);
    brightness(a.view_mut(), 1.3);
    assert!(a.iter().all(|&v| v == 255), "extrapolation clips");
    // Contrast around the rounded mean (mean of {0, 100} = 50).
    let mut a = Array3::from_shape_vec((1, 1, 2), vec![0u8, 100]).unwrap();
    contrast(a.view_mut(), 0.5);
    assert_eq!(a.as_slice().unwrap(), &[25, 75]);
    // Sharpness: factor 1 is the identity; factor 0 is SMOOTH with copied borders.
    let orig = Array3::from_shape_fn(
        (1, 5, 5),
        |(_, r, c)| if (r, c) == (2, 2) { 130u8 } else { 0 },
    );
    let mut a = orig.clone();
    sharpness(a.view_mut(), 1.0);
    assert_eq!(a, orig);
    let mut a = orig.clone();
    sharpness(a.view_mut(), 0.0);
    assert_eq!(a[[0, 2, 2]], 50); // 130·5/13
    assert_eq!(a[[0, 1, 1]], 10); // 130/13
    assert_eq!(a[[0, 0, 2]], 0); // border copied
}

#[test]
fn rand_augment_picks_distinct_ops_with_reference_magnitudes() {
    let ra = RandAugment::new(RandAugmentConfig::default()).unwrap();
    let s = rect_sample(1, 8, 8, (0, 1, 0, 1), 1);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut seen = BTreeSet::new();
    let mut bits = BTreeSet::new();
    for _ in 0..2000 {
        let p = ra.randomize(&s, &mut rng);
        assert_eq!(p.ops.len(), 2);
        assert_ne!(p.ops[0].0, p.ops[1].0);
        for (op, v) in p.ops {
            seen.insert(format!("{op:?}"));
            let ok = match op {
                AugmentOp::ShearX | AugmentOp::ShearY => (-0.3..0.3).contains(&v),
                AugmentOp::Scale => (0.8..1.2).contains(&v),
                AugmentOp::TranslateX | AugmentOp::TranslateY => (-0.2..0.2).contains(&v),
                AugmentOp::Posterize => {
                    bits.insert(v as u8);
                    (4.0..8.99).contains(&v)
                }
                AugmentOp::Contrast | AugmentOp::Brightness => (0.7..1.3).contains(&v),
                AugmentOp::Sharpness => (0.1..1.9).contains(&v),
                AugmentOp::Identity => v == 0.0,
            };
            assert!(ok, "{op:?} {v}");
        }
    }
    assert_eq!(seen.len(), 10);
    assert_eq!(bits, (4..=8).collect());
}

#[test]
fn reference_probabilities_and_ranges() {
    let s = rect_sample(1, 8, 8, (0, 1, 0, 1), 1);
    let rf = RandRotFlip::new(RandRotFlipConfig::default()).unwrap();
    let rr = RandRotate::new(RandRotateConfig::default()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut applied, mut angles, mut ks) = (0, BTreeSet::new(), BTreeSet::new());
    for _ in 0..4000 {
        if let Some(p) = rf.randomize(&s, &mut rng) {
            applied += 1;
            assert!(p.flip.is_some(), "the reference always flips");
            ks.insert(p.k);
        }
        if let Some(a) = rr.randomize(&s, &mut rng) {
            assert_eq!(a.fract(), 0.0);
            angles.insert(a as i64);
        }
    }
    assert!((1800..2200).contains(&applied), "{applied}");
    assert_eq!(ks, (0..4).collect());
    assert_eq!(angles, (-15..=14).collect(), "np.random.randint(-15, 15)");
}

/// A 4-class label stack with boxes, used for label-safety and determinism.
fn multi_class_sample(seed: u64, rgb: bool) -> Sample {
    let (d, h, w) = (5, 48, 48);
    let mut label = Array3::<u8>::zeros((d, h, w));
    label.slice_mut(s![.., 5..20, 6..30]).fill(3);
    label.slice_mut(s![.., 25..40, 20..44]).fill(7);
    label.slice_mut(s![1..4, 12..30, 14..22]).fill(12);
    let c = if rgb { 3 } else { 1 };
    let image = Array4::from_shape_fn((d, c, h, w), |(k, ch, r, col)| {
        let v = (seed as usize * 31 + k * 17 + ch * 5 + r * 3 + col * 7) % 97;
        v as f32 / 96.0
    });
    let boxes = (0..d)
        .map(|k| BoxXyxy::from_foreground(label.slice(s![k, .., ..])))
        .collect();
    Sample::new(image, label)
        .unwrap()
        .with_boxes(boxes)
        .unwrap()
}

#[test]
fn labels_are_never_interpolated() {
    let allowed: BTreeSet<u8> = [0, 3, 7, 12].into();
    let mut cfg = RecipeConfig::default();
    cfg.rotate.image_interp = Interp::Bilinear;
    cfg.rotate.integer_degrees = false;
    let recipes = [
        Recipe::new(RecipeConfig::default(), 9).unwrap(),
        Recipe::new(cfg, 9).unwrap(),
    ];
    let affine = RandAffine::new(RandAffineConfig {
        prob: 1.0,
        ..Default::default()
    })
    .unwrap();
    for i in 0..40u64 {
        for r in &recipes {
            let out = r.apply(multi_class_sample(i, i % 2 == 0), 0, i).unwrap();
            assert!(labels_of(&out).is_subset(&allowed), "{:?}", labels_of(&out));
            out.validate().unwrap();
        }
        let mut s = multi_class_sample(i, false);
        affine
            .apply(&mut s, &mut ChaCha8Rng::seed_from_u64(i))
            .unwrap();
        assert!(labels_of(&s).is_subset(&allowed));
    }
}

#[test]
fn rgb_channels_move_together() {
    let mut s = multi_class_sample(1, true);
    // Make the three channels equal so any per-channel geometry difference would show.
    for ch in 1..3 {
        let c0 = s.image.slice(s![.., 0, .., ..]).to_owned();
        s.image.slice_mut(s![.., ch, .., ..]).assign(&c0);
    }
    let mut cfg = RecipeConfig::default();
    cfg.erase.prob = 0.0; // erasing draws independent noise per channel
    let r = Recipe::new(cfg, 4).unwrap();
    for i in 0..10 {
        let out = r.apply(s.clone(), 2, i).unwrap();
        assert_eq!(out.channels(), 3);
        assert_eq!(
            out.image.slice(s![.., 0, .., ..]),
            out.image.slice(s![.., 1, .., ..])
        );
        assert_eq!(
            out.image.slice(s![.., 0, .., ..]),
            out.image.slice(s![.., 2, .., ..])
        );
    }
}

#[test]
fn recipe_is_deterministic_across_thread_counts() {
    use rayon::prelude::*;
    let recipe = Recipe::new(RecipeConfig::default(), 1234).unwrap();
    let run = |threads: usize| -> Vec<Sample> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (0..16u64)
                .into_par_iter()
                .map(|i| recipe.apply(multi_class_sample(i, false), 3, i).unwrap())
                .collect()
        })
    };
    let one = run(1);
    let four = run(4);
    for (a, b) in one.iter().zip(&four) {
        // Bit-exact, including the f32 bit patterns.
        let ab: Vec<u32> = a.image.iter().map(|v| v.to_bits()).collect();
        let bb: Vec<u32> = b.image.iter().map(|v| v.to_bits()).collect();
        assert_eq!(ab, bb);
        assert_eq!(a.label, b.label);
        assert_eq!(a.boxes, b.boxes);
    }
    // The recipe really does something, and differently per sample and per epoch.
    let changed = (0..16u64)
        .filter(|&i| one[i as usize] != multi_class_sample(i, false))
        .count();
    assert_eq!(
        changed, 16,
        "RandAugment always quantises, so every sample changes"
    );
    let other_epoch = recipe.apply(multi_class_sample(0, false), 4, 0).unwrap();
    assert_ne!(other_epoch, one[0]);
}

#[test]
fn bad_input_is_a_typed_error() {
    let e = Sample::grey(Array3::zeros((5, 8, 8)), Array3::zeros((5, 8, 9))).unwrap_err();
    assert!(matches!(e, AugmentError::ShapeMismatch { .. }));
    let e = Sample::new(Array4::zeros((5, 2, 8, 8)), Array3::zeros((5, 8, 8))).unwrap_err();
    assert!(matches!(e, AugmentError::Channels { channels: 2 }));
    let e = Sample::grey(Array3::zeros((0, 8, 8)), Array3::zeros((0, 8, 8))).unwrap_err();
    assert!(matches!(e, AugmentError::Empty { .. }));
    let s = Sample::grey(Array3::zeros((2, 8, 8)), Array3::zeros((2, 8, 8))).unwrap();
    let e = s.clone().with_boxes(vec![None]).unwrap_err();
    assert!(matches!(e, AugmentError::BoxCount { boxes: 1, depth: 2 }));
    let e = s
        .with_boxes(vec![Some(BoxXyxy::new(5.0, 0.0, 1.0, 1.0)), None])
        .unwrap_err();
    assert!(matches!(e, AugmentError::InvalidBox { .. }));
    let mut cfg = RecipeConfig::default();
    cfg.gamma.prob = 1.5;
    assert!(matches!(
        Recipe::new(cfg, 0).unwrap_err(),
        AugmentError::InvalidConfig {
            field: "rand_gamma.prob",
            ..
        }
    ));
    let mut cfg = RecipeConfig::default();
    cfg.rand_augment.num_ops = 11;
    assert!(Recipe::new(cfg, 0).is_err());
    // A sample broken after construction is caught before any transform runs.
    let mut s = Sample::grey(Array3::zeros((2, 8, 8)), Array3::zeros((2, 8, 8))).unwrap();
    s.label = Array3::zeros((3, 8, 8));
    let r = Recipe::new(RecipeConfig::default(), 0).unwrap();
    assert!(matches!(
        r.apply(s, 0, 0),
        Err(AugmentError::ShapeMismatch { .. })
    ));
}
