//! 8-bit products for inference on the CPU: `y = x W^T + bias` with the weights quantized once to 8
//! bits and the activations as they arrive, both per block of [`BLOCK`] inputs (of an output, of a
//! row), each block with its own step (symmetric, `max|v| / levels`). The products are summed exactly
//! in i32 per block, and each block's sum, times its two steps, is added to an f32 sum. GGUF's Q8_0
//! weights, once read, keep their codes and steps exactly: Q8_0 rounds each block to `max|w| / 127` too.
//!
//! Why blocks: decoder activations have outlier channels (about 20 times a row's RMS after the norms),
//! and weights outlier inputs, so one step per row or output leaves the other values only a few
//! levels; a block's step confines an outlier's cost to its block.
//!
//! The activations take 16 bits (levels 32767) where the products are of 16-bit values anyway, and 8
//! bits (levels 127) where byte products run twice as many per instruction. Rounded to 8 bits, they
//! move a model's embeddings more than the 8-bit weights do.
//!
//! The weights are packed in panels of outputs, the inputs of each output grouped so that one
//! 32-bit lane holds a group: a vector of weights then meets one group of activations broadcast to
//! every lane (an outer product), with no horizontal sums. How a group is packed depends on the path
//! that multiplies it, chosen once, when the matrix is packed:
//! - AVX-512 VNNI (`vpdpbusd`: 64 byte products per instruction, four times the f32 FMA's 16)
//!   multiplies unsigned bytes by signed ones, so groups are four bytes `w + 128`, and each block's sum
//!   starts at `-128 * sum(a)` to cancel the offset; panels of [`ZMM_PANEL`] outputs.
//! - AVX-VNNI (the same `vpdpbusd` on 256-bit vectors, on processors with AVX2 but maybe not AVX-512)
//!   takes the same bytes in panels of [`YMM_PANEL`] outputs.
//! - AVX2 (`vpmaddwd`: 16 products of 16-bit values per instruction, summed in pairs) and the portable
//!   code take groups of two 16-bit weights, and activations in 16 bits (a block's sum is at most
//!   `32 * 127 * 32767 < 2^31`); panels of [`YMM_PANEL`] outputs.
//!
//! Weights that are already 4-bit, each block of [`BLOCK`] inputs of an output on a grid of 16 levels
//! `min + step * code` (as GGUF's Q4_0 and Q4_1 weights are once read), keep those codes, exactly, with
//! each block's grid: groups of four codes `0..=15` in bytes, for every path. They are unsigned, so AVX2
//! multiplies them with `vpmaddubsw` (32 byte products per instruction, twice `vpmaddwd`'s), whose
//! 16-bit pair sums cannot overflow in a block (8 * 2 * 15 * 127 < 2^15), and both VNNIs with `vpdpbusd`. A
//! block's sum is `step * scale * sum((code - 8) * a) + center * sum(x)`, with `center = min + 8 * step`
//! and the block's f32 sum of the inputs: centring the codes halves the error the rounded activations
//! bring, and the integer sum starts at `-8 * sum(a)` to centre them.
//!
//! Every path computes the same integer sums and the same f32 operations in the same order, so they
//! agree bit for bit, except on 8-bit weights, where the VNNI paths' activations are rounded to 8 bits
//! and the other paths' to 16 (the two VNNI paths agree bit for bit).

use std::ops::Range;

use rayon::prelude::*;

use super::isa::Isa;

/// Inputs per activation scale.
const BLOCK: usize = 32;
/// Outputs per panel on the AVX-512 VNNI path: one micro-tile wide (three 512-bit vectors of i32 sums).
const ZMM_PANEL: usize = 48;
/// Outputs per panel on the other paths: one AVX2 micro-tile wide (two 256-bit vectors). Narrow
/// panels stay in the nearest cache across the row tiles that reuse them.
const YMM_PANEL: usize = 16;
/// Activation rows per micro-tile.
const MR: usize = 4;
/// The 4-bit code that the products centre on.
const CENTER: i32 = 8;
/// What `w + 128` stores for a weight of zero (the padding of byte groups).
const OFFSET: u8 = 128;

/// Which kernel runs: the instruction set narrowed to what the integer products need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512Vnni,
}

impl Path {
    fn for_isa(isa: Isa) -> Path {
        let isa = isa.narrowed();
        #[cfg(target_arch = "x86_64")]
        {
            if isa == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512vnni") {
                return Path::Avx512Vnni;
            }
            if isa >= Isa::AvxVnni && std::arch::is_x86_feature_detected!("avxvnni") {
                return Path::AvxVnni;
            }
            if isa >= Isa::Avx2 {
                return Path::Avx2;
            }
        }
        Path::Scalar
    }

    /// Outputs per panel of the weights packed for this path.
    fn panel(self) -> usize {
        match self {
            Path::Avx512Vnni => ZMM_PANEL,
            Path::AvxVnni | Path::Avx2 | Path::Scalar => YMM_PANEL,
        }
    }
}

/// Packed weights, `[outputs / panel][stride / group][panel][group]`.
#[derive(Debug, Clone)]
enum Packed {
    /// Groups of four bytes, `w + 128` (the VNNI paths).
    Bytes(Vec<u8>),
    /// Groups of two 16-bit weights (the AVX2 and portable paths).
    Words(Vec<i16>),
    /// Groups of four 4-bit codes, one per byte (every path), with the centre of each block's grid,
    /// `min + CENTER * step`, laid out as [`Matrix::steps`].
    FourBit(Vec<u8>, Vec<f32>),
}

/// A weight matrix `[outputs, inputs]` in 8 bits, or in 4-bit codes on a grid, with a step per block of
/// each output, and its bias, packed for the path that multiplies it.
#[derive(Debug, Clone)]
pub struct Matrix {
    path: Path,
    outputs: usize,
    inputs: usize,
    /// `inputs` rounded up to [`BLOCK`].
    stride: usize,
    weights: Packed,
    /// The step of each block of each output, `[outputs / panel][stride / BLOCK][panel]`, zeros up to a
    /// whole panel.
    steps: Vec<f32>,
    /// Per output (zeros without a bias), up to a whole panel.
    bias: Vec<f32>,
}

impl Matrix {
    /// Quantizes the weights `rows: [outputs, inputs]` (row-major, as Hugging Face stores them) with
    /// `bias: [outputs]`, for the widest path that [`Isa::active`] allows.
    pub fn from_rows(rows: &[f32], inputs: usize, outputs: usize, bias: Option<&[f32]>) -> Option<Matrix> {
        Matrix::pack(Path::for_isa(Isa::active()), rows, inputs, outputs, bias)
    }

