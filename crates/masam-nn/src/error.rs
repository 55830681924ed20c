//! Typed errors through candle's [`candle_core::Error`], with their source chain.
//!
//! Code that must return `candle_core::Error` (custom ops, `VarBuilder` backends, closures
//! handed to candle) often fails with an error of another type. candle 0.11's `Error::wrap`,
//! `Error::msg` and `Error::Msg` keep only its message. Its one variant that holds a
//! `Box<dyn std::error::Error>` is `Error::Cuda`, declared `#[error(transparent)]`: an error
//! boxed there keeps its message, its [`source`](std::error::Error::source) chain (candle's
//! error forwards `source()` to it) and its type, for [`find_in_candle`]. [`into_candle`] does
//! this, whatever the device (the variant's name is candle's, not a statement about CUDA).
//!
//! ```
//! use masam_nn::error::{find_in_candle, into_candle};
//! let e: candle_core::Error = into_candle(std::io::Error::other("disk full"));
//! assert_eq!(e.to_string(), "disk full");
//! assert!(find_in_candle::<std::io::Error>(&e).is_some());
//! ```

/// `e` as a `candle_core::Error` that keeps its message, its source chain and its type.
pub fn into_candle<E>(e: E) -> candle_core::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    candle_core::Error::Cuda(Box::new(e))
}

/// The typed error boxed by [`into_candle`] inside `e` (looking through candle's context,
/// path and backtrace wrappers), if it is an `E`.
pub fn find_in_candle<E>(e: &candle_core::Error) -> Option<&E>
where
    E: std::error::Error + 'static,
{
    use candle_core::Error;
    match e {
        Error::Cuda(inner) => inner.downcast_ref::<E>(),
        Error::WithBacktrace { inner, .. }
        | Error::Context { inner, .. }
        | Error::WithPath { inner, .. } => find_in_candle(inner),
        _ => None,
    }
}
