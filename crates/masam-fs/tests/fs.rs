//! Behaviour of the atomic writers and of the regular-file opener.

use std::path::{Path, PathBuf};

use masam_fs::{FileKind, FsError, Operation};

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("masam-fs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_and_replaces() {
    let dir = scratch("replace");
    let p = dir.join("a.bin");
    masam_fs::atomic_write_bytes(&p, b"first").unwrap();
    masam_fs::atomic_write(&p, |w| w.write_all(b"second")).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    assert_eq!(entries(&dir), ["a.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failing_writer_leaves_target_and_no_temp_file() {
    let dir = scratch("fail");
    let p = dir.join("ckpt.safetensors");
    masam_fs::atomic_write_bytes(&p, b"old").unwrap();
    let err = masam_fs::atomic_write(&p, |w| {
        w.write_all(&[7u8; 3 << 20])?; // past the buffer: really on disk
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    match &err {
        FsError::Io { op, path, source } => {
            assert_eq!(*op, Operation::Write);
            assert_eq!(path, &p);
            assert_eq!(source.to_string(), "disk full");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The source chain reaches the writer's own error.
    let src = std::error::Error::source(&err).unwrap();
    assert_eq!(src.to_string(), "disk full");
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(&dir), ["ckpt.safetensors"]);

    // A fresh target stays absent.
    let q = dir.join("new.json");
    assert!(masam_fs::atomic_write(&q, |_| Err(std::io::Error::other("no"))).is_err());
    assert_eq!(entries(&dir), ["ckpt.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn panicking_writer_leaves_no_temp_file() {
    let dir = scratch("panic");
    let p = dir.join("x.txt");
    let r = std::panic::catch_unwind(|| {
        let _ = masam_fs::atomic_write(&p, |w| {
            w.write_all(b"partial")?;
            panic!("boom")
        });
    });
    assert!(r.is_err());
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failing_producer_keeps_its_error_as_source() {
    let dir = scratch("produce");
    let p = dir.join("w.safetensors");
    masam_fs::atomic_write_bytes(&p, b"old").unwrap();
    let err = masam_fs::atomic_write_path(&p, |tmp| {
        std::fs::write(tmp, b"partial")?;
        Err::<(), _>(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "quota",
        ))
    })
    .unwrap_err();
    assert!(matches!(err, FsError::Produce { .. }));
    let src = std::error::Error::source(&err).unwrap();
    let io = src.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(&dir), ["w.safetensors"]);

    // A producer that replaces the temporary file by renaming over it is fine.
    masam_fs::atomic_write_path(&p, |tmp| {
        let other = tmp.with_extension("other");
        std::fs::write(&other, b"new")?;
        std::fs::rename(&other, tmp)
    })
    .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    assert_eq!(entries(&dir), ["w.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_folder_and_no_file_name_are_errors() {
    let dir = scratch("missing");
    let err = masam_fs::atomic_write_bytes(dir.join("nope").join("a"), b"x").unwrap_err();
    assert!(matches!(
        err,
        FsError::Io {
            op: Operation::CreateTemp,
            ..
        }
    ));
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("nope"));
    let err = masam_fs::atomic_write_bytes(Path::new("/"), b"x").unwrap_err();
    assert!(matches!(err, FsError::NoFileName { .. }));
    // A directory at the target is not replaced.
    std::fs::create_dir(dir.join("d")).unwrap();
    let err = masam_fs::atomic_write_bytes(dir.join("d"), b"x").unwrap_err();
    assert!(matches!(
        err,
        FsError::Io {
            op: Operation::Rename,
            ..
        }
    ));
    assert_eq!(entries(&dir), ["d"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn regular_files_open_and_directories_do_not() {
    let dir = scratch("regular");
    let p = dir.join("v.nii");
    std::fs::write(&p, b"data").unwrap();
    assert_eq!(masam_fs::read_regular_file(&p).unwrap(), b"data");
    let err = masam_fs::open_regular_file(&dir).unwrap_err();
    assert!(matches!(
        err,
        FsError::NotRegularFile {
            kind: FileKind::Directory,
            ..
        }
    ));
    let err = masam_fs::open_regular_file(dir.join("absent")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn fifo_and_devices_are_refused_without_blocking() {
    use std::os::unix::ffi::OsStrExt;
    let dir = scratch("fifo");
    let fifo = dir.join("pipe.nii");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    // Run in a thread so that a regression (a blocking open) fails the test instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let r = masam_fs::read_regular_file(&f).map(|_| ());
        let r2 = masam_fs::open_regular_file("/dev/zero").map(|_| ());
        tx.send((r, r2)).unwrap();
    });
    let (r, r2) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("opening a FIFO blocked");
    assert!(matches!(
        r,
        Err(FsError::NotRegularFile {
            kind: FileKind::Fifo,
            ..
        })
    ));
    assert!(matches!(
        r2,
        Err(FsError::NotRegularFile {
            kind: FileKind::CharDevice,
            ..
        })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
