//! Atomic, durable file writes.
//!
//! Every write follows the same steps:
//!
//! 1. create a temporary file with a unique name (`.<name>.tmp-<pid>-<n>`) in the target's
//!    folder, so that the final rename stays on one file system;
//! 2. let the caller fill it (through a buffered writer, or by path);
//! 3. flush it to disk (`fsync`);
//! 4. rename it over the target (atomic on POSIX file systems and on NTFS);
//! 5. on Unix, flush the folder to disk so that the rename itself survives a crash.
//!
//! If any step up to the rename fails, or the caller's code panics, the temporary file is
//! removed and the target keeps its previous content (or stays absent). The target is replaced,
//! never written through: a symbolic link at the target is replaced by the new file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{FsError, Operation, Result};

/// Writes the content produced by `write` to `path` atomically and durably: unique temporary
/// file in the same folder, `fsync`, rename over `path`, `fsync` of the folder (Unix). `write`
/// gets a buffered writer and may stream; the caller must not sync or close anything.
///
/// # Errors
/// [`FsError::Io`] naming `path` and the failed [`Operation`] (`Write` for an error returned by
/// `write`), or [`FsError::NoFileName`]. On every error before the rename, `path` is untouched
/// and no temporary file is left behind.
///
/// ```
/// use std::io::Write;
/// let path = std::env::temp_dir().join(format!("masam-fs-write-{}.txt", std::process::id()));
/// masam_fs::atomic_write(&path, |w| writeln!(w, "dice = {:.3}", 0.912))?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "dice = 0.912\n");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), masam_fs::FsError>(())
/// ```
pub fn atomic_write(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let (dir, tmp, mut file) = TempFile::create(path)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut file);
        write(&mut w).map_err(|e| FsError::io(Operation::Write, path, e))?;
        w.flush()
            .map_err(|e| FsError::io(Operation::Write, path, e))?;
    }
    file.sync_all()
        .map_err(|e| FsError::io(Operation::Sync, path, e))?;
    drop(file);
    tmp.commit(path, &dir)
}

/// Writes `bytes` to `path` atomically and durably: [`atomic_write`] with a fixed content.
///
/// # Errors
/// As [`atomic_write`].
pub fn atomic_write_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| w.write_all(bytes))
}

/// [`atomic_write`] for producers that insist on writing a file by name (e.g.
/// `candle_core::safetensors::save`): `produce` gets the temporary file's path, writes or
/// replaces that file, and the result is synced and renamed over `path`.
///
/// # Errors
/// [`FsError::Produce`] (holding the producer's error as its source) when `produce` fails,
/// otherwise as [`atomic_write`]. The target is untouched on every error before the rename.
///
/// ```
/// let path = std::env::temp_dir().join(format!("masam-fs-path-{}.txt", std::process::id()));
/// masam_fs::atomic_write_path(&path, |tmp| std::fs::write(tmp, "by name"))?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "by name");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), masam_fs::FsError>(())
/// ```
pub fn atomic_write_path<E>(
    path: impl AsRef<Path>,
    produce: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    let path = path.as_ref();
    let (dir, tmp, file) = TempFile::create(path)?;
    // Closed first: the producer may replace the file (Windows cannot while it is open).
    drop(file);
    produce(&tmp.path).map_err(|e| FsError::Produce {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    // The producer may have replaced the file: sync what is at the temporary path now.
    // (Opened for writing because Windows needs write access to flush.)
    let file = OpenOptions::new()
        .write(true)
        .open(&tmp.path)
        .map_err(|e| FsError::io(Operation::Sync, path, e))?;
    file.sync_all()
        .map_err(|e| FsError::io(Operation::Sync, path, e))?;
    drop(file);
    tmp.commit(path, &dir)
}

/// A temporary file next to the target, removed on drop unless committed (covers errors and
/// panics of the caller's code).
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates a new, empty temporary file in `target`'s folder; returns the folder, the guard
    /// and the open handle.
    fn create(target: &Path) -> Result<(PathBuf, Self, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = target.file_name().ok_or_else(|| FsError::NoFileName {
            path: target.to_path_buf(),
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A name left by a crashed process with the same pid is skipped, not overwritten.
        let mut attempts = 0;
        loop {
            let tmp = dir.join(format!(
                ".{}.tmp-{}-{}",
                name.to_string_lossy(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    let guard = Self {
                        path: tmp,
                        committed: false,
                    };
                    return Ok((dir, guard, file));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => return Err(FsError::io(Operation::CreateTemp, target, e)),
            }
        }
    }

    /// Renames the (synced) temporary file over `target`, then flushes `dir` (Unix).
    fn commit(mut self, target: &Path, dir: &Path) -> Result<()> {
        std::fs::rename(&self.path, target)
            .map_err(|e| FsError::io(Operation::Rename, target, e))?;
        self.committed = true;
        sync_dir(dir).map_err(|e| FsError::io(Operation::SyncDir, target, e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Flushes a folder's entries to disk, which makes a rename in it durable. Folders that cannot
/// be opened for reading, and file systems that do not support syncing a folder (`EINVAL`,
/// `ENOTSUP`), are skipped: nothing more can be done there.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let Ok(d) = File::open(dir) else {
        return Ok(());
    };
    match d.sync_all() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTSUP)) => Ok(()),
        r => r,
    }
}

/// Windows makes renames durable without a folder flush (and cannot open a folder as a file).
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}
