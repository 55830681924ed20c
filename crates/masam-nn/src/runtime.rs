//! Process-level allocator settings that make candle's CPU training fast.
//!
//! candle allocates a fresh buffer for every tensor an op produces, forward and backward. With
//! glibc's default malloc, buffers above 128 KiB come from `mmap` and go back to the kernel on
//! `free`, so every step faults all of its activations and gradients in again. Measured on the
//! 2-core build machine: the MA-SAM adapter's Conv3D forward + backward took 107 ms before and
//! 74 ms after [`tune_allocator`] (PyTorch, which allocates the same way, 61 → 46 ms), and the
//! phantom default's decoder backward (20 slices) 130 → 90 ms.

/// Tunes glibc's malloc with `mallopt` so that buffers up to 32 MiB are served from the heap
/// and freed memory is kept for reuse instead of being returned to the kernel after every
/// step (the environment variables `MALLOC_MMAP_THRESHOLD_=33554432
/// MALLOC_TRIM_THRESHOLD_=536870912 MALLOC_TOP_PAD_=67108864` do the same). A no-op on other
/// platforms and allocators; safe to call more than once.
///
/// ```
/// masam_nn::runtime::tune_allocator();
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
