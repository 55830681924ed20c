//! Shared machinery of the cumulative metrics: class selection, per-case accumulation, the
//! [`Metric`] trait (`update` / `aggregate` / `reset`) and numpy's linear percentile.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, MetricsError, Result};
use crate::label::{class_mask, Label, Mask};
use crate::report::MetricReport;

/// Which class ids of a label map a metric evaluates, and their display names.
///
/// ```
/// use masam_metrics::Classes;
/// let c = Classes::foreground(3).with_names(["liver", "kidney", "spleen"]).unwrap();
/// assert_eq!(c.ids(), &[1, 2, 3]);
/// assert_eq!(c.names()[2], "spleen");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classes {
    ids: Vec<u64>,
    names: Vec<String>,
}

impl Classes {
    /// Foreground classes `1..=num_classes` (background excluded, as in the reference), named
    /// `class_1`, `class_2`, ….
    pub fn foreground(num_classes: usize) -> Self {
        Self::from_ids(1..=num_classes as u64)
    }

    /// Classes `0..=num_classes` (background included), named `class_0`, ….
    pub fn with_background(num_classes: usize) -> Self {
        Self::from_ids(0..=num_classes as u64)
    }

    /// Arbitrary class ids, named `class_<id>`.
    pub fn from_ids(ids: impl IntoIterator<Item = u64>) -> Self {
        let ids: Vec<u64> = ids.into_iter().collect();
        let names = ids.iter().map(|i| format!("class_{i}")).collect();
        Self { ids, names }
    }

    /// Replaces the names (one per class id, in order).
    ///
    /// # Errors
    /// [`MetricsError::ClassNames`] when the count differs from the number of classes.
    pub fn with_names<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() != self.ids.len() {
            return Err(MetricsError::ClassNames {
                names: names.len(),
                classes: self.ids.len(),
            });
        }
        self.names = names;
        Ok(self)
    }

    /// The evaluated class ids.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The class names, one per id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of evaluated classes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no class is evaluated.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Per-case × per-class scores collected by a cumulative metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    metric: String,
    classes: Classes,
    cases: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Accumulator {
    /// An empty accumulator for `metric` over `classes`.
    ///
    /// # Errors
    /// [`MetricsError::NoClasses`] when `classes` is empty.
    pub fn new(metric: impl Into<String>, classes: Classes) -> Result<Self> {
        if classes.is_empty() {
            return Err(MetricsError::NoClasses);
        }
        Ok(Self {
            metric: metric.into(),
            classes,
            cases: Vec::new(),
            rows: Vec::new(),
        })
    }

    /// The evaluated classes.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Appends one case (one score per class).
    pub fn push(&mut self, case: impl Into<String>, row: Vec<f64>) {
        debug_assert_eq!(row.len(), self.classes.len());
        self.cases.push(case.into());
        self.rows.push(row);
    }

    /// Number of cases so far.
    pub fn num_cases(&self) -> usize {
        self.rows.len()
    }

    /// The report of everything accumulated so far.
    pub fn report(&self) -> MetricReport {
        MetricReport::new(
            self.metric.clone(),
            self.classes.names().to_vec(),
            self.cases.clone(),
            self.rows.clone(),
        )
    }

    /// Forgets every case.
    pub fn clear(&mut self) {
        self.cases.clear();
        self.rows.clear();
    }
}

/// A metric that scores label-map pairs case by case and aggregates them into a
/// [`MetricReport`] (MONAI's `Cumulative` pattern).
///
/// Implementors provide [`score_binary`](Metric::score_binary) and access to their
/// [`Accumulator`]; `update`, `aggregate` and `reset` come for free.
pub trait Metric {
    /// Scores one binary (prediction, ground truth) pair with the metric's configuration.
    ///
    /// # Shapes
    /// - `pred`, `gt`: (z, y, x); `spacing`: (z, y, x) in mm
    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64>;

