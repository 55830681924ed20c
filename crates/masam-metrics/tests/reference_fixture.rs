//! Parity with `tests/fixtures/reference-tiny/metrics.safetensors`: six (pred, gt) pairs scored
//! by medpy (`dc`, `hd95`, `asd` with `voxelspacing`) and DeepMind surface-distance
//! (`compute_surface_dice_at_tolerance` at 1 mm and 2 mm). Tolerance: 1e-6 relative.

use masam_metrics::{
    compute_asd, compute_dice, compute_hd95, compute_surface_dice_at, foreground_mask, Classes,
    DiceConfig, DiceMetric, EmptyPolicy, Hd95Metric, Metric, SurfaceDiceConfig, SurfaceDiceMetric,
};
use ndarray::Array3;
use safetensors::{Dtype, SafeTensors};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/reference-tiny/metrics.safetensors"
);

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

fn f64s(st: &SafeTensors<'_>, name: &str) -> Vec<f64> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F64, "{name}");
    t.data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn u8s(st: &SafeTensors<'_>, name: &str) -> Array3<u8> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    let s = t.shape();
    assert_eq!(s.len(), 3, "{name}");
    Array3::from_shape_vec((s[0], s[1], s[2]), t.data().to_vec()).unwrap()
}

fn load() -> Fixture {
    let bytes = std::fs::read(FIXTURE).expect("reference fixture is committed in the repo");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let sp = f64s(&st, "spacing_zyx");
    let m = f64s(&st, "metrics");
    assert_eq!(st.tensor("metrics").unwrap().shape(), &[6, 5]);
    let cases = (0..6)
        .map(|i| Case {
            pred: u8s(&st, &format!("case{i}.pred")),
            gt: u8s(&st, &format!("case{i}.gt")),
        })
        .collect();
    Fixture {
        cases,
        spacing: [sp[0], sp[1], sp[2]],
        metrics: m.chunks_exact(5).map(|r| r.try_into().unwrap()).collect(),
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / (b.abs() + 1e-6)
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
            let e = rel(got[k], want[k]);
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
        assert!(rel(d[0], fx.metrics[i][0]) <= 1e-6);
        assert!(rel(h[0], fx.metrics[i][1]) <= 1e-6);
        assert!(rel(n[0], fx.metrics[i][4]) <= 1e-6);
    }
    let mean = |k: usize| fx.metrics.iter().map(|r| r[k]).sum::<f64>() / 6.0;
    assert!(rel(dice.aggregate().mean(), mean(0)) <= 1e-6);
    assert!(rel(hd95.aggregate().mean(), mean(1)) <= 1e-6);
    assert!(rel(nsd2.aggregate().mean(), mean(4)) <= 1e-6);
    let r = hd95.aggregate();
    assert_eq!(r.cases.len(), 6);
    assert_eq!(r.classes, vec!["organ"]);
    println!("{r}");
}
