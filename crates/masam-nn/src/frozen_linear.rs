//! Frozen linear layer whose backward computes only the input gradient (filled in by the FacT work).
