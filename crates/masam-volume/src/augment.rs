//! Training augmentation (the reference recipe, seedable and deterministic).
