//! 8-bit weights for inference on the CPU. Weights are quantized once, per output row (symmetric:
//! `scale = max|w| / 127`); activations per input row as they arrive, to 12 bits (`max|x| / 2047`).
//! The products are summed exactly in i32 (per chunk of [`CHUNK`] inputs, so no sum can overflow) and
//! scaled back to f32 once per output, where the bias is added.
//!
//! Why 12-bit activations in 16-bit lanes (`vpmaddwd`, or `vpdpwssd` with VNNI) rather than bytes:
//! decoder activations have outlier channels (about 20 times a row's RMS after the norms), so 8 bits
//! per row leave the other channels a few levels. Measured on SmolLM2-135M with AMD Zen 3, against
//! f32 embeddings of the STS-B test sentences: 8-bit rows with 7-bit weights (`vpmaddubsw`, the fastest
//! byte form on AVX2) ran 1.44 times f32 but moved the median cosine to 0.96; 8-bit blocks of 64
//! inputs, each with its own scale, gained nothing over f32 (the per-block float work); 12-bit rows
//! keep a median cosine of 0.999 and run faster than f32. Zen 3 issues one `vpmaddwd` per cycle,
//! which is 16 products, as many as its two f32 FMA pipes: the gain there is cache and packing, not
//! arithmetic.
//!
//! Three paths compute the same sums, so they agree bit for bit: AVX-512 VNNI, AVX2 and portable
//! scalar code; the widest that [`Isa::active`] allows runs.

use std::ops::Range;

use rayon::prelude::*;

use super::isa::Isa;

/// Values of the inner dimension taken per step (one 256-bit register of 16-bit lanes); rows are padded to it.
const STEP: usize = 16;
/// Rows of activations per micro-tile.
const MR: usize = 4;
/// Weight rows (outputs) per micro-tile.
const NR: usize = 2;
/// Outputs per block: their weights stay in the L1 cache while every row tile of a task passes over them.
const NB: usize = 16;
/// The largest activation value (12 bits).
const ACT_MAX: f32 = 2047.0;
/// Inputs whose products are summed in i32 before f32 takes over: `8192 * 2047 * 127 < 2^31`.
const CHUNK: usize = 8192;

/// Which kernel runs: the instruction set narrowed to what the integer products need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Scalar,
    Avx2,
    Vnni,
}

impl Path {
    fn for_isa(isa: Isa) -> Path {
        let isa = isa.min(Isa::detected());
        #[cfg(target_arch = "x86_64")]
        {
            let vnni =
                std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl");
            if isa == Isa::Avx512 && vnni {
                return Path::Vnni;
            }
            if isa >= Isa::Avx2 {
                return Path::Avx2;
            }
        }
        Path::Scalar
    }
}

/// A weight matrix `[outputs, inputs]` in 8 bits, one scale per output.
#[derive(Debug, Clone)]
pub struct Matrix {
    outputs: usize,
    inputs: usize,
    /// `inputs` rounded up to [`STEP`].
    stride: usize,
    /// `[outputs rounded up to NB, stride]`, zeros in the padding.
    data: Vec<i8>,
    scales: Vec<f32>,
}

