//! Parity of the image encoder with the reference PyTorch SAM encoder on the tiny fixtures, and
//! gradient flow to every encoder parameter.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use masam_nn::SeededVarMap;
use masam_sam::{ForwardContext, ImageEncoder, ImageEncoderConfig};
use masam_testkit::{load_reference_tiny, rel_err};

#[test]
fn plain_encoder_matches_reference() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let weights = load_reference_tiny("converted_encoder.safetensors");
    let out = load_reference_tiny("plain_outputs.safetensors");
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), vb.pp("image_encoder")).unwrap();
    let r = enc.forward_with_intermediates(&out["images"], &ForwardContext::eval_2d())?;
    let mut worst = 0f64;
    for (i, b) in r.blocks.iter().enumerate() {
        let e = rel_err(b, &out[&format!("block_{i}")]);
        println!("block_{i}: max rel err {e:.3e}");
        assert!(e <= 1e-4, "block_{i}: {e}");
        worst = worst.max(e);
    }
    let e = rel_err(&r.embeddings, &out["image_embeddings"]);
    println!("image_embeddings: max rel err {e:.3e}");
    assert!(e <= 1e-4, "image_embeddings: {e}");
    // forward() agrees with forward_with_intermediates().
    let y = enc.forward(&out["images"], &ForwardContext::eval_2d())?;
    assert_eq!(rel_err(&y, &r.embeddings), 0.0);
    println!("worst block error {worst:.3e}");
    Ok(())
}

#[test]
fn every_encoder_parameter_gets_a_gradient() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let weights = load_reference_tiny("converted_encoder.safetensors");
    let params = SeededVarMap::new(0);
    for (k, v) in &weights {
        params.insert(k, v)?;
    }
    let vb = params.var_builder(DType::F32, &dev);
    let enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), vb.pp("image_encoder")).unwrap();
    let vars = params.named_vars();
    assert_eq!(
        vars.len(),
        weights.len(),
        "the encoder created parameters it should have loaded"
    );
    let out = load_reference_tiny("plain_outputs.safetensors");
    let y = enc.forward(&out["images"], &ForwardContext::eval_2d())?;
    // A random projection of the output, so no parameter is in a symmetric blind spot.
    let r = Tensor::randn(0f32, 1., y.dims(), &dev)?;
    let loss = (y * r)?.sum_all()?;
    let grads = loss.backward()?;
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    for name in names {
        let g = grads
            .get(vars[&name].as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n: f32 = g.abs()?.max_all()?.to_scalar()?;
        assert!(n > 0.0, "zero gradient for {name}");
    }
    Ok(())
}

#[test]
fn non_square_and_resized_inputs() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let weights = load_reference_tiny("converted_encoder.safetensors");
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), vb.pp("image_encoder")).unwrap();
    let x = Tensor::rand(0f32, 1., (1, 3, 80, 48), &dev)?;
    let y = enc.forward(&x, &ForwardContext::eval_2d())?;
    assert_eq!(y.dims(), &[1, 64, 5, 3]);
    let v: f32 = y.abs()?.sum_all()?.to_scalar()?;
    assert!(v.is_finite());
    // Bad shapes are refused with the dims seen.
    let err = enc
        .forward(
            &Tensor::zeros((1, 3, 60, 64), DType::F32, &dev)?,
            &ForwardContext::eval_2d(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("[1, 3, 60, 64]"), "{err}");
    assert!(enc
        .forward(
            &Tensor::zeros((1, 1, 64, 64), DType::F32, &dev)?,
            &ForwardContext::eval_2d()
        )
        .is_err());
    let ctx = ForwardContext {
        slices: 5,
        train: false,
        compute: None,
    };
    assert!(enc
        .forward(&Tensor::zeros((2, 3, 64, 64), DType::F32, &dev)?, &ctx)
        .is_err());
    Ok(())
}

