use candle_core::{DType, Device, Tensor};
use masam_adapter::{Finetune, MaSam, MaSamConfig};
use masam_sam::Prompt;
use masam_train::{DiceCeLoss, DiceCeLossConfig};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let patch: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(8);
    let mut enc = masam_sam::ImageEncoderConfig::vit_b();
    enc.embed_dim = 96;
    enc.depth = 4;
    enc.num_heads = 4;
    enc.global_attn_indexes = vec![1, 3];
    enc.window_size = 4;
    enc.patch_size = patch;
    enc.out_chans = 64;
    let mut cfg = MaSamConfig::from_backbone(enc, 128, 12);
    cfg.sam.decoder.upscaling_channels = if patch == 8 {
        vec![32, 16, 8]
    } else {
        vec![16, 8, 4, 4]
    };
    cfg.sam.decoder.transformer.num_heads = 4;
    cfg.sam.decoder.transformer.mlp_dim = 256;
    cfg.fact = None;
    cfg.adapter = if std::env::var("NOADAPT").is_ok() {
        None
    } else {
        Some(masam_conv3d::Adapter3dConfig::for_dim(96).with_channels(48))
    };
    if std::env::var("NORELPOS").is_ok() {
        cfg.sam.encoder.use_rel_pos = false;
    }
    if std::env::var("GLOBAL").is_ok() {
        cfg.sam.encoder.global_attn_indexes = vec![0, 1, 2, 3];
    }
    cfg.finetune = Finetune::Full;
    let model = MaSam::random(&cfg, 0, &Device::Cpu)?;
    let x = Tensor::rand(0f32, 1., (4, 5, 3, 128, 128), &Device::Cpu)?;
    let labels = Tensor::zeros((20, 128, 128), DType::I64, &Device::Cpu)?;
    let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
    for _ in 0..3 {
        let t = Instant::now();
        let xx = x.reshape((20, 3, 128, 128))?;
        let xx = model.sam.preprocess(&xx)?;
        let emb = model.sam.image_encoder.forward(
            &xx,
            &masam_sam::ForwardContext {
                slices: 5,
                train: true,
            },
        )?;
        let t1 = t.elapsed().as_secs_f64();
        let g = emb.sqr()?.sum_all()?.backward()?;
        let t1b = t.elapsed().as_secs_f64();
        drop(g);
        let embd = emb.detach();
        let t1c = t.elapsed().as_secs_f64();
        let (m, _) = model
            .sam
            .decode(&embd, &Prompt::None, masam_sam::MaskSelection::All)?;
        let t2 = t.elapsed().as_secs_f64();
        let g = m.sqr()?.sum_all()?.backward()?;
        let t2b = t.elapsed().as_secs_f64();
        drop(g);
        let md = m.detach();
        let mv = candle_core::Var::from_tensor(&md)?;
        let t3a = t.elapsed().as_secs_f64();
        let l = loss.forward(mv.as_tensor(), &labels)?;
        let t3 = t.elapsed().as_secs_f64();
        let _g = l.total.backward()?;
        let t4 = t.elapsed().as_secs_f64();
        println!(
            "enc fwd {:.3} bwd {:.3} | dec fwd {:.3} bwd {:.3} | loss fwd {:.3} bwd {:.3}",
            t1,
            t1b - t1,
            t2 - t1c,
            t2b - t2,
            t3 - t3a,
            t4 - t3
        );
    }
    Ok(())
}
