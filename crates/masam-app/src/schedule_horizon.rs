//! Fitting the learning-rate schedule's horizon to a time budget.
//!
//! A run that stops after a number of seconds does not know in advance how many steps it will
//! make: that depends on the machine. With a fixed horizon, a fast machine reaches the end of
//! the decay early and spends the rest of its budget at the final (zero) rate, and a slow one
//! stops with the rate still high. [`BudgetHorizon`] measures the loop's speed over a few
//! steps (after a few warm-up ones), then gives the number of steps the remaining budget
//! allows, and refits it every [`REFIT_STEPS`] steps as the speed drifts; the run decays its
//! schedule over those
//! ([`masam_adapter::LrSchedule::ending_at`]). The horizon is written to the run folder
//! ([`HORIZON_FILE`]) so that a resumed run keeps it instead of measuring again.

use std::path::Path;

use crate::error::{io_at, AppError, Result};

/// File of the run folder that holds the fitted horizon (total steps, one line).
pub const HORIZON_FILE: &str = "schedule_horizon.txt";

/// Steps run before the measurement starts (allocation, first-touch and cache warm-up).
pub const SKIP_STEPS: usize = 10;

/// Steps the measurement averages over.
pub const PROBE_STEPS: usize = 50;

/// Steps between two later fits, which follow the speed as it drifts (checkpoints, a machine
/// that gets busier or quieter).
pub const REFIT_STEPS: usize = 100;

/// Measures the steps' speed and fits the total number of steps to the budget: first after
/// [`SKIP_STEPS`] + [`PROBE_STEPS`] steps, then every [`REFIT_STEPS`] steps from the mean time
/// per step since the measurement began (checkpoints and data loading included).
///
/// ```
/// use masam_app::schedule_horizon::{BudgetHorizon, PROBE_STEPS, SKIP_STEPS};
/// let mut h = BudgetHorizon::new(100.0, 1_000_000);
/// let mut fitted = None;
/// // one step every 0.125 s
/// for step in 1..=(SKIP_STEPS + PROBE_STEPS) as u64 {
///     fitted = fitted.or(h.observe(step, step as f64 * 0.125));
/// }
/// // 60 steps in 7.5 s, then 92.5 s at 0.125 s per step
/// assert_eq!(fitted, Some(60 + 740));
/// ```
#[derive(Debug, Clone)]
pub struct BudgetHorizon {
    budget_s: f64,
    max_steps: u64,
    seen: usize,
    /// (elapsed seconds, steps done) when the measurement began
    probe_start: Option<(f64, u64)>,
    last: Option<u64>,
}

impl BudgetHorizon {
    /// A measurement for a budget of `budget_s` seconds, the run capped at `max_steps` steps.
    pub fn new(budget_s: f64, max_steps: u64) -> Self {
        Self {
            budget_s,
            max_steps,
            seen: 0,
            probe_start: None,
            last: None,
        }
    }

    /// Records that `steps_done` steps are complete (counted from the start of the run, earlier
    /// processes included) after `elapsed_s` seconds of this process's budget. Returns a new
    /// fitted total number of steps when one is due and differs from the last: the steps done
    /// plus the whole steps the rest of the budget allows at the mean time per step measured
    /// so far, at least one more than done and at most the cap.
    pub fn observe(&mut self, steps_done: u64, elapsed_s: f64) -> Option<u64> {
        self.seen += 1;
        if self.seen == SKIP_STEPS {
            self.probe_start = Some((elapsed_s, steps_done));
        }
        let (t0, s0) = self.probe_start?;
        let first = SKIP_STEPS + PROBE_STEPS;
        if self.seen < first || !(self.seen - first).is_multiple_of(REFIT_STEPS) {
            return None;
        }
        let measured = steps_done.saturating_sub(s0).max(1) as f64;
        let per_step = (elapsed_s - t0) / measured;
        let left = (self.budget_s - elapsed_s).max(0.0);
        let more = if per_step > 0.0 {
            (left / per_step).floor().min(u64::MAX as f64 / 2.0) as u64
        } else {
            self.max_steps
        };
        let total = steps_done
            .saturating_add(more)
            .clamp(steps_done + 1, self.max_steps.max(steps_done + 1));
        if self.last == Some(total) {
            return None;
        }
        self.last = Some(total);
        Some(total)
    }
}

