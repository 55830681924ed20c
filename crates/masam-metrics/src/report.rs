//! Per-case × per-class score tables, their aggregation, and JSON / CSV / text output.
//!
//! Aggregation follows the reference evaluation (`test.py`): the mean of each class is the
//! **nan-mean over cases** (`np.nanmean`, so NaN cases, e.g. empty ground truth under a NaN
//! policy, are skipped), and the overall score is the plain **mean over classes** of those means
//! (`np.mean`, so a class that is NaN in every case makes it NaN).
//!
//! Files are written with [`masam_fs::atomic_write_bytes`]: to a temporary file in the destination
//! folder, synced, then renamed over the destination, so a failure never leaves a half-written
//! report.

use std::fmt;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::Result;

/// One metric's scores: rows are cases, columns are classes.
///
/// ```
/// use masam_metrics::MetricReport;
/// let r = MetricReport::new(
///     "dice",
///     vec!["liver".into(), "spleen".into()],
///     vec!["a".into(), "b".into()],
///     vec![vec![0.5, f64::NAN], vec![1.0, 0.25]],
/// );
/// assert_eq!(r.class_means(), vec![0.75, 0.25]);
/// assert_eq!(r.mean(), 0.5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    /// Metric name, e.g. `dice` or `hd95_mm`.
    pub metric: String,
    /// Class names, one per column.
    pub classes: Vec<String>,
    /// Case names, one per row.
    pub cases: Vec<String>,
    /// Scores, `values[case][class]`.
    pub values: Vec<Vec<f64>>,
}

/// Mean of the non-NaN values (`np.nanmean`); NaN when there are none.
pub fn nan_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

impl MetricReport {
    /// A report from its parts (`values` is case-major, one entry per class in every row).
    pub fn new(
        metric: impl Into<String>,
        classes: Vec<String>,
        cases: Vec<String>,
        values: Vec<Vec<f64>>,
    ) -> Self {
        Self {
            metric: metric.into(),
            classes,
            cases,
            values,
        }
    }

    /// Per-class nan-mean over cases.
    pub fn class_means(&self) -> Vec<f64> {
        (0..self.classes.len())
            .map(|c| nan_mean(self.values.iter().map(|row| row[c])))
            .collect()
    }

    /// Mean over classes of [`class_means`](Self::class_means) (NaN if any class mean is NaN
    /// or there is no class).
    pub fn mean(&self) -> f64 {
        let m = self.class_means();
        if m.is_empty() {
            return f64::NAN;
        }
        m.iter().sum::<f64>() / m.len() as f64
    }

