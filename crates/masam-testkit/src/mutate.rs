//! A small deterministic mutation fuzzer for readers of untrusted bytes: it derives inputs from
//! seed files by flipping bits, overwriting bytes with boundary values, inserting, deleting,
//! duplicating and splicing ranges, and feeds them to the reader. Used for the CI-sized runs of
//! the readers' fuzz tests (coverage-guided fuzzing lives in the repository's `fuzz/` folder).
//!
//! ```
//! use masam_testkit::mutate::Mutator;
//! let mut m = Mutator::new(7, vec![b"seed bytes".to_vec()]);
//! let mut lengths = Vec::new();
//! m.run(100, |input| lengths.push(input.len()));
//! assert_eq!(lengths.len(), 100);
//! assert!(lengths.iter().any(|&n| n != 10));
//! ```

/// Boundary values written over little-endian integers of 1, 2, 4 or 8 bytes.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// A seeded mutator over a corpus of seed inputs.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
    seeds: Vec<Vec<u8>>,
    /// Largest input produced (mutations never grow an input beyond this).
    pub max_len: usize,
}

impl Mutator {
    /// A mutator over `seeds` (at least one; an empty list is replaced by one empty input),
    /// drawing from a generator seeded with `seed`.
    pub fn new(seed: u64, mut seeds: Vec<Vec<u8>>) -> Self {
        if seeds.is_empty() {
            seeds.push(Vec::new());
        }
        let max_len = seeds.iter().map(Vec::len).max().unwrap_or(0) * 2 + 64;
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            seeds,
            max_len,
        }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One input: a seed with 1 to 8 stacked mutations.
    pub fn input(&mut self) -> Vec<u8> {
        let pick = self.below(self.seeds.len());
        let mut data = self.seeds[pick].clone();
        let rounds = 1 + self.below(8);
        for _ in 0..rounds {
            self.mutate(&mut data);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        let len = data.len();
        match self.below(8) {
            0 if len > 0 => {
                let i = self.below(len);
                data[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                data[i] = self.next_u64() as u8;
            }
            2 if len > 0 => {
                let width = [1usize, 2, 4, 8][self.below(4)];
                let i = self.below(len);
                let v = INTERESTING[self.below(INTERESTING.len())].to_le_bytes();
                for (k, b) in v.iter().take(width).enumerate() {
                    if let Some(d) = data.get_mut(i + k) {
                        *d = *b;
                    }
                }
            }
            3 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(64));
                data.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(64));
                let chunk: Vec<u8> = data[i..i + n].to_vec();
                let at = self.below(len + 1);
                data.splice(at..at, chunk);
            }
            5 => {
                let n = 1 + self.below(16);
                let at = self.below(len + 1);
                let bytes: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            6 => {
                let pick = self.below(self.seeds.len());
                let other = self.seeds[pick].clone();
                if !other.is_empty() {
                    let i = self.below(other.len());
                    let n = 1 + self.below((other.len() - i).min(256));
                    let at = self.below(len + 1);
                    let end = (at + n).min(len);
                    data.splice(at..end, other[i..i + n].iter().copied());
                }
            }
            _ if len > 0 => {
                let cut = self.below(len);
                data.truncate(cut);
            }
            _ => data.push(self.next_u64() as u8),
        }
    }

    /// Feeds `n` inputs to `target`.
    pub fn run(&mut self, n: usize, mut target: impl FnMut(&[u8])) {
        for _ in 0..n {
            let input = self.input();
            target(&input);
        }
    }
}
