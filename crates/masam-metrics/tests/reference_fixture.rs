//! Parity with `tests/fixtures/reference-tiny/metrics.safetensors`: six (pred, gt) pairs scored
//! by medpy (`dc`, `hd95`, `asd` with `voxelspacing`) and DeepMind surface-distance
//! (`compute_surface_dice_at_tolerance` at 1 mm and 2 mm). Tolerance: 1e-6 relative.

use masam_metrics::{
    compute_asd, compute_dice, compute_hd95, compute_surface_dice_at, foreground_mask, Classes,
    DiceConfig, DiceMetric, EmptyPolicy, Hd95Metric, Metric, SurfaceDiceConfig, SurfaceDiceMetric,
};
use masam_testkit::{reference_tiny, rel_diff, RawSafetensors};
use ndarray::Array3;

struct Case {
    pred: Array3<u8>,
    gt: Array3<u8>,
}

struct Fixture {
    cases: Vec<Case>,
    spacing: [f64; 3],
    /// 6 × 5: Dice, HD95 (mm), ASD (mm), NSD@1mm, NSD@2mm.
    metrics: Vec<[f64; 5]>,
}

fn load() -> Fixture {
    let st = RawSafetensors::open(reference_tiny("metrics.safetensors"));
    let sp = st.f64s("spacing_zyx");
    let m = st.f64s("metrics");
    assert_eq!(st.shape("metrics"), [6, 5]);
    let cases = (0..6)
        .map(|i| Case {
            pred: st.u8_3d(&format!("case{i}.pred")),
            gt: st.u8_3d(&format!("case{i}.gt")),
        })
        .collect();
    Fixture {
        cases,
        spacing: [sp[0], sp[1], sp[2]],
        metrics: m.chunks_exact(5).map(|r| r.try_into().unwrap()).collect(),
    }
}

#[test]
fn binary_functions_reproduce_medpy_and_deepmind() {
    let fx = load();
    assert_eq!(fx.spacing, [0.8, 0.7, 2.5]);
    let mut worst = [0.0f64; 5];
    for (i, (case, want)) in fx.cases.iter().zip(&fx.metrics).enumerate() {
        let p = foreground_mask(case.pred.view());
        let g = foreground_mask(case.gt.view());
        let sp = fx.spacing;
        let dice = compute_dice(p.view(), g.view(), &EmptyPolicy::overlap_reference()).unwrap();
        let hd95 = compute_hd95(p.view(), g.view(), sp).unwrap();
        let asd = compute_asd(p.view(), g.view(), sp).unwrap();
        let nsd = compute_surface_dice_at(
            p.view(),
            g.view(),
            sp,
            &[1.0, 2.0],
            &EmptyPolicy::surface_dice_deepmind(),
        )
        .unwrap();
        let got = [dice, hd95, asd, nsd[0], nsd[1]];
        for k in 0..5 {
            let e = rel_diff(got[k], want[k]);
            worst[k] = worst[k].max(e);
            assert!(
                e <= 1e-6,
                "case {i} metric {k}: got {} want {}",
                got[k],
                want[k]
            );
        }
    }
    println!("max relative error [dice, hd95, asd, nsd1, nsd2] = {worst:?}");
}

#[test]
fn cumulative_metrics_reproduce_fixture_means() {
    let fx = load();
    let classes = Classes::foreground(1).with_names(["organ"]).unwrap();
    let mut dice = DiceMetric::new(DiceConfig::default(), classes.clone()).unwrap();
    let mut hd95 = Hd95Metric::hd95(classes.clone()).unwrap();
    let mut nsd2 =
        SurfaceDiceMetric::new(SurfaceDiceConfig::default().with_tolerance_mm(2.0), classes)
            .unwrap();
    for (i, case) in fx.cases.iter().enumerate() {
        let name = format!("case{i}");
        let (p, g) = (case.pred.view(), case.gt.view());
        let d = dice.update_case(&name, p, g, fx.spacing).unwrap();
        let h = hd95.update_case(&name, p, g, fx.spacing).unwrap();
        let n = nsd2.update_case(&name, p, g, fx.spacing).unwrap();
        assert!(rel_diff(d[0], fx.metrics[i][0]) <= 1e-6);
        assert!(rel_diff(h[0], fx.metrics[i][1]) <= 1e-6);
        assert!(rel_diff(n[0], fx.metrics[i][4]) <= 1e-6);
    }
    let mean = |k: usize| fx.metrics.iter().map(|r| r[k]).sum::<f64>() / 6.0;
    assert!(rel_diff(dice.aggregate().mean(), mean(0)) <= 1e-6);
    assert!(rel_diff(hd95.aggregate().mean(), mean(1)) <= 1e-6);
    assert!(rel_diff(nsd2.aggregate().mean(), mean(4)) <= 1e-6);
    let r = hd95.aggregate();
    assert_eq!(r.cases.len(), 6);
    assert_eq!(r.classes, vec!["organ"]);
    println!("{r}");
}