    /// The accumulated cases.
    fn accumulator(&self) -> &Accumulator;

    /// The accumulated cases, mutably.
    fn accumulator_mut(&mut self) -> &mut Accumulator;

    /// Scores every configured class of one label-map pair without recording it.
    ///
    /// # Errors
    /// Shape mismatch, invalid spacing, or an invalid metric parameter.
    fn score<L: Label>(
        &self,
        pred: ArrayView3<'_, L>,
        gt: ArrayView3<'_, L>,
        spacing: [f64; 3],
    ) -> Result<Vec<f64>> {
        check_inputs(pred.shape(), gt.shape(), &spacing)?;
        self.accumulator()
            .classes()
            .ids()
            .iter()
            .map(|&c| {
                self.score_binary(
                    class_mask(pred, c).view(),
                    class_mask(gt, c).view(),
                    spacing,
                )
            })
            .collect()
    }

    /// Scores one case and records it under the name `case_<index>`; returns its per-class row.
    ///
    /// # Errors
    /// As [`score`](Metric::score); nothing is recorded on error.
    fn update<L: Label>(
        &mut self,
        pred: ArrayView3<'_, L>,
        gt: ArrayView3<'_, L>,
        spacing: [f64; 3],
    ) -> Result<Vec<f64>> {
        let name = format!("case_{}", self.accumulator().num_cases());
        self.update_case(name, pred, gt, spacing)
    }

    /// Scores one case and records it under `case`; returns its per-class row.
    ///
    /// # Errors
    /// As [`score`](Metric::score); nothing is recorded on error.
    fn update_case<L: Label>(
        &mut self,
        case: impl Into<String>,
        pred: ArrayView3<'_, L>,
        gt: ArrayView3<'_, L>,
        spacing: [f64; 3],
    ) -> Result<Vec<f64>> {
        let row = self.score(pred, gt, spacing)?;
        self.accumulator_mut().push(case, row.clone());
        Ok(row)
    }

    /// The per-case × per-class table with its class means and overall mean.
    fn aggregate(&self) -> MetricReport {
        self.accumulator().report()
    }

    /// Forgets every recorded case (the configuration stays).
    fn reset(&mut self) {
        self.accumulator_mut().clear();
    }
}

/// The metric-specific part of a cumulative metric: a configuration that names the metric and
/// scores one binary (prediction, ground truth) pair. [`MetricOf`] adds the per-class,
/// per-case accumulation.
///
/// Implemented by [`DiceConfig`](crate::DiceConfig), [`IouConfig`](crate::IouConfig),
/// [`HausdorffConfig`](crate::HausdorffConfig), [`SurfaceDiceConfig`](crate::SurfaceDiceConfig)
/// and [`SurfaceDistanceConfig`](crate::SurfaceDistanceConfig).
pub trait BinaryScore {
    /// Checks the configuration's parameters; called by [`MetricOf::new`]. Accepts by default.
    ///
    /// # Errors
    /// An invalid metric parameter.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The metric's name in its [`MetricReport`] (e.g. `dice`, `hd95_mm`).
    fn metric_name(&self) -> String;

    /// Scores one binary pair, as [`Metric::score_binary`].
    ///
    /// # Errors
    /// Shape mismatch, invalid spacing, or an invalid metric parameter.
    ///
    /// # Shapes
    /// - `pred`, `gt`: (z, y, x); `spacing`: (z, y, x) in mm
    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64>;
}

/// A cumulative [`Metric`] made of a configuration `S` (which scores each binary pair) and an
/// [`Accumulator`]; e.g. [`DiceMetric`](crate::DiceMetric) is `MetricOf<DiceConfig>`.
#[derive(Debug, Clone)]
pub struct MetricOf<S> {
    cfg: S,
    acc: Accumulator,
}

