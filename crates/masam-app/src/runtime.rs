//! Process-level settings that make candle's CPU training fast. Binaries call
//! [`init_cpu_training`] first thing in `main`; the allocator settings and why they matter are
//! in [`masam_adapter::nn::runtime`].

/// Tunes glibc's malloc for training (buffers up to 32 MiB from the heap, freed memory kept);
/// called by [`crate::finetune::run`] and the binaries. See [`masam_adapter::nn::runtime`].
pub use masam_adapter::nn::runtime::tune_allocator;

/// Makes candle run its element-wise CPU ops on the calling thread (`CANDLE_NUM_THREADS=1`,
/// unless the variable is already set). Matrix products and our fused ops still use every core
/// through rayon.
///
/// candle 0.11 splits element-wise ops (the gradient accumulations of every backward, among
/// others) over a second thread pool, next to rayon's, whose caller spins at a barrier until
/// its workers finish. On a quiet machine that is about 10 % faster than one thread (measured:
/// 0.33 s against 0.36 s per default phantom step on 2 cores, in a scratch timing), so it is not the default. On a
/// machine shared with other jobs the spinning pool competes with rayon for the cores and the
/// step became 1.5–2.5× slower; call this there. It sets an environment variable, so call it at
/// the start of `main`, before any other thread exists and before the first candle op (or set
/// `CANDLE_NUM_THREADS=1` in the shell).
pub fn single_threaded_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Spins of candle's element-wise worker before it sleeps, set by [`shorter_elementwise_spin`]
/// (candle's default: 25 000).
pub const ELEMENTWISE_SPIN_LIMIT: u32 = 2_000;

/// Makes candle's element-wise worker threads sleep after [`ELEMENTWISE_SPIN_LIMIT`] spins
/// instead of 25 000 (`CANDLE_BARRIER_POOL_SPIN_LIMIT`, unless the variable is already set).
///
/// After every element-wise op, candle 0.11's worker spins waiting for the next one; 25 000
/// `pause` instructions last about a millisecond on a recent x86 core, and during that time it
/// holds a core that rayon's GEMM threads want. Measured on a 2-core AVX-512 Xeon, quiet,
/// alternating fresh processes: the small training step of `benches/side_by_side.rs` 0.231 s →
/// 0.214 s (medians of four runs of 15 steps each; 500 and 5 000 spins gave 0.235 and 0.222 s);
/// the phantom default's step (`benches/train_step.rs`) 116–124 ms either way; a 512² ViT-B
/// prediction forward 3.60 → 3.62 s and the Conv3D forward + backward case 35.9 → 37.7 ms,
/// within or near their noise. It sets an environment variable that candle reads when it starts its
/// pool, so call it at the start of `main`, before any other thread exists and before the
/// first candle op.
pub fn shorter_elementwise_spin() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var(
            "CANDLE_BARRIER_POOL_SPIN_LIMIT",
            ELEMENTWISE_SPIN_LIMIT.to_string(),
        );
    }
}

/// What the `masam` binaries and examples do first in `main`: [`tune_allocator`] and
/// [`shorter_elementwise_spin`]. (See [`single_threaded_elementwise`] for machines shared with
/// other jobs.)
///
/// ```
/// masam_app::runtime::init_cpu_training();
/// assert!(std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_some());
/// ```
pub fn init_cpu_training() {
    tune_allocator();
    shorter_elementwise_spin();
}
