//! Multi-class wrappers on label maps: per-class rows equal the binary functions on
//! `labels == class`, empty classes follow each metric's documented policy, and aggregation is
//! the nan-mean over cases then the mean over classes.

use masam_metrics::{
    class_mask, compute_dice, compute_hd95, compute_surface_dice, AsdMode, Classes, DiceConfig,
    DiceMetric, EmptyPolicy, EmptyScore, Hd95Metric, IouConfig, IouMetric, Metric, MetricsError,
    SurfaceDiceConfig, SurfaceDiceMetric, SurfaceDistanceConfig, SurfaceDistanceMetric,
};
use ndarray::{s, Array3};

/// Class 1 in both, class 2 only in the ground truth, class 3 nowhere.
fn pair() -> (Array3<u16>, Array3<u16>) {
    let mut gt = Array3::<u16>::zeros((10, 20, 18));
    gt.slice_mut(s![2..8, 3..12, 4..14]).fill(1);
    gt.slice_mut(s![3..6, 14..18, 2..6]).fill(2);
    let mut pred = Array3::<u16>::zeros((10, 20, 18));
    pred.slice_mut(s![3..8, 4..13, 4..12]).fill(1);
    (pred, gt)
}

const SPACING: [f64; 3] = [2.0, 0.8, 0.9];

#[test]
fn per_class_rows_match_binary_functions_and_policies() {
    let (pred, gt) = pair();
    let classes = Classes::foreground(3)
        .with_names(["liver", "kidney", "spleen"])
        .unwrap();
    let mut dice = DiceMetric::new(DiceConfig::default(), classes.clone()).unwrap();
    let mut hd = Hd95Metric::hd95(classes.clone()).unwrap();
    let mut nsd = SurfaceDiceMetric::new(SurfaceDiceConfig::default(), classes.clone()).unwrap();
    let d = dice.update(pred.view(), gt.view(), SPACING).unwrap();
    let h = hd.update(pred.view(), gt.view(), SPACING).unwrap();
    let n = nsd.update(pred.view(), gt.view(), SPACING).unwrap();

    let p1 = class_mask(pred.view(), 1);
    let g1 = class_mask(gt.view(), 1);
    let want_d1 = compute_dice(p1.view(), g1.view(), &EmptyPolicy::overlap_reference()).unwrap();
    assert_eq!(d[0], want_d1);
    assert!(d[0] > 0.5 && d[0] < 1.0);
    assert_eq!(h[0], compute_hd95(p1.view(), g1.view(), SPACING).unwrap());
    let ns = EmptyPolicy::surface_dice_deepmind();
    assert_eq!(
        n[0],
        compute_surface_dice(p1.view(), g1.view(), SPACING, 1.0, &ns).unwrap()
    );
    // Class 2: prediction empty. Class 3: both empty.
    assert_eq!(&d[1..], &[0.0, 1.0]);
    assert_eq!(h[1], f64::INFINITY);
    assert!(h[2].is_nan());
    assert_eq!(n[1], 0.0);
    assert!(n[2].is_nan());

    // Aggregation: nan-mean over cases per class, then mean over classes.
    dice.update_case("perfect", gt.view(), gt.view(), SPACING)
        .unwrap();
    let r = dice.aggregate();
    assert_eq!(r.class_means(), vec![(want_d1 + 1.0) / 2.0, 0.5, 1.0]);
    assert!((r.mean() - ((want_d1 + 1.0) / 2.0 + 1.5) / 3.0).abs() < 1e-15);
    assert_eq!(r.classes, vec!["liver", "kidney", "spleen"]);
    let text = r.to_string();
    assert!(text.contains("kidney") && text.contains("perfect"));
    // HD: class 3 NaN everywhere → its mean is NaN, so the overall mean is NaN (np.mean).
    assert!(hd.aggregate().class_means()[2].is_nan());
}

#[test]
fn background_negative_labels_and_custom_policy() {
    let (pred, gt) = pair();
    // i64 labels with an "ignore" value never match a class.
    let mut gt_i = gt.mapv(i64::from);
    gt_i[[0, 0, 0]] = -100;
    let pred_i = pred.mapv(i64::from);
    let skip_empty_gt = EmptyPolicy {
        both_empty: EmptyScore::Nan,
        gt_empty: EmptyScore::Nan,
        pred_empty: EmptyScore::Value(0.0),
    };
    let mut m = IouMetric::new(
        IouConfig {
            empty: skip_empty_gt,
        },
        Classes::with_background(3),
    )
    .unwrap();
    let row = m.update(pred_i.view(), gt_i.view(), SPACING).unwrap();
    assert_eq!(row.len(), 4);
    assert!(row[0] > 0.8 && row[0] < 1.0, "background IoU {}", row[0]);
    assert_eq!(row[2], 0.0);
    assert!(row[3].is_nan(), "empty ground truth is skipped");
    assert!(m.aggregate().mean().is_nan());

    let mut asd = SurfaceDistanceMetric::new(
        SurfaceDistanceConfig {
            mode: AsdMode::Symmetric,
            ..Default::default()
        },
        Classes::from_ids([1]),
    )
    .unwrap();
    let v = asd.update(pred.view(), gt.view(), SPACING).unwrap();
    assert!(v[0] > 0.0 && v[0].is_finite());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (pred, gt) = pair();
    let mut m = Hd95Metric::hd95(Classes::foreground(2)).unwrap();
    let small = Array3::<u16>::zeros((10, 20, 17));
    match m.update(pred.view(), small.view(), SPACING) {
        Err(MetricsError::ShapeMismatch { pred, gt }) => {
            assert_eq!(pred, vec![10, 20, 18]);
            assert_eq!(gt, vec![10, 20, 17]);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    assert!(matches!(
        m.update(pred.view(), gt.view(), [1.0, -0.5, 1.0]),
        Err(MetricsError::InvalidSpacing { .. })
    ));
    assert!(matches!(
        m.update(pred.view(), gt.view(), [1.0, f64::NAN, 1.0]),
        Err(MetricsError::InvalidSpacing { .. })
    ));
    assert_eq!(m.aggregate().cases.len(), 0);
    assert!(matches!(
        SurfaceDiceMetric::new(
            SurfaceDiceConfig::default().with_tolerance_mm(f64::NAN),
            Classes::foreground(1)
        ),
        Err(MetricsError::InvalidTolerance(_))
    ));
}

#[test]
fn configs_round_trip_through_json() {
    let cfg = SurfaceDiceConfig::default().with_tolerance_mm(2.0);
    let text = serde_json::to_string(&cfg).unwrap();
    let back: SurfaceDiceConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cfg);
    let d = DiceConfig::default();
    let back: DiceConfig = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(back, d);
    let a = SurfaceDistanceConfig::default();
    let back: SurfaceDistanceConfig =
        serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
}
