//! The reference preprocessing, bit for bit: the normalisation chain against NumPy goldens (the
//! f32 bit patterns below were produced by running the authors' load-time chain with NumPy:
//! clip to [−200, 250], scale to 0..255, cast to f32, z-score with the f32 CT statistics,
//! per-stack min-max with NumPy 1.x promotion for the `+ 1e-8`), stack edge replication,
//! orientation and colour-map round trips, the MRI variant, and the lazily loading dataset index
//! end to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use masam_volume::dataset::{btcv, split, DatasetConfig, LabelMap, StackDataset};
use masam_volume::io::frames::{encode_label_frame, read_label_frame, write_rgb_png, ColorMap};
use masam_volume::io::writer::NiftiWriter;
use masam_volume::transforms::{
    from_model_orientation, mri_percentile_normalize, to_model_orientation, IntensityConfig,
    SliceStack, SourcePrecision, StackConfig,
};
use masam_volume::Volume;
use ndarray::{Array2, Array3, Axis};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const MEAN_BITS: u32 = 0x4248e141;
const STD_BITS: u32 = 0x4288f16d;

// 3.14159 is a test value (it is the NumPy input), not an approximation of π.
#[allow(clippy::approx_constant)]
const CT_VALUES: [f64; 30] = [
    -1024.0, -200.5, -199.9, -37.25, 0.0, 1.1, 13.37, 49.999, 77.7, 123.456, 249.99, 250.01,
    1000.0, -150.125, 33.3333333, 188.8, 210.0, -5.5, 60.06, 99.9, 145.5, 170.25, 225.75, 240.1,
    -80.8, 7.77, 19.19, 111.11, 222.22, 3.14159,
];

#[test]
fn ct_chain_is_bit_exact() {
    let want: [u32; 30] = [
        0x0, 0x0, 0x3969057a, 0x3eb92c5f, 0x3ee38e39, 0x3ee4ce9f, 0x3ef2c484, 0x3f0e38bf,
        0x3f1dfaff, 0x3f3802b2, 0x3f7ffe8c, 0x3f800000, 0x3f800000, 0x3de2fc96, 0x3f04bda3,
        0x3f5d2f1c, 0x3f693e94, 0x3edd4c3c, 0x3f13f1fc, 0x3f2a9c1b, 0x3f448d17, 0x3f52a191,
        0x3f723456, 0x3f7a5e35, 0x3e879f85, 0x3eec6567, 0x3ef963b7, 0x3f30fcae, 0x3f70323e,
        0x3ee72149,
    ];
    let out = IntensityConfig::ct_abdomen().normalize_stack(&CT_VALUES);
    assert_eq!(bits(&out), want);
    // This stack spans the window, so the net effect is (clip(x) + 200) / 450 up to f32 rounding.
    for (o, x) in out.iter().zip(CT_VALUES) {
        let hand = (x.clamp(-200.0, 250.0) + 200.0) / 450.0;
        assert!((*o as f64 - hand).abs() < 2e-7, "{x}: {o} vs {hand}");
    }
}

#[test]
fn pancreas_chain_is_bit_exact() {
    let want: [u32; 18] = [
        0x3e682e88, 0x3e999956, 0x3eb5f6fd, 0x3ee4d1a7, 0x3f3331e4, 0x3f333482, 0x3f800000, 0x0,
        0x3e888888, 0x3f13dd97, 0x3f1eb852, 0x3e418937, 0x3ea3e6c5, 0x3eccb297, 0x3efb645a,
        0x3f0a5e35, 0x3f26c8b5, 0x3f2e2197,
    ];
    let stack: Vec<f64> = CT_VALUES[6..24].iter().map(|v| v * 0.5).collect();
    let out = IntensityConfig::pancreas().normalize_stack(&stack);
    assert_eq!(bits(&out), want);
}

#[test]
fn tiny_range_keeps_the_epsilon() {
    // range < 0.17 after the z-score: the 1e-8 in the denominator is visible (max < 1).
    let want: [u32; 5] = [0x0, 0x3eac3cfc, 0x3f7fe594, 0x3e275130, 0x3f2b0209];
    let out =
        IntensityConfig::ct_abdomen().normalize_stack(&[10.0, 10.001, 10.003, 10.0005, 10.002]);
    assert_eq!(bits(&out), want);
    assert!(out[2] < 1.0);
}

