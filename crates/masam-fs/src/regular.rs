//! Opening inputs that must be regular files.
//!
//! `File::open` on a named pipe blocks until a writer appears, and reading `/dev/zero` or
//! `/dev/urandom` never ends; a directory opens fine on Unix and fails only at the first read.
//! Readers of user-supplied paths go through [`open_regular_file`] instead, which refuses all
//! of these up front and never blocks.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::path::Path;

use crate::error::{FileKind, FsError, Operation, Result};

/// Opens `path` for reading only if it is a regular file (after following symbolic links).
///
/// The metadata is checked before opening, so a FIFO, device, socket or directory is refused
/// without being opened. On Unix the file is also opened with `O_NONBLOCK` (cleared again
/// before returning) and checked once more on the open handle, so a path swapped for a FIFO
/// between the two steps cannot block either.
///
/// # Errors
/// [`FsError::NotRegularFile`] for anything but a regular file, [`FsError::Io`] (`Metadata`
/// or `Open`) when the path is missing or unreadable.
///
/// ```
/// let err = masam_fs::open_regular_file(std::env::temp_dir()).unwrap_err();
/// assert!(matches!(err, masam_fs::FsError::NotRegularFile { kind: masam_fs::FileKind::Directory, .. }));
/// ```
pub fn open_regular_file(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| FsError::io(Operation::Metadata, path, e))?;
    check_regular(path, &meta)?;

    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| FsError::io(Operation::Open, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::io(Operation::Metadata, path, e))?;
    check_regular(path, &meta)?;
    #[cfg(unix)]
    clear_nonblocking(&file).map_err(|e| FsError::io(Operation::Open, path, e))?;
    Ok(file)
}

/// Reads the whole of `path` if it is a regular file ([`open_regular_file`], then a read sized
/// from the metadata).
///
/// # Errors
/// As [`open_regular_file`], and [`FsError::Io`] (`Read`) when reading fails.
pub fn read_regular_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let mut file = open_regular_file(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| FsError::io(Operation::Read, path, e))?;
    Ok(bytes)
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<()> {
    match FileKind::of(meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(FsError::NotRegularFile {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// Gives the handle ordinary blocking semantics again (`O_NONBLOCK` only served the open).
#[cfg(unix)]
fn clear_nonblocking(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor owned by `file` for the duration of both calls;
    // F_GETFL/F_SETFL only read and set the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
