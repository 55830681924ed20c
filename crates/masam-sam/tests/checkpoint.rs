//! Official-checkpoint reading, backbone detection, conversion to another input size (against
//! the reference's converted encoder), the init-from-SAM backend, saving, and error cases.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use masam_nn::SeededVarMap;
use masam_sam::checkpoint::{encoder_param_shapes, ENCODER_PREFIX};
use masam_sam::{
    Error, ForwardContext, ImageEncoder, ImageEncoderConfig, Matched, ParamSource, SamCheckpoint,
};
use masam_testkit::{load_reference_tiny, reference_tiny, rel_err, TempDir};

/// Tiny config as the SAM checkpoint was made (128 px) and as fine-tuned (64 px).
fn tiny(img: usize) -> ImageEncoderConfig {
    ImageEncoderConfig::tiny().with_img_size(img)
}

fn check_conversion(file: &str) {
    let sam = SamCheckpoint::load(reference_tiny(file)).unwrap();
    let converted = sam.convert(&tiny(64)).unwrap();
    assert_eq!(
        converted.resized,
        vec![
            "image_encoder.blocks.1.attn.rel_pos_h",
            "image_encoder.blocks.1.attn.rel_pos_w",
            "image_encoder.blocks.3.attn.rel_pos_h",
            "image_encoder.blocks.3.attn.rel_pos_w",
            "image_encoder.pos_embed",
        ]
    );
    let exp = load_reference_tiny("converted_encoder.safetensors");
    let enc = converted.checkpoint.encoder_tensors();
    assert_eq!(enc.len(), exp.len());
    let mut worst = (0f64, String::new());
    for (k, e) in &exp {
        let err = rel_err(&enc[k].to_dtype(DType::F32).unwrap(), e);
        if err > worst.0 {
            worst = (err, k.clone());
        }
    }
    println!("{file}: worst max rel err {:.3e} ({})", worst.0, worst.1);
    assert!(worst.0 <= 1e-6, "{file}: {} off by {}", worst.1, worst.0);
    // The rest of the checkpoint (prompt encoder, mask decoder) passes through unchanged.
    assert_eq!(converted.checkpoint.tensors.len(), sam.tensors.len());
}

#[test]
fn converting_pth_reproduces_reference() {
    check_conversion("sam_base.pth");
}

#[test]
fn converting_safetensors_reproduces_reference() {
    check_conversion("sam_base.safetensors");
}

#[test]
fn pth_and_safetensors_hold_the_same_tensors() {
    let a = SamCheckpoint::from_pth(reference_tiny("sam_base.pth")).unwrap();
    let b = SamCheckpoint::from_safetensors(reference_tiny("sam_base.safetensors")).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, t) in &b.tensors {
        assert_eq!(rel_err(&a.tensors[k], t), 0.0, "{k}");
    }
}

#[test]
fn detects_the_backbone() {
    let sam = SamCheckpoint::load(reference_tiny("sam_base.safetensors")).unwrap();
    let info = sam.backbone().unwrap();
    assert_eq!(info.embed_dim, 64);
    assert_eq!(info.depth, 4);
    assert_eq!(info.head_dim, Some(16));
    assert_eq!(info.global_attn_indexes, vec![1, 3]);
    assert_eq!(info.window_size, 3);
    assert_eq!(info.grid, (8, 8));
    assert_eq!(
        (info.patch_size, info.in_chans, info.mlp_dim, info.out_chans),
        (16, 3, 256, 64)
    );
    assert_eq!(info.to_config(), tiny(128));
    // The converted file is detected at its new size.
    let conv = SamCheckpoint::load(reference_tiny("converted_encoder.safetensors")).unwrap();
    assert_eq!(conv.backbone().unwrap().to_config(), tiny(64));
}

#[test]
fn converted_weights_run_like_the_reference() {
    // End to end: .pth → convert → encoder → reference embeddings.
    let sam = SamCheckpoint::load(reference_tiny("sam_base.pth")).unwrap();
    let conv = sam.convert(&tiny(64)).unwrap();
    let vb = conv.checkpoint.var_builder(DType::F32, &Device::Cpu);
    let enc = ImageEncoder::new(&conv.config, vb.pp(ENCODER_PREFIX)).unwrap();
    let out = load_reference_tiny("plain_outputs.safetensors");
    let y = enc
        .forward(&out["images"], &ForwardContext::eval_2d())
        .unwrap();
    let e = rel_err(&y, &out["image_embeddings"]);
    println!("pth → convert → encoder: max rel err {e:.3e}");
    assert!(e <= 1e-4);
}

