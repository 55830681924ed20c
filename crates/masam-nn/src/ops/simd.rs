//! Kernels compiled more than once (portable, AVX2, AVX-512) and picked per call by a run-time
//! CPU feature check: [`multiversion!`] wraps a serial loop (a row, a chunk) so that the compiler
//! vectorises it as wide as the CPU allows. The builds perform the same floating-point
//! operations in the same order (Rust never fuses a multiply and an add, nor reassociates a sum,
//! on its own), so they give the same bits; only the width of the vector registers differs.

/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// AVX2 is available.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Defines `fn name(args) -> ret { body }` compiled three times (AVX-512, AVX2, portable) and
/// dispatching on the CPU at each call. The body is an ordinary safe function body; the
/// arguments must not be generic. `portable = other;` first also defines `other`, the portable
/// build alone (for tests that the builds agree).
macro_rules! multiversion {
    (portable = $portable:ident; $(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        /// The portable build of the function below (no run-time dispatch).
        #[cfg(test)]
        fn $portable($($arg: $ty),*) $(-> $ret)? $body
        $crate::ops::simd::multiversion! { $(#[$meta])* $vis fn $name($($arg: $ty),*) $(-> $ret)? $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX-512F.
                #[target_feature(enable = "avx512f,avx2")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                /// # Safety
                /// The CPU must support AVX2.
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::ops::simd::has_avx512() {
                    // SAFETY: AVX-512F is available (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::ops::simd::has_avx2() {
                    // SAFETY: AVX2 is available (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;
