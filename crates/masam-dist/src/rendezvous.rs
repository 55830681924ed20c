//! A shared file through which rank 0 hands a small secret (NCCL's unique id) to the others.
//!
//! Rank 0 [`publish`]es the bytes atomically (temporary file, then rename), so a reader sees
//! the whole file or none; the other ranks [`wait_for`] it. The file must not exist before the
//! launch: a file left by an earlier launch would hand out a stale id and the ranks would wait
//! on a communicator that never forms, so `publish` refuses an existing file.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{DistError, Result};

/// Writes `bytes` to `path` atomically; an error if `path` already exists.
pub fn publish(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(DistError::Rendezvous {
            path: path.to_path_buf(),
            reason: "already exists (left by an earlier launch?): remove it or name a fresh \
                     file"
                .into(),
        });
    }
    masam_fs::atomic_write_bytes(path, bytes)?;
    Ok(())
}

/// Waits until `path` exists and returns its `len` bytes; polls every 20 ms.
///
/// # Errors
/// [`DistError::Rendezvous`] when the file has not appeared within `timeout` or does not hold
/// exactly `len` bytes; [`DistError::Io`] when it cannot be read.
pub fn wait_for(path: &Path, len: usize, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == len => return Ok(bytes),
            Ok(bytes) => {
                return Err(DistError::Rendezvous {
                    path: path.to_path_buf(),
                    reason: format!("holds {} bytes, expected {len}", bytes.len()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DistError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        if start.elapsed() >= timeout {
            return Err(DistError::Rendezvous {
                path: path.to_path_buf(),
                reason: format!(
                    "rank 0 did not write it within {:.0} s",
                    timeout.as_secs_f64()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_wait_for_the_writer_and_stale_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("masam-dist-rdv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("id");
        let _ = std::fs::remove_file(&path);
        let p2 = path.clone();
        let reader = std::thread::spawn(move || wait_for(&p2, 4, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(60));
        publish(&path, &[1, 2, 3, 4]).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), vec![1, 2, 3, 4]);
        assert!(matches!(
            publish(&path, &[0; 4]),
            Err(DistError::Rendezvous { .. })
        ));
        assert!(matches!(
            wait_for(&path, 8, Duration::from_secs(1)),
            Err(DistError::Rendezvous { .. })
        ));
        assert!(matches!(
            wait_for(&dir.join("never"), 4, Duration::from_millis(50)),
            Err(DistError::Rendezvous { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
