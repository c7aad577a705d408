//! MNTP masking as the reference's collators: each non-special token is selected with
//! `mlm_probability`; selected tokens become the mask token (all-mask) or 80% mask / 10%
//! random / 10% unchanged (default); labels keep the original id at selected positions and
//! -100 elsewhere. All randomness comes from the seeded [`Rng`].

use crate::config::{CollatorType, MaskTokenType};
use crate::rng::Rng;
use crate::{Result, TrainError};
use tokenizers::Tokenizer;

/// Label value ignored by the loss.
pub const IGNORE_INDEX: i64 = -100;

/// The token `mask_token_type: "mask"` masks with (added to the tokenizer when it lacks it).
pub const MASK_TOKEN: &str = "<mask>";

/// The id of the mask token the reference would use for `kind`.
pub fn mask_token_id(kind: MaskTokenType, tokenizer: &Tokenizer, eos_id: Option<u32>) -> Result<u32> {
    let (token, found) = match kind {
        MaskTokenType::Blank => ("_", tokenizer.token_to_id("_")),
        MaskTokenType::Eos => ("eos", eos_id),
        MaskTokenType::Mask => (MASK_TOKEN, tokenizer.token_to_id(MASK_TOKEN)),
    };
    found
        .ok_or_else(|| TrainError::Invalid(format!("mask_token_type needs token `{token}`, which the tokenizer lacks")))
}

/// Masking parameters.
#[derive(Debug, Clone)]
pub struct Masker {
    pub probability: f64,
    pub collator: CollatorType,
    pub mask_id: u32,
    /// Random replacements are drawn from [0, vocab_size).
    pub vocab_size: u32,
    /// Ids never selected (BOS, EOS, padding, ...).
    pub special_ids: Vec<u32>,
}

/// One masked sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

impl Masker {
    /// Masks one sequence.
    pub fn mask(&self, ids: &[u32], rng: &mut Rng) -> Masked {
        let mut input_ids = ids.to_vec();
        let mut labels = vec![IGNORE_INDEX; ids.len()];
        for (i, &id) in ids.iter().enumerate() {
            if self.special_ids.contains(&id) || !rng.bernoulli(self.probability) {
                continue;
            }
            labels[i] = i64::from(id);
            input_ids[i] = self.replacement(id, rng);
        }
        Masked { input_ids, labels }
    }

    fn replacement(&self, id: u32, rng: &mut Rng) -> u32 {
        match self.collator {
            CollatorType::AllMask => self.mask_id,
            CollatorType::Default if rng.bernoulli(0.8) => self.mask_id,
            CollatorType::Default if rng.bernoulli(0.5) => rng.below(u64::from(self.vocab_size)) as u32,
            CollatorType::Default => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(collator: CollatorType, probability: f64) -> Masker {
        Masker { probability, collator, mask_id: 999, vocab_size: 1000, special_ids: vec![1, 2] }
    }

    fn sequence(n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| {
                if i % 10 == 0 {
                    1
                } else if i % 10 == 9 {
                    2
                } else {
                    10 + (i % 500) as u32
                }
            })
            .collect()
    }

    #[test]
    fn all_mask_statistics_and_specials() {
        let ids = sequence(50_000);
        let m = masker(CollatorType::AllMask, 0.8).mask(&ids, &mut Rng::new(0));
        let normal = ids.iter().filter(|&&i| i > 2).count();
        let selected = m.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        assert!((selected as f64 / normal as f64 - 0.8).abs() < 0.01);
        for (i, (&id, &label)) in ids.iter().zip(&m.labels).enumerate() {
            if id <= 2 {
                assert_eq!((label, m.input_ids[i]), (IGNORE_INDEX, id));
            } else if label == IGNORE_INDEX {
                assert_eq!(m.input_ids[i], id);
            } else {
                assert_eq!((label, m.input_ids[i]), (i64::from(id), 999));
            }
        }
    }

    #[test]
    fn default_collator_80_10_10() {
        let ids = sequence(100_000);
        let m = masker(CollatorType::Default, 0.15).mask(&ids, &mut Rng::new(1));
        let sel: Vec<usize> = (0..ids.len()).filter(|&i| m.labels[i] != IGNORE_INDEX).collect();
        let normal = ids.iter().filter(|&&i| i > 2).count() as f64;
        assert!((sel.len() as f64 / normal - 0.15).abs() < 0.005);
        let frac = |f: &dyn Fn(usize) -> bool| sel.iter().filter(|&&i| f(i)).count() as f64 / sel.len() as f64;
        let masked = frac(&|i| m.input_ids[i] == 999);
        let kept = frac(&|i| m.input_ids[i] == ids[i]);
        assert!((masked - 0.8).abs() < 0.015, "{masked}");
        // kept: the 10% unchanged plus random draws that hit the original id (about 0.1%).
        assert!((kept - 0.1).abs() < 0.015, "{kept}");
        assert!(sel.iter().all(|&i| ids[i] > 2));
    }

    #[test]
    fn deterministic_for_a_seed() {
        let ids = sequence(300);
        let m = masker(CollatorType::Default, 0.3);
        assert_eq!(m.mask(&ids, &mut Rng::new(9)), m.mask(&ids, &mut Rng::new(9)));
        assert_ne!(m.mask(&ids, &mut Rng::new(9)), m.mask(&ids, &mut Rng::new(10)));
    }
}
