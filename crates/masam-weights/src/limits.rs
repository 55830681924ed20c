//! Budgets that bound what reading one weight file may cost.

/// Limits applied while reading a weight file. The defaults admit every official SAM checkpoint
/// (ViT-H: 2.6 GB, about 600 tensors) and refuse hostile files long before they could exhaust
/// memory or the stack; the budgets that scale with the file keep the work proportional to the
/// bytes actually present.
///
/// ```
/// let limits = masam_weights::Limits::default();
/// assert_eq!(limits.max_pickle_depth, 1_000);
/// let strict = masam_weights::Limits { max_file_bytes: 1 << 20, ..limits };
/// assert!(strict.max_file_bytes < limits.max_file_bytes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file accepted (default 16 GiB).
    pub max_file_bytes: u64,
    /// Largest pickle program (`data.pkl`) accepted (default 64 MiB).
    pub max_pickle_bytes: u64,
    /// Deepest nesting of pickle containers (tuples, lists, dicts) and of MARKs (default 1,000).
    pub max_pickle_depth: usize,
    /// Interpreter work allowed per byte of pickle program (objects created or copied from the
    /// memo; default 4), plus [`pickle_base_budget`](Self::pickle_base_budget).
    pub pickle_budget_per_byte: u64,
    /// Interpreter work allowed whatever the program's size (default 100,000).
    pub pickle_base_budget: u64,
    /// Most tensors in one file (default 100,000).
    pub max_tensors: usize,
    /// Most dimensions of one tensor (default 32).
    pub max_rank: usize,
    /// Bytes of tensor data produced, as a multiple of the file's size (default 4: tensors that
    /// share a storage are each materialised), plus [`base_output_bytes`](Self::base_output_bytes).
    pub output_bytes_per_file_byte: u64,
    /// Bytes of tensor data allowed whatever the file's size (default 64 MiB).
    pub base_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 << 30,
            max_pickle_bytes: 64 << 20,
            max_pickle_depth: 1_000,
            pickle_budget_per_byte: 4,
            pickle_base_budget: 100_000,
            max_tensors: 100_000,
            max_rank: 32,
            output_bytes_per_file_byte: 4,
            base_output_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The interpreter budget for a pickle program of `len` bytes.
    pub fn pickle_budget(&self, len: usize) -> u64 {
        (len as u64)
            .saturating_mul(self.pickle_budget_per_byte)
            .saturating_add(self.pickle_base_budget)
    }

    /// The tensor-data budget for a file of `len` bytes.
    pub fn output_budget(&self, len: u64) -> u64 {
        len.saturating_mul(self.output_bytes_per_file_byte)
            .saturating_add(self.base_output_bytes)
    }
}
