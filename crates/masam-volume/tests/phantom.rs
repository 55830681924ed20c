//! Tests of the synthetic abdomen phantom: determinism, anatomy, sizes, intensities, variation.

use masam_volume::phantom::{Organ, Phantom, PhantomConfig, PhantomError};
use ndarray::Axis;
use std::collections::BTreeMap;

struct Stats {
    voxels: BTreeMap<u8, usize>,
    /// (p10, p90) HU per label.
    hu: BTreeMap<u8, (f32, f32)>,
    /// Mean (row, col, slice) per label.
    centroid: BTreeMap<u8, [f64; 3]>,
}

fn stats(image: &ndarray::Array3<f32>, labels: &ndarray::Array3<u8>) -> Stats {
    let mut values: BTreeMap<u8, Vec<f32>> = BTreeMap::new();
    let mut sums: BTreeMap<u8, [f64; 3]> = BTreeMap::new();
    for (((k, r, c), &l), &v) in labels.indexed_iter().zip(image.iter()) {
        values.entry(l).or_default().push(v);
        let s = sums.entry(l).or_insert([0.0; 3]);
        s[0] += r as f64;
        s[1] += c as f64;
        s[2] += k as f64;
    }
    let mut st = Stats {
        voxels: BTreeMap::new(),
        hu: BTreeMap::new(),
        centroid: BTreeMap::new(),
    };
    for (l, mut v) in values {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        st.voxels.insert(l, n);
        st.hu.insert(l, (v[n / 10], v[n * 9 / 10]));
        let s = sums[&l];
        st.centroid
            .insert(l, [s[0] / n as f64, s[1] / n as f64, s[2] / n as f64]);
    }
    st
}

fn small() -> Phantom {
    Phantom::new(PhantomConfig::default()).unwrap()
}

#[test]
fn same_seed_same_case_on_any_thread_count() {
    let cfg = PhantomConfig {
        height: 64,
        width: 64,
        slices: 20,
        ..PhantomConfig::default()
    }
    .with_fov(380.0, 240.0);
    let p = Phantom::new(cfg).unwrap();
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| p.case(42))
    };
    let (a_img, a_lab) = run(1);
    let (b_img, b_lab) = run(3);
    assert_eq!(a_lab, b_lab);
    let bits = |v: &ndarray::Array3<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a_img.data), bits(&b_img.data));
    assert_eq!(a_img.affine, b_img.affine);
    let (c_img, _) = p.case(43);
    assert_ne!(c_img.data, a_img.data);
}

#[test]
fn every_organ_present_with_plausible_relative_volumes() {
    let p = small();
    for seed in 0..4u64 {
        let t = std::time::Instant::now();
        let (img, lab) = p.case(seed);
        eprintln!(
            "case {seed}: {:?} (128×128×48, this build profile)",
            t.elapsed()
        );
        assert_eq!(img.shape_zyx(), [48, 128, 128]);
        assert_eq!(img.spacing, PhantomConfig::default().spacing);
        let st = stats(&img.data, &lab.data);
        let vox_ml = img.spacing.iter().product::<f64>() / 1000.0;
        let ml = |o: Organ| st.voxels.get(&o.label()).copied().unwrap_or(0) as f64 * vox_ml;
        for o in Organ::ALL {
            assert!(ml(o) > 0.0, "seed {seed}: {} absent", o.name());
        }
        assert!(st.voxels.keys().all(|&l| l <= 12), "labels 0..=12 only");
        let liver = ml(Organ::Liver);
        let adrenal = ml(Organ::AdrenalGlands);
        for o in Organ::ALL {
            if o != Organ::Liver {
                assert!(
                    liver > ml(o),
                    "seed {seed}: liver not largest vs {}",
                    o.name()
                );
            }
            if o != Organ::AdrenalGlands {
                assert!(
                    adrenal < ml(o),
                    "seed {seed}: adrenal not smallest vs {}",
                    o.name()
                );
            }
        }
        // Real-world magnitudes (ml): liver 1–2.5 l, spleen and kidneys ~80–400, adrenals < 15.
        assert!((900.0..2600.0).contains(&liver), "liver {liver}");
        for o in [Organ::Spleen, Organ::RightKidney, Organ::LeftKidney] {
            assert!((50.0..450.0).contains(&ml(o)), "{} {}", o.name(), ml(o));
        }
        assert!(adrenal < 15.0, "adrenal {adrenal}");
    }
}

#[test]
fn anatomical_layout_is_consistent() {
    let p = small();
    for seed in [0u64, 5, 9] {
        let (img, lab) = p.case(seed);
        let st = stats(&img.data, &lab.data);
        let col = |o: Organ| st.centroid[&o.label()][1];
        let row = |o: Organ| st.centroid[&o.label()][0];
        let z = |o: Organ| st.centroid[&o.label()][2];
        // Patient's right is the image left.
        assert!(col(Organ::Liver) < 64.0 && col(Organ::Spleen) > 64.0);
        assert!(col(Organ::RightKidney) < col(Organ::LeftKidney));
        assert!(col(Organ::InferiorVenaCava) < col(Organ::Aorta));
        assert!(col(Organ::Gallbladder) < col(Organ::Stomach));
        // Kidneys are posterior to the pancreas and the stomach is anterior.
        assert!(row(Organ::RightKidney) > row(Organ::Pancreas));
        assert!(row(Organ::Stomach) < row(Organ::Aorta));
        // The liver and spleen lie above the kidneys; the esophagus is near the top.
        assert!(z(Organ::Liver) > z(Organ::RightKidney));
        assert!(z(Organ::Esophagus) > z(Organ::Pancreas));
        // Unlabelled context: air outside the body, fat and bone inside.
        assert_eq!(img.data[[24, 0, 0]], img.data[[24, 0, 0]].min(-900.0));
        let bg: Vec<f32> = img
            .data
            .iter()
            .zip(lab.data.iter())
            .filter(|(_, &l)| l == 0)
            .map(|(&v, _)| v)
            .collect();
        assert!(bg.iter().filter(|&&v| v > 300.0).count() > 500, "bone");
        assert!(
            bg.iter().filter(|&&v| (-150.0..-60.0).contains(&v)).count() > 20_000,
            "fat"
        );
        assert!(img
            .data
            .iter()
            .all(|v| v.fract() == 0.0 && (-1024.0..=3071.0).contains(v)));
    }
}

