//! Training or evaluation mode of a forward pass.

/// Whether a forward pass trains (FacT dropout on) or evaluates (deterministic).
///
/// ```
/// use masam_adapter::Mode;
/// assert!(Mode::Train.is_train());
/// assert_eq!(Mode::from(false), Mode::Eval);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Training: dropout on.
    Train,
    /// Evaluation and prediction: dropout off, deterministic.
    #[default]
    Eval,
}

impl Mode {
    /// True for [`Mode::Train`].
    pub fn is_train(self) -> bool {
        self == Mode::Train
    }
}

impl From<bool> for Mode {
    /// `true` is [`Mode::Train`] (the convention of candle's `ModuleT::forward_t`).
    fn from(train: bool) -> Self {
        if train {
            Mode::Train
        } else {
            Mode::Eval
        }
    }
}
