//! Capture and restore the exact position of a ChaCha random stream.

use rand_chacha::{ChaCha12Rng, ChaCha20Rng, ChaCha8Rng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The full state of a ChaCha RNG: seed, stream and word position. Restoring it yields a
/// generator that continues with exactly the numbers the captured one would have produced.
///
/// Serialises to JSON as `{"seed": "<64 hex digits>", "stream": u64, "word_pos": "<decimal>"}`.
///
/// ```
/// use rand::{Rng, SeedableRng};
/// use rand_chacha::ChaCha8Rng;
/// use masam_train::RngState;
/// let mut rng = ChaCha8Rng::seed_from_u64(1234);
/// let _: u64 = rng.random();
/// let state = RngState::capture(&rng);
/// let mut copy: ChaCha8Rng = state.restore();
/// assert_eq!(rng.random::<u64>(), copy.random::<u64>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RngStateRepr", into = "RngStateRepr")]
pub struct RngState {
    /// The 32-byte seed.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// The position in the stream, in 32-bit words.
    pub word_pos: u128,
}

/// A ChaCha generator whose stream position can be read and set.
pub trait ChaChaStream: Sized {
    /// The current state.
    fn capture_state(&self) -> RngState;
    /// A generator at `state`.
    fn from_state(state: &RngState) -> Self;
}

macro_rules! impl_chacha_stream {
    ($($t:ty),*) => {$(
        impl ChaChaStream for $t {
            fn capture_state(&self) -> RngState {
                RngState {
                    seed: self.get_seed(),
                    stream: self.get_stream(),
                    word_pos: self.get_word_pos(),
                }
            }
            fn from_state(state: &RngState) -> Self {
                let mut rng = <$t as rand::SeedableRng>::from_seed(state.seed);
                rng.set_stream(state.stream);
                rng.set_word_pos(state.word_pos);
                rng
            }
        }
    )*};
}
impl_chacha_stream!(ChaCha8Rng, ChaCha12Rng, ChaCha20Rng);

impl RngState {
    /// The state of `rng` (ChaCha8/12/20).
    pub fn capture<R: ChaChaStream>(rng: &R) -> Self {
        rng.capture_state()
    }

    /// A generator of type `R` positioned at this state.
    pub fn restore<R: ChaChaStream>(&self) -> R {
        R::from_state(self)
    }
}

#[derive(Serialize, Deserialize)]
struct RngStateRepr {
    seed: String,
    stream: u64,
    word_pos: String,
}

impl From<RngState> for RngStateRepr {
    fn from(s: RngState) -> Self {
        Self {
            seed: s.seed.iter().map(|b| format!("{b:02x}")).collect(),
            stream: s.stream,
            word_pos: s.word_pos.to_string(),
        }
    }
}

impl TryFrom<RngStateRepr> for RngState {
    type Error = TrainError;
    fn try_from(r: RngStateRepr) -> Result<Self> {
        let bad = || TrainError::BadCheckpoint(format!("bad RNG seed {:?}", r.seed));
        if r.seed.len() != 64 || !r.seed.is_ascii() {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&r.seed[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let word_pos = r
            .word_pos
            .parse::<u128>()
            .map_err(|_| TrainError::BadCheckpoint(format!("bad RNG word_pos {:?}", r.word_pos)))?;
        Ok(Self {
            seed,
            stream: r.stream,
            word_pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn json_round_trip_continues_the_stream() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        rng.set_stream(3);
        for _ in 0..5 {
            let _: u32 = rng.random();
        }
        let json = serde_json::to_string(&RngState::capture(&rng)).unwrap();
        let back: RngState = serde_json::from_str(&json).unwrap();
        let mut copy: ChaCha20Rng = back.restore();
        let a: Vec<u32> = (0..10).map(|_| rng.random()).collect();
        let b: Vec<u32> = (0..10).map(|_| copy.random()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_json_is_an_error() {
        let r: std::result::Result<RngState, _> =
            serde_json::from_str(r#"{"seed":"zz","stream":0,"word_pos":"0"}"#);
        assert!(r.is_err());
    }
}
