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

/// What the `masam` binaries and examples do first in `main`: [`tune_allocator`]. (See
/// [`single_threaded_elementwise`] for machines shared with other jobs.)
///
/// ```
/// masam_app::runtime::init_cpu_training();
/// ```
pub fn init_cpu_training() {
    tune_allocator();
}
