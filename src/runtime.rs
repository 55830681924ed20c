//! Process-level settings that make candle's CPU training fast.
//!
//! candle allocates a fresh buffer for every tensor an op produces, forward and backward. With
//! glibc's default malloc, buffers above 128 KiB come from `mmap` and go back to the kernel on
//! `free`, so every step faults all of its activations and gradients in again (tens of millions
//! of page faults in a 10-minute run; the decoder's backward ran 1.4× slower for it). Raising
//! the mmap and trim thresholds keeps those buffers in the heap for reuse.

/// Tunes the allocator for training: glibc `mallopt` so that buffers up to 32 MiB are served
/// from the heap and freed memory is not returned to the kernel after every step. A no-op on
/// other platforms and allocators. Safe to call more than once; called by
/// [`crate::finetune::run`] and the binaries.
///
/// ```
/// masam_adapter::runtime::tune_allocator();
/// ```
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; glibc validates the values and
        // returns 0 for ones it rejects, which we can ignore (the defaults stay in force).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