#[test]
fn init_from_sam_reports_sources() {
    let sam = SamCheckpoint::load(reference_tiny("sam_base.safetensors")).unwrap();
    // Converted: everything comes from SAM, five tensors resized.
    let conv = sam.convert(&tiny(64)).unwrap();
    let init = conv.init(SeededVarMap::new(0), Matched::Frozen);
    let vb = init.var_builder(DType::F32, &Device::Cpu);
    ImageEncoder::new(&tiny(64), vb.pp(ENCODER_PREFIX)).unwrap();
    let r = init.report();
    assert_eq!(r.len(), 65);
    assert_eq!(
        r.values().filter(|s| **s == ParamSource::Resized).count(),
        5
    );
    assert_eq!(
        r.values()
            .filter(|s| **s == ParamSource::Checkpoint)
            .count(),
        60
    );
    assert!(
        init.fallback().named_vars().is_empty(),
        "frozen: nothing became a Var"
    );
    // Unconverted 128 px file into a 64 px model: the mismatching tensors are fresh, the rest
    // copied (PyTorch's partial load), and with Matched::Trainable every parameter is a Var.
    let init = masam_sam::InitFromSam::new(
        sam.tensors.clone(),
        SeededVarMap::new(0),
        Matched::Trainable,
    );
    let vb = init.var_builder(DType::F32, &Device::Cpu);
    ImageEncoder::new(&tiny(64), vb.pp(ENCODER_PREFIX)).unwrap();
    let r = init.report();
    assert_eq!(
        r["image_encoder.pos_embed"],
        ParamSource::ShapeMismatch {
            checkpoint: vec![1, 8, 8, 64],
            model: vec![1, 4, 4, 64]
        }
    );
    assert!(matches!(
        r["image_encoder.blocks.1.attn.rel_pos_h"],
        ParamSource::ShapeMismatch { .. }
    ));
    assert_eq!(
        r["image_encoder.blocks.0.attn.rel_pos_h"],
        ParamSource::Checkpoint
    );
    assert_eq!(
        r.values()
            .filter(|s| **s == ParamSource::Checkpoint)
            .count(),
        60
    );
    assert_eq!(init.fallback().named_vars().len(), 65);
    let v = init.fallback().get("image_encoder.neck.2.weight").unwrap();
    assert_eq!(
        rel_err(v.as_tensor(), &sam.tensors["image_encoder.neck.2.weight"]),
        0.0
    );
}

#[test]
fn save_and_reload_round_trip() {
    let tmp = TempDir::new("sam-checkpoint");
    let sam = SamCheckpoint::load(reference_tiny("sam_base.safetensors")).unwrap();
    let conv = sam.convert(&tiny(64)).unwrap();
    let path = tmp.join("converted.safetensors");
    conv.checkpoint.save_safetensors(&path).unwrap();
    let back = SamCheckpoint::load(&path).unwrap();
    assert_eq!(back.tensors.len(), conv.checkpoint.tensors.len());
    for (k, t) in &conv.checkpoint.tensors {
        assert_eq!(
            rel_err(
                &back.tensors[k].to_dtype(DType::F32).unwrap(),
                &t.to_dtype(DType::F32).unwrap()
            ),
            0.0
        );
    }
    // No temporary file is left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // Saving into a missing folder fails cleanly and writes nothing.
    let bad = tmp.join("no/such/dir/out.safetensors");
    assert!(matches!(
        conv.checkpoint.save_safetensors(&bad),
        Err(Error::Fs(_))
    ));
    assert!(!bad.exists());
}