    /// The report as JSON: `metric`, `classes`, `cases`, `values`, `class_means`, `mean`.
    /// Non-finite scores are written as the strings `"nan"`, `"inf"`, `"-inf"`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .values
            .iter()
            .map(|r| Value::Array(r.iter().map(|&v| score_json(v)).collect()))
            .collect();
        json!({
            "metric": self.metric,
            "classes": self.classes,
            "cases": self.cases,
            "values": rows,
            "class_means": self.class_means().into_iter().map(score_json).collect::<Vec<_>>(),
            "mean": score_json(self.mean()),
        })
    }

    /// The report as CSV: a header `case,<classes…>`, one row per case, then a `mean` row of
    /// the class means. Non-finite scores are written `nan`, `inf`, `-inf`.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str("case");
        for c in &self.classes {
            out.push(',');
            out.push_str(&csv_field(c));
        }
        out.push('\n');
        let mut row = |name: &str, vals: &[f64]| {
            out.push_str(&csv_field(name));
            for v in vals {
                out.push(',');
                out.push_str(&score_text(*v, None));
            }
            out.push('\n');
        };
        for (name, vals) in self.cases.iter().zip(&self.values) {
            row(name, vals);
        }
        row("mean", &self.class_means());
        out
    }

    /// Writes [`to_json`](Self::to_json) (pretty) to `path`, atomically.
    ///
    /// # Errors
    /// [`MetricsError::Fs`](crate::MetricsError::Fs) or [`MetricsError::Json`](crate::MetricsError::Json); the destination is untouched on error.
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())?;
        write_atomic(path.as_ref(), text.as_bytes())
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`, atomically.
    ///
    /// # Errors
    /// [`MetricsError::Fs`](crate::MetricsError::Fs); the destination is untouched on error.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_csv().as_bytes())
    }
}

/// Several reports (e.g. Dice, HD95 and NSD of one evaluation) as one JSON array, atomically.
///
/// # Errors
/// [`MetricsError::Fs`](crate::MetricsError::Fs) or [`MetricsError::Json`](crate::MetricsError::Json); the destination is untouched on error.
pub fn write_reports_json(reports: &[MetricReport], path: impl AsRef<Path>) -> Result<()> {
    let all = Value::Array(reports.iter().map(MetricReport::to_json).collect());
    let text = serde_json::to_string_pretty(&all)?;
    write_atomic(path.as_ref(), text.as_bytes())
}

impl fmt::Display for MetricReport {
    /// A fixed-width text table: one row per case, a `mean` row of class means, and the overall
    /// mean on the last line. Precision follows the formatter (`{:.3}`), 4 digits by default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prec = f.precision().unwrap_or(4);
        let means = self.class_means();
        let mut cells: Vec<Vec<String>> = Vec::new();
        let mut header = vec![self.metric.clone()];
        header.extend(self.classes.iter().cloned());
        cells.push(header);
        for (name, vals) in self.cases.iter().zip(&self.values) {
            let mut r = vec![name.clone()];
            r.extend(vals.iter().map(|v| score_text(*v, Some(prec))));
            cells.push(r);
        }
        let mut r = vec!["mean".to_string()];
        r.extend(means.iter().map(|v| score_text(*v, Some(prec))));
        cells.push(r);
        let ncol = cells[0].len();
        let widths: Vec<usize> = (0..ncol)
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &cells {
            for (c, cell) in r.iter().enumerate() {
                if c == 0 {
                    write!(f, "{cell:<w$}", w = widths[0])?;
                } else {
                    write!(f, "  {cell:>w$}", w = widths[c])?;
                }
            }
            writeln!(f)?;
        }
        write!(
            f,
            "mean over classes: {}",
            score_text(self.mean(), Some(prec))
        )
    }
}

/// A score as JSON: a number when finite, else `"nan"` / `"inf"` / `"-inf"`.
fn score_json(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::String(score_text(v, None))
    }
}

/// A score as text; full round-trip precision when `prec` is `None`.
fn score_text(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if let Some(p) = prec {
        format!("{v:.p$}")
    } else {
        format!("{v}")
    }
}

/// Quotes a CSV field when it contains a separator, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `bytes` to `path` with [`masam_fs::atomic_write_bytes`].
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(masam_fs::atomic_write_bytes(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsError;

    fn sample() -> MetricReport {
        MetricReport::new(
            "hd95_mm",
            vec!["liver".into(), "a,b".into()],
            vec!["c0".into(), "c1".into(), "c2".into()],
            vec![
                vec![1.0, f64::NAN],
                vec![3.0, f64::INFINITY],
                vec![f64::NAN, f64::NAN],
            ],
        )
    }

    #[test]
    fn aggregation_is_nanmean_then_mean() {
        let r = sample();
        let m = r.class_means();
        assert_eq!(m[0], 2.0);
        assert!(m[1].is_infinite());
        assert!(r.mean().is_infinite());
        let all_nan = MetricReport::new(
            "x",
            vec!["k".into()],
            vec!["c".into()],
            vec![vec![f64::NAN]],
        );
        assert!(all_nan.mean().is_nan());
    }

    #[test]
    fn csv_json_and_text() {
        let r = sample();
        let csv = r.to_csv();
        assert_eq!(
            csv,
            "case,liver,\"a,b\"\nc0,1,nan\nc1,3,inf\nc2,nan,nan\nmean,2,inf\n"
        );
        let j = r.to_json();
        assert_eq!(j["values"][1][1], "inf");
        assert_eq!(j["class_means"][0], 2.0);
        assert_eq!(j["mean"], "inf");
        let text = format!("{r:.2}");
        assert!(text.contains("liver") && text.contains("3.00") && text.contains("inf"));
        assert!(text.ends_with("mean over classes: inf"));
    }

    #[test]
    fn atomic_writes() {
        let dir = std::env::temp_dir().join(format!("masam-metrics-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = sample();
        let p = dir.join("r.json");
        r.write_json(&p).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back, r.to_json());
        let c = dir.join("r.csv");
        r.write_csv(&c).unwrap();
        assert_eq!(std::fs::read_to_string(&c).unwrap(), r.to_csv());
        write_reports_json(&[r.clone(), r.clone()], dir.join("all.json")).unwrap();
        // A destination in a missing folder fails cleanly and leaves nothing behind.
        let bad = dir.join("missing").join("r.csv");
        assert!(matches!(r.write_csv(&bad), Err(MetricsError::Fs(_))));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
