//! A seeded Mersenne Twister (MT19937) drawing numbers exactly as NumPy's legacy `RandomState` does,
//! so that MTEB's sampling (`np.random.seed(42)`, `shuffle`, `randint`, `choice`) is reproduced
//! draw for draw.

const N: usize = 624;
const M: usize = 397;

/// NumPy's `RandomState(seed)`, for the few draws the protocol needs.
#[derive(Clone)]
pub struct RandomState {
    state: [u32; N],
    pos: usize,
}

impl RandomState {
    /// The generator of `np.random.RandomState(seed)` (seed below 2^32).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Self { state, pos: N }
    }

    /// The next raw 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.pos = 0;
    }

    /// `random_sample()`: a double in [0, 1) with 53 random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// An integer in `[0, max]` by masked rejection (NumPy's legacy `random_interval`, also used by
    /// `randint` for ranges below 2^32).
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `randint(0, high)`: an index in `[0, high)`; `high` must be positive.
    pub fn randint(&mut self, high: usize) -> usize {
        self.interval((high - 1) as u32) as usize
    }

    /// `shuffle(x)` for a 1-d array: Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.interval(i as u32) as usize;
            x.swap(i, j);
        }
    }

    /// `choice(n, size, replace=False)` without weights: the first `size` of a permutation of `0..n`.
    pub fn choice_without_replacement(&mut self, n: usize, size: usize) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..n).collect();
        self.shuffle(&mut perm);
        perm.truncate(size);
        perm
    }

    /// `choice(len(cdf), size, p=...)` given the normalised cumulative weights: one uniform draw per
    /// sample, located with `searchsorted(side="right")`.
    pub fn choice_cdf(&mut self, cdf: &[f64], size: usize) -> Vec<usize> {
        (0..size).map(|_| search_right(cdf, self.random_sample()).min(cdf.len() - 1)).collect()
    }
}

/// NumPy's `searchsorted(a, v, side="right")`: the number of entries of sorted `a` that are `<= v`.
pub fn search_right(a: &[f64], v: f64) -> usize {
    a.partition_point(|&x| x <= v)
}

/// NumPy's `searchsorted(a, v, side="left")`: the number of entries of sorted `a` that are `< v`.
pub fn search_left(a: &[f64], v: f64) -> usize {
    a.partition_point(|&x| x < v)
}

/// The cumulative distribution `choice` builds from weights `p`: running sums, divided by the last.
pub fn cdf(p: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = p
        .iter()
        .map(|&x| {
            acc += x;
            acc
        })
        .collect();
    let last = *cdf.last().unwrap_or(&1.0);
    cdf.iter_mut().for_each(|c| *c /= last);
    cdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_first_draws() {
        // np.random.RandomState(42).random_sample() == 0.3745401188473625
        assert_eq!(RandomState::new(42).random_sample(), 0.3745401188473625);
        // np.random.RandomState(0).random_sample() == 0.5488135039273248
        assert_eq!(RandomState::new(0).random_sample(), 0.5488135039273248);
    }
}