    fn pack(path: Path, rows: &[f32], inputs: usize, outputs: usize, bias: Option<&[f32]>) -> Option<Matrix> {
        if inputs == 0 || rows.len() != inputs * outputs || bias.is_some_and(|b| b.len() != outputs) {
            return None;
        }
        let stride = inputs.next_multiple_of(BLOCK);
        let (weights, steps) = match on_grids(rows, inputs, stride, path.panel()) {
            Some((codes, steps, centers)) => {
                let codes = interleave(&codes, stride, path.panel(), 4, |v| v as u8);
                (Packed::FourBit(codes, centers), steps)
            }
            None => eight_bit(path, rows, inputs, stride),
        };
        let mut padded_bias = vec![0f32; outputs.next_multiple_of(path.panel())];
        if let Some(bias) = bias {
            padded_bias[..outputs].copy_from_slice(bias);
        }
        Some(Matrix { path, outputs, inputs, stride, weights, steps, bias: padded_bias })
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `y = x W^T + bias` for `x: [m, inputs]`, written to `y: [m, outputs]`.
    pub fn product(&self, x: &[f32], y: &mut [f32]) {
        if x.is_empty() {
            return;
        }
        let (s, k) = (self.stride, self.inputs);
        match (self.path, &self.weights) {
            // SAFETY (every x86 arm): the path was chosen where the processor has its features;
            // `r0` and `panel` come from `fill`, within the padded rows and panels.
            #[cfg(target_arch = "x86_64")]
            (Path::Avx512Vnni, Packed::Bytes(w)) => {
                let acts = Activations::quantize(x, k, s, |x, q, scales, starts| unsafe {
                    x86::quantize_row_avx512(x, q, scales, starts);
                });
                self.split(acts.rows, y, |r0, panel, out| unsafe { x86::tile_vnni(self, w, &acts, r0, panel, out) });
            }
            #[cfg(target_arch = "x86_64")]
            (Path::AvxVnni, Packed::Bytes(w)) => {
                let acts = Activations::quantize(x, k, s, |x, q, scales, starts| unsafe {
                    x86::quantize_row_bytes_avx2(x, q, scales, starts);
                });
                self.split(acts.rows, y, |r0, panel, out| unsafe { x86::tile_avxvnni(self, w, &acts, r0, panel, out) });
            }
            #[cfg(target_arch = "x86_64")]
            (Path::Avx2, Packed::Words(w)) => {
                let acts = Activations::quantize(x, k, s, |x, q, scales, starts| unsafe {
                    x86::quantize_row_avx2(x, q, scales, starts);
                });
                self.split(acts.rows, y, |r0, panel, out| unsafe { x86::tile_avx2(self, w, &acts, r0, panel, out) });
            }
            (_, Packed::Words(w)) => {
                let acts = Activations::quantize(x, k, s, quantize_row);
                self.split(acts.rows, y, |r0, panel, out| tile_scalar(self, w, &acts, r0, panel, out));
            }
            #[cfg(target_arch = "x86_64")]
            (Path::Avx512Vnni, Packed::FourBit(w, centers)) => {
                let acts = Activations::quantize(x, k, s, |x, q, scales, starts| unsafe {
                    x86::quantize_row_avx512(x, q, scales, starts);
                })
                .centred(x, k);
                self.split(acts.rows, y, |r0, panel, out| unsafe {
                    x86::tile4_vnni(self, w, centers, &acts, r0, panel, out);
                });
            }
            #[cfg(target_arch = "x86_64")]
            (Path::Avx2 | Path::AvxVnni, Packed::FourBit(w, centers)) => {
                let acts = Activations::quantize(x, k, s, |x, q, scales, starts| unsafe {
                    x86::quantize_row_bytes_avx2(x, q, scales, starts);
                })
                .centred(x, k);
                let tile = if self.path == Path::AvxVnni { x86::tile4_avxvnni } else { x86::tile4_avx2 };
                self.split(acts.rows, y, |r0, panel, out| unsafe { tile(self, w, centers, &acts, r0, panel, out) });
            }
            (_, Packed::FourBit(w, centers)) => {
                let acts = Activations::<i8>::quantize(x, k, s, quantize_row).centred(x, k);
                self.split(acts.rows, y, |r0, panel, out| tile4_scalar(self, w, centers, &acts, r0, panel, out));
            }
            (_, Packed::Bytes(_)) => unreachable!("bytes are packed for the VNNI paths only"),
        }
    }

    /// Runs `tile` over the `rows x outputs` result `y`. Tasks take whole row tiles; when there are too
    /// few rows to keep every thread busy, they take panels instead.
    fn split<const W: usize>(&self, m: usize, y: &mut [f32], tile: impl Fn(usize, usize, Tile<W>) + Sync) {
        let (n, threads) = (self.outputs, rayon::current_num_threads());
        let (tiles, panels) = (m.div_ceil(MR), n.div_ceil(W));
        if tiles >= 2 * threads || panels == 1 {
            let per_task = (tiles / (4 * threads)).clamp(1, 16) * MR;
            y.par_chunks_mut(per_task * n).enumerate().for_each(|(task, y)| {
                let rows = task * per_task..task * per_task + y.len() / n;
                self.fill(&tile, rows, 0..panels, y, n);
            });
        } else {
            let per_task = panels.div_ceil(4 * threads);
            let parts: Vec<(usize, Vec<f32>)> = (0..panels.div_ceil(per_task))
                .into_par_iter()
                .map(|task| {
                    let panels = task * per_task..((task + 1) * per_task).min(panels);
                    let width = (panels.end * W).min(n) - panels.start * W;
                    let mut part = vec![0f32; m * width];
                    self.fill(&tile, 0..m, panels.clone(), &mut part, width);
                    (panels.start * W, part)
                })
                .collect();
            for (col, part) in parts {
                let width = part.len() / m.max(1);
                for (y, part) in y.chunks_exact_mut(n).zip(part.chunks_exact(width)) {
                    y[col..col + width].copy_from_slice(part);
                }
            }
        }
    }

    /// Rows `rows` of the output for the outputs of `panels`, written to `out`: row `r` of `rows` at
    /// `out[(r - rows.start) * width..]`, output `j` at column `j - panels.start * W`.
    fn fill<const W: usize>(
        &self,
        tile: &impl Fn(usize, usize, Tile<W>),
        rows: Range<usize>,
        panels: Range<usize>,
        out: &mut [f32],
        width: usize,
    ) {
        let first = panels.start * W;
        for panel in panels {
            let (j0, count) = (panel * W, W.min(self.outputs - panel * W));
            for r0 in rows.clone().step_by(MR) {
                let (at, whole_rows) = ((r0 - rows.start) * width + j0 - first, MR.min(rows.end - r0));
                if whole_rows == MR && count == W {
                    tile(r0, panel, Tile { data: &mut out[at..], stride: width });
                    continue;
                }
                // A tile at the edge goes through a buffer of its own.
                let mut edge = [[0f32; W]; MR];
                tile(r0, panel, Tile { data: edge.as_flattened_mut(), stride: W });
                for (r, edge) in edge.iter().take(whole_rows).enumerate() {
                    out[at + r * width..][..count].copy_from_slice(&edge[..count]);
                }
            }
        }
    }
}

/// The weights `rows: [outputs, inputs]` in 8 bits, one step per block of each output, packed for
/// `path`, with the steps (the panels in parallel).
fn eight_bit(path: Path, rows: &[f32], inputs: usize, stride: usize) -> (Packed, Vec<f32>) {
    let (panel, blocks) = (path.panel(), stride / BLOCK);
    let padded = (rows.len() / inputs).next_multiple_of(panel);
    let (mut codes, mut steps) = (vec![0i8; padded * stride], vec![0f32; padded * blocks]);
    let panels = codes.par_chunks_mut(panel * stride).zip(steps.par_chunks_mut(panel * blocks));
    panels.zip(rows.par_chunks(panel * inputs)).for_each(|((codes, steps), rows)| {
        for (o, (codes, row)) in codes.chunks_exact_mut(stride).zip(rows.chunks_exact(inputs)).enumerate() {
            for (b, values) in row.chunks(BLOCK).enumerate() {
                steps[b * panel + o] = quantize(values, &mut codes[b * BLOCK..][..values.len()]);
            }
        }
    });
    let weights = match path {
        Path::Avx512Vnni | Path::AvxVnni => {
            Packed::Bytes(interleave(&codes, stride, panel, 4, |v| v.wrapping_add_unsigned(OFFSET) as u8))
        }
        Path::Avx2 | Path::Scalar => Packed::Words(interleave(&codes, stride, panel, 2, i16::from)),
    };
    (weights, steps)
}

/// The 4-bit codes `[padded outputs, stride]` of the weights `rows: [outputs, inputs]`, with the steps
/// and centres of their grids in panels of `panel` outputs (laid out as [`Matrix::steps`]), when every
/// block of every row lies on a grid; else `None`. The panels are read in parallel.
fn on_grids(rows: &[f32], inputs: usize, stride: usize, panel: usize) -> Option<(Vec<i8>, Vec<f32>, Vec<f32>)> {
    let (padded, blocks) = ((rows.len() / inputs).next_multiple_of(panel), stride / BLOCK);
    let mut codes = vec![0i8; padded * stride];
    let (mut steps, mut centers) = (vec![0f32; padded * blocks], vec![0f32; padded * blocks]);
    let grids = steps.par_chunks_mut(panel * blocks).zip(centers.par_chunks_mut(panel * blocks));
    let panels = codes.par_chunks_mut(panel * stride).zip(grids).zip(rows.par_chunks(panel * inputs));
    panels.try_for_each(|((codes, (steps, centers)), rows)| {
        for (o, (codes, row)) in codes.chunks_exact_mut(stride).zip(rows.chunks_exact(inputs)).enumerate() {
            for (b, values) in row.chunks(BLOCK).enumerate() {
                let at = b * panel + o;
                (steps[at], centers[at]) = grid(values, &mut codes[b * BLOCK..][..values.len()])?;
            }
        }
        Some(())
    })?;
    Some((codes, steps, centers))
}

/// `(step, min + CENTER * step)` when every value is `min + step * code` for a `code` in `0..=15`, to
/// f32's precision (within 2^-20 of the largest magnitude), with the codes written to `codes`.
fn grid(values: &[f32], codes: &mut [i8]) -> Option<(f32, f32)> {
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (min, max) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (low, tolerance) = (f64::from(min), f64::from(min.abs().max(max.abs())) / f64::from(1 << 20));
    // Fewer than 16 levels are used when the values do not span the whole grid (as in Q4_0's blocks).
    (1..=15).rev().find_map(|levels| {
        let step = (f64::from(max) - low) / f64::from(levels);
        for (code, &v) in codes.iter_mut().zip(values) {
            // `v >= min`: adding a half and truncating rounds to the nearest code.
            let c = if step == 0.0 { 0 } else { ((f64::from(v) - low) / step + 0.5) as u8 };
            if (low + step * f64::from(c) - f64::from(v)).abs() > tolerance {
                return None;
            }
            *code = c as i8;
        }
        Some((step as f32, (low + step * f64::from(CENTER)) as f32))
    })
}

/// Rows of `codes: [padded outputs, stride]` packed in panels of `width` outputs, in groups of `group`
/// inputs, each code turned into its stored form by `store` (the panels in parallel).
fn interleave<T: Copy + Default + Send>(
    codes: &[i8],
    stride: usize,
    width: usize,
    group: usize,
    store: impl Fn(i8) -> T + Sync,
) -> Vec<T> {
    let mut packed = vec![T::default(); codes.len()];
    packed.par_chunks_exact_mut(width * stride).zip(codes.par_chunks_exact(width * stride)).for_each(
        |(panel, codes)| {
            for (o, row) in codes.chunks_exact(stride).enumerate() {
                for (t, &v) in row.iter().enumerate() {
                    panel[(t / group * width + o) * group + t % group] = store(v);
                }
            }
        },
    );
    packed
}

/// Where a micro-tile's results go, `MR` rows by the `W` outputs of a panel: row `r` at
/// `data[r * stride..]`.
struct Tile<'a, const W: usize> {
    data: &'a mut [f32],
    stride: usize,
}

