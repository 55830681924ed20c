//! FacT on a ViT that is not ours: a minimal image classifier (patch embedding, a couple of
//! pre-norm blocks with a fused qkv projection, mean pooling, linear head) whose "pretrained"
//! weights are frozen plain tensors. FacT increments are added to its linear layers, and only the
//! FacT factors and the head are trained, on synthetic data; the loss goes down. At the end the
//! increments are merged into the weights and the merged model gives the same logits.
//!
//! ```text
//! cargo run --example fact_on_vit                # FacT-TT on q, k, v, proj, fc1, fc2
//! cargo run --example fact_on_vit -- --tk        # FacT-TK
//! cargo run --example fact_on_vit -- --qv        # MA-SAM's choice: q and v only
//! ```

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Init, Optimizer, ParamsAdamW};
use masam_fact::{Fact, FactConfig, FactKind, FactLinear, Projection};
use masam_nn::{linear, softmax_last_dim, FrozenLinear, LayerNorm, Linear, SeededVarMap};

const IMG: usize = 16;
const PATCH: usize = 4;
const DIM: usize = 32;
const HEADS: usize = 4;
const DEPTH: usize = 2;
const CLASSES: usize = 3;

/// Frozen "pretrained" weights: a deterministic draw, never registered as variables.
struct Frozen(SeededVarMap);

impl Frozen {
    fn tensor(&self, shape: &[usize], std: f64) -> Result<Tensor> {
        Ok(self.0.sample(
            &shape.into(),
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
            DType::F32,
            &Device::Cpu,
        )?)
    }
    fn linear(&self, out: usize, inp: usize) -> Result<FrozenLinear> {
        let w = self.tensor(&[out, inp], 1.0 / (inp as f64).sqrt())?;
        let b = self.tensor(&[out], 0.02)?;
        Ok(FrozenLinear::new(w, Some(b)))
    }
    fn norm(&self) -> Result<LayerNorm> {
        let ones = Tensor::ones(DIM, DType::F32, &Device::Cpu)?;
        let zeros = Tensor::zeros(DIM, DType::F32, &Device::Cpu)?;
        Ok(LayerNorm::new(ones, zeros, 1e-6))
    }
}

/// Wraps a frozen linear with FacT when the hook exists (projection adapted), else keeps it.
enum Proj {
    Fact(FactLinear),
    Plain(FrozenLinear),
}

