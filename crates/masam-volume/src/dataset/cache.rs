//! A thread-safe LRU cache of decoded volumes, bounded by bytes.
//!
//! ```
//! use masam_volume::dataset::VolumeCache;
//! let cache: VolumeCache<Vec<u8>> = VolumeCache::new(10);
//! let a = cache.get_or_load("a", || Ok((vec![1u8; 6], 6))).unwrap();
//! let _b = cache.get_or_load("b", || Ok((vec![2u8; 6], 6))).unwrap(); // evicts "a"
//! assert_eq!(cache.len(), 1);
//! assert_eq!(*a, vec![1u8; 6]); // handed-out Arcs stay valid
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;

struct Entry<T> {
    value: Arc<T>,
    bytes: usize,
    last_use: u64,
}

struct State<T> {
    entries: HashMap<String, Entry<T>>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// LRU by bytes: inserting evicts least recently used entries until the total fits
/// `max_bytes` (an entry larger than the bound is returned but not kept).
pub struct VolumeCache<T> {
    max_bytes: usize,
    state: Mutex<State<T>>,
}

impl<T> std::fmt::Debug for VolumeCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, b) = self
            .state
            .lock()
            .map(|s| (s.entries.len(), s.bytes))
            .unwrap_or((0, 0));
        f.debug_struct("VolumeCache")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &n)
            .field("bytes", &b)
            .finish()
    }
}

impl<T> VolumeCache<T> {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State {
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the map inconsistent (every mutation is a
        // single insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value for `key`, or `load()` → `(value, bytes)` inserted. The loader runs
    /// without holding the lock, so different keys load in parallel.
    pub fn get_or_load(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<(T, usize)>,
    ) -> Result<Arc<T>> {
        {
            let mut s = self.lock();
            s.clock += 1;
            let now = s.clock;
            if let Some(e) = s.entries.get_mut(key) {
                e.last_use = now;
                let v = e.value.clone();
                s.hits += 1;
                return Ok(v);
            }
            s.misses += 1;
        }
        let (value, bytes) = load()?;
        let value = Arc::new(value);
        if bytes > self.max_bytes {
            return Ok(value);
        }
        let mut s = self.lock();
        if let Some(e) = s.entries.get(key) {
            return Ok(e.value.clone()); // another thread loaded it meanwhile
        }
        while s.bytes + bytes > self.max_bytes {
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = s.entries.remove(&oldest) {
                s.bytes -= e.bytes;
            }
        }
        s.clock += 1;
        let now = s.clock;
        s.bytes += bytes;
        s.entries.insert(
            key.to_string(),
            Entry {
                value: value.clone(),
                bytes,
                last_use: now,
            },
        );
        Ok(value)
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        let s = self.lock();
        (s.hits, s.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_order_and_bound() {
        let c: VolumeCache<u32> = VolumeCache::new(10);
        c.get_or_load("a", || Ok((1, 4))).unwrap();
        c.get_or_load("b", || Ok((2, 4))).unwrap();
        c.get_or_load("a", || panic!("cached")).unwrap(); // a is now most recent
        c.get_or_load("c", || Ok((3, 4))).unwrap(); // evicts b
        assert_eq!(c.len(), 2);
        assert!(c.bytes() <= 10);
        let mut loaded = false;
        c.get_or_load("b", || {
            loaded = true;
            Ok((2, 4))
        })
        .unwrap();
        assert!(loaded);
        let big = c.get_or_load("huge", || Ok((9, 100))).unwrap();
        assert_eq!(*big, 9);
        assert!(c.bytes() <= 10);
        assert!(c
            .get_or_load("e", || Err(crate::VolumeError::InvalidArgument("x".into())))
            .is_err());
    }

    #[test]
    fn concurrent_use() {
        let c: VolumeCache<usize> = VolumeCache::new(64);
        std::thread::scope(|s| {
            for t in 0..4 {
                let c = &c;
                s.spawn(move || {
                    for i in 0..200 {
                        let k = (i * 7 + t) % 23;
                        let v = c.get_or_load(&k.to_string(), || Ok((k, 8))).unwrap();
                        assert_eq!(*v, k);
                    }
                });
            }
        });
        assert!(c.bytes() <= 64);
    }
}
