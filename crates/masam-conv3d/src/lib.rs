//! masam-conv3d: under construction.
