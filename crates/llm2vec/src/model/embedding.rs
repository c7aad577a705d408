//! Token embedding tables: in the model's dtype, or, for 8-bit inference on the CPU, as 8-bit codes with
//! a step per block of 32 values where every value of the table already is `step * code` (as GGUF's
//! Q8_0 tables are once read): a quarter of the memory, and the same rows, exactly.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::ops::with_f32_values;
use crate::error::{Error, Result};

/// Values per step.
const BLOCK: usize = 32;

/// A token embedding table `[vocab, hidden]`.
#[derive(Debug, Clone)]
pub struct Embedding(Table);

#[derive(Debug, Clone)]
enum Table {
    Dense(Tensor),
    /// Row `i` is `codes[i * hidden..][..hidden]`, each block of [`BLOCK`] times its step.
    Int8 {
        codes: Vec<i8>,
        steps: Vec<f32>,
        hidden: usize,
        device: Device,
    },
}

impl Embedding {
    /// The table `[vocab, hidden]`; with `quantize`, in 8-bit codes when f32 on the CPU and exactly on
    /// a grid of 8-bit codes, block by block (else as it is).
    pub fn new(table: Tensor, quantize: bool) -> Result<Self> {
        let (_, hidden) = table.dims2()?;
        if !quantize || hidden % BLOCK != 0 {
            return Ok(Embedding(Table::Dense(table)));
        }
        let int8 = with_f32_values(&table, |values| {
            let mut codes = vec![0i8; values.len()];
            let mut steps = vec![0f32; values.len() / BLOCK];
            let blocks = values.par_chunks(BLOCK).zip(codes.par_chunks_mut(BLOCK)).zip(&mut steps);
            blocks.try_for_each(|((values, codes), step)| {
                *step = on_grid(values, codes)?;
                Some(())
            })?;
            Some(Table::Int8 { codes, steps, hidden, device: table.device().clone() })
        });
        Ok(Embedding(int8.flatten().unwrap_or(Table::Dense(table))))
    }

    /// The rows of `ids: [batch, seq]` (u32): `[batch, seq, hidden]`.
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let (codes, steps, hidden, device) = match &self.0 {
            Table::Dense(table) => return Ok(table.embedding(&ids.flatten_all()?)?.reshape((batch, seq, ()))?),
            Table::Int8 { codes, steps, hidden, device } => (codes, steps, *hidden, device),
        };
        let vocab = codes.len() / hidden;
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let mut out = vec![0f32; ids.len() * hidden];
        for (row, &id) in out.chunks_exact_mut(hidden).zip(&ids) {
            let id = id as usize;
            if id >= vocab {
                return Err(Error::internal(format!("token id {id} is outside the embedding table of {vocab} rows")));
            }
            let (row_codes, row_steps) = (&codes[id * hidden..][..hidden], &steps[id * hidden / BLOCK..]);
            for ((out, codes), &step) in row.chunks_exact_mut(BLOCK).zip(row_codes.chunks_exact(BLOCK)).zip(row_steps) {
                out.iter_mut().zip(codes).for_each(|(o, &c)| *o = f32::from(c) * step);
            }
        }
        Ok(Tensor::from_vec(out, (batch, seq, hidden), device)?)
    }

    /// The width of a row.
    pub fn hidden(&self) -> usize {
        match &self.0 {
            Table::Dense(table) => table.dim(1).unwrap_or(0),
            Table::Int8 { hidden, .. } => *hidden,
        }
    }
}

/// The step of `values` when each is `step * code`, bit for bit, for a `code` in `-127..=127` and `step`
/// their largest magnitude over 127 (as Q8_0 rounds them), with the codes written to `codes`; else `None`.
fn on_grid(values: &[f32], codes: &mut [i8]) -> Option<f32> {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    if !max.is_finite() {
        return None;
    }
    let step = max / 127.0;
    for (code, &v) in codes.iter_mut().zip(values) {
        let c = if step == 0.0 { 0.0 } else { (v / step).round() };
        if (c * step).to_bits() != v.to_bits() {
            return None;
        }
        *code = c as i8;
    }
    Some(step)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    fn ids(ids: &[u32]) -> Tensor {
        Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu).unwrap()
    }

    /// A `[vocab, 64]` table on Q8_0's grid: each block of 32 holds codes up to 127 times an f16 step.
    fn q8_0_table(vocab: usize) -> Tensor {
        let values: Vec<f32> = (0..vocab * 64)
            .map(|i| {
                let step = half::f16::from_f32(0.001 + 0.0007 * (i / BLOCK) as f32).to_f32();
                let code = if i % BLOCK == 5 { 127 } else { (i * 37 % 255) as i32 - 127 };
                step * code as f32
            })
            .collect();
        Tensor::from_vec(values, (vocab, 64), &Device::Cpu).unwrap()
    }

    #[test]
    fn a_table_on_the_grid_takes_8_bits_and_gives_the_same_rows() {
        let table = q8_0_table(10);
        let embedding = Embedding::new(table.clone(), true).unwrap();
        assert!(matches!(embedding.0, Table::Int8 { .. }));
        let want = Embedding(Table::Dense(table)).lookup(&ids(&[3, 0, 9, 3])).unwrap();
        let got = embedding.lookup(&ids(&[3, 0, 9, 3])).unwrap();
        assert_eq!(got.dims(), [1, 4, 64]);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&got), flat(&want));
        let err = embedding.lookup(&ids(&[10])).unwrap_err().to_string();
        assert!(err.contains("token id 10") && err.contains("10 rows"), "{err}");
    }

    #[test]
    fn a_table_off_the_grid_stays_as_it_is() {
        let off = (q8_0_table(4) + 1e-4).unwrap();
        let negative_zero = Tensor::from_vec([-0.0f32].repeat(64), (1, 64), &Device::Cpu).unwrap();
        assert!(matches!(Embedding::new(negative_zero, true).unwrap().0, Table::Dense(_)));
        assert!(matches!(Embedding::new(off, true).unwrap().0, Table::Dense(_)));
        let bf16 = q8_0_table(4).to_dtype(DType::BF16).unwrap();
        assert!(matches!(Embedding::new(bf16, true).unwrap().0, Table::Dense(_)));
        assert!(matches!(Embedding::new(q8_0_table(4), false).unwrap().0, Table::Dense(_)));
    }
}
