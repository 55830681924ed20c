//! Parity with `tests/fixtures/oracle.safetensors` (made by `tests/fixtures/make_oracle.py` with
//! medpy and DeepMind surface-distance): blobs at several anisotropic spacings, salt-and-pepper
//! masks that exercise all 256 surfel codes, masks touching the array border and a single-slice
//! volume. Tolerance: 1e-6 relative.

use masam_metrics::{
    compute_asd, compute_assd, compute_dice, compute_hausdorff, compute_hd95,
    compute_surface_dice_at, foreground_mask, EmptyPolicy,
};
use masam_testkit::{rel_diff, RawSafetensors};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/oracle.safetensors"
);
const NAMES: [&str; 9] = [
    "dice", "hd95", "hd", "asd", "assd", "nsd@0.5", "nsd@1", "nsd@2", "nsd@5",
];

#[test]
fn oracle_cases_match_medpy_and_deepmind() {
    let st = RawSafetensors::open(FIXTURE);
    let mask = |name: &str| foreground_mask(st.u8_3d(name).view());
    let spacing = st.f64s("spacing_zyx");
    let metrics = st.f64s("metrics");
    let n = spacing.len() / 3;
    assert_eq!(n, 8);
    let mut worst = [0.0f64; 9];
    for i in 0..n {
        let p = mask(&format!("case{i}.pred"));
        let g = mask(&format!("case{i}.gt"));
        let sp = [spacing[3 * i], spacing[3 * i + 1], spacing[3 * i + 2]];
        let e = EmptyPolicy::distance_monai();
        let nsd = compute_surface_dice_at(
            p.view(),
            g.view(),
            sp,
            &[0.5, 1.0, 2.0, 5.0],
            &EmptyPolicy::surface_dice_deepmind(),
        )
        .unwrap();
        let got = [
            compute_dice(p.view(), g.view(), &EmptyPolicy::overlap_reference()).unwrap(),
            compute_hd95(p.view(), g.view(), sp).unwrap(),
            compute_hausdorff(p.view(), g.view(), sp, 100.0, &e).unwrap(),
            compute_asd(p.view(), g.view(), sp).unwrap(),
            compute_assd(p.view(), g.view(), sp).unwrap(),
            nsd[0],
            nsd[1],
            nsd[2],
            nsd[3],
        ];
        for k in 0..9 {
            let want = metrics[9 * i + k];
            let err = rel_diff(got[k], want);
            worst[k] = worst[k].max(err);
            assert!(
                err <= 1e-6,
                "case {i} {}: got {} want {want}",
                NAMES[k],
                got[k]
            );
        }
    }
    println!("max relative error per metric {NAMES:?}: {worst:?}");
}