#[test]
fn organ_intensities_overlap() {
    let (img, lab) = small().case(1);
    let st = stats(&img.data, &lab.data);
    let overlap = |a: Organ, b: Organ| {
        let (ra, rb) = (st.hu[&a.label()], st.hu[&b.label()]);
        ra.0.max(rb.0) < ra.1.min(rb.1)
    };
    for (a, b) in [
        (Organ::Liver, Organ::Spleen),
        (Organ::Liver, Organ::Pancreas),
        (Organ::Spleen, Organ::Pancreas),
        (Organ::Aorta, Organ::InferiorVenaCava),
        (Organ::Aorta, Organ::PortalSplenicVeins),
        (Organ::InferiorVenaCava, Organ::PortalSplenicVeins),
        (Organ::AdrenalGlands, Organ::Esophagus),
        (Organ::RightKidney, Organ::Aorta),
    ] {
        assert!(
            overlap(a, b),
            "{} {:?} vs {} {:?}",
            a.name(),
            st.hu[&a.label()],
            b.name(),
            st.hu[&b.label()]
        );
    }
    // And organs overlap with unlabelled tissue (bowel/muscle vs adrenal, esophagus).
    assert!(
        overlap(Organ::AdrenalGlands, Organ::Stomach) || overlap(Organ::Esophagus, Organ::Stomach)
    );
}

#[test]
fn organs_move_smoothly_across_slices() {
    let (_, lab) = small().case(2);
    for o in [
        Organ::Liver,
        Organ::Spleen,
        Organ::Aorta,
        Organ::RightKidney,
    ] {
        let masks: Vec<Vec<bool>> = lab
            .data
            .axis_iter(Axis(0))
            .map(|s| s.iter().map(|&l| l == o.label()).collect())
            .collect();
        let areas: Vec<usize> = masks
            .iter()
            .map(|m| m.iter().filter(|&&v| v).count())
            .collect();
        let max = *areas.iter().max().unwrap();
        let mut compared = 0;
        for k in 1..masks.len() {
            let (a, b) = (&masks[k - 1], &masks[k]);
            let (na, nb) = (areas[k - 1], areas[k]);
            if na.min(nb) * 3 < max {
                continue; // the organ's tapering ends
            }
            compared += 1;
            let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
            let dice = 2.0 * inter as f64 / (na + nb) as f64;
            assert!(
                dice > 0.75,
                "{} slices {}-{k}: dice {dice}",
                o.name(),
                k - 1
            );
        }
        assert!(compared >= 4, "{}: only {compared} slice pairs", o.name());
    }
}

#[test]
fn cases_vary_between_seeds() {
    let p = small();
    let cases: Vec<_> = (10..14u64).map(|s| p.case(s)).collect();
    let vols: Vec<Stats> = cases.iter().map(|(i, l)| stats(&i.data, &l.data)).collect();
    for w in 0..cases.len() - 1 {
        let (a, b) = (&cases[w].1.data, &cases[w + 1].1.data);
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert!(
            differ as f64 / a.len() as f64 > 0.01,
            "labels nearly identical"
        );
    }
    for o in [
        Organ::Liver,
        Organ::Spleen,
        Organ::Pancreas,
        Organ::RightKidney,
    ] {
        let v: Vec<usize> = vols.iter().map(|s| s.voxels[&o.label()]).collect();
        let (mn, mx) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
        assert!(
            mx as f64 > 1.08 * mn as f64,
            "{} volumes too uniform: {v:?}",
            o.name()
        );
        let c: Vec<f64> = vols.iter().map(|s| s.centroid[&o.label()][1]).collect();
        let spread =
            c.iter().cloned().fold(f64::MIN, f64::max) - c.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.5, "{} does not move: {c:?}", o.name());
    }
}

#[test]
fn bad_config_is_a_typed_error() {
    let e = Phantom::new(PhantomConfig {
        height: 0,
        ..PhantomConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        e,
        PhantomError::InvalidConfig {
            field: "height",
            ..
        }
    ));
    let e = Phantom::new(PhantomConfig {
        spacing: [1.0, -1.0, 2.0],
        ..PhantomConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        e,
        PhantomError::InvalidConfig {
            field: "spacing",
            ..
        }
    ));
    let e = Phantom::new(PhantomConfig {
        noise_sd_hu: f64::NAN,
        ..PhantomConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        e,
        PhantomError::InvalidConfig {
            field: "noise_sd_hu",
            ..
        }
    ));
    assert_eq!(Organ::from_label(12), Some(Organ::AdrenalGlands));
    assert_eq!(Organ::from_label(0), None);
    assert_eq!(Organ::from_label(13), None);
}