mod hooks {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use candle_core::{Result, Tensor};
    use masam_sam::{BlockContext, LinearHook, TokenHook};

    /// (input dims, output dims, block) of one call.
    pub type Call = (Vec<usize>, Vec<usize>, usize);

    /// Records calls and the shapes seen; adds `delta` to the output.
    #[derive(Debug, Default)]
    pub struct Probe {
        pub calls: AtomicUsize,
        pub delta: f64,
        pub shapes: std::sync::Mutex<Vec<Call>>,
    }

    impl LinearHook for Probe {
        fn forward(&self, x: &Tensor, y: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.shapes
                .lock()
                .unwrap()
                .push((x.dims().to_vec(), y.dims().to_vec(), ctx.block));
            y + self.delta
        }
    }

    impl TokenHook for Probe {
        fn forward(&self, x: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.shapes
                .lock()
                .unwrap()
                .push((x.dims().to_vec(), x.dims().to_vec(), ctx.block));
            x + self.delta
        }
    }

    pub fn probe(delta: f64) -> Arc<Probe> {
        Arc::new(Probe {
            delta,
            ..Default::default()
        })
    }
}

#[test]
fn hooks_are_called_where_documented() -> candle_core::Result<()> {
    use std::sync::atomic::Ordering;
    let dev = Device::Cpu;
    let weights = load_reference_tiny("converted_encoder.safetensors");
    let out = load_reference_tiny("plain_outputs.safetensors");
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let mut enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), vb.pp("image_encoder")).unwrap();
    let ctx = ForwardContext::eval_2d();
    let plain = enc.forward(&out["images"], &ctx)?;
    // Identity hooks everywhere: same output, each hook called once per block.
    let id = hooks::probe(0.0);
    for b in enc.blocks.iter_mut() {
        b.hooks.pre_attn = Some(id.clone());
        b.hooks.qkv = Some(id.clone());
        b.hooks.proj = Some(id.clone());
        b.hooks.post_attn = Some(id.clone());
        b.hooks.mlp_fc1 = Some(id.clone());
        b.hooks.mlp_fc2 = Some(id.clone());
    }
    let y = enc.forward(&out["images"], &ctx)?;
    assert_eq!(rel_err(&y, &plain), 0.0);
    // Each hook once per block, plus the qkv hook once more in each windowed block whose grid
    // needs padding (blocks 0 and 2 here): the padded positions are one zero token, projected
    // once.
    assert_eq!(id.calls.load(Ordering::SeqCst), 6 * 4 + 2);
    let shapes = id.shapes.lock().unwrap().clone();
    // Block 0 is windowed (4x4 grid padded to 6x6 windows of 3x3): the qkv hook sees the real
    // normed tokens in grid layout, then the zero token of the padding; the other hooks see
    // real tokens only.
    assert_eq!(shapes[0], (vec![2, 4, 4, 64], vec![2, 4, 4, 64], 0));
    assert_eq!(shapes[1], (vec![2, 4, 4, 64], vec![2, 4, 4, 192], 0));
    assert_eq!(shapes[2], (vec![1, 1, 1, 64], vec![1, 1, 1, 192], 0));
    assert_eq!(shapes[3], (vec![2, 4, 4, 64], vec![2, 4, 4, 64], 0));
    assert_eq!(shapes[5], (vec![2, 4, 4, 64], vec![2, 4, 4, 256], 0));
    assert_eq!(shapes[6], (vec![2, 4, 4, 256], vec![2, 4, 4, 64], 0));
    // Block 1 is global.
    assert_eq!(shapes[8], (vec![2, 4, 4, 64], vec![2, 4, 4, 192], 1));
    // A hook that changes its output changes the result.
    enc.blocks[2].hooks.mlp_fc2 = Some(hooks::probe(0.5));
    let z = enc.forward(&out["images"], &ctx)?;
    assert!(rel_err(&z, &plain) > 1e-3);
    Ok(())
}
