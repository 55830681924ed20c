//! Process-level settings that make candle's CPU training fast. Binaries call
//! [`init_cpu_training`] first thing in `main`.
//!
//! candle allocates a fresh buffer for every tensor an op produces, forward and backward. With
//! glibc's default malloc, buffers above 128 KiB come from `mmap` and go back to the kernel on
//! `free`, so every step faults all of its activations and gradients in again (tens of millions
//! of page faults in a 10-minute run; the decoder's backward ran 1.4× slower for it). Raising
//! the mmap and trim thresholds keeps those buffers in the heap for reuse.

/// Tunes the allocator for training ([`masam_nn::runtime::tune_allocator`]): glibc `mallopt`
/// so that buffers up to 32 MiB are served from the heap and freed memory is not returned to
/// the kernel after every step. A no-op on other platforms and allocators. Safe to call more
/// than once; called by [`crate::finetune::run`] and the binaries.
///
/// ```
/// masam_adapter::runtime::tune_allocator();
/// ```
pub fn tune_allocator() {
    masam_nn::runtime::tune_allocator();
}

/// Makes candle run its element-wise CPU ops on the calling thread (`CANDLE_NUM_THREADS=1`,
/// unless the variable is already set). Matrix products and our fused ops still use every core
/// through rayon.
///
/// candle 0.11 splits element-wise ops (the gradient accumulations of every backward, among
/// others) over a second thread pool, next to rayon's, whose caller spins at a barrier until
/// its workers finish. On a quiet machine that is about 10 % faster than one thread (measured:
/// 0.33 s against 0.36 s per default phantom step on 2 cores), so it is not the default. On a
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
/// masam_adapter::runtime::init_cpu_training();
/// ```
pub fn init_cpu_training() {
    tune_allocator();
}