impl<const W: usize> Tile<'_, W> {
    fn row(&mut self, r: usize) -> &mut [f32; W] {
        (&mut self.data[r * self.stride..][..W]).try_into().expect("a row of a panel's outputs")
    }
}

/// A quantized value as a kernel reads it: a byte (a weight, or an activation against the VNNI paths'
/// offset weights or 4-bit codes), or a 16-bit activation against 16-bit weights.
trait Code: Copy + Default + Into<i32> + Send + Sync {
    /// The largest magnitude of a code.
    const LEVELS: i32;
    /// The offset of the weights this code meets, which each block's start cancels.
    const OFFSET: i32;
    /// `v`, which is within `-LEVELS..=LEVELS`.
    fn new(v: i32) -> Self;
}

impl Code for i8 {
    const LEVELS: i32 = i8::MAX as i32;
    const OFFSET: i32 = OFFSET as i32;
    fn new(v: i32) -> i8 {
        v as i8
    }
}

impl Code for i16 {
    const LEVELS: i32 = i16::MAX as i32;
    const OFFSET: i32 = 0;
    fn new(v: i32) -> i16 {
        v as i16
    }
}

/// Activations `[rows, stride]` in 8 or 16 bits, with per block of each row its scale and the start of its
/// integer sum (`-offset * sum(a)`, which cancels the weights' offset, or `-CENTER * sum(a)` against
/// 4-bit codes).
struct Activations<T> {
    /// The rows of `x`.
    rows: usize,
    /// Rows padded with zeros to a whole micro-tile.
    data: Vec<T>,
    scales: Vec<f32>,
    starts: Vec<i32>,
    /// Per block, the f32 sum of the inputs (for 4-bit weights only; else empty).
    sums: Vec<f32>,
}

impl<T: Code> Activations<T> {
    /// Quantizes `x: [rows, inputs]`, each row by `row` (the path's version of [`quantize_row`]).
    fn quantize(
        x: &[f32],
        inputs: usize,
        stride: usize,
        row: impl Fn(&[f32], &mut [T], &mut [f32], &mut [i32]) + Sync,
    ) -> Activations<T> {
        let rows = x.len() / inputs;
        let blocks = stride / BLOCK;
        let padded = rows.next_multiple_of(MR);
        let mut data = vec![T::default(); padded * stride];
        let (mut scales, mut starts) = (vec![0f32; padded * blocks], vec![0i32; padded * blocks]);
        data.par_chunks_exact_mut(stride)
            .zip(scales.par_chunks_exact_mut(blocks))
            .zip(starts.par_chunks_exact_mut(blocks))
            .zip(x.par_chunks_exact(inputs))
            .for_each(|(((q, scales), starts), x)| row(x, q, scales, starts));
        Activations { rows, data, scales, starts, sums: Vec::new() }
    }
}

impl Activations<i8> {
    /// For 4-bit codes: each block's start becomes `-CENTER * sum(a)` (the row quantizers leave
    /// `-OFFSET * sum(a)`, which divides exactly), and its sum of `x: [rows, inputs]` is added, in one
    /// fixed order (eight running sums, then pairwise) that every path shares.
    fn centred(mut self, x: &[f32], inputs: usize) -> Activations<i8> {
        const { assert!(OFFSET as i32 % CENTER == 0) };
        let blocks = inputs.div_ceil(BLOCK);
        self.starts.iter_mut().for_each(|start| *start /= OFFSET as i32 / CENTER);
        self.sums = vec![0f32; self.scales.len()];
        self.sums.par_chunks_exact_mut(blocks).zip(x.par_chunks_exact(inputs)).for_each(|(sums, x)| {
            for (sum, x) in sums.iter_mut().zip(x.chunks(BLOCK)) {
                let mut lanes = [0f32; 8];
                for chunk in x.chunks(8) {
                    lanes.iter_mut().zip(chunk).for_each(|(lane, &v)| *lane += v);
                }
                let [a, b, c, d, e, f, g, h] = lanes;
                *sum = ((a + b) + (c + d)) + ((e + f) + (g + h));
            }
        });
        self
    }
}

/// One row of activations, block by block; inlined into each path's function so that the compiler
/// vectorises it for that path's instructions.
#[inline(always)]
fn quantize_row<T: Code>(x: &[f32], q: &mut [T], scales: &mut [f32], starts: &mut [i32]) {
    for (b, x) in x.chunks(BLOCK).enumerate() {
        let q = &mut q[b * BLOCK..][..x.len()];
        scales[b] = quantize(x, q);
        starts[b] = -T::OFFSET * q.iter().map(|&v| v.into()).sum::<i32>();
    }
}

/// Writes `round(x / scale)` into `q` and returns `scale = max|x| / T::LEVELS` (0 for values that are
/// all zero, NaN when one is a NaN or an infinity, which makes the outputs NaN as the f32 product's
/// would be).
#[inline(always)]
fn quantize<T: Code>(x: &[f32], q: &mut [T]) -> f32 {
    // Adding 1.5 * 2^23 rounds to the nearest integer (ties to even) without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let bits = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    let (mut scale, mut start) = (0f32, 0);
    let Some(inv) = inverse_step(bits, q, &mut scale, &mut start) else { return scale };
    for (q, &v) in q.iter_mut().zip(x) {
        // Within the levels: |v| * inv <= LEVELS up to rounding, which stays below LEVELS + 0.5.
        *q = T::new(((v * inv + ROUND) - ROUND) as i32);
    }
    scale
}