/// The horizon written by an earlier process of the run in `dir`, if any.
///
/// # Errors
/// [`AppError::Io`] when the file exists but cannot be read, [`AppError::Config`] when it does
/// not hold a positive whole number.
pub fn read_horizon(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(HORIZON_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(AppError::Config(format!(
            "{}: expected the fitted number of steps (a positive whole number), found {:?}; \
             delete the file to measure again",
            path.display(),
            text.trim()
        ))),
    }
}

/// Writes the fitted horizon to `dir` (atomically).
///
/// # Errors
/// [`AppError`] when the file cannot be written.
pub fn write_horizon(dir: &Path, total_steps: u64) -> Result<()> {
    masam_fs::atomic_write_bytes(
        dir.join(HORIZON_FILE),
        format!("{total_steps}\n").as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing before the measurement is complete; the first answer counts the earlier steps;
    /// later answers follow a change of speed, every REFIT_STEPS steps, and only when the fit
    /// changes; the answer is capped by the run's step limit and kept above the steps done.
    #[test]
    fn fits_counts_earlier_steps_follows_the_speed_and_clamps() {
        let n = (SKIP_STEPS + PROBE_STEPS) as u64;
        // resumed at step 500, 0.5 s per step, 100 s budget
        let mut h = BudgetHorizon::new(100.0, 10_000);
        let mut answers = vec![];
        for i in 1..=n + REFIT_STEPS as u64 {
            if let Some(t) = h.observe(500 + i, i as f64 * 0.5) {
                answers.push((i, t));
            }
        }
        // 30 s used, 70 s left at 0.5 s: 140 more steps; the same speed later: no new answer
        assert_eq!(answers, vec![(n, 500 + n + 140)]);

        // twice as slow after the first fit: the next fit sees the mean since the measurement
        let mut slower = BudgetHorizon::new(1000.0, 1_000_000);
        let mut t = 0.0;
        let mut answers = vec![];
        for i in 1..=n + REFIT_STEPS as u64 {
            t += if i <= n { 1.0 } else { 2.0 };
            if let Some(f) = slower.observe(i, t) {
                answers.push((i, f));
            }
        }
        let (i, f) = answers[1];
        assert_eq!(i, n + REFIT_STEPS as u64);
        // 50 steps at 1 s and 100 at 2 s since step 10: 250 s for 150 steps; 740 s left
        let per = 250.0 / 150.0;
        assert_eq!(f, i + (740.0f64 / per).floor() as u64);

        let mut capped = BudgetHorizon::new(1e6, 200);
        let got = (1..=n).find_map(|i| capped.observe(i, i as f64 * 0.01));
        assert_eq!(got, Some(200));

        // the budget is already spent: one more step than done
        let mut late = BudgetHorizon::new(1.0, 10_000);
        let got = (1..=n).find_map(|i| late.observe(i, i as f64));
        assert_eq!(got, Some(n + 1));
    }

    #[test]
    fn horizon_file_round_trips_and_bad_contents_are_errors() -> Result<()> {
        let dir = masam_testkit::TempDir::new("schedule-horizon");
        assert_eq!(read_horizon(dir.path())?, None);
        write_horizon(dir.path(), 3305)?;
        assert_eq!(read_horizon(dir.path())?, Some(3305));
        std::fs::write(dir.join(HORIZON_FILE), "soon\n").map_err(io_at(dir.path()))?;
        let err = read_horizon(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("soon") && err.contains("delete the file"),
            "{err}"
        );
        Ok(())
    }
}