#[test]
fn wrong_preset_is_a_backbone_mismatch() {
    let sam = SamCheckpoint::load(reference_tiny("sam_base.pth")).unwrap();
    for cfg in [
        ImageEncoderConfig::vit_h().with_img_size(512),
        ImageEncoderConfig::vit_b(),
        ImageEncoderConfig {
            global_attn_indexes: vec![0, 2],
            ..tiny(64)
        },
        ImageEncoderConfig {
            num_heads: 8,
            ..tiny(64)
        },
        tiny(64).with_window_size(4),
    ] {
        match sam.convert(&cfg) {
            Err(Error::BackboneMismatch {
                expected,
                found,
                path,
            }) => {
                assert!(found.contains("embed dim 64, 4 blocks"), "{found}");
                assert!(expected.contains(&cfg.embed_dim.to_string()), "{expected}");
                assert!(path.ends_with("sam_base.pth"));
            }
            other => panic!("expected a backbone mismatch for {cfg:?}, got {other:?}"),
        }
    }
    let e = sam
        .convert(&ImageEncoderConfig::vit_h())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vit_h") && e.contains("custom (embed dim 64"),
        "{e}"
    );
    // An invalid target size is a config error.
    assert!(matches!(sam.convert(&tiny(60)), Err(Error::Config(_))));
}