/// From `bits`, the largest magnitude's bits (for values without their sign, integer order is float
/// order, and every NaN or infinity is at least `f32::INFINITY`'s bits): the block's `scale` and
/// `T::LEVELS / max` to quantize it with, or, for a block of zeros or one with a NaN or an infinity, a block
/// of zeros whose scale is 0 or NaN.
#[inline(always)]
fn inverse_step<T: Code>(bits: u32, q: &mut [T], scale: &mut f32, start: &mut i32) -> Option<f32> {
    if bits == 0 || bits >= f32::INFINITY.to_bits() {
        q.fill(T::default());
        *start = 0;
        *scale = if bits == 0 { 0.0 } else { f32::NAN };
        return None;
    }
    let max = f32::from_bits(bits);
    let levels = T::LEVELS as f32;
    *scale = max / levels;
    Some(levels / max)
}

/// The portable micro-tile, on groups of two 16-bit weights.
fn tile_scalar(
    w: &Matrix,
    weights: &[i16],
    acts: &Activations<i16>,
    r0: usize,
    panel: usize,
    mut out: Tile<YMM_PANEL>,
) {
    let (s, blocks) = (w.stride, w.stride / BLOCK);
    let weights = &weights[panel * YMM_PANEL * s..][..YMM_PANEL * s];
    for r in 0..MR {
        let a = &acts.data[(r0 + r) * s..][..s];
        for (o, out) in out.row(r).iter_mut().enumerate() {
            let mut sum = 0f32;
            for b in 0..blocks {
                let (at, g) = ((r0 + r) * blocks + b, (panel * blocks + b) * YMM_PANEL + o);
                let mut block = acts.starts[at];
                for t in b * BLOCK..(b + 1) * BLOCK {
                    block += i32::from(weights[(t / 2 * YMM_PANEL + o) * 2 + t % 2]) * i32::from(a[t]);
                }
                sum = (block as f32 * acts.scales[at]).mul_add(w.steps[g], sum);
            }
            *out = sum + w.bias[panel * YMM_PANEL + o];
        }
    }
}

