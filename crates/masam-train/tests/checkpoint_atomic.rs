//! Checkpoint round trip and atomicity: a failed or interrupted write never damages the previous
//! checkpoint and leaves no stray temp file.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor, Var};
use masam_testkit::TempDir;
use masam_train::{
    atomic_write, atomic_write_with, AdamW, AdamWConfig, RngState, TrainError, TrainingState,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn sample_state(seed: f32) -> (TrainingState, AdamW) {
    let w = Var::new(&[[seed, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let b = Var::new(&[0.5f32], &Device::Cpu).unwrap();
    let h = Var::from_tensor(
        &Tensor::new(&[1f32, -1.0], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap(),
    )
    .unwrap();
    let vars = HashMap::from([
        ("fc.weight".to_string(), w.clone()),
        ("fc.bias".to_string(), b),
        ("half".to_string(), h.clone()),
    ]);
    let mut opt = AdamW::from_map(vars, AdamWConfig::default().with_lr(0.01)).unwrap();
    let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap()
        + h.as_tensor()
            .to_dtype(DType::F32)
            .unwrap()
            .sum_all()
            .unwrap())
    .unwrap();
    opt.step(&loss.backward().unwrap()).unwrap();
    let rngs = BTreeMap::from([(
        "augment".to_string(),
        RngState::capture(&ChaCha8Rng::seed_from_u64(9)),
    )]);
    let cfg = serde_json::json!({"max_iter": 1000, "base_lr": 8e-4});
    (TrainingState::capture(&opt, 7, rngs, cfg).unwrap(), opt)
}

#[test]
fn round_trip_preserves_everything() {
    let dir = TempDir::new("train-roundtrip");
    let path = dir.join("state.safetensors");
    let (state, _) = sample_state(1.0);
    state.save(&path).unwrap();
    let back = TrainingState::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.step, 7);
    assert_eq!(back.config, state.config);
    assert_eq!(back.rngs, state.rngs);
    let mut keys: Vec<_> = back.params.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, vec!["fc.bias", "fc.weight", "half"]);
    assert_eq!(back.params["half"].dtype(), DType::BF16);
    for (a, b) in [
        (&state.params, &back.params),
        (&state.optimizer, &back.optimizer),
    ] {
        assert_eq!(a.len(), b.len());
        for (k, t) in a.iter() {
            let x = t
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let y = b[k]
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            assert_eq!(x, y, "{k}");
            assert_eq!(t.dims(), b[k].dims());
        }
    }
    // fc.bias got no gradient: it has no optimiser state, and the file says so.
    assert!(!back.optimizer.contains_key("state.fc.bias.step"));
    assert_eq!(dir.entries(), vec!["state.safetensors"]);
    // no loss scaler: none comes back
    assert_eq!(back.loss_scale, None);
}

#[test]
fn loss_scaler_state_round_trips() {
    let dir = TempDir::new("train-loss-scale");
    let path = dir.join("state.safetensors");
    let (mut state, _) = sample_state(1.0);
    let ls = masam_train::LossScaleState {
        scale: 2048.0,
        good_steps: 17,
        skipped_in_a_row: 1,
        skipped_total: 5,
    };
    state.loss_scale = Some(ls);
    state.save(&path).unwrap();
    let back = TrainingState::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.loss_scale, Some(ls));
}

#[test]
fn failed_write_leaves_previous_checkpoint_intact() {
    let dir = TempDir::new("train-crash");
    let path = dir.join("ckpt.safetensors");
    let (old, _) = sample_state(1.0);
    old.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Crash injected half-way through writing the new checkpoint.
    let (new, _) = sample_state(5.0);
    let new_bytes = new.to_bytes().unwrap();
    assert_ne!(new_bytes, before);
    let err = atomic_write_with(&path, |w| {
        w.write_all(&new_bytes[..new_bytes.len() / 2])?;
        Err(std::io::Error::other("injected crash"))
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Fs(_)), "{err}");
    // The source chain reaches the writer's own error.
    let source = std::error::Error::source(&err).expect("a source");
    assert_eq!(source.to_string(), "injected crash");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        dir.entries(),
        vec!["ckpt.safetensors"],
        "temp file left behind"
    );

    // A panic in the writer (e.g. a bug during serialisation) behaves the same.
    let r = std::panic::catch_unwind(|| {
        let _ = atomic_write_with(&path, |w| {
            w.write_all(b"garbage")?;
            panic!("writer panicked");
        });
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir.entries(), vec!["ckpt.safetensors"]);

    // The previous checkpoint still loads, and a later successful save replaces it.
    let w0 = |st: &TrainingState| {
        st.params["fc.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let back = TrainingState::load(&path, &Device::Cpu).unwrap();
    assert_eq!(w0(&back), w0(&old));
    new.save(&path).unwrap();
    let back = TrainingState::load(&path, &Device::Cpu).unwrap();
    assert_eq!(w0(&back), w0(&new));
    assert_ne!(w0(&old), w0(&new));
}

#[test]
fn unwritable_destination_is_an_error_without_side_effects() {
    let dir = TempDir::new("train-unwritable");
    // The "directory" is a regular file: no temp file can be created in it (even as root).
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let (state, _) = sample_state(1.0);
    let err = state.save(not_a_dir.join("ckpt.safetensors")).unwrap_err();
    assert!(matches!(err, TrainError::Fs(_)), "{err}");
    assert!(atomic_write(dir.join("missing-subdir/ckpt"), b"abc").is_err());
    assert_eq!(dir.entries(), vec!["file"]);
}

#[test]
fn corrupt_or_foreign_files_are_rejected() {
    let dir = TempDir::new("train-corrupt");
    let path = dir.join("ckpt.safetensors");
    let (state, _) = sample_state(1.0);
    let bytes = state.to_bytes().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(TrainingState::load(&path, &Device::Cpu).is_err());
    // A plain safetensors file without our metadata.
    let t = HashMap::from([(
        "x".to_string(),
        Tensor::ones(2, DType::F32, &Device::Cpu).unwrap(),
    )]);
    candle_core::safetensors::save(&t, &path).unwrap();
    assert!(matches!(
        TrainingState::load(&path, &Device::Cpu),
        Err(TrainError::BadCheckpoint(_))
    ));
    assert!(matches!(
        TrainingState::load(dir.join("nope"), &Device::Cpu),
        Err(TrainError::Io { .. })
    ));
}

#[test]
fn restore_checks_everything_before_changing_anything() {
    let (state, mut opt) = sample_state(1.0);
    let fc_weight = |opt: &AdamW| -> Vec<f32> {
        let (_, v) = opt.named_vars().find(|(n, _)| *n == "fc.weight").unwrap();
        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    };
    let w_before = fc_weight(&opt);
    let mut bad = state.clone();
    bad.params.insert(
        "fc.bias".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    bad.params.insert(
        "fc.weight".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(matches!(
        bad.restore(&mut opt),
        Err(TrainError::ShapeMismatch { .. })
    ));
    let w_after = fc_weight(&opt);
    assert_eq!(w_before, w_after);
    let mut missing = state.clone();
    missing.params.remove("half");
    assert!(matches!(
        missing.restore(&mut opt),
        Err(TrainError::MissingEntry(_))
    ));
    state.restore(&mut opt).unwrap();
}
