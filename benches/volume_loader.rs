//! Volume loader throughput: a synthetic 512×512×100 int16 CT is generated in memory, written to
//! a temporary `.nii.gz`, read back, and turned into adjacent-slice stacks with the full reference
//! preprocessing (HU window → ×255/450 → f32 → z-score → per-stack min-max, orientation), to
//! 5×512×512 and to cubic-resized 5×256×256. Prints one JSON object.
//!
//! `cargo bench --bench volume_loader`. Stacks are timed on one thread and on all cores (one
//! stack per task, `std::thread::scope`), as the trainer's background loaders would run them.

use std::time::Instant;

use masam_volume::io::nifti::NiftiReader;
use masam_volume::io::writer::NiftiWriter;
use masam_volume::ndarray::Array3;
use masam_volume::transforms::{SliceStack, StackConfig};
use masam_volume::Volume;

const SHAPE_ZYX: (usize, usize, usize) = (100, 512, 512);

/// A CT-like phantom in HU: air outside an elliptical body, soft tissue with texture, a "spine".
fn synthetic_ct() -> Volume<i16> {
    let (nz, ny, nx) = SHAPE_ZYX;
    let data = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
        let (fy, fx) = ((y as f32 - 256.0) / 200.0, (x as f32 - 256.0) / 240.0);
        let r = fy * fy + fx * fx;
        if r > 1.0 {
            -1000
        } else if ((y as i32 - 380).pow(2) + (x as i32 - 256).pow(2)) < 900 {
            700 + (z as i16 % 7) * 10
        } else {
            // ±32 HU of hash noise so that gzip sees CT-like entropy.
            let mut h = (z * 512 * 512 + y * 512 + x) as u64 ^ 0x9E37_79B9_7F4A_7C15;
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            40 + (h % 64) as i16 - 32
        }
    });
    Volume::with_spacing(data, [0.7, 0.7, 2.5])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn stacks_per_s(stacker: &SliceStack, vol: &Volume<f32>, centres: &[usize], threads: usize) -> f64 {
    let t = Instant::now();
    if threads <= 1 {
        for &k in centres {
            std::hint::black_box(stacker.image_stack(vol, k).unwrap());
        }
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&k) = centres.get(i) else { break };
                    std::hint::black_box(stacker.image_stack(vol, k).unwrap());
                });
            }
        });
    }
    centres.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = std::env::temp_dir().join(format!("masam_bench_loader_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ct.nii.gz");

    let t = Instant::now();
    let ct = synthetic_ct();
    let gen_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    NiftiWriter::new().write(&path, &ct).unwrap();
    let write_ms = t.elapsed().as_secs_f64() * 1e3;
    let file_mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;

    let read_ms = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(NiftiReader::new().read::<f32>(&path).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let vol = NiftiReader::new().read::<f32>(&path).unwrap().volume;
    assert_eq!(vol.data.map(|&v| v as i16), ct.data);

    let centres: Vec<usize> = (0..SHAPE_ZYX.0).collect();
    let mut results = serde_json::Map::new();
    for (name, size) in [
        ("stack_5x512x512", (512, 512)),
        ("stack_5x256x256", (256, 256)),
    ] {
        let stacker =
            SliceStack::new(StackConfig::default().with_out_size(size.0, size.1)).unwrap();
        let s = stacker.image_stack(&vol, 50).unwrap();
        assert_eq!(s.dim(), (5, size.0, size.1));
        stacks_per_s(&stacker, &vol, &centres[..10], 1); // warm-up
        let one = stacks_per_s(&stacker, &vol, &centres, 1);
        let all = stacks_per_s(&stacker, &vol, &centres, threads);
        results.insert(
            name.into(),
            serde_json::json!({
                "stacks_per_s_1_thread": (one * 10.0).round() / 10.0,
                "stacks_per_s_all_threads": (all * 10.0).round() / 10.0,
                "ms_per_stack_1_thread": (1e4 / one).round() / 10.0,
            }),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // A real CT, when the shared data folder is present (512×512×61 int16, 18 MB .nii.gz).
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/pyradiomics_lung2_image.nii.gz");
    let real_ms = real.is_file().then(|| {
        let t = Instant::now();
        std::hint::black_box(NiftiReader::new().read::<f32>(&real).unwrap());
        (t.elapsed().as_secs_f64() * 1e3).round()
    });
    let out = serde_json::json!({
        "bench": "volume_loader",
        "volume_zyx": [SHAPE_ZYX.0, SHAPE_ZYX.1, SHAPE_ZYX.2],
        "dtype": "int16",
        "threads": threads,
        "generate_ms": gen_ms.round(),
        "write_nii_gz_ms": write_ms.round(),
        "file_mb": (file_mb * 10.0).round() / 10.0,
        "read_nii_gz_to_f32_ms": read_ms.round(),
        "stacks": results,
        "read_real_ct_lung2_512x512x61_ms": real_ms,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
