//! Reproducible parameter initialisation: a `VarMap` whose new variables come from a seeded RNG.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::into_candle;

/// A set of trainable variables (a candle [`VarMap`]) that creates missing variables from a
/// seeded ChaCha RNG, following the [`Init`] hint of the layer that asks for them.
///
/// candle's CPU RNG cannot be seeded, so two runs of the same program would otherwise start from
/// different weights. Variables can also be inserted up front (for example copied from a
/// pretrained checkpoint): a layer asking for an existing name gets that variable.
///
/// ```
/// use candle_core::{DType, Device};
/// use masam_nn::{linear, SeededVarMap};
/// # fn main() -> candle_core::Result<()> {
/// let a = SeededVarMap::new(7);
/// let b = SeededVarMap::new(7);
/// let la = linear(3, 2, a.var_builder(DType::F32, &Device::Cpu).pp("fc"))?;
/// let lb = linear(3, 2, b.var_builder(DType::F32, &Device::Cpu).pp("fc"))?;
/// let d: f32 = (la.weight() - lb.weight())?.abs()?.sum_all()?.to_scalar()?;
/// assert_eq!(d, 0.0);
/// assert_eq!(a.vars().all_vars().len(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SeededVarMap {
    vars: VarMap,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl SeededVarMap {
    /// An empty map whose fresh variables are drawn from a ChaCha8 stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            vars: VarMap::new(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    /// The underlying candle `VarMap` (for optimisers and saving).
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// Inserts (or replaces) a variable initialised with a copy of `value`.
    pub fn insert(&self, name: &str, value: &Tensor) -> Result<Var> {
        let var = Var::from_tensor(&value.copy()?.detach())?;
        self.vars
            .data()
            .lock()
            .unwrap()
            .insert(name.to_string(), var.clone());
        Ok(var)
    }

    /// The variable called `name`, if any.
    pub fn get(&self, name: &str) -> Option<Var> {
        self.vars.data().lock().unwrap().get(name).cloned()
    }

    /// All variables by name.
    pub fn named_vars(&self) -> HashMap<String, Var> {
        self.vars.data().lock().unwrap().clone()
    }

    /// A `VarBuilder` that reads from and creates into this map.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Draws a tensor following `init` from this map's RNG (without registering it).
    pub fn sample(
        &self,
        shape: &Shape,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().unwrap();
        let values: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up, n),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev, n)?,
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound, n)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std, n)?,
                }
            }
        };
        Tensor::from_vec(values, shape.clone(), device)?.to_dtype(dtype)
    }
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, up: f64, n: usize) -> Vec<f32> {
    if up <= lo {
        return vec![lo as f32; n];
    }
    let d = Uniform::new(lo, up).expect("valid uniform bounds");
    (0..n).map(|_| d.sample(rng) as f32).collect()
}

/// A variable could not be initialised because its normal distribution is invalid (a
/// non-finite standard deviation, e.g. from a zero fan). Returned inside a
/// `candle_core::Error` (see [`crate::error`]).
#[derive(Debug, thiserror::Error)]
#[error("normal initialisation with mean {mean} and std {std}: {source}")]
pub struct NormalInitError {
    /// The requested mean.
    pub mean: f64,
    /// The requested standard deviation.
    pub std: f64,
    /// The distribution's own error.
    #[source]
    pub source: rand_distr::NormalError,
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, std: f64, n: usize) -> Result<Vec<f32>> {
    let d = Normal::new(mean, std)
        .map_err(|source| into_candle(NormalInitError { mean, std, source }))?;
    Ok((0..n).map(|_| d.sample(rng) as f32).collect())
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(v) = self.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "variable {name}: existing shape {:?}, requested {:?}",
                    v.shape(),
                    s
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let t = self.sample(&s, h, dtype, dev)?;
        Ok(self.insert(name, &t)?.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("variable {name} not found"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().unwrap().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_normal_keeps_its_source() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let e = normal(&mut rng, 0.0, f64::NAN, 4).unwrap_err();
        let typed = crate::error::find_in_candle::<NormalInitError>(&e).expect("typed error");
        assert!(typed.std.is_nan());
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(
            source.downcast_ref::<rand_distr::NormalError>(),
            Some(&rand_distr::NormalError::BadVariance)
        );
    }

    #[test]
    fn uniform_bounds_and_prefill() -> Result<()> {
        let m = SeededVarMap::new(1);
        let pre = Tensor::ones((2, 2), DType::F32, &Device::Cpu)?;
        m.insert("a.weight", &pre)?;
        let vb = m.var_builder(DType::F32, &Device::Cpu);
        let a = vb
            .pp("a")
            .get_with_hints((2, 2), "weight", Init::Const(0.0))?;
        assert_eq!(a.sum_all()?.to_scalar::<f32>()?, 4.0);
        let u = vb.get_with_hints(1000, "u", Init::Uniform { lo: -0.5, up: 0.5 })?;
        let v: Vec<f32> = u.to_vec1()?;
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
        assert!(v.iter().any(|x| *x > 0.4) && v.iter().any(|x| *x < -0.4));
        assert!(vb
            .pp("a")
            .get_with_hints((3, 2), "weight", Init::Const(0.0))
            .is_err());
        Ok(())
    }
}