#[test]
fn corrupt_files_are_bad_checkpoints() {
    let tmp = TempDir::new("sam-checkpoint");
    let bytes = std::fs::read(reference_tiny("sam_base.pth")).unwrap();
    // Truncated zip.
    let truncated = tmp.join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = SamCheckpoint::load(&truncated).unwrap_err();
    assert!(matches!(e, Error::BadCheckpoint { .. }), "{e}");
    // The reader's own error is kept as the source.
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source
            .downcast_ref::<masam_weights::WeightsError>()
            .is_some(),
        "{source}"
    );
    // Legacy (non-zip) torch.save: starts with a pickle protocol marker.
    let legacy = tmp.join("legacy.pth");
    std::fs::write(
        &legacy,
        [0x80u8, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20],
    )
    .unwrap();
    let e = SamCheckpoint::load(&legacy).unwrap_err();
    assert!(matches!(e, Error::BadCheckpoint { .. }), "{e}");
    assert!(matches!(
        SamCheckpoint::from_pth(&legacy),
        Err(Error::BadCheckpoint { .. })
    ));
    // Garbage safetensors, and an empty file.
    let garbage = tmp.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    assert!(matches!(
        SamCheckpoint::load(&garbage),
        Err(Error::BadCheckpoint { .. })
    ));
    let empty = tmp.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        SamCheckpoint::load(&empty),
        Err(Error::BadCheckpoint { .. })
    ));
    // Missing file.
    assert!(matches!(
        SamCheckpoint::load(tmp.join("absent.pth")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn missing_and_misshapen_keys_are_named() {
    let sam = SamCheckpoint::load(reference_tiny("sam_base.safetensors")).unwrap();
    let mut t = sam.tensors.clone();
    t.remove("image_encoder.blocks.2.mlp.lin2.bias");
    let e = SamCheckpoint::from_tensors(t, "edited")
        .convert(&tiny(64))
        .unwrap_err();
    match e {
        Error::MissingKey { key, .. } => assert_eq!(key, "image_encoder.blocks.2.mlp.lin2.bias"),
        other => panic!("{other:?}"),
    }
    let mut t = sam.tensors.clone();
    t.insert(
        "image_encoder.neck.2.weight".into(),
        Tensor::zeros((64, 64, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = SamCheckpoint::from_tensors(t, "edited")
        .convert(&tiny(64))
        .unwrap_err();
    match &e {
        Error::ShapeMismatch {
            key,
            expected,
            found,
            ..
        } => {
            assert_eq!(key, "image_encoder.neck.2.weight");
            assert_eq!(expected, &vec![64, 64, 3, 3]);
            assert_eq!(found, &vec![64, 64, 1, 1]);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("[64, 64, 3, 3]"));
    // Without the encoder at all.
    let t: HashMap<_, _> = sam
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("image_encoder."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(matches!(
        SamCheckpoint::from_tensors(t, "decoder only").backbone(),
        Err(Error::MissingKey { .. })
    ));
    // The encoder's own parameter list is what check_encoder verifies.
    assert_eq!(
        encoder_param_shapes(&tiny(64), ENCODER_PREFIX)
            .unwrap()
            .len(),
        65
    );
}

/// A minimal zip-format `torch.save` writer (stored entries), enough to produce files the way
/// PyTorch lays them out: `archive/data.pkl` (protocol-2 pickle) and `archive/data/{i}` (raw
/// little-endian f32 storages).
mod torch_zip {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A stored (uncompressed) zip archive of `files`.
    pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in files {
            let (crc, offset, n) = (crc32(data), out.len() as u32, data.len() as u32);
            let mut common = Vec::new();
            for v in [20u16, 0, 0, 0, 0x21] {
                common.extend(v.to_le_bytes());
            }
            common.extend(crc.to_le_bytes());
            common.extend(n.to_le_bytes());
            common.extend(n.to_le_bytes());
            common.extend((name.len() as u16).to_le_bytes());
            common.extend(0u16.to_le_bytes());
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend(&common);
            out.extend(name.as_bytes());
            out.extend(data);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend(20u16.to_le_bytes());
            central.extend(&common);
            for v in [0u16, 0, 0] {
                central.extend(v.to_le_bytes());
            }
            central.extend(0u32.to_le_bytes());
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let (cd_offset, cd_size) = (out.len() as u32, central.len() as u32);
        out.extend(central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        for v in [0u16, 0, files.len() as u16, files.len() as u16] {
            out.extend(v.to_le_bytes());
        }
        out.extend(cd_size.to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }

    fn int(p: &mut Vec<u8>, v: usize) {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    }

    fn int_tuple(p: &mut Vec<u8>, v: &[usize]) {
        p.push(b'(');
        for &x in v {
            int(p, x);
        }
        p.push(b't');
    }

    /// Pickles one tensor `_rebuild_tensor_v2(storage key, 0, shape, contiguous strides)`.
    fn tensor(p: &mut Vec<u8>, key: usize, shape: &[usize]) {
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        unicode(p, &key.to_string());
        unicode(p, "cpu");
        int(p, shape.iter().product());
        p.extend(b"tQ");
        int(p, 0);
        int_tuple(p, shape);
        let mut strides = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        int_tuple(p, &strides);
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"tR");
    }

    /// `torch.save({"model": {name: tensor, …}, "epoch": 3})` of f32 tensors.
    pub fn wrapped_state_dict(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'('];
        unicode(&mut p, "model");
        p.extend(b"}(");
        for (i, (name, shape, _)) in tensors.iter().enumerate() {
            unicode(&mut p, name);
            tensor(&mut p, i, shape);
        }
        p.push(b'u');
        unicode(&mut p, "epoch");
        int(&mut p, 3);
        p.extend(b"u.");
        let mut files = vec![("archive/data.pkl".to_string(), p)];
        for (i, (_, _, data)) in tensors.iter().enumerate() {
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            files.push((format!("archive/data/{i}"), bytes));
        }
        files.push(("archive/version".to_string(), b"3\n".to_vec()));
        zip(&files)
    }
}

#[test]
fn wrapped_state_dicts_are_unwrapped() {
    let tmp = TempDir::new("sam-checkpoint");
    let a: Vec<f32> = (0..6).map(|v| v as f32 * 0.5).collect();
    let bytes = torch_zip::wrapped_state_dict(&[
        ("image_encoder.a", vec![2, 3], a.clone()),
        ("mask_decoder.b", vec![4], vec![1., 2., 3., 4.]),
    ]);
    let path = tmp.join("wrapped.pth");
    std::fs::write(&path, bytes).unwrap();
    // The plain reader finds nothing at the top level: the wrapper must be looked into.
    assert!(candle_core::pickle::read_all(&path).unwrap().is_empty());
    let ckpt = SamCheckpoint::load(&path).unwrap();
    assert_eq!(ckpt.tensors.len(), 2);
    let t = ckpt.get("image_encoder.a").unwrap();
    assert_eq!(t.dims(), &[2, 3]);
    assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), a);
    assert_eq!(
        ckpt.get("mask_decoder.b")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        vec![1., 2., 3., 4.]
    );
    assert!(matches!(ckpt.get("nope"), Err(Error::MissingKey { .. })));
}
