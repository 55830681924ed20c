//! masam-train: under construction.
