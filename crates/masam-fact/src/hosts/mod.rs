//! Host models that train FacT with correct gradients.
//!
//! [`crate::backend::FactBackend`] puts FacT on any model that reads its weights through a
//! `VarBuilder`, but the gradients only reach the factors if every op between the adapted
//! weights and the loss records a backward. In candle 0.11 the ViTs of candle-transformers do
//! not satisfy this: `candle_nn::ops::softmax_last_dim` (ViT) and the fused path of
//! `candle_nn::LayerNorm` (every one of them) record no backward, so FacT gets no gradient, or
//! a gradient that is silently wrong (`docs/fact.md` has the measured table, and
//! [`crate::gradcheck`] measures it for any model).
//!
//! The modules here are twins of such models: they read the **same tensors under the same
//! names** from a `VarBuilder` and compute the same function, but with masam-nn's
//! backward-capable LayerNorm, softmax and GELU. The workflow:
//!
//! 1. train through the twin, built from a [`crate::backend::FactBackend`] in
//!    [`crate::backend::ServeMode::Train`] (rebuilt after each optimiser step);
//! 2. serve the stock model for inference from the same backend in
//!    [`crate::backend::ServeMode::Merged`] (or save [`crate::backend::merge_tensors`]'s output
//!    and load it with no masam code at all).
//!
//! - [`vit::Vit`]: candle-transformers' `models::vit::Model` (Hugging Face
//!   `ViTForImageClassification`).

pub mod vit;
