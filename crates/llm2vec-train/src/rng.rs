//! A small seeded RNG (xoshiro256** seeded through SplitMix64) for dropout, masking and
//! shuffling; its state is plain data so a resumed run continues the exact same stream.

use serde::{Deserialize, Serialize};

/// What a derived random stream is used for.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Init = 1,
    Order = 2,
    Mask = 3,
    Dropout = 4,
    Eval = 5,
}

/// xoshiro256** generator; `Serialize`/`Deserialize` capture the full state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose stream is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Self { s: [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)] }
    }

    /// An independent stream for one use (`purpose`) at one position (`index`: a batch, an epoch) of
    /// a run seeded with `seed`: a resumed run draws the same numbers without saving any state.
    pub fn derived(seed: u64, purpose: Purpose, index: u64) -> Self {
        let mut x = seed;
        let a = splitmix64(&mut x);
        let mut y = a ^ (purpose as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let b = splitmix64(&mut y);
        Self::new(b ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }

    /// True with probability `p` (clamped to [0, 1]).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// `n` independent draws of `bernoulli(p)`.
    pub fn bernoulli_mask(&mut self, n: usize, p: f64) -> Vec<bool> {
        (0..n).map(|_| self.bernoulli(p)).collect()
    }

    /// Uniform integer in [0, n) without modulo bias; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// Inverted dropout multipliers: 0 with probability `p`, otherwise 1/(1-p).
    pub fn dropout_scale(&mut self, n: usize, p: f64) -> Vec<f64> {
        if p <= 0.0 {
            return vec![1.0; n];
        }
        let keep = 1.0 / (1.0 - p);
        (0..n).map(|_| if self.bernoulli(p) { 0.0 } else { keep }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_resumes() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let saved = serde_json::to_string(&a).unwrap();
        let mut resumed: Rng = serde_json::from_str(&saved).unwrap();
        assert_eq!(resumed.next_u64(), a.next_u64());
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn derived_streams_differ_by_purpose_and_index() {
        let first = |p, i| Rng::derived(42, p, i).next_u64();
        assert_eq!(first(Purpose::Mask, 3), first(Purpose::Mask, 3));
        assert_ne!(first(Purpose::Mask, 3), first(Purpose::Mask, 4));
        assert_ne!(first(Purpose::Mask, 3), first(Purpose::Dropout, 3));
        assert_ne!(first(Purpose::Mask, 3), Rng::derived(43, Purpose::Mask, 3).next_u64());
    }

    #[test]
    fn uniform_and_bernoulli_statistics() {
        let mut r = Rng::new(1);
        let n = 100_000;
        let mean: f64 = (0..n).map(|_| r.uniform()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let hits = r.bernoulli_mask(n, 0.3).iter().filter(|&&b| b).count();
        assert!((hits as f64 / n as f64 - 0.3).abs() < 0.01);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..50).collect();
        Rng::new(3).shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn dropout_scale_values() {
        let d = Rng::new(5).dropout_scale(1000, 0.25);
        assert!(d.iter().all(|&x| x == 0.0 || (x - 4.0 / 3.0).abs() < 1e-12));
        assert_eq!(Rng::new(5).dropout_scale(3, 0.0), vec![1.0; 3]);
    }
}
