//! The reference-tiny fixture (authors' PyTorch code): FacT-TT on the frozen qkv of every
//! block equals `qkv + s·[V Σq U x | 0 | V Σv U x]`, and the reference keys round-trip
//! bit-exactly through our loader and saver.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::*;
use masam_fact::{
    read_tensors, Fact, FactConfig, FactError, FactLinear, Projection, ReferenceFormat,
};
use masam_nn::{FrozenLinear, SeededVarMap};

const DIM: usize = 64;
const DEPTH: usize = 4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference-tiny")
}

fn adapter() -> HashMap<String, Tensor> {
    read_tensors(fixtures().join("masam_adapter.safetensors")).unwrap()
}

fn loaded() -> (SeededVarMap, Fact) {
    let params = SeededVarMap::new(0);
    let fact = Fact::new(
        &FactConfig::tiny(),
        DIM,
        DEPTH,
        params.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    fact.load_reference_file(
        fixtures().join("masam_adapter.safetensors"),
        &ReferenceFormat::default(),
    )
    .unwrap();
    (params, fact)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn qkv_with_fixture_weights_matches_formula() {
    let (_params, fact) = loaded();
    let enc = read_tensors(fixtures().join("converted_encoder.safetensors")).unwrap();
    let ad = adapter();
    let u = Mat::from_tensor(&ad["image_encoder.FacTu.weight"]);
    let v = Mat::from_tensor(&ad["image_encoder.FacTv.weight"]);
    let scale = fact.config().scale;
    let mut worst: f64 = 0.0;
    for i in 0..DEPTH {
        let w = enc[&format!("image_encoder.blocks.{i}.attn.qkv.weight")].clone();
        let b = enc[&format!("image_encoder.blocks.{i}.attn.qkv.bias")].clone();
        assert_eq!(w.dims(), &[3 * DIM, DIM]);
        let layer = FactLinear::new(
            FrozenLinear::new(w.clone(), Some(b.clone())),
            fact.qkv(i).unwrap().unwrap(),
        )
        .unwrap();
        // A (B·D, H, W, C) token map, as SAM's attention sees it.
        let x = randn(100 + i as u64, &[2, 3, 3, DIM]);
        let out = layer.forward(&x, false).unwrap();
        assert_eq!(out.dims(), &[2, 3, 3, 3 * DIM]);

        let xm = Mat::from_tensor(&x);
        let zero_g = Mat::zeros(xm.rows, DIM);
        let sq = Mat::from_tensor(&ad[&format!("q_FacTs_{i:03}")]);
        let sv = Mat::from_tensor(&ad[&format!("v_FacTs_{i:03}")]);
        let dq = increment(&xm, &NaiveParams::new(&u, &v, &sq, 1, 1, scale), &zero_g).out;
        let dv = increment(&xm, &NaiveParams::new(&u, &v, &sv, 1, 1, scale), &zero_g).out;
        let mut expect = linear(&xm, &Mat::from_tensor(&w), Some(&Mat::from_tensor(&b)));
        for n in 0..expect.rows {
            for c in 0..DIM {
                expect.add(n, c, dq.at(n, c));
                expect.add(n, 2 * DIM + c, dv.at(n, c));
            }
        }
        let e = rel_err_t(&out, &expect);
        // The increment is a real change of the frozen output.
        let plain = linear(&xm, &Mat::from_tensor(&w), Some(&Mat::from_tensor(&b)));
        assert!(rel_err(&plain, &expect) > 1e-3);
        worst = worst.max(e);
    }
    println!("fixture qkv max relative error {worst:.3e}");
    assert!(worst < 1e-4, "max relative error {worst}");
}

#[test]
fn loads_into_vars_and_round_trips_bit_exactly() {
    let (params, fact) = loaded();
    let ad = adapter();
    // The VarMap's variables now hold the fixture values, bit for bit.
    let var = params.get("blocks.2.v_FacTs.weight").unwrap();
    assert_eq!(bits(var.as_tensor()), bits(&ad["v_FacTs_002"]));
    assert_eq!(
        bits(fact.factors().u()),
        bits(&ad["image_encoder.FacTu.weight"])
    );
    assert_eq!(
        bits(fact.tt_core(3, Projection::Q).unwrap()),
        bits(&ad["q_FacTs_003"])
    );

    let dir = std::env::temp_dir().join(format!("masam-fact-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("fact.safetensors");
    fact.save_reference(&out, &ReferenceFormat::default())
        .unwrap();

    // Compare raw bytes with the safetensors crate: same FacT keys, dtypes, shapes, data.
    let src_bytes = std::fs::read(fixtures().join("masam_adapter.safetensors")).unwrap();
    let src = safetensors::SafeTensors::deserialize(&src_bytes).unwrap();
    let dst_bytes = std::fs::read(&out).unwrap();
    let dst = safetensors::SafeTensors::deserialize(&dst_bytes).unwrap();
    let mut fact_keys: Vec<String> = src
        .names()
        .into_iter()
        .filter(|k| k.contains("FacT"))
        .map(str::to_string)
        .collect();
    fact_keys.sort();
    let mut saved: Vec<String> = dst.names().into_iter().map(str::to_string).collect();
    saved.sort();
    assert_eq!(saved, fact_keys);
    assert_eq!(saved.len(), 2 + 2 * DEPTH);
    for k in &saved {
        let a = src.tensor(k).unwrap();
        let b = dst.tensor(k).unwrap();
        assert_eq!(a.dtype(), b.dtype(), "{k}");
        assert_eq!(a.shape(), b.shape(), "{k}");
        assert_eq!(a.data(), b.data(), "{k}");
    }

    // Loading what we saved into a fresh model gives the same bits again.
    let fresh = Fact::new(
        &FactConfig::tiny(),
        DIM,
        DEPTH,
        SeededVarMap::new(9).var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    fresh
        .load_reference_file(&out, &ReferenceFormat::default())
        .unwrap();
    for ((n1, t1), (n2, t2)) in fresh.parameters().iter().zip(fact.parameters().iter()) {
        assert_eq!(n1, n2);
        assert_eq!(bits(t1), bits(t2), "{n1}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pth_and_safetensors_agree() {
    let (_params, fact) = loaded();
    let from_pth = Fact::new(
        &FactConfig::tiny(),
        DIM,
        DEPTH,
        SeededVarMap::new(5).var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    from_pth
        .load_reference_file(
            fixtures().join("masam_adapter.pth"),
            &ReferenceFormat::default(),
        )
        .unwrap();
    for ((n, a), (_, b)) in fact.parameters().iter().zip(from_pth.parameters().iter()) {
        assert_eq!(bits(a), bits(b), "{n}");
    }
}

#[test]
fn bad_checkpoints_are_errors_and_change_nothing() {
    let (_params, fact) = loaded();
    let before: Vec<Vec<u32>> = fact.parameters().iter().map(|(_, t)| bits(t)).collect();
    let fmt = ReferenceFormat::default();

    let mut missing = adapter();
    missing.remove("v_FacTs_003");
    missing.insert(
        "image_encoder.FacTu.weight".into(),
        Tensor::zeros((4, DIM), DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(matches!(
        fact.load_reference(&missing, &fmt),
        Err(FactError::MissingTensor(k)) if k == "v_FacTs_003"
    ));

    let mut wrong = adapter();
    wrong.insert(
        "q_FacTs_001".into(),
        Tensor::zeros((4, 5), DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(matches!(
        fact.load_reference(&wrong, &fmt),
        Err(FactError::ShapeMismatch { .. })
    ));
    // A rank-8 model cannot take the rank-4 fixture.
    let r8 = Fact::new(
        &FactConfig::tiny().with_rank(8),
        DIM,
        DEPTH,
        SeededVarMap::new(1).var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert!(r8.load_reference(&adapter(), &fmt).is_err());
    // Missing files and unwritable destinations.
    assert!(matches!(
        fact.load_reference_file(fixtures().join("nope.safetensors"), &fmt),
        Err(FactError::Io { .. })
    ));
    let bad_dest = std::env::temp_dir()
        .join(format!("masam-fact-missing-dir-{}", std::process::id()))
        .join("x.safetensors");
    assert!(fact.save_reference(&bad_dest, &fmt).is_err());
    assert!(!bad_dest.exists());

    let after: Vec<Vec<u32>> = fact.parameters().iter().map(|(_, t)| bits(t)).collect();
    assert_eq!(
        before, after,
        "a failed load must not modify the parameters"
    );
}
