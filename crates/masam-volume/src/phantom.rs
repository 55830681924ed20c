//! A synthetic, deterministic CT-like abdomen phantom with 12 labelled organs.
