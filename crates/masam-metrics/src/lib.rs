//! masam-metrics: under construction.
