//! `loss.csv` of a run folder, written one line per step as training goes, so that the history
//! survives a crash and continues across `--resume`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use masam_adapter::StepStats;

use crate::error::io_at;
use crate::Result;

/// The header of `loss.csv`.
pub const HEADER: &str = "step,lr,loss,ce,dice";

/// An open `loss.csv`: one line per step, flushed as it is written.
///
/// ```
/// use masam_app::loss_log::LossLog;
/// let dir = std::env::temp_dir().join(format!("masam-losslog-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("loss.csv");
/// let mut log = LossLog::open(&path, 0)?;
/// log.append(&masam_adapter::StepStats { step: 0, loss: 0.5, ce: 0.4, dice: 0.6, lr: 1e-3 })?;
/// drop(log);
/// assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), masam_app::AppError>(())
/// ```
#[derive(Debug)]
pub struct LossLog {
    path: PathBuf,
    file: File,
}

impl LossLog {
    /// Opens `path` for a run that continues at step `next_step`: the rows of earlier steps
    /// are kept (in order, once each), rows of later steps (written after the checkpoint the
    /// run resumes from) and a torn last line are dropped; a missing file starts with the header.
    ///
    /// # Errors
    /// [`crate::AppError::Io`] or [`crate::AppError::Fs`] when the file cannot be read or written.
    pub fn open(path: impl AsRef<Path>, next_step: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut kept = String::from(HEADER);
        kept.push('\n');
        if next_step > 0 && path.is_file() {
            let f = File::open(&path).map_err(io_at(&path))?;
            let mut last: Option<u64> = None;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(io_at(&path))?;
                let Some(step) = parse_row(&line) else {
                    continue;
                };
                if step < next_step && last.is_none_or(|l| step > l) {
                    kept.push_str(&line);
                    kept.push('\n');
                    last = Some(step);
                }
            }
        }
        masam_fs::atomic_write_bytes(&path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(Self { path, file })
    }

    /// Appends the row of one step and flushes it to the operating system.
    pub fn append(&mut self, s: &StepStats) -> Result<()> {
        writeln!(
            self.file,
            "{},{:.6e},{:.6},{:.6},{:.6}",
            s.step, s.lr, s.loss, s.ce, s.dice
        )
        .and_then(|_| self.file.flush())
        .map_err(io_at(&self.path))
    }

    /// Forces the rows written so far to disk (called with every checkpoint).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(io_at(&self.path))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The step of a well-formed row (5 numeric fields), `None` for the header or a torn line.
fn parse_row(line: &str) -> Option<u64> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != 5 || fields[1..].iter().any(|f| f.parse::<f64>().is_err()) {
        return None;
    }
    fields[0].parse().ok()
}

/// Reads every well-formed row of a `loss.csv` back.
pub fn read_losses(path: impl AsRef<Path>) -> Result<Vec<StepStats>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(io_at(path))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let step = parse_row(l)?;
            let f: Vec<f64> = l
                .split(',')
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(StepStats {
                step,
                lr: f[0],
                loss: f[1] as f32,
                ce: f[2] as f32,
                dice: f[3] as f32,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(step: u64) -> StepStats {
        StepStats {
            step,
            loss: step as f32,
            ce: 0.0,
            dice: 0.0,
            lr: 1e-3,
        }
    }

    #[test]
    fn resume_keeps_earlier_rows_and_drops_later_and_torn_ones() {
        let dir = std::env::temp_dir().join(format!("masam-losslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.csv");
        let mut log = LossLog::open(&path, 0).unwrap();
        for s in 0..7 {
            log.append(&stats(s)).unwrap();
        }
        drop(log);
        // a crash mid-write leaves a torn line
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "7,1.0e-3,0.5").unwrap();
        drop(f);
        // the checkpoint was at step 5: steps 5 and 6 are trained again
        let mut log = LossLog::open(&path, 5).unwrap();
        for s in 5..9 {
            log.append(&stats(s)).unwrap();
        }
        drop(log);
        let rows = read_losses(&path).unwrap();
        let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
        assert!(rows.iter().all(|r| r.loss == r.step as f32 && r.lr == 1e-3));
        assert_eq!(steps, (0..9).collect::<Vec<_>>());
        assert!(std::fs::read_to_string(&path).unwrap().starts_with(HEADER));
        // a fresh run (step 0) starts over
        drop(LossLog::open(&path, 0).unwrap());
        assert!(read_losses(&path).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
