//! masam-fact: under construction.