/// The portable micro-tile on 4-bit codes.
fn tile4_scalar(
    w: &Matrix,
    codes: &[u8],
    centers: &[f32],
    acts: &Activations<i8>,
    r0: usize,
    panel: usize,
    mut out: Tile<YMM_PANEL>,
) {
    const W: usize = YMM_PANEL;
    let (s, blocks) = (w.stride, w.stride / BLOCK);
    let codes = &codes[panel * W * s..][..W * s];
    for r in 0..MR {
        let a = &acts.data[(r0 + r) * s..][..s];
        for (o, out) in out.row(r).iter_mut().enumerate() {
            let mut sum = 0f32;
            for b in 0..blocks {
                let (at, g) = ((r0 + r) * blocks + b, (panel * blocks + b) * W + o);
                let block = acts.starts[at]
                    + (b * BLOCK..(b + 1) * BLOCK)
                        .map(|t| i32::from(codes[(t / 4 * W + o) * 4 + t % 4]) * i32::from(a[t]))
                        .sum::<i32>();
                sum = (block as f32 * acts.scales[at]).mul_add(w.steps[g], sum);
                sum = centers[g].mul_add(acts.sums[at], sum);
            }
            *out = sum + w.bias[panel * W + o];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{inverse_step, quantize_row, Activations, Matrix, Tile, BLOCK, MR, OFFSET, YMM_PANEL, ZMM_PANEL};

    /// [`quantize_row`] with AVX-512, into bytes: each whole block in two vectors (the same rounding, so
    /// the same values), a partial last block by the portable code.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize_row_avx512(x: &[f32], q: &mut [i8], scales: &mut [f32], starts: &mut [i32]) {
        let whole = x.len() / BLOCK;
        for ((x, q), (scale, start)) in
            x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).zip(scales.iter_mut().zip(starts.iter_mut()))
        {
            // SAFETY: `x` holds 32 values and `q` 32 bytes.
            unsafe {
                let v = [_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))];
                let magnitude = |v| _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fff_ffff));
                let bits = _mm512_reduce_max_epu32(_mm512_max_epu32(magnitude(v[0]), magnitude(v[1])));
                let Some(inv) = inverse_step(bits, q, scale, start) else { continue };
                let inv = _mm512_set1_ps(inv);
                // Rounds to the nearest integer, ties to even: the portable code's rounding.
                let ints = v.map(|v| _mm512_cvtps_epi32(_mm512_mul_ps(v, inv)));
                _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(ints[0]));
                _mm_storeu_si128(q.as_mut_ptr().add(16) as *mut __m128i, _mm512_cvtepi32_epi8(ints[1]));
                *start = -i32::from(OFFSET) * _mm512_reduce_add_epi32(_mm512_add_epi32(ints[0], ints[1]));
            }
        }
        quantize_row(&x[whole * BLOCK..], &mut q[whole * BLOCK..], &mut scales[whole..], &mut starts[whole..]);
    }

    /// [`quantize_row`] with AVX2, into 16-bit values (whose weights carry no offset, so every start
    /// stays 0): each whole block in four vectors, a partial last block by the portable code.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_row_avx2(x: &[f32], q: &mut [i16], scales: &mut [f32], starts: &mut [i32]) {
        for_whole_blocks(x, q, scales, starts, |_, q, ints| {
            // Packing narrows with saturation (the values fit) and interleaves the 128-bit halves,
            // which the permute puts back in order.
            for (i, ints) in ints.chunks_exact(2).enumerate() {
                let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(ints[0], ints[1]));
                // SAFETY: `q` holds the block's 32 values.
                unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(16 * i) as *mut __m256i, words) };
            }
        });
    }

    /// [`quantize_row`] with AVX2, into bytes: each whole block in four vectors, a partial last block by
    /// the portable code.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_row_bytes_avx2(x: &[f32], q: &mut [i8], scales: &mut [f32], starts: &mut [i32]) {
        for_whole_blocks(x, q, scales, starts, |start, q, ints| {
            // Two packs narrow to bytes in the order 0-3 of each vector, then 4-7 of each, in each
            // 128-bit half; the permute puts the four-byte groups back in order.
            let bytes = _mm256_packs_epi16(_mm256_packs_epi32(ints[0], ints[1]), _mm256_packs_epi32(ints[2], ints[3]));
            let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: `q` holds the block's 32 bytes.
            unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, bytes) };
            let sums = _mm256_add_epi32(_mm256_add_epi32(ints[0], ints[1]), _mm256_add_epi32(ints[2], ints[3]));
            let mut lanes = [0i32; 8];
            // SAFETY: the store writes the 8 values of `lanes`.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums) };
            *start = -i32::from(OFFSET) * lanes.iter().sum::<i32>();
        });
    }

    /// Quantizes each whole block of `x` in four vectors of rounded values (the portable code's
    /// rounding, so the same values), which `store` writes to the block's `q` with its start; a block
    /// of zeros or with a NaN or an infinity as [`inverse_step`] writes it; a partial last block by
    /// the portable code.
    #[target_feature(enable = "avx2,fma")]
    fn for_whole_blocks<T: super::Code>(
        x: &[f32],
        q: &mut [T],
        scales: &mut [f32],
        starts: &mut [i32],
        store: impl Fn(&mut i32, &mut [T], [__m256i; 4]),
    ) {
        let whole = x.len() / BLOCK;
        for ((x, q), (scale, start)) in
            x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).zip(scales.iter_mut().zip(starts.iter_mut()))
        {
            // SAFETY: `x` holds 32 values.
            let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
            let magnitude = |v| _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fff_ffff));
            let m = v.map(magnitude);
            let m = _mm256_max_epu32(_mm256_max_epu32(m[0], m[1]), _mm256_max_epu32(m[2], m[3]));
            let Some(inv) = inverse_step(max_lane(m), q, scale, start) else { continue };
            let inv = _mm256_set1_ps(inv);
            store(start, q, v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv))));
        }
        quantize_row(&x[whole * BLOCK..], &mut q[whole * BLOCK..], &mut scales[whole..], &mut starts[whole..]);
    }

    /// The largest of the eight unsigned lanes of `v`.
    #[target_feature(enable = "avx2")]
    fn max_lane(v: __m256i) -> u32 {
        let mut lanes = [0u32; 8];
        // SAFETY: the store writes the 8 values of `lanes`.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v) };
        lanes.into_iter().max().unwrap_or(0)
    }

    /// The first input of each group of `width` inputs in block `b`, for the AVX2 kernels. The count
    /// passes through `black_box` so that the compiler keeps the loop rolled: unrolled, it loads every
    /// group's weights of the block up front, more vectors than the 16 registers hold, and spills them.
    fn rolled_groups(b: usize, width: usize) -> impl Iterator<Item = usize> {
        (0..std::hint::black_box(BLOCK / width)).map(move |g| b * BLOCK + g * width)
    }

    /// An AVX-512 VNNI micro-tile's i32 sums of one block.
    type ZmmDots = [[__m512i; ZMM_PANEL / 16]; MR];
    /// An AVX-512 VNNI micro-tile's f32 sums.
    type ZmmSums = [[__m512; ZMM_PANEL / 16]; MR];

    /// The values of block `b` (of `blocks`) of `panel`'s `W` outputs in `per_block`, laid out as
    /// [`Matrix::steps`].
    fn panel_block<const W: usize>(per_block: &[f32], blocks: usize, panel: usize, b: usize) -> &[f32] {
        &per_block[(panel * blocks + b) * W..][..W]
    }

    /// One micro-tile with `vpdpbusd` on 8-bit weights, each block's sum times its two steps.
    ///
    /// SAFETY: as for [`vnni_tile`]; `weights` are `w`'s bytes.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn tile_vnni(
        w: &Matrix,
        weights: &[u8],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<ZMM_PANEL>,
    ) {
        let blocks = w.stride / BLOCK;
        let add = |b: usize, acc: &ZmmDots, sums: &mut ZmmSums| {
            let steps = panel_block::<ZMM_PANEL>(&w.steps, blocks, panel, b);
            for (r, (sums, acc)) in sums.iter_mut().zip(acc).enumerate() {
                let scale = _mm512_set1_ps(acts.scales[(r0 + r) * blocks + b]);
                for (c, (sum, &acc)) in sums.iter_mut().zip(acc).enumerate() {
                    let block = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
                    *sum = _mm512_fmadd_ps(block, load_zmm(steps, c), *sum);
                }
            }
        };
        // SAFETY: the caller's.
        unsafe { vnni_tile(w, weights, acts, r0, panel, out, add) }
    }

    /// One micro-tile on 4-bit codes with `vpdpbusd`, each block's sum starting at `-CENTER * sum(a)`,
    /// times its two steps, plus its grid's centre times the block's input sum.
    ///
    /// SAFETY: as for [`vnni_tile`]; `codes` and `centers` are `w`'s.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn tile4_vnni(
        w: &Matrix,
        codes: &[u8],
        centers: &[f32],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<ZMM_PANEL>,
    ) {
        let blocks = w.stride / BLOCK;
        let add = |b: usize, acc: &ZmmDots, sums: &mut ZmmSums| {
            let steps = panel_block::<ZMM_PANEL>(&w.steps, blocks, panel, b);
            let centers = panel_block::<ZMM_PANEL>(centers, blocks, panel, b);
            for (r, (sums, acc)) in sums.iter_mut().zip(acc).enumerate() {
                let at = (r0 + r) * blocks + b;
                let (scale, total) = (_mm512_set1_ps(acts.scales[at]), _mm512_set1_ps(acts.sums[at]));
                for (c, (sum, &acc)) in sums.iter_mut().zip(acc).enumerate() {
                    let block = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
                    let sum_steps = _mm512_fmadd_ps(block, load_zmm(steps, c), *sum);
                    *sum = _mm512_fmadd_ps(load_zmm(centers, c), total, sum_steps);
                }
            }
        };
        // SAFETY: the caller's.
        unsafe { vnni_tile(w, codes, acts, r0, panel, out, add) }
    }

    /// An AVX-512 VNNI micro-tile: the integer sums of each block ([`block_vnni`]) of the `packed` bytes (`w`'s),
    /// which `add` adds to the tile's f32 sums, then written by [`store_zmm`].
    ///
    /// SAFETY: the processor has AVX-512F and AVX-512 VNNI. Activation rows `r0..r0 + MR` exist (rows are
    /// padded to `MR`), and so does `panel` (outputs are padded to whole panels).
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn vnni_tile(
        w: &Matrix,
        packed: &[u8],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<ZMM_PANEL>,
        add: impl Fn(usize, &ZmmDots, &mut ZmmSums),
    ) {
        let (s, blocks) = (w.stride, w.stride / BLOCK);
        assert!((r0 + MR) * s <= acts.data.len() && (panel + 1) * ZMM_PANEL * s <= packed.len());
        let packed = packed[panel * ZMM_PANEL * s..].as_ptr();
        let a = acts.data[r0 * s..].as_ptr();
        let mut sums: ZmmSums = [[_mm512_setzero_ps(); ZMM_PANEL / 16]; MR];
        for b in 0..blocks {
            // SAFETY: the bounds asserted above.
            add(b, &unsafe { block_vnni(packed, a, acts, r0, b, s) }, &mut sums);
        }
        store_zmm(w, panel, &sums, out);
    }

    /// The integer sums of block `b` of an AVX-512 VNNI micro-tile: per row, the block's start plus `vpdpbusd` of
    /// each group of four inputs, three vectors of packed bytes (16 outputs by 4 inputs each) against the
    /// row's four activations broadcast to every lane. `packed` is the panel's first byte, `a` row
    /// `r0`'s first activation.
    ///
    /// SAFETY: as for [`vnni_tile`], whose asserted bounds cover rows `r0..r0 + MR` and the panel.
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn block_vnni(
        packed: *const u8,
        a: *const i8,
        acts: &Activations<i8>,
        r0: usize,
        b: usize,
        s: usize,
    ) -> ZmmDots {
        let blocks = s / BLOCK;
        let mut acc: ZmmDots =
            std::array::from_fn(|r| [_mm512_set1_epi32(acts.starts[(r0 + r) * blocks + b]); ZMM_PANEL / 16]);
        for t in (b * BLOCK..(b + 1) * BLOCK).step_by(4) {
            // SAFETY: input `t < stride` of the panel and of rows `r0..r0 + MR` (the caller's bounds).
            let wv: [__m512i; ZMM_PANEL / 16] = std::array::from_fn(|c| unsafe {
                _mm512_loadu_si512(packed.add(t * ZMM_PANEL + c * 64) as *const __m512i)
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above; four bytes of row `r0 + r` from input `t`.
                let av = _mm512_set1_epi32(unsafe { (a.add(r * s + t) as *const i32).read_unaligned() });
                for (acc, &wc) in acc.iter_mut().zip(&wv) {
                    *acc = _mm512_dpbusd_epi32(*acc, wc, av);
                }
            }
        }
        acc
    }

    /// Vector `c` of 16 values of `v`.
    #[target_feature(enable = "avx512f")]
    fn load_zmm(v: &[f32], c: usize) -> __m512 {
        // SAFETY: the slice holds the 16 values.
        unsafe { _mm512_loadu_ps(v[c * 16..][..16].as_ptr()) }
    }

    /// Writes an AVX-512 VNNI micro-tile's sums, each plus its output's bias.
    #[target_feature(enable = "avx512f")]
    fn store_zmm(w: &Matrix, panel: usize, sums: &ZmmSums, mut out: Tile<ZMM_PANEL>) {
        let bias = &w.bias[panel * ZMM_PANEL..][..ZMM_PANEL];
        for c in 0..ZMM_PANEL / 16 {
            for (r, sums) in sums.iter().enumerate() {
                let row = &mut out.row(r)[c * 16..][..16];
                // SAFETY: `row` holds 16 values.
                unsafe { _mm512_storeu_ps(row.as_mut_ptr(), _mm512_add_ps(sums[c], load_zmm(bias, c))) };
            }
        }
    }

    /// An AVX2 micro-tile's integer sums of one block.
    type YmmDots = [[__m256i; YMM_PANEL / 8]; MR];
    /// An AVX2 micro-tile's f32 sums.
    type YmmSums = [[__m256; YMM_PANEL / 8]; MR];

    /// One micro-tile with `vpmaddwd`: per pair of inputs, two vectors of 16-bit weights (8 outputs by 2
    /// inputs each) against each row's two activations broadcast to every lane. The starts of 16-bit
    /// activations are all 0 (their weights carry no offset).
    ///
    /// SAFETY: as for [`ymm_tile`]; `weights` are `w`'s 16-bit values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(
        w: &Matrix,
        weights: &[i16],
        acts: &Activations<i16>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
    ) {
        let madd = |acc, w, a| _mm256_add_epi32(acc, _mm256_madd_epi16(w, a));
        // SAFETY: the caller's.
        unsafe { eight_bit_ymm(w, weights, acts, r0, panel, out, madd) }
    }

    /// One micro-tile with AVX-VNNI's `vpdpbusd`: per group of four inputs, two vectors of bytes `w + 128`
    /// (8 outputs by 4 inputs each) against each row's four activations broadcast to every lane.
    ///
    /// SAFETY: as for [`ymm_tile`], and the processor has AVX-VNNI; `weights` are `w`'s bytes.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn tile_avxvnni(
        w: &Matrix,
        weights: &[u8],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
    ) {
        let madd = |acc, w, a| _mm256_dpbusd_avx_epi32(acc, w, a);
        // SAFETY: the caller's.
        unsafe { eight_bit_ymm(w, weights, acts, r0, panel, out, madd) }
    }

    /// An AVX2-wide micro-tile on 8-bit or 16-bit weights, whose products `madd` sums in 32 bits: each
    /// block's sum, from its start, times its two steps, is added to the tile's.
    ///
    /// SAFETY: as for [`ymm_tile`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn eight_bit_ymm<T, A>(
        w: &Matrix,
        packed: &[T],
        acts: &Activations<A>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
        madd: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
    ) {
        let blocks = w.stride / BLOCK;
        let add = |b: usize, acc: &YmmDots, sums: &mut YmmSums| {
            let steps = panel_block::<YMM_PANEL>(&w.steps, blocks, panel, b);
            for (r, (sums, acc)) in sums.iter_mut().zip(acc).enumerate() {
                let at = (r0 + r) * blocks + b;
                let (scale, start) = (_mm256_set1_ps(acts.scales[at]), _mm256_set1_epi32(acts.starts[at]));
                for (c, (sum, &acc)) in sums.iter_mut().zip(acc).enumerate() {
                    let block = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(start, acc)), scale);
                    *sum = _mm256_fmadd_ps(block, load_ymm(steps, c), *sum);
                }
            }
        };
        // SAFETY: the caller's.
        unsafe { ymm_tile(w, packed, acts, r0, panel, out, madd, add) }
    }

    /// One micro-tile on 4-bit codes with `vpmaddubsw`: per group of four inputs, two vectors of codes (8
    /// outputs by 4 inputs each) against each row's four activations broadcast to every lane. The 16-bit
    /// pair sums add up over a block; `vpmaddwd` by ones then sums each lane's pair into 32 bits.
    ///
    /// SAFETY: as for [`ymm_tile`]; `codes` and `centers` are `w`'s.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile4_avx2(
        w: &Matrix,
        codes: &[u8],
        centers: &[f32],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
    ) {
        // The sums stay within 16 bits; adding with saturation keeps the compiler from regrouping them
        // into trees that need more registers than there are.
        let madd = |acc, w, a| _mm256_adds_epi16(acc, _mm256_maddubs_epi16(w, a));
        let ones = _mm256_set1_epi16(1);
        // SAFETY: the caller's.
        unsafe { four_bit_ymm(w, codes, centers, acts, r0, panel, out, madd, |acc| _mm256_madd_epi16(acc, ones)) }
    }

    /// One micro-tile on 4-bit codes with AVX-VNNI's `vpdpbusd`, which sums each lane's four products in
    /// 32 bits.
    ///
    /// SAFETY: as for [`ymm_tile`], and the processor has AVX-VNNI; `codes` and `centers` are `w`'s.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn tile4_avxvnni(
        w: &Matrix,
        codes: &[u8],
        centers: &[f32],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
    ) {
        let madd = |acc, w, a| _mm256_dpbusd_avx_epi32(acc, w, a);
        // SAFETY: the caller's.
        unsafe { four_bit_ymm(w, codes, centers, acts, r0, panel, out, madd, |acc| acc) }
    }

    /// An AVX2-wide micro-tile on 4-bit codes: `madd` sums the products, `widen` turns a block's sums
    /// into 32-bit ones, which, from the block's start, times its two steps, plus the grid's centre times
    /// the block's input sum, are added to the tile's.
    ///
    /// SAFETY: as for [`ymm_tile`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn four_bit_ymm(
        w: &Matrix,
        codes: &[u8],
        centers: &[f32],
        acts: &Activations<i8>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
        madd: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
        widen: impl Fn(__m256i) -> __m256i,
    ) {
        let blocks = w.stride / BLOCK;
        let add = |b: usize, acc: &YmmDots, sums: &mut YmmSums| {
            let steps = panel_block::<YMM_PANEL>(&w.steps, blocks, panel, b);
            let centers = panel_block::<YMM_PANEL>(centers, blocks, panel, b);
            for (r, (sums, acc)) in sums.iter_mut().zip(acc).enumerate() {
                let at = (r0 + r) * blocks + b;
                let (scale, total) = (_mm256_set1_ps(acts.scales[at]), _mm256_set1_ps(acts.sums[at]));
                let start = _mm256_set1_epi32(acts.starts[at]);
                for (c, (sum, &acc)) in sums.iter_mut().zip(acc).enumerate() {
                    let block = _mm256_add_epi32(start, widen(acc));
                    let block = _mm256_mul_ps(_mm256_cvtepi32_ps(block), scale);
                    let sum_steps = _mm256_fmadd_ps(block, load_ymm(steps, c), *sum);
                    *sum = _mm256_fmadd_ps(load_ymm(centers, c), total, sum_steps);
                }
            }
        };
        // SAFETY: the caller's.
        unsafe { ymm_tile(w, codes, acts, r0, panel, out, madd, add) }
    }

    /// An AVX2 micro-tile: per block, from sums of 0, `madd` adds each group of inputs' products (a
    /// vector of the `packed` weights, `w`'s, against a row's group of activations broadcast to every
    /// lane; a group fills 32 bits of a row), then `add` adds the block's sums to the tile's f32 sums,
    /// which [`store_ymm`] writes.
    ///
    /// SAFETY: the processor has AVX2 and FMA. Activation rows `r0..r0 + MR` exist (rows are padded to
    /// `MR`), and so does `panel` (outputs are padded to whole panels).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn ymm_tile<T, A>(
        w: &Matrix,
        packed: &[T],
        acts: &Activations<A>,
        r0: usize,
        panel: usize,
        out: Tile<YMM_PANEL>,
        madd: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
        add: impl Fn(usize, &YmmDots, &mut YmmSums),
    ) {
        let s = w.stride;
        assert!((r0 + MR) * s <= acts.data.len() && (panel + 1) * YMM_PANEL * s <= packed.len());
        let packed = packed[panel * YMM_PANEL * s..].as_ptr();
        let a = acts.data[r0 * s..].as_ptr();
        let mut sums: YmmSums = [[_mm256_setzero_ps(); YMM_PANEL / 8]; MR];
        for b in 0..s / BLOCK {
            let mut acc: YmmDots = [[_mm256_setzero_si256(); YMM_PANEL / 8]; MR];
            for t in rolled_groups(b, size_of::<i32>() / size_of::<A>()) {
                // SAFETY: input `t < stride` of the panel and of rows `r0..r0 + MR` (the asserted bounds).
                let wv: [__m256i; YMM_PANEL / 8] = std::array::from_fn(|c| unsafe {
                    _mm256_loadu_si256(
                        packed.add(t * YMM_PANEL + c * size_of::<__m256i>() / size_of::<T>()) as *const __m256i
                    )
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above; one group of row `r0 + r` from input `t`.
                    let av = _mm256_set1_epi32(unsafe { (a.add(r * s + t) as *const i32).read_unaligned() });
                    for (acc, &wc) in acc.iter_mut().zip(&wv) {
                        *acc = madd(*acc, wc, av);
                    }
                }
            }
            add(b, &acc, &mut sums);
        }
        store_ymm(w, panel, &sums, out);
    }

    /// Vector `c` of 8 values of `v`.
    #[target_feature(enable = "avx2")]
    fn load_ymm(v: &[f32], c: usize) -> __m256 {
        // SAFETY: the slice holds the 8 values.
        unsafe { _mm256_loadu_ps(v[c * 8..][..8].as_ptr()) }
    }

    /// Writes an AVX2 micro-tile's sums, each plus its output's bias.
    #[target_feature(enable = "avx2,fma")]
    fn store_ymm(w: &Matrix, panel: usize, sums: &YmmSums, mut out: Tile<YMM_PANEL>) {
        let bias = &w.bias[panel * YMM_PANEL..][..YMM_PANEL];
        for c in 0..YMM_PANEL / 8 {
            for (r, sums) in sums.iter().enumerate() {
                let row = &mut out.row(r)[c * 8..][..8];
                // SAFETY: `row` holds 8 values.
                unsafe { _mm256_storeu_ps(row.as_mut_ptr(), _mm256_add_ps(sums[c], load_ymm(bias, c))) };
            }
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

    /// `weight_t: [k, n]` whose blocks of each output lie on grids of `levels + 1` values, as 4-bit
    /// GGUF weights do (`levels` 15 for Q4_1; fewer where Q4_0's blocks leave codes unused).
    fn on_grid(k: usize, n: usize, levels: usize, seed: usize) -> Vec<f32> {
        let codes = values(k * n, seed);
        let mut wt = vec![0f32; k * n];
        for j in 0..n {
            for t in 0..k {
                let block = (t / BLOCK * n + j) as f32;
                let (step, min) = (0.01 + 0.003 * (block % 7.0), -0.05 * (block % 5.0));
                let code = ((codes[t * n + j].abs() * 7919.0) as usize + t) % (levels + 1);
                wt[t * n + j] = min + step * code as f32;
            }
        }
        wt
    }

    /// Where block `b` of output `j` is in per-block values laid out as [`Matrix::steps`].
    fn block_at(j: usize, b: usize, blocks: usize, panel: usize) -> usize {
        (j / panel * blocks + b) * panel + j % panel
    }

    /// [`Matrix::pack`] of `weight_t: [k, n]` (the layout the tests write weights in), as rows.
    fn packed(path: Path, weight_t: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Option<Matrix> {
        Matrix::pack(path, &super::super::gemm::transposed(weight_t, k, n), k, n, bias)
    }

    fn paths() -> Vec<Path> {
        let mut paths: Vec<Path> = Isa::supported().map(Path::for_isa).collect();
        paths.dedup();
        paths
    }

    /// The largest magnitude of the activations' codes against 8-bit weights on `path`.
    fn levels(path: Path) -> f64 {
        match path {
            Path::Avx512Vnni | Path::AvxVnni => 127.0,
            Path::Avx2 | Path::Scalar => 32767.0,
        }
    }

    /// Paths that round the activations alike give the same results, bit for bit (those with 16-bit
    /// activations as the scalar code does, the two VNNI paths as each other), at sizes with partial
    /// tiles, panels and blocks, split by rows or by panels.
    #[test]
    fn paths_with_the_same_activation_bits_agree() {
        for (m, k, n) in [(1, 1, 1), (3, 31, 5), (5, 33, 17), (9, 64, 40), (13, 100, 3), (2, 200, 150), (40, 70, 97)] {
            let (x, wt, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            let mut firsts: Vec<(Path, Vec<f32>)> = Vec::new();
            for path in paths() {
                let mut got = vec![f32::NAN; m * n];
                packed(path, &wt, k, n, Some(&bias)).unwrap().product(&x, &mut got);
                match firsts.iter().find(|(first, _)| levels(*first) == levels(path)) {
                    Some((first, want)) => assert_eq!(got, *want, "{path:?} against {first:?} at m={m} k={k} n={n}"),
                    None => firsts.push((path, got)),
                }
            }
        }
    }

    /// Weights on 4-bit grids keep them, and every path agrees with the scalar code on them, bit for bit.
    #[test]
    fn weights_on_grids_stay_4_bit_and_every_path_agrees() {
        for (m, k, n) in [(1, 1, 1), (3, 31, 5), (5, 33, 17), (9, 64, 40), (13, 100, 3), (2, 200, 150), (40, 70, 97)] {
            let (x, wt, bias) = (values(m * k, 1), on_grid(k, n, 15, 2), values(n, 3));
            let w = |path| packed(path, &wt, k, n, Some(&bias)).unwrap();
            let mut want = vec![0f32; m * n];
            w(Path::Scalar).product(&x, &mut want);
            for path in paths() {
                assert!(matches!(w(path).weights, Packed::FourBit(..)), "{path:?} at k={k} n={n}");
                let mut got = vec![f32::NAN; m * n];
                w(path).product(&x, &mut got);
                assert_eq!(got, want, "{path:?} at m={m} k={k} n={n}");
            }
        }
    }

    /// Grids are found with fewer levels than 16 too (Q4_0's blocks), and values off every grid keep
    /// the weights in 8 bits.
    #[test]
    fn grids_are_found_only_where_the_values_lie_on_one() {
        let mut codes = [0i8; BLOCK];
        let block: Vec<f32> = (0..BLOCK).map(|t| -0.3 + 0.025 * (t % 9) as f32).collect();
        let (step, center) = grid(&block, &mut codes).unwrap();
        assert!((step - 0.025).abs() < 1e-7 && (center + 0.1).abs() < 1e-7, "{step} {center}");
        assert!(codes.iter().enumerate().all(|(t, &c)| c as usize == t % 9), "{codes:?}");
        assert_eq!(grid(&[0.5; 4], &mut codes[..4]), Some((0.0, 0.5)));
        assert_eq!(grid(&values(BLOCK, 9), &mut codes), None);
        assert_eq!(grid(&[0.0, 1.0, f32::NAN], &mut codes[..3]), None);
        let (k, n) = (64, 8);
        let mut wt = on_grid(k, n, 6, 4);
        wt[k * n - 1] += 1e-3;
        assert!(matches!(packed(Path::Scalar, &wt, k, n, None).unwrap().weights, Packed::Words(_)));
    }

    /// On grids, only the activations are rounded: the product is within half an activation step per
    /// input, times the weight's distance from its block's centre (at most 8 steps), of the f32 product.
    #[test]
    fn the_4_bit_product_is_within_the_activations_rounding_of_the_f32_product() {
        let (m, k, n) = (7, 96, 24);
        let (x, wt) = (values(m * k, 4), on_grid(k, n, 15, 5));
        for path in paths() {
            let mut got = vec![0f32; m * n];
            packed(path, &wt, k, n, None).unwrap().product(&x, &mut got);
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut bound) = (0f64, 1e-4);
                    for t in 0..k {
                        let (t0, t1) = (t / BLOCK * BLOCK, ((t / BLOCK + 1) * BLOCK).min(k));
                        let dx = x[i * k + t0..i * k + t1].iter().fold(0f64, |s, v| s.max(v.abs() as f64)) / 127.0;
                        // Codes are centred on 8: a weight is at most 8 steps from its block's centre.
                        let column = (t0..t1).map(|t| wt[t * n + j] as f64);
                        let (lo, hi) = column.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
                        exact += x[i * k + t] as f64 * wt[t * n + j] as f64;
                        bound += 8.0 * (hi - lo) / 15.0 * dx / 2.0;
                    }
                    let err = (got[i * n + j] as f64 - exact).abs();
                    assert!(err <= bound, "{path:?} ({i}, {j}): error {err} over the bound {bound}");
                }
            }
        }
    }

    /// Weights as GGUF's Q8_0 stores them, `d * q` per block with an f16 `d` and `q` in `-127..=127`
    /// reaching 127 in magnitude (Q8_0 picks `d = max|x| / 127`), keep their codes and steps exactly.
    #[test]
    fn q8_0_blocks_keep_their_codes_and_steps() {
        let (k, n): (usize, usize) = (70, 20);
        let blocks = k.div_ceil(BLOCK);
        // Codes in -127..=127, the block's first input of each output at +-127.
        let code = |t: usize, j: usize| match t % BLOCK {
            0 => 127 - 254 * (j % 2) as i32,
            _ => ((t * 31 + j * 17) % 255) as i32 - 127,
        };
        // Steps that f16 holds exactly: 11 significant bits.
        let d = |b: usize, j: usize| (1 + (b * 7 + j * 3) % 2047) as f32 * 2f32.powi(-14 - (j % 5) as i32);
        let wt: Vec<f32> =
            (0..k * n).map(|i| (i / n, i % n)).map(|(t, j)| d(t / BLOCK, j) * code(t, j) as f32).collect();
        for path in paths() {
            let w = packed(path, &wt, k, n, None).unwrap();
            let (panel, stride) = (path.panel(), w.stride);
            let mut codes = vec![0i8; n.next_multiple_of(panel) * stride];
            for j in 0..n {
                for t in 0..k {
                    codes[j * stride + t] = code(t, j) as i8;
                }
                for b in 0..blocks {
                    assert_eq!(w.steps[block_at(j, b, blocks, panel)], d(b, j), "{path:?} step of ({j}, {b})");
                }
            }
            match &w.weights {
                Packed::Bytes(got) => {
                    assert_eq!(*got, interleave(&codes, stride, panel, 4, |v| v.wrapping_add_unsigned(OFFSET) as u8));
                }
                Packed::Words(got) => assert_eq!(*got, interleave(&codes, stride, panel, 2, i16::from)),
                Packed::FourBit(..) => panic!("{path:?}: 8-bit codes taken for 4-bit ones"),
            }
        }
    }

    /// The quantized product against the f32 one, within what rounding each value to its step (half a
    /// step of its block, of activations or of weights) can move it.
    #[test]
    fn the_product_is_within_the_rounding_bound_of_the_f32_product() {
        let (m, k, n) = (7, 96, 24);
        let (x, wt) = (values(m * k, 4), values(k * n, 5));
        let w = |path| packed(path, &wt, k, n, None).unwrap();
        let max = |v: &mut dyn Iterator<Item = f32>| v.fold(0f64, |s, v| s.max(v.abs() as f64));
        for path in paths() {
            let step = |v: &mut dyn Iterator<Item = f32>, levels: f64| max(v) / levels;
            let mut got = vec![0f32; m * n];
            w(path).product(&x, &mut got);
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut bound) = (0f64, 1e-4);
                    for t in 0..k {
                        let block = t / BLOCK * BLOCK..((t / BLOCK + 1) * BLOCK).min(k);
                        let dw = step(&mut block.clone().map(|t| wt[t * n + j]), 127.0);
                        let dx = step(&mut x[i * k + block.start..i * k + block.end].iter().copied(), levels(path));
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

    /// Weights that 8 bits hold exactly leave only the activations' rounding: half a step of 16 bits per
    /// input on every path but the VNNI ones, of 8 bits on those.
    #[test]
    fn the_activations_take_the_paths_bits() {
        let (m, k, n) = (5, 96, 20);
        let x = values(m * k, 4);
        // Codes times 2^-7, each block's first at 127: the step is 2^-7 and every code is exact.
        let code =
            |t: usize, j: usize| if t.is_multiple_of(BLOCK) { 127 } else { ((t * 31 + j * 17) % 255) as i32 - 127 };
        let wt: Vec<f32> = (0..k * n).map(|i| code(i / n, i % n) as f32 / 128.0).collect();
        for path in paths() {
            let mut got = vec![0f32; m * n];
            packed(path, &wt, k, n, None).unwrap().product(&x, &mut got);
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut bound) = (0f64, 0f64);
                    for t in 0..k {
                        let block = &x[i * k + t / BLOCK * BLOCK..][..BLOCK];
                        let dx = block.iter().fold(0f64, |s, v| s.max(v.abs() as f64)) / levels(path);
                        let (a, b) = (x[i * k + t] as f64, wt[t * n + j] as f64);
                        exact += a * b;
                        bound += b.abs() * dx / 2.0 + 1e-6 * (a * b).abs();
                    }
                    let err = (got[i * n + j] as f64 - exact).abs();
                    assert!(err <= bound, "{path:?} ({i}, {j}): error {err} over the bound {bound}");
                }
            }
        }
    }

    /// Block steps keep an outlier's cost in its block: an activation row, or an output's weights, whose
    /// first value is 1000 times the rest still get the other blocks' products to within 1%.
    #[test]
    fn an_outlier_costs_only_its_own_block() {
        let k = 4 * BLOCK;
        let small = |seed| values(k, seed).iter().map(|v| v * 0.01).collect::<Vec<_>>();
        let outlier_first = |mut v: Vec<f32>| {
            v[0] = 10.0;
            v
        };
        let zero_first = |v: Vec<f32>| (0..k).map(|t| if t < BLOCK { 0.0 } else { v[t] }).collect::<Vec<_>>();
        let cases =
            [(outlier_first(small(7)), zero_first(values(k, 8))), (zero_first(values(k, 7)), outlier_first(small(8)))];
        for (x, wt) in cases {
            let exact: f32 = x.iter().zip(&wt).map(|(a, b)| a * b).sum();
            for path in paths() {
                let mut y = [0f32];
                packed(path, &wt, k, 1, None).unwrap().product(&x, &mut y);
                assert!((y[0] - exact).abs() <= 0.01 * exact.abs(), "{path:?}: {} vs {exact}", y[0]);
            }
        }
    }

    /// Sums at their largest (every product 127 * 127, or 15 * 127 for 4-bit codes, long rows) come out
    /// right.
    #[test]
    fn the_largest_sums_do_not_overflow() {
        let k = 3000;
        // Off any grid (one value a little off), then on one with every code but one at 15.
        let off = (0..k).map(|t| if t == 7 { 0.999 } else { 1.0 }).collect::<Vec<_>>();
        let on = (0..k).map(|t| if t % BLOCK == 0 { 0.0 } else { 1.0 }).collect::<Vec<_>>();
        for wt in [off, on] {
            let exact = -wt.iter().sum::<f32>();
            for path in paths() {
                let mut y = [0f32; 1];
                packed(path, &wt, k, 1, None).unwrap().product(&vec![-1.0; k], &mut y);
                assert!((y[0] - exact).abs() <= 1e-5 * k as f32, "{path:?}: {} vs {exact}", y[0]);
            }
        }
    }

    #[test]
    fn rows_of_zeros_give_the_bias_and_non_finite_values_give_nan() {
        let k = BLOCK + 8;
        let w = |path| packed(path, &values(k * 3, 6), k, 3, Some(&[1.0, 2.0, 3.0])).unwrap();
        for bad in [f32::INFINITY, f32::NAN] {
            let mut x = vec![0f32; 2 * k];
            x[k + 5] = bad;
            for path in paths() {
                let mut y = vec![0f32; 6];
                w(path).product(&x, &mut y);
                assert_eq!(y[..3], [1.0, 2.0, 3.0], "{path:?}");
                assert!(y[3..].iter().all(|v| v.is_nan()), "{path:?}: {y:?}");
            }
        }
    }

    #[test]
    fn quantized_values_round_to_the_nearest_step() {
        let mut q = [0i8; 4];
        let scale = quantize(&[1.27, -0.5, 0.004, 0.006], &mut q);
        assert!((scale - 0.01).abs() < 1e-9, "{scale}");
        assert_eq!(q, [127, -50, 0, 1]);
        assert!(quantize(&[1.0, f32::NAN], &mut q[..2]).is_nan());
        assert!(quantize(&[1.0, f32::NEG_INFINITY], &mut q[..2]).is_nan());
        assert_eq!(quantize(&[0.0, -0.0], &mut q[..2]), 0.0);
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_refused() {
        assert!(Matrix::from_rows(&[1.0; 6], 2, 3, Some(&[1.0])).is_none());
        assert!(Matrix::from_rows(&[1.0; 5], 2, 3, None).is_none());
    }
}
