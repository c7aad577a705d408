//! Inverted-dropout masks drawn from a seed and kept as bits, so that backward applies the very mask
//! that forward drew without storing it as floats.

use rayon::prelude::*;

use super::Real;

/// An inverted-dropout mask over `n` elements, as bits (set = kept; kept values are scaled by `1 / (1 - p)`).
/// Element `i`'s draw is 16 bits of a hash of `(seed, i / 4)`: the mask depends only on the seed.
pub(crate) struct Mask {
    kept: Vec<u64>,
    n: usize,
    scale: f64,
}

impl Mask {
    pub fn new(seed: u64, p: f64, n: usize) -> Self {
        let threshold = (p * 65536.0).round() as u64;
        let mut kept = vec![0u64; n.div_ceil(64)];
        // Word w holds elements 64w..64w+64, drawn from hashes 16w..16w+16.
        kept.par_iter_mut().enumerate().for_each(|(w, word)| {
            for h in 0..16 {
                let bits = mix(seed, (16 * w + h) as u64);
                for k in 0..4 {
                    if (bits >> (16 * k)) & 0xFFFF >= threshold {
                        *word |= 1 << (4 * h + k);
                    }
                }
            }
        });
        if !n.is_multiple_of(64) {
            if let Some(last) = kept.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        Self { kept, n, scale: 1.0 / (1.0 - p) }
    }

    /// `values * mask` in place, for the elements `offset..offset + values.len()` of the mask.
    pub fn apply<T: Real>(&self, values: &mut [T], offset: usize) {
        let scale = T::of(self.scale);
        if offset.is_multiple_of(8) {
            // Eight elements per mask byte, as factors 0 or 1: a multiply the compiler vectorises.
            for (c, chunk) in values.chunks_mut(8).enumerate() {
                let byte = offset / 8 + c;
                let factors = &BYTE_FACTORS[(self.kept[byte / 8] >> (8 * (byte % 8)) & 0xFF) as usize];
                chunk.iter_mut().zip(factors).for_each(|(v, &f)| *v = *v * scale * T::of(f64::from(f)));
            }
            return;
        }
        for (i, v) in (offset..).zip(values.iter_mut()) {
            *v = if self.kept[i / 64] >> (i % 64) & 1 == 1 { *v * scale } else { T::of(0.0) };
        }
    }

    /// The mask as one byte per element (1 = kept), for the ops that apply it on another device; `n`
    /// is the tensor's element count, checked against the mask's.
    pub fn kept(&self, n: usize) -> candle_core::Result<Vec<u8>> {
        if n != self.n {
            candle_core::bail!("dropout mask: {} elements, the tensor has {n}", self.n);
        }
        Ok((0..n).into_par_iter().map(|i| (self.kept[i / 64] >> (i % 64) & 1) as u8).collect())
    }

    /// The factor of the kept elements, `1 / (1 - p)`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `x * mask` in place for all `n` elements, on the rayon pool.
    pub fn apply_all<T: Real>(&self, x: &mut [T]) -> candle_core::Result<()> {
        if x.len() != self.n {
            candle_core::bail!("dropout mask: {} elements, the tensor has {}", self.n, x.len());
        }
        x.par_chunks_mut(64 * 64).enumerate().for_each(|(c, chunk)| self.apply(chunk, c * 64 * 64));
        Ok(())
    }
}

/// The bits of a byte as eight factors, 1.0 where the bit is set.
static BYTE_FACTORS: [[f32; 8]; 256] = byte_factors();

const fn byte_factors() -> [[f32; 8]; 256] {
    let mut table = [[0.0; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            if byte >> bit & 1 == 1 {
                table[byte][bit] = 1.0;
            }
            bit += 1;
        }
        byte += 1;
    }
    table
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