impl<S: BinaryScore> MetricOf<S> {
    /// A metric evaluating `classes` with `cfg`, reported under
    /// [`cfg.metric_name()`](BinaryScore::metric_name).
    ///
    /// # Errors
    /// [`cfg.validate()`](BinaryScore::validate)'s error (checked first), then
    /// [`MetricsError::NoClasses`] when `classes` is empty.
    pub fn new(cfg: S, classes: Classes) -> Result<Self> {
        cfg.validate()?;
        let acc = Accumulator::new(cfg.metric_name(), classes)?;
        Ok(Self { cfg, acc })
    }

    /// The configuration.
    pub fn config(&self) -> &S {
        &self.cfg
    }
}

impl<S: BinaryScore> Metric for MetricOf<S> {
    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
        self.cfg.score_binary(pred, gt, spacing)
    }

    fn accumulator(&self) -> &Accumulator {
        &self.acc
    }

    fn accumulator_mut(&mut self) -> &mut Accumulator {
        &mut self.acc
    }
}

/// The `q`-th percentile (0..=100) of `values` with numpy's default `linear` method
/// (`numpy.percentile(values, q)`); NaN for an empty slice. Reorders `values`.
///
/// # Errors
/// [`MetricsError::InvalidPercentile`] when `q` is outside `[0, 100]`.
///
/// ```
/// use masam_metrics::percentile;
/// let mut v = vec![4.0, 1.0, 3.0, 2.0];
/// assert_eq!(percentile(&mut v, 50.0).unwrap(), 2.5);
/// assert_eq!(percentile(&mut v, 100.0).unwrap(), 4.0);
/// ```
pub fn percentile(values: &mut [f64], q: f64) -> Result<f64> {
    if !(0.0..=100.0).contains(&q) {
        return Err(MetricsError::InvalidPercentile(q));
    }
    let n = values.len();
    if n == 0 {
        return Ok(f64::NAN);
    }
    let quantile = q / 100.0;
    // numpy's `_compute_virtual_index` with alpha = beta = 1:
    // n q + (alpha + q (1 - alpha - beta)) - 1, evaluated in the same order.
    let (alpha, beta) = (1.0, 1.0);
    let virtual_index = n as f64 * quantile + (alpha + quantile * (1.0 - alpha - beta)) - 1.0;
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let lo = (prev.max(0.0) as usize).min(n - 1);
    let hi = ((prev + 1.0).max(0.0) as usize).min(n - 1);
    let (_, a, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    let b = if hi == lo {
        a
    } else {
        right.iter().copied().min_by(f64::total_cmp).unwrap_or(a)
    };
    // numpy's `_lerp`: symmetric formulation for accuracy near t = 1.
    let diff = b - a;
    Ok(if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_values() {
        // numpy.percentile(np.arange(1, 11), [0, 5, 50, 95, 100]) = 1, 1.45, 5.5, 9.55, 10
        let mut v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        for (q, want) in [
            (0.0, 1.0),
            (5.0, 1.45),
            (50.0, 5.5),
            (95.0, 9.55),
            (100.0, 10.0),
        ] {
            assert!(
                (percentile(&mut v, q).unwrap() - want).abs() < 1e-12,
                "q={q}"
            );
        }
        assert!(percentile(&mut [], 95.0).unwrap().is_nan());
        assert_eq!(percentile(&mut [3.0], 95.0).unwrap(), 3.0);
        assert!(matches!(
            percentile(&mut v, 101.0),
            Err(MetricsError::InvalidPercentile(_))
        ));
        assert!(percentile(&mut v, f64::NAN).is_err());
    }

    #[test]
    fn classes_and_names() {
        assert_eq!(Classes::with_background(2).ids(), &[0, 1, 2]);
        assert!(matches!(
            Classes::foreground(2).with_names(["a"]),
            Err(MetricsError::ClassNames {
                names: 1,
                classes: 2
            })
        ));
        assert!(matches!(
            Accumulator::new("dice", Classes::foreground(0)),
            Err(MetricsError::NoClasses)
        ));
    }
}
