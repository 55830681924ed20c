//! Process-level allocator settings that make candle's CPU training fast.
//!
//! candle allocates a fresh buffer for every tensor an op produces, forward and backward. With
//! glibc's default malloc, buffers above 128 KiB come from `mmap` and go back to the kernel on
//! `free`, so every step faults all of its activations and gradients in again. Measured on the
//! 2-core build machine: the MA-SAM adapter's Conv3D forward + backward took 107 ms before and
//! 74 ms after [`tune_allocator`] (PyTorch, which allocates the same way, 61 → 46 ms), and the
//! phantom default's decoder backward (20 slices) 130 → 90 ms.
//!
//! glibc will not serve a buffer above 32 MiB from the heap whatever the threshold (its maximum),
//! and ViT-B at 512 × 512 makes many: the MLP's hidden maps of 5 slices (63 MB), the qkv
//! projection (47 MB), the attention logits. [`tune_allocator`] therefore also turns `mmap` off
//! for malloc (`M_MMAP_MAX = 0`), so that those buffers come from the heap and are reused too.
//! Measured on a 2-core Xeon (AVX-512), one 5-slice ViT-B forward at 512 × 512 without a graph:
//! 3.8 M → 0.26 M page faults per process, 6.3–6.4 s → 5.7–5.8 s per forward, peak RSS 1070 →
//! 1015 MiB; the small training step and the Conv3D case, whose buffers are all below 32 MiB,
//! are unchanged.

/// Tunes glibc's malloc with `mallopt` so that every buffer is served from the heap (no
/// `mmap`, whatever its size) and freed memory is kept for reuse instead of being returned to
/// the kernel after every step; memory at the top of the heap goes back once more than
/// 512 MiB of it is free (the environment variables `MALLOC_MMAP_MAX_=0
/// MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=536870912 MALLOC_TOP_PAD_=67108864`
/// do the same). The price: memory freed below the top of the heap stays with the process
/// until it is reused, which suits a training or prediction process, not a long-lived server
/// that makes one large allocation and then stays small. A no-op on other platforms and
/// allocators; safe to call more than once.
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
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
