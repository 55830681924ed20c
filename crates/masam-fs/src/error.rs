//! The crate's error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// `Result` with [`FsError`].
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// The file-system step that failed, for [`FsError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Creating the temporary file next to the target.
    CreateTemp,
    /// Writing the content (an error returned by the caller's writer included).
    Write,
    /// Flushing the temporary file to disk (`fsync`).
    Sync,
    /// Renaming the temporary file over the target.
    Rename,
    /// Flushing the target's folder to disk, which makes the rename durable (Unix). When this
    /// fails the target already holds the new content.
    SyncDir,
    /// Reading a file's metadata.
    Metadata,
    /// Opening a file.
    Open,
    /// Reading a file.
    Read,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateTemp => "cannot create a temporary file next to",
            Self::Write => "cannot write",
            Self::Sync => "cannot flush to disk",
            Self::Rename => "cannot rename the temporary file over",
            Self::SyncDir => "cannot flush the folder of",
            Self::Metadata => "cannot read the metadata of",
            Self::Open => "cannot open",
            Self::Read => "cannot read",
        })
    }
}

/// What a path that is not a regular file is instead, for [`FsError::NotRegularFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe (FIFO).
    Fifo,
    /// A character device (e.g. `/dev/zero`).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else that is not a regular file.
    Other,
}

impl FileKind {
    /// The kind of `file_type`, or `None` for a regular file.
    pub fn of(file_type: std::fs::FileType) -> Option<Self> {
        if file_type.is_file() {
            return None;
        }
        if file_type.is_dir() {
            return Some(Self::Directory);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return Some(Self::Fifo);
            }
            if file_type.is_char_device() {
                return Some(Self::CharDevice);
            }
            if file_type.is_block_device() {
                return Some(Self::BlockDevice);
            }
            if file_type.is_socket() {
                return Some(Self::Socket);
            }
        }
        Some(Self::Other)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Directory => "a directory",
            Self::Fifo => "a named pipe (FIFO)",
            Self::CharDevice => "a character device",
            Self::BlockDevice => "a block device",
            Self::Socket => "a socket",
            Self::Other => "not a regular file",
        })
    }
}

/// A file-system failure, naming the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// An operating-system call failed (or the caller's writer returned this error).
    #[error("{op} {path}: {source}")]
    Io {
        /// The step that failed.
        op: Operation,
        /// The file the caller asked for (the target of a write, never a temporary name).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's content producer of [`atomic_write_path`](crate::atomic_write_path)
    /// failed; the target was left untouched.
    #[error("cannot write {path}: {source}")]
    Produce {
        /// The target file.
        path: PathBuf,
        /// The producer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The path exists but is not a regular file, so it was not opened.
    #[error("{path} is {kind}, not a regular file")]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
    /// The path has no file-name component (e.g. `/` or `..`), so it cannot be written.
    #[error("{path} does not name a file")]
    NoFileName {
        /// The path.
        path: PathBuf,
    },
}

impl FsError {
    pub(crate) fn io(op: Operation, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Produce { path, .. }
            | Self::NotRegularFile { path, .. }
            | Self::NoFileName { path } => path,
        }
    }

    /// The closest [`std::io::ErrorKind`]: the underlying one for [`FsError::Io`],
    /// `InvalidInput` for a path that is not a regular file or names no file, `Other` for a
    /// producer's error.
    pub fn kind(&self) -> std::io::ErrorKind {
        match self {
            Self::Io { source, .. } => source.kind(),
            Self::NotRegularFile { .. } | Self::NoFileName { .. } => {
                std::io::ErrorKind::InvalidInput
            }
            Self::Produce { .. } => std::io::ErrorKind::Other,
        }
    }
}

/// For APIs that must return an [`std::io::Error`]: the result has [`FsError::kind`] and
/// carries the `FsError` (get it back with [`std::io::Error::into_inner`] and a downcast).
impl From<FsError> for std::io::Error {
    fn from(e: FsError) -> Self {
        std::io::Error::new(e.kind(), e)
    }
}