impl Matrix {
    /// Quantizes `weight_t: [inputs, outputs]` (row-major), the layout `Linear` keeps.
    pub fn from_transposed(weight_t: &[f32], inputs: usize, outputs: usize) -> Option<Matrix> {
        if inputs == 0 || weight_t.len() != inputs * outputs {
            return None;
        }
        let stride = inputs.next_multiple_of(STEP);
        let mut data = vec![0i8; outputs.next_multiple_of(NB) * stride];
        let mut scales = vec![0f32; outputs];
        let mut column = vec![0f32; inputs];
        for (j, scale) in scales.iter_mut().enumerate() {
            column.iter_mut().enumerate().for_each(|(t, v)| *v = weight_t[t * outputs + j]);
            *scale = quantize_row(&column, 127.0, &mut data[j * stride..j * stride + inputs]);
        }
        Some(Matrix { outputs, inputs, stride, data, scales })
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `y = x W^T + bias` for `x: [m, inputs]`, written to `y: [m, outputs]`, on the widest path that
    /// [`Isa::active`] allows.
    pub fn product(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        self.matmul(Path::for_isa(Isa::active()), x, bias, y);
    }

    /// `y = x W^T + bias` for `x: [m, inputs]`, written to `y: [m, outputs]`.
    fn matmul(&self, path: Path, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let acts = Activations::quantize(x, self.inputs, self.stride);
        // Tasks of whole row tiles; small batches are split finer so every thread has work.
        let tiles = acts.scales.len() / MR;
        let per_task = (tiles / (4 * rayon::current_num_threads())).clamp(1, 16) * MR;
        y.par_chunks_mut(per_task * self.outputs).enumerate().for_each(|(task, y)| {
            let rows = task * per_task..task * per_task + y.len() / self.outputs;
            match path {
                // SAFETY: `Path::for_isa` chose this path only where the processor has these features.
                #[cfg(target_arch = "x86_64")]
                Path::Vnni => unsafe { x86::rows_vnni(self, &acts, rows, bias, y) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => unsafe { x86::rows_avx2(self, &acts, rows, bias, y) },
                _ => rows_with(self, &acts, rows, bias, y, tile_scalar),
            }
        });
    }
}

/// Activations `[m rounded up to MR, stride]` in 12 bits (16-bit lanes) with one scale per row.
struct Activations {
    data: Vec<i16>,
    scales: Vec<f32>,
}

impl Activations {
    fn quantize(x: &[f32], inputs: usize, stride: usize) -> Activations {
        let rows = (x.len() / inputs).next_multiple_of(MR);
        let mut data = vec![0i16; rows * stride];
        let mut scales = vec![0f32; rows];
        data.par_chunks_exact_mut(stride)
            .zip(scales.par_iter_mut())
            .zip(x.par_chunks_exact(inputs))
            .for_each(|((q, scale), x)| *scale = quantize_row(x, ACT_MAX, &mut q[..inputs]));
        Activations { data, scales }
    }
}

/// Writes `round(x / scale)` into `q` and returns `scale = max|x| / limit` (0 for a row of zeros, NaN
/// for a row with a NaN or an infinity, which makes its outputs NaN as the f32 product's would be).
fn quantize_row<T: TryFrom<i32> + Default>(x: &[f32], limit: f32, q: &mut [T]) -> f32 {
    // Adding 1.5 * 2^23 rounds to the nearest integer (ties to even) without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let nan = x.iter().fold(false, |nan, v| nan | v.is_nan());
    if max == 0.0 || !max.is_finite() || nan {
        q.fill_with(T::default);
        return if max == 0.0 { 0.0 } else { f32::NAN };
    }
    let inv = limit / max;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = T::try_from(((v * inv + ROUND) - ROUND) as i32).unwrap_or_default();
    }
    max / limit
}

/// The integer sums of one tile over one chunk of inputs: `MR` activation rows against `NR` weight
/// rows, as `[r * NR + c]`.
type Tile = [i32; MR * NR];

/// Rows `rows` of the output (`y` holds exactly them), block by block of outputs, with `tile` computing
/// each micro-tile; inlined into each path's function so the kernel is compiled for its instructions.
#[inline(always)]
fn rows_with(
    w: &Matrix,
    acts: &Activations,
    rows: Range<usize>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    tile: impl Fn(&Matrix, &Activations, usize, usize, Range<usize>) -> Tile,
) {
    let n = w.outputs;
    for block in (0..n).step_by(NB) {
        for r0 in rows.clone().step_by(MR) {
            for j0 in (block..(block + NB).min(n)).step_by(NR) {
                let mut sums = [0f32; MR * NR];
                for start in (0..w.stride).step_by(CHUNK) {
                    let chunk = tile(w, acts, r0, j0, start..(start + CHUNK).min(w.stride));
                    sums.iter_mut().zip(chunk).for_each(|(sum, v)| *sum += v as f32);
                }
                for r in 0..MR.min(rows.end - r0) {
                    let row = &mut y[(r0 + r - rows.start) * n..][..n];
                    for c in 0..NR.min(n - j0) {
                        let j = j0 + c;
                        let b = bias.map_or(0.0, |b| b[j]);
                        row[j] = sums[r * NR + c] * (acts.scales[r0 + r] * w.scales[j]) + b;
                    }
                }
            }
        }
    }
}

fn tile_scalar(w: &Matrix, acts: &Activations, r0: usize, j0: usize, inputs: Range<usize>) -> Tile {
    let s = w.stride;
    let mut sums = [0i32; MR * NR];
    for r in 0..MR {
        let a = &acts.data[(r0 + r) * s..][inputs.clone()];
        for c in 0..NR {
            let wr = &w.data[(j0 + c) * s..][inputs.clone()];
            sums[r * NR + c] = a.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{rows_with, Activations, Matrix, Tile, MR, NR, STEP};

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_avx2(
        w: &Matrix,
        acts: &Activations,
        rows: Range<usize>,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        // SAFETY: this function has AVX2; see `tile` for the bounds.
        rows_with(w, acts, rows, bias, y, |w, a, r0, j0, inputs| unsafe {
            tile(w, a, r0, j0, inputs, |acc, a, w| _mm256_add_epi32(acc, _mm256_madd_epi16(a, w)))
        });
    }

    #[target_feature(enable = "avx512vnni,avx512vl,avx2")]
    pub(super) unsafe fn rows_vnni(
        w: &Matrix,
        acts: &Activations,
        rows: Range<usize>,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        // SAFETY: this function has AVX-512 VNNI on 256-bit vectors; see `tile` for the bounds.
        rows_with(w, acts, rows, bias, y, |w, a, r0, j0, inputs| unsafe {
            tile(w, a, r0, j0, inputs, |acc, a, w| _mm256_dpwssd_epi32(acc, a, w))
        });
    }

    /// One micro-tile: `acc + a * w` over pairs of 16-bit lanes summed into i32 (`madd`), the weights
    /// widened from 8 bits as they are loaded.
    ///
    /// SAFETY: the caller has AVX2 (and what `madd` uses). Activation rows `r0..r0 + MR` exist (the
    /// rows are padded to MR) and weight rows `j0..j0 + NR` too (padded to NB, a multiple of NR), each
    /// `stride` values; `inputs` lies within `0..stride` and starts and ends at multiples of STEP.
    #[inline(always)]
    unsafe fn tile(
        w: &Matrix,
        acts: &Activations,
        r0: usize,
        j0: usize,
        inputs: Range<usize>,
        madd: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    ) -> Tile {
        let s = w.stride;
        debug_assert!((r0 + MR) * s <= acts.data.len() && (j0 + NR) * s <= w.data.len());
        let (a, b) = (acts.data[r0 * s..].as_ptr(), w.data[j0 * s..].as_ptr());
        // SAFETY: the caller has the instructions, and the loads stay within the rows (the caller's bounds).
        unsafe {
            let mut acc = [[_mm256_setzero_si256(); NR]; MR];
            for t in inputs.step_by(STEP) {
                let wv: [__m256i; NR] =
                    std::array::from_fn(|c| _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(c * s + t) as *const __m128i)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_loadu_si256(a.add(r * s + t) as *const __m256i);
                    for (acc, &wc) in acc.iter_mut().zip(&wv) {
                        *acc = madd(*acc, av, wc);
                    }
                }
            }
            reduce(acc)
        }
    }

    /// The eight lanes of each accumulator summed, as `[r * NR + c]`.
    ///
    /// SAFETY: the caller has AVX2.
    #[inline(always)]
    unsafe fn reduce(acc: [[__m256i; NR]; MR]) -> Tile {
        // SAFETY: the caller has AVX2; the stores write the 8 values of `sums`.
        unsafe {
            // Each 128-bit half of `hadd(hadd(x0, x1), hadd(x2, x3))` holds, for x0..x3, the sum of that
            // half's four lanes; adding the halves gives the four totals in order.
            let pair = |x: [__m256i; NR], y: [__m256i; NR]| {
                let h = _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(y[0], y[1]));
                _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
            };
            let mut sums = [0i32; MR * NR];
            _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, pair(acc[0], acc[1]));
            _mm_storeu_si128(sums.as_mut_ptr().add(4) as *mut __m128i, pair(acc[2], acc[3]));
            sums
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1), with a few large ones (the outliers real activations have).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0;
                if i % 97 == 3 {
                    v * 20.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn paths() -> Vec<Path> {
        let mut paths: Vec<Path> = Isa::supported().map(Path::for_isa).collect();
        paths.dedup();
        paths
    }

    /// Every path gives the same integer sums, bit for bit, at sizes with partial tiles, blocks and steps.
    #[test]
    fn every_path_agrees_with_the_scalar_code() {
        for (m, k, n) in [(1, 1, 1), (3, 31, 5), (5, 33, 17), (9, 64, 40), (13, 100, 3), (2, 8200, 3)] {
            let (x, wt, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            let w = Matrix::from_transposed(&wt, k, n).unwrap();
            let mut want = vec![0f32; m * n];
            w.matmul(Path::Scalar, &x, Some(&bias), &mut want);
            for path in paths() {
                let mut got = vec![f32::NAN; m * n];
                w.matmul(path, &x, Some(&bias), &mut got);
                assert_eq!(got, want, "{path:?} at m={m} k={k} n={n}");
            }
        }
    }

    /// The quantized product against the f32 one, within what rounding each value to its row's step
    /// (half a step of the activation row and of the weight row) can move it.
    #[test]
    fn the_product_is_within_the_rounding_bound_of_the_f32_product() {
        let (m, k, n) = (7, 96, 24);
        let (x, wt) = (values(m * k, 4), values(k * n, 5));
        let w = Matrix::from_transposed(&wt, k, n).unwrap();
        let step = |v: &mut dyn Iterator<Item = f32>| v.fold(0f64, |s, v| s.max(v.abs() as f64)) / 127.0;
        for path in paths() {
            let mut got = vec![0f32; m * n];
            w.matmul(path, &x, None, &mut got);
            for i in 0..m {
                let dx = step(&mut x[i * k..(i + 1) * k].iter().copied()) * 127.0 / ACT_MAX as f64;
                for j in 0..n {
                    let dw = step(&mut (0..k).map(|t| wt[t * n + j]));
                    let (mut exact, mut bound) = (0f64, 1e-4);
                    for t in 0..k {
                        let (a, b) = (x[i * k + t] as f64, wt[t * n + j] as f64);
                        exact += a * b;
                        bound += a.abs() * dw / 2.0 + b.abs() * dx / 2.0 + dx * dw / 4.0;
                    }
                    let err = (got[i * n + j] as f64 - exact).abs();
                    assert!(
                        err <= bound,
                        "{path:?} ({i}, {j}): {} vs {exact}, error {err} over the bound {bound}",
                        got[i * n + j]
                    );
                }
            }
        }
    }

    /// Sums past what i32 holds (every product at its largest) come out whole: they are summed per chunk.
    #[test]
    fn the_largest_sums_do_not_overflow() {
        let k = 3 * CHUNK;
        let w = Matrix::from_transposed(&vec![1.0; k], k, 1).unwrap();
        for path in paths() {
            let mut y = [0f32; 1];
            w.matmul(path, &vec![-1.0; k], None, &mut y);
            assert_eq!(y[0], -(k as f32), "{path:?}");
        }
    }

    #[test]
    fn rows_of_zeros_give_the_bias() {
        let w = Matrix::from_transposed(&values(8 * 3, 6), 8, 3).unwrap();
        for path in paths() {
            let mut y = vec![f32::NAN; 6];
            w.matmul(path, &[0.0; 16], Some(&[1.0, 2.0, 3.0]), &mut y);
            assert_eq!(y, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        }
    }

    #[test]
    fn quantized_rows_round_to_the_nearest_step() {
        let mut q = [0i8; 4];
        let scale = quantize_row(&[1.27, -0.5, 0.004, 0.006], 127.0, &mut q);
        assert!((scale - 0.01).abs() < 1e-9, "{scale}");
        assert_eq!(q, [127, -50, 0, 1]);
        assert!(quantize_row(&[1.0, f32::NAN], 127.0, &mut q[..2]).is_nan());
        assert!(quantize_row(&[1.0, f32::INFINITY], 127.0, &mut q[..2]).is_nan());
    }
}
