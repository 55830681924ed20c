//! Safe file-system primitives shared by every masam crate.
//!
//! * [`atomic_write`], [`atomic_write_bytes`] and [`atomic_write_path`]: the one way masam
//!   writes a file (checkpoints, reports, NIfTI volumes, PNG frames). A reader, or a crash,
//!   sees either the previous file or the complete new one, never a half-written target.
//! * [`open_regular_file`] and [`read_regular_file`]: open an input only when it is a regular
//!   file, refusing FIFOs, devices, sockets and directories without blocking on them.
//!
//! Every failure is an [`FsError`] that names the path and keeps the underlying error as its
//! [`source`](std::error::Error::source).
//!
//! ```
//! use std::io::Write;
//! let dir = std::env::temp_dir().join(format!("masam-fs-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("report.txt");
//! masam_fs::atomic_write_bytes(&path, b"old")?;
//! let failed = masam_fs::atomic_write(&path, |w| {
//!     w.write_all(b"half of the new ")?;
//!     Err(std::io::Error::other("disk full"))
//! });
//! assert!(failed.is_err());
//! assert_eq!(masam_fs::read_regular_file(&path)?, b"old");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), masam_fs::FsError>(())
//! ```

mod atomic;
mod error;
mod regular;

pub use atomic::{atomic_write, atomic_write_bytes, atomic_write_path};
pub use error::{FileKind, FsError, Operation, Result};
pub use regular::{open_regular_file, read_regular_file};
