//! A CI-sized mutation-fuzzing run of both readers (a few thousand inputs each): no panic, and
//! no input makes a reader hold more than a bounded amount of memory. The long runs use the
//! coverage-guided targets of the repository's `fuzz/` folder.

mod support;

use std::path::Path;

use masam_testkit::mutate::Mutator;
use masam_testkit::PeakAlloc;
use masam_weights::{read_pth_bytes, read_safetensors_bytes, Limits};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

/// Heap a reader may hold on any of these small inputs (well under the 2 GiB the project
/// allows a process for inputs under 1 MB).
const CAP: usize = 256 << 20;

fn seeds_pth() -> Vec<Vec<u8>> {
    use support::*;
    let mut t = Record::f32("t", "0", &[2, 2]);
    t.stride = vec![1, 2];
    vec![
        small_pth(),
        pth(
            state_dict_pickle(&[t]),
            &[("0", f32_bytes(&[1., 2., 3., 4.]))],
        ),
    ]
}

fn seeds_safetensors() -> Vec<Vec<u8>> {
    vec![support::safetensors(&[
        ("a", "F32", vec![2, 2], vec![0; 16]),
        ("b", "BF16", vec![3], vec![1; 6]),
        ("c", "I64", vec![], vec![2; 8]),
    ])]
}

fn fuzz(name: &str, seeds: Vec<Vec<u8>>, n: usize, read: impl Fn(&[u8]) -> usize) {
    let mut m = Mutator::new(0x5eed, seeds);
    let mut worst = 0;
    let mut accepted = 0;
    m.run(n, |input| {
        ALLOC.reset_peak();
        let base = ALLOC.live();
        accepted += read(input);
        worst = worst.max(ALLOC.peak() - base);
        assert!(
            ALLOC.peak() - base < CAP,
            "{name}: {} bytes for an input of {}",
            ALLOC.peak() - base,
            input.len()
        );
    });
    eprintln!("{name}: {n} inputs, {accepted} tensors read, peak {worst} bytes");
}

#[test]
fn mutated_checkpoints_never_panic_or_blow_up() {
    let limits = Limits::default();
    let src = Path::new("fuzz.pth");
    fuzz("pth", seeds_pth(), 3000, |b| {
        read_pth_bytes(b, src, &limits)
            .map(|t| t.len())
            .unwrap_or(0)
    });
    let src = Path::new("fuzz.safetensors");
    fuzz("safetensors", seeds_safetensors(), 3000, |b| {
        read_safetensors_bytes(b, src, &limits)
            .map(|t| t.len())
            .unwrap_or(0)
    });
}
