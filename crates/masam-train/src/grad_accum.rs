//! Gradient accumulation over micro-batches, keyed by variable id.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId, Var};

use crate::error::Result;

/// Sums the gradients of a fixed set of variables over k micro-batches, then returns their mean.
///
/// Each `backward()` returns a [`GradStore`] that also holds the gradients of every intermediate
/// activation. Merging whole stores with `GradStore::extend` keeps (and adds) all of those.
/// This keeps only the tracked variables' gradients and drops the rest of each store at once.
/// A variable with a gradient in only some micro-batches is averaged over all k (its missing
/// gradients count as zero, as with PyTorch's `loss / k` + `.grad` accumulation); one with no
/// gradient at all stays absent, so [`crate::AdamW`] skips it.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use masam_train::GradAccumulator;
/// # fn main() -> masam_train::Result<()> {
/// let w = Var::new(&[1f32, 2.], &Device::Cpu)?;
/// let mut acc = GradAccumulator::new([&w]);
/// for scale in [1f64, 3.] {
///     let loss = w.as_tensor().affine(scale, 0.)?.sum_all()?;
///     acc.accumulate(loss.backward()?)?;
/// }
/// let grads = acc.finish()?;
/// assert_eq!(grads.get(w.as_tensor()).unwrap().to_vec1::<f32>()?, vec![2., 2.]);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct GradAccumulator {
    tracked: Vec<Var>,
    sums: HashMap<TensorId, Tensor>,
    micro_batches: usize,
}

impl GradAccumulator {
    /// An accumulator for `vars`.
    pub fn new<'a>(vars: impl IntoIterator<Item = &'a Var>) -> Self {
        Self {
            tracked: vars.into_iter().cloned().collect(),
            sums: HashMap::new(),
            micro_batches: 0,
        }
    }

    /// Adds one micro-batch's gradients (the store is consumed and its other entries freed).
    pub fn accumulate(&mut self, grads: GradStore) -> Result<()> {
        self.add(grads)?;
        self.micro_batches += 1;
        Ok(())
    }

    /// Adds the tracked variables' gradients of `grads` to the sums without counting a
    /// micro-batch: for several partial backward passes of one micro-batch (the store is
    /// consumed and its other entries freed). [`GradAccumulator::sum`] returns the sums.
    ///
    /// ```
    /// use candle_core::{Device, Var};
    /// use masam_train::GradAccumulator;
    /// # fn main() -> masam_train::Result<()> {
    /// let w = Var::new(&[1f32, 2.], &Device::Cpu)?;
    /// let mut acc = GradAccumulator::new([&w]);
    /// for scale in [1f64, 3.] {
    ///     acc.add(w.as_tensor().affine(scale, 0.)?.sum_all()?.backward()?)?;
    /// }
    /// assert_eq!(acc.micro_batches(), 0);
    /// assert_eq!(acc.sum().get(w.as_tensor()).unwrap().to_vec1::<f32>()?, vec![4., 4.]);
    /// # Ok(()) }
    /// ```
    pub fn add(&mut self, mut grads: GradStore) -> Result<()> {
        for var in &self.tracked {
            let id = var.as_tensor().id();
            let Some(g) = grads.remove(var.as_tensor()) else {
                continue;
            };
            let sum = match self.sums.remove(&id) {
                Some(acc) => (acc + g)?.detach(),
                None => g.detach(),
            };
            self.sums.insert(id, sum);
        }
        Ok(())
    }

    /// The summed gradient of each tracked variable (not divided by the micro-batch count), as
    /// a store; resets the accumulator.
    pub fn sum(&mut self) -> GradStore {
        let mut store = GradStore::default();
        for (id, sum) in self.sums.drain() {
            store.insert_id(id, sum);
        }
        self.micro_batches = 0;
        store
    }

    /// Number of micro-batches accumulated since the last [`GradAccumulator::finish`].
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The mean gradient (sum / k) of each tracked variable, as a store for
    /// [`crate::AdamW::step`]; resets the accumulator. With no micro-batch, the store is empty.
    pub fn finish(&mut self) -> Result<GradStore> {
        let k = self.micro_batches.max(1) as f64;
        let mut store = GradStore::default();
        for (id, sum) in self.sums.drain() {
            let g = if k == 1.0 {
                sum
            } else {
                sum.affine(1.0 / k, 0.0)?
            };
            store.insert_id(id, g);
        }
        self.micro_batches = 0;
        Ok(store)
    }
}
