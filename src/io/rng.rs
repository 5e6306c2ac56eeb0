//! Randomness behind a trait: [`SystemRng`] draws from the OS, [`SeededRng`] is a deterministic
//! SplitMix64 stream for tests and simulation. Nothing in the server uses a global random source.
//!
//! Invariant: a `SeededRng` built from the same seed yields the same sequence on every platform.

use std::fmt;

/// A source of random 64-bit words.
pub trait Rng: Send + fmt::Debug {
    fn next_u64(&mut self) -> u64;

    /// A value in `0..bound` (`bound` > 0). The tiny modulo bias is irrelevant for our uses.
    fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound.max(1)
    }
}

/// Random words from the operating system's generator (under `--cfg madsim`, from the
/// simulator's seeded generator, so a simulated run replays).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRng;

impl Rng for SystemRng {
    fn next_u64(&mut self) -> u64 {
        #[cfg(madsim)]
        {
            madsim::rand::random::<u64>()
        }
        #[cfg(not(madsim))]
        {
            rand::random::<u64>()
        }
    }
}

/// The SplitMix64 generator: small, fast, and good enough for fault schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`; `bound` must be > 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound.max(1)
    }
}

/// A deterministic [`Rng`] over [`SplitMix64`].
#[derive(Clone, Debug)]
pub struct SeededRng {
    inner: SplitMix64,
}

impl SeededRng {
    pub const fn new(seed: u64) -> Self {
        SeededRng {
            inner: SplitMix64::new(seed),
        }
    }
}

impl Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_deterministic_and_seed_dependent() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        let mut c = SeededRng::new(8);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn splitmix_matches_reference_value() {
        // First output of SplitMix64 seeded with 0, a widely published test vector.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SeededRng::new(1);
        for bound in 1..50u64 {
            assert!(rng.below(bound) < bound);
        }
    }
}
