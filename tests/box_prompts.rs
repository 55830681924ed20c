//! Box prompts through training: boxes made from labels reach the batches, and the prompt
//! encoder learns from them.

use candle_core::{DType, Device, Tensor};
use masam_adapter::data::{collate, InMemoryStacks, LabelledVolume, StackSource};
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::volume::boxes::{BoxMode, BoxPromptConfig};
use masam_adapter::volume::ndarray::Array3;
use masam_adapter::volume::transforms::{SliceStack, StackConfig};
use masam_adapter::volume::Volume;
use masam_adapter::{AdamWConfig, Batch, Error, LrSchedule, MaSam, MaSamConfig, Mode};

/// 12 slices of 32 × 32 with class 1 in a block and class 2 in slices 4..=5.
fn volume() -> LabelledVolume {
    let mut lab = Array3::<u8>::zeros((12, 32, 32));
    for z in 2..9 {
        for y in 5..25 {
            for x in 6..26 {
                lab[[z, y, x]] = 1;
            }
        }
    }
    for z in 4..6 {
        for y in 10..14 {
            for x in 12..20 {
                lab[[z, y, x]] = 2;
            }
        }
    }
    let img = lab.mapv(|v| v as f32 * 100.0 - 50.0);
    LabelledVolume {
        image: Volume::with_spacing(img, [1.0; 3]),
        label: Volume::with_spacing(lab, [1.0; 3]),
    }
}

fn stack() -> SliceStack {
    SliceStack::new(StackConfig {
        out_size: Some((64, 64)),
        orient: false,
        ..StackConfig::default()
    })
    .unwrap()
}

#[test]
fn stacks_carry_the_projected_box_and_miss_no_box_slice() {
    let src = InMemoryStacks::new(vec![volume()], stack(), None)
        .unwrap()
        .with_box_prompts(BoxPromptConfig::tight(2), 7)
        .unwrap();
    // centres 2..=7 have a 5-slice window touching slices 4..=5
    assert_eq!(src.len(), 6);
    let s = src.sample(0, 0).unwrap();
    let b = collate(&[s], &Device::Cpu).unwrap();
    let boxes = b.boxes.expect("boxes").to_vec3::<f32>().unwrap();
    // columns 12..=19, rows 10..=13 of 32 -> ×63/31 on the 64 grid, inclusive
    let k = 63.0 / 31.0;
    let want = [12.0 * k, 10.0 * k, 19.0 * k, 13.0 * k];
    for slice in &boxes[0] {
        for (a, w) in slice.iter().zip(want) {
            assert!((a - w).abs() < 1e-3, "{slice:?} vs {want:?}");
        }
    }
    // relaxed boxes contain the tight box
    let relaxed = BoxPromptConfig {
        mode: BoxMode::Relaxed,
        ..BoxPromptConfig::tight(2)
    };
    let r = InMemoryStacks::new(vec![volume()], stack(), None)
        .unwrap()
        .with_box_prompts(relaxed, 7)
        .unwrap();
    assert!(r.len() > 6); // one more slice on each side
    let rb = collate(&[r.sample(1, 0).unwrap()], &Device::Cpu).unwrap();
    let rb = rb.boxes.unwrap().to_vec3::<f32>().unwrap()[0][0].clone();
    assert!(rb[0] < want[0] && rb[1] < want[1] && rb[2] > want[2] && rb[3] > want[3]);
    // absent class: a typed error
    let err = InMemoryStacks::new(vec![volume()], stack(), None)
        .unwrap()
        .with_box_prompts(BoxPromptConfig::tight(3), 7)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Box(_)), "{err}");
}

#[test]
fn jitter_is_seeded_and_bounded() {
    let cfg = BoxPromptConfig {
        jitter: 3.0,
        ..BoxPromptConfig::tight(2)
    };
    let make = |seed| {
        InMemoryStacks::new(vec![volume()], stack(), None)
            .unwrap()
            .with_box_prompts(cfg, seed)
            .unwrap()
    };
    let get = |s: &InMemoryStacks, epoch| {
        collate(&[s.sample(2, epoch).unwrap()], &Device::Cpu)
            .unwrap()
            .boxes
            .unwrap()
            .to_vec3::<f32>()
            .unwrap()[0]
            .clone()
    };
    let (a, b) = (make(1), make(1));
    assert_eq!(get(&a, 0), get(&b, 0));
    assert_ne!(get(&a, 0), get(&a, 1));
    assert_ne!(get(&a, 0), get(&make(2), 0));
    let k = 63.0 / 31.0;
    let tight = [12.0 * k, 10.0 * k, 19.0 * k, 13.0 * k];
    let j = get(&a, 3);
    // the same box on every slice of the stack
    assert!(j.iter().all(|s| s == &j[0]));
    for (v, t) in j[0].iter().zip(tight) {
        assert!((v - t).abs() <= 3.0 + 1e-4, "{:?} vs {tight:?}", j[0]);
    }
}

fn tiny() -> MaSamConfig {
    let mut cfg = MaSamConfig::tiny();
    cfg.fact = cfg.fact.map(|f| f.with_dropout(0.0));
    cfg
}

fn batch(boxes: bool) -> Batch {
    let dev = Device::Cpu;
    let images = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &dev).unwrap();
    let labels = Tensor::ones((5, 64, 64), DType::I64, &dev).unwrap();
    let mut b = Batch::new(images, labels);
    if boxes {
        let one = Tensor::new(&[8f32, 10., 40., 50.], &dev).unwrap();
        b.boxes = Some(one.reshape((1, 1, 4)).unwrap().repeat((1, 5, 1)).unwrap());
    }
    b
}

#[test]
fn prompt_encoder_receives_gradients_from_box_training() {
    let model = MaSam::random(&tiny(), 0, &Device::Cpu).unwrap();
    let prompt = MaSam::boxes_prompt(batch(true).boxes.as_ref().unwrap()).unwrap();
    let out = model
        .forward(&batch(true).images, &prompt, Mode::Train)
        .unwrap();
    let grads = out
        .masks
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    let vars = model.trainable_vars();
    // the two box-corner embeddings
    for name in [
        "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.point_embeddings.3.weight",
    ] {
        let g = grads.get(vars[name].as_tensor()).expect(name);
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0, "{name}: zero gradient");
    }

    // Trainer::step passes the batch's boxes: with weight decay off, the corner embeddings only
    // move when the batch has boxes
    let corner = |m: &MaSam| {
        m.trainable_vars()["prompt_encoder.point_embeddings.2.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap()
    };
    let cfg = TrainerConfig {
        steps: 1,
        batch: 1,
        accumulation: 1,
        optimizer: AdamWConfig::default().with_weight_decay(0.0),
        schedule: LrSchedule::Constant { lr: 1e-2 },
        ..TrainerConfig::default()
    };
    for (boxes, moves) in [(false, false), (true, true)] {
        let m = MaSam::random(&tiny(), 0, &Device::Cpu).unwrap();
        let before = corner(&m);
        let mut t = Trainer::new(&m, cfg.clone()).unwrap();
        assert!(t.step(&[batch(boxes)]).unwrap().loss.is_finite());
        assert_eq!(corner(&m) != before, moves, "boxes: {boxes}");
    }
}