impl Proj {
    fn new(base: FrozenLinear, hook: Option<masam_fact::FactHook>) -> Result<Self> {
        Ok(match hook {
            Some(h) => Proj::Fact(FactLinear::new(base, h)?),
            None => Proj::Plain(base),
        })
    }
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Proj::Fact(l) => l.forward(x, train),
            Proj::Plain(l) => l.forward(x),
        }
    }
    fn merge(&mut self) -> candle_core::Result<()> {
        if let Proj::Fact(l) = self {
            l.merge()?;
        }
        Ok(())
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Proj,
    proj: Proj,
    norm2: LayerNorm,
    fc1: Proj,
    fc2: Proj,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / HEADS;
        let qkv = self.qkv.forward(&self.norm1.forward(x)?, train)?;
        // (B, N, 3, heads, hd) → (3, B, heads, N, hd)
        let qkv = qkv
            .reshape((b, n, 3, HEADS, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let a = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        let x = (x + self.proj.forward(&a, train)?)?;
        let h = self
            .fc1
            .forward(&self.norm2.forward(&x)?, train)?
            .gelu_erf()?;
        x + self.fc2.forward(&h, train)?
    }
}

struct Vit {
    patch: FrozenLinear,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl Vit {
    fn new(fact: &Fact, params: &SeededVarMap) -> Result<Self> {
        let fz = Frozen(SeededVarMap::new(2024));
        let patch = fz.linear(DIM, PATCH * PATCH)?;
        let pos = fz.tensor(&[1, (IMG / PATCH) * (IMG / PATCH), DIM], 0.02)?;
        let mut blocks = Vec::new();
        for i in 0..DEPTH {
            blocks.push(Block {
                norm1: fz.norm()?,
                qkv: Proj::new(fz.linear(3 * DIM, DIM)?, fact.qkv(i)?)?,
                proj: Proj::new(fz.linear(DIM, DIM)?, fact.proj(i)?)?,
                norm2: fz.norm()?,
                fc1: Proj::new(fz.linear(4 * DIM, DIM)?, fact.fc1(i)?)?,
                fc2: Proj::new(fz.linear(DIM, 4 * DIM)?, fact.fc2(i)?)?,
            });
        }
        // The new classifier head is trained with the factors (as in PETL-ViT).
        let head = linear(
            DIM,
            CLASSES,
            params.var_builder(DType::F32, &Device::Cpu).pp("head"),
        )?;
        Ok(Self {
            patch,
            pos,
            blocks,
            norm: fz.norm()?,
            head,
        })
    }

    /// (B, 1, IMG, IMG) → logits (B, CLASSES).
    fn forward(&self, img: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let b = img.dim(0)?;
        let g = IMG / PATCH;
        // Non-overlapping patches, flattened (kh, kw): (B, g·g, P·P).
        let patches = img
            .reshape((b, g, PATCH, g, PATCH))?
            .permute((0, 1, 3, 2, 4))?
            .reshape((b, g * g, PATCH * PATCH))?;
        let mut x = self.patch.forward(&patches)?.broadcast_add(&self.pos)?;
        for blk in &self.blocks {
            x = blk.forward(&x, train)?;
        }
        let pooled = self.norm.forward(&x)?.mean(1)?;
        self.head.forward(&pooled)
    }

    fn merge(&mut self) -> candle_core::Result<()> {
        for b in &mut self.blocks {
            for p in [&mut b.qkv, &mut b.proj, &mut b.fc1, &mut b.fc2] {
                p.merge()?;
            }
        }
        Ok(())
    }
}

/// Class k: a bright horizontal band in rows [5k, 5k + 4) plus noise.
fn batch(step: u64, n: usize) -> Result<(Tensor, Tensor)> {
    let noise = SeededVarMap::new(10_000 + step).sample(
        &(n, 1, IMG, IMG).into(),
        Init::Randn {
            mean: 0.0,
            stdev: 0.5,
        },
        DType::F32,
        &Device::Cpu,
    )?;
    let mut base = vec![0f32; n * IMG * IMG];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i + step as usize) % CLASSES;
        labels.push(k as u32);
        for r in 5 * k..(5 * k + 4).min(IMG) {
            for c in 0..IMG {
                base[i * IMG * IMG + r * IMG + c] = 1.0;
            }
        }
    }
    let img = (Tensor::from_vec(base, (n, 1, IMG, IMG), &Device::Cpu)? + noise)?;
    Ok((img, Tensor::new(labels, &Device::Cpu)?))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = FactConfig::petl_vit_tt().with_rank(8).with_scale(1.0);
    if args.iter().any(|a| a == "--tk") {
        cfg = cfg.with_kind(FactKind::Tk).with_rank(8);
    }
    if args.iter().any(|a| a == "--qv") {
        cfg = cfg.with_targets(vec![Projection::Q, Projection::V]);
    }
    let params = SeededVarMap::new(0);
    let fact = Fact::new(
        &cfg,
        DIM,
        DEPTH,
        params.var_builder(DType::F32, &Device::Cpu),
    )?;
    let mut vit = Vit::new(&fact, &params)?;
    let n_fact: usize = fact.parameters().iter().map(|(_, t)| t.elem_count()).sum();
    println!(
        "FacT-{:?} rank {} on {:?}: {} factor parameters",
        cfg.kind, cfg.rank, cfg.targets, n_fact
    );

    let mut opt = AdamW::new(
        params.vars().all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let (val_x, val_y) = batch(999, 48)?;
    let eval_loss = |vit: &Vit| -> Result<f32> {
        let logits = vit.forward(&val_x, false)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &val_y)?.to_scalar()?)
    };
    let first = eval_loss(&vit)?;
    println!("step   0  eval loss {first:.4}");
    for step in 1..=40u64 {
        let (x, y) = batch(step, 24)?;
        let loss = candle_nn::loss::cross_entropy(&vit.forward(&x, true)?, &y)?;
        opt.backward_step(&loss)?;
        if step % 8 == 0 {
            println!(
                "step {step:3}  train loss {:.4}  eval loss {:.4}",
                loss.to_scalar::<f32>()?,
                eval_loss(&vit)?
            );
        }
    }
    let last = eval_loss(&vit)?;
    let logits = vit.forward(&val_x, false)?;
    let acc: f32 = logits
        .argmax(D::Minus1)?
        .eq(&val_y)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar()?;
    println!(
        "eval loss {first:.4} -> {last:.4}, accuracy {:.1}%",
        acc * 100.0
    );
    anyhow::ensure!(last < first, "the loss did not go down");

    vit.merge()?;
    let merged = vit.forward(&val_x, false)?;
    let diff: f32 = (merged - logits)?.abs()?.max_all()?.to_scalar()?;
    println!("merged model: max |logit difference| {diff:.2e}");
    Ok(())
}
