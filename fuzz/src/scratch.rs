//! The path-based readers of masam-volume read the fuzz input from a per-process file in a
//! scratch folder (tmpfs when available).

use std::path::PathBuf;

/// Writes `data` to `name` in this process's scratch folder and returns the path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("masam-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}
