//! masam-volume: under construction.