#[test]
fn f32_source_chain_is_bit_exact() {
    let want: [u32; 10] = [
        0x0, 0x3dccd1a5, 0x3e7ffe81, 0x3eaaa594, 0x3f000032, 0x3f451f0a, 0x3f66662f, 0x3f7fffeb,
        0x3d4cc28a, 0x3f199a67,
    ];
    let m: [f32; 10] = [0.0, 0.1, 0.25, 0.3333, 0.5, 0.77, 0.9, 1.0, 0.05, 0.6];
    let stack: Vec<f64> = m.iter().map(|&v| v as f64).collect();
    let cfg = IntensityConfig::mri();
    assert_eq!(cfg.precision, SourcePrecision::F32);
    assert_eq!(bits(&cfg.normalize_stack(&stack)), want);
}

#[test]
fn window_steps_by_hand() {
    // f64 steps then one rounding to f32, as `float32(((clip(x) + 200) / 450) * 255)`.
    let w = IntensityConfig::ct_abdomen().window;
    for x in [-3000.0f64, -200.0, -199.9, 13.37, 249.99, 250.0, 4000.0] {
        let hand = ((x.clamp(-200.0, 250.0) + 200.0) / 450.0 * 255.0) as f32;
        assert_eq!(w.apply(x, SourcePrecision::F64).to_bits(), hand.to_bits());
    }
    // z-score constants are the f32 roundings of the spec's decimals.
    let s = IntensityConfig::ct_abdomen().stats;
    // bit patterns of numpy.float32(50.21997497685108) and numpy.float32(68.47153712416372)
    assert_eq!((s.mean as f32).to_bits(), MEAN_BITS);
    assert_eq!((s.std as f32).to_bits(), STD_BITS);
}

#[test]
fn mri_percentile_variant() {
    // 0..=100: the 99th percentile is exactly 99; 100 is clipped to it, then (x − 0) / 99.
    let mut v: Vec<f32> = (0..=100).map(|i| i as f32).collect();
    mri_percentile_normalize(&mut v, 99.0);
    assert_eq!(v[0], 0.0);
    assert_eq!(v[99], 1.0);
    assert_eq!(v[100], 1.0);
    assert_eq!(v[33].to_bits(), (33.0f32 / 99.0f32).to_bits());
}

fn ramp_volume(z: usize, y: usize, x: usize) -> Volume<f32> {
    Volume::with_spacing(
        Array3::from_shape_fn((z, y, x), |(k, j, i)| {
            (k * 1000 + j * 10 + i) as f32 - 200.0
        }),
        [0.7, 0.7, 2.5],
    )
}

#[test]
fn stack_edges_are_replicated() {
    let vol = Volume::with_spacing(
        Array3::from_shape_fn((6, 3, 4), |(k, _, _)| k as f32),
        [1.0; 3],
    );
    let cfg = StackConfig {
        out_size: None,
        orient: false,
        intensity: IntensityConfig::video(), // [0, 255] window: the chain is a plain min-max
        ..StackConfig::default()
    };
    let s = SliceStack::new(cfg).unwrap();
    let first = s.image_stack(&vol, 0).unwrap();
    // slices 0, 0, 0, 1, 2 → min-max over {0, 1, 2}
    let per_slice: Vec<f32> = first.outer_iter().map(|sl| sl[[0, 0]]).collect();
    assert_eq!(per_slice, [0.0, 0.0, 0.0, 0.5, 1.0]);
    let last = s.image_stack(&vol, 5).unwrap();
    let per_slice: Vec<f32> = last.outer_iter().map(|sl| sl[[1, 2]]).collect();
    assert_eq!(per_slice, [0.0, 0.5, 1.0, 1.0, 1.0]);
    let lab = vol.map(|&v| v as u8 + 1);
    let ls = s.label_stack(&lab, 5).unwrap();
    let per_slice: Vec<u8> = ls.outer_iter().map(|sl| sl[[2, 3]]).collect();
    assert_eq!(per_slice, [4, 5, 6, 6, 6]);
    assert!(s.image_stack(&vol, 6).is_err());
}

#[test]
fn orientation_matches_the_reference_and_round_trips() {
    // nibabel slice s (X, Y) with s[i, j] = voxel (i, j); reference input = s.T[::-1, ::-1].
    let (ny, nx) = (5, 7);
    let ours = Array2::from_shape_fn((ny, nx), |(j, i)| (j * 100 + i) as i32); // [y, x]
    let model = to_model_orientation(&ours.view());
    for r in 0..ny {
        for c in 0..nx {
            // out[r, c] = s[X−1−c, Y−1−r] = voxel (x = X−1−c, y = Y−1−r)
            let (x, y) = (nx - 1 - c, ny - 1 - r);
            assert_eq!(model[[r, c]], (y * 100 + x) as i32);
        }
    }
    assert_eq!(from_model_orientation(&model.view()), ours);
    // Labels through the full stack path and back to the voxel grid (2x−1 zoom and back).
    let lab = Volume::with_spacing(
        Array3::from_shape_fn((3, ny, nx), |(k, j, i)| {
            ((k * 31 + j * 7 + i * 3) % 13) as u8
        }),
        [1.0; 3],
    );
    let s = SliceStack::new(StackConfig::default().with_out_size(2 * ny - 1, 2 * nx - 1)).unwrap();
    let ls = s.label_stack(&lab, 1).unwrap();
    let centre = ls.index_axis(Axis(0), 2);
    let back = s.labels_to_volume_grid(&centre, (ny, nx));
    assert_eq!(back, lab.data.index_axis(Axis(0), 1));
}

#[test]
fn colour_map_round_trip_through_png() {
    let cmap = ColorMap::endovis18();
    let ids = Array2::from_shape_fn((16, 24), |(y, x)| ((y / 2 * 5 + x / 3) % 12) as u8);
    let dir = std::env::temp_dir().join(format!("masam_prep_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("frame000.png");
    write_rgb_png(&p, &encode_label_frame(&ids, &cmap).unwrap()).unwrap();
    assert_eq!(read_label_frame(&p, &cmap).unwrap(), ids);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resized_stack_shapes_and_range() {
    let vol = ramp_volume(4, 40, 30);
    for (h, w) in [(16, 16), (64, 48)] {
        let s = SliceStack::new(StackConfig::default().with_out_size(h, w)).unwrap();
        let st = s.image_stack(&vol, 2).unwrap();
        assert_eq!(st.dim(), (5, h, w));
        let (lo, hi) = st
            .iter()
            .fold((f32::MAX, f32::MIN), |a, &v| (a.0.min(v), a.1.max(v)));
        assert_eq!((lo, hi), (0.0, 1.0));
    }
}

fn write_btcv(root: &Path, id: &str, z: usize, label_max: u8) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(root.join("img")).unwrap();
    std::fs::create_dir_all(root.join("label")).unwrap();
    let img = ramp_volume(z, 12, 10);
    let lab = img.map(|&v| ((v as i64).rem_euclid(label_max as i64 + 1)) as u8);
    let ip = root.join(format!("img/img{id}.nii.gz"));
    let lp = root.join(format!("label/label{id}.nii.gz"));
    NiftiWriter::new()
        .write(&ip, &img.map(|&v| v as i16))
        .unwrap();
    NiftiWriter::new().write(&lp, &lab).unwrap();
    (ip, lp)
}

#[test]
fn btcv_dataset_index_end_to_end() {
    let root = std::env::temp_dir().join(format!("masam_btcv_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_btcv(&root, "0001", 4, 13);
    write_btcv(&root, "0002", 3, 13);
    write_btcv(&root, "0035", 2, 13);
    let cases = btcv::cases(&root).unwrap();
    assert_eq!(cases.len(), 3);
    let (train, test) = split::btcv_reference_split(&cases);
    assert_eq!(test.len(), 1);
    assert_eq!(test[0].id, "0035");
    // Cache only big enough for one case: loads must evict and reload transparently.
    let one_case = 4 * 12 * 10 * 5;
    let cfg = DatasetConfig {
        stack: StackConfig::default().with_out_size(8, 8),
        label_map: LabelMap::Btcv13To12,
        cache_bytes: one_case,
        ..DatasetConfig::default()
    };
    let ds = Arc::new(StackDataset::new(train, cfg).unwrap());
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.slices_per_case(), [4, 3]);
    let s = ds.get(5).unwrap();
    assert_eq!((s.case, s.slice), (1, 1));
    assert_eq!(s.image.dim(), (5, 8, 8));
    let lab = s.label.unwrap();
    assert_eq!(lab.dim(), (5, 8, 8));
    assert!(lab.iter().all(|&v| v <= 12), "13 merged into 12");
    // Background threads share the index; results are deterministic.
    let single: Vec<_> = (0..ds.len()).map(|i| ds.get(i).unwrap()).collect();
    std::thread::scope(|sc| {
        for t in 0..3 {
            let ds = ds.clone();
            let single = &single;
            sc.spawn(move || {
                for i in (0..ds.len()).rev().chain(t..t + 1) {
                    assert_eq!(ds.get(i).unwrap(), single[i]);
                }
            });
        }
    });
    assert!(ds.cache().bytes() <= one_case);
    let (_, misses) = ds.cache().stats();
    assert!(misses >= 2);
    std::fs::remove_dir_all(&root).unwrap();
}
