//! Dequantization of ggml tensor data to f32, block by block, following ggml's reference layouts.
//!
//! Large tensors are split into runs of whole blocks and dequantized on all cores.

use half::f16;

use super::types::GgmlType;
use crate::error::{Error, Result};

/// Tensors with fewer elements than this are dequantized on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 20;

/// The non-uniform 4-bit code book of IQ4_NL and IQ4_XS.
const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Dequantizes `n_elements` values of type `ggml_type` stored in `bytes` (exactly their size) to f32.
pub fn dequantize(ggml_type: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    dequantize_raw(ggml_type, bytes, n_elements).map_err(Error::Input)
}

/// Whether [`dequantize`] handles `ggml_type`.
pub fn is_supported(ggml_type: GgmlType) -> bool {
    kernel(ggml_type).is_some()
}

/// [`dequantize`] with a bare message, for callers that add their own context.
pub(crate) fn dequantize_raw(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, String> {
    let run = kernel(ty).ok_or_else(|| format!("ggml type {ty} cannot be dequantized (supported: {})", supported()))?;
    let expected = ty
        .bytes_for(n_elements)
        .ok_or_else(|| format!("{n_elements} elements are not a whole number of {} blocks", ty.name()))?;
    if bytes.len() != expected {
        return Err(format!("{n_elements} {} elements need {expected} bytes, got {}", ty.name(), bytes.len()));
    }
    let mut out = vec![0f32; n_elements];
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if n_elements < PARALLEL_MIN_ELEMENTS || threads == 1 {
        run(bytes, &mut out);
        return Ok(out);
    }
    let n_blocks = n_elements / ty.block_size();
    let blocks_per_chunk = n_blocks.div_ceil(threads);
    std::thread::scope(|s| {
        let src = bytes.chunks(blocks_per_chunk * ty.type_size());
        let dst = out.chunks_mut(blocks_per_chunk * ty.block_size());
        for (src, dst) in src.zip(dst) {
            s.spawn(move || run(src, dst));
        }
    });
    Ok(out)
}

fn supported() -> String {
    use GgmlType::*;
    let all = [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS];
    all.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// A function that dequantizes whole blocks of `src` into `dst` (sizes already matched).
type Kernel = fn(&[u8], &mut [f32]);

fn kernel(ty: GgmlType) -> Option<Kernel> {
    use GgmlType::*;
    Some(match ty {
        F32 => f32_run,
        F16 => f16_run,
        BF16 => bf16_run,
        Q4_0 => q4_0,
        Q4_1 => q4_1,
        Q5_0 => q5_0,
        Q5_1 => q5_1,
        Q8_0 => q8_0,
        Q2_K => q2_k,
        Q3_K => q3_k,
        Q4_K => q4_k,
        Q5_K => q5_k,
        Q6_K => q6_k,
        Q8_K => q8_k,
        IQ4_NL => iq4_nl,
        IQ4_XS => iq4_xs,
        _ => return None,
    })
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Calls `f` on each (block bytes, block output) pair.
fn blocks<const TS: usize, const BS: usize>(src: &[u8], dst: &mut [f32], f: impl Fn(&[u8; TS], &mut [f32; BS])) {
    for (b, y) in src.chunks_exact(TS).zip(dst.chunks_exact_mut(BS)) {
        if let (Ok(b), Ok(y)) = (b.try_into(), y.try_into()) {
            f(b, y);
        }
    }
}

fn f32_run(src: &[u8], dst: &mut [f32]) {
    blocks::<4, 1>(src, dst, |b, y| y[0] = f32::from_le_bytes(*b));
}

fn f16_run(src: &[u8], dst: &mut [f32]) {
    blocks::<2, 1>(src, dst, |b, y| y[0] = f16::from_le_bytes(*b).to_f32());
}

fn bf16_run(src: &[u8], dst: &mut [f32]) {
    blocks::<2, 1>(src, dst, |b, y| y[0] = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16));
}

fn q4_0(src: &[u8], dst: &mut [f32]) {
    blocks::<18, 32>(src, dst, |b, y| {
        let d = half_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    });
}

fn q4_1(src: &[u8], dst: &mut [f32]) {
    blocks::<20, 32>(src, dst, |b, y| {
        let (d, m) = (half_at(b, 0), half_at(b, 2));
        for j in 0..16 {
            let q = b[4 + j];
            y[j] = (q & 0xF) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    });
}

/// The fifth bits of a Q5 block: bit j of the little-endian u32 belongs to element j.
fn q5_high(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn q5_0(src: &[u8], dst: &mut [f32]) {
    blocks::<22, 32>(src, dst, |b, y| {
        let d = half_at(b, 0);
        let qh = q5_high(b, 2);
        for j in 0..16 {
            let q = b[6 + j];
            let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
            let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
            y[j] = (lo as i32 - 16) as f32 * d;
            y[j + 16] = (hi as i32 - 16) as f32 * d;
        }
    });
}

fn q5_1(src: &[u8], dst: &mut [f32]) {
    blocks::<24, 32>(src, dst, |b, y| {
        let (d, m) = (half_at(b, 0), half_at(b, 2));
        let qh = q5_high(b, 4);
        for j in 0..16 {
            let q = b[8 + j];
            let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
            let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
            y[j] = lo as f32 * d + m;
            y[j + 16] = hi as f32 * d + m;
        }
    });
}

fn q8_0(src: &[u8], dst: &mut [f32]) {
    blocks::<34, 32>(src, dst, |b, y| {
        let d = half_at(b, 0);
        for j in 0..32 {
            y[j] = b[2 + j] as i8 as f32 * d;
        }
    });
}

/// Q2_K: 16 sub-blocks of 16 with 4-bit scale and min; 2-bit quants, four per byte.
fn q2_k(src: &[u8], dst: &mut [f32]) {
    blocks::<84, 256>(src, dst, |b, y| {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (half_at(b, 80), half_at(b, 82));
        for (sub, out) in y.chunks_exact_mut(16).enumerate() {
            let sc = scales[sub];
            let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
            // Sub-block `sub` reads 16 bytes of one 32-byte half at one 2-bit shift.
            let half = sub / 8;
            let shift = 2 * ((sub % 8) / 2);
            let start = half * 32 + (sub % 2) * 16;
            for (l, o) in out.iter_mut().enumerate() {
                *o = dl * ((qs[start + l] >> shift) & 3) as f32 - ml;
            }
        }
    });
}

/// The 16 six-bit Q3_K scales packed in 12 bytes.
fn q3_k_scale(s: &[u8], k: usize) -> i32 {
    let low = if k < 8 { s[k] & 0xF } else { s[k - 8] >> 4 };
    let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    (low | high << 4) as i32 - 32
}

/// Q3_K: 16 sub-blocks of 16 with 6-bit scales; 2 low bits in `qs`, the third bit (inverted) in `hmask`.
fn q3_k(src: &[u8], dst: &mut [f32]) {
    blocks::<110, 256>(src, dst, |b, y| {
        let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
        let d = half_at(b, 108);
        for (sub, out) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * q3_k_scale(scales, sub) as f32;
            let half = sub / 8;
            let shift = 2 * ((sub % 8) / 2);
            let bit = sub / 2;
            let start = (sub % 2) * 16;
            for (l, o) in out.iter_mut().enumerate() {
                let low = ((qs[half * 32 + start + l] >> shift) & 3) as i32;
                let sub4 = if hmask[start + l] >> bit & 1 == 1 { 0 } else { 4 };
                *o = dl * (low - sub4) as f32;
            }
        }
    });
}

/// Scale and min of sub-block `j` of a Q4_K/Q5_K block (6 bits each, packed in 12 bytes).
fn k4_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scale and min; low nibbles then high nibbles of 32-byte runs.
fn q4_k(src: &[u8], dst: &mut [f32]) {
    blocks::<144, 256>(src, dst, |b, y| {
        let (d, dmin) = (half_at(b, 0), half_at(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (sub, out) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k4_scale_min(scales, sub);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            let q = &qs[(sub / 2) * 32..(sub / 2) * 32 + 32];
            let shift = 4 * (sub % 2);
            for (o, &q) in out.iter_mut().zip(q) {
                *o = dl * ((q >> shift) & 0xF) as f32 - ml;
            }
        }
    });
}

/// Q5_K: Q4_K plus a fifth bit per element, bit `sub` of `qh[l]`.
fn q5_k(src: &[u8], dst: &mut [f32]) {
    blocks::<176, 256>(src, dst, |b, y| {
        let (d, dmin) = (half_at(b, 0), half_at(b, 2));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for (sub, out) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k4_scale_min(scales, sub);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            let q = &qs[(sub / 2) * 32..(sub / 2) * 32 + 32];
            let shift = 4 * (sub % 2);
            for (l, o) in out.iter_mut().enumerate() {
                let v = ((q[l] >> shift) & 0xF) | ((qh[l] >> sub) & 1) << 4;
                *o = dl * v as f32 - ml;
            }
        }
    });
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; 4 low bits in `ql`, 2 high bits in `qh`.
fn q6_k(src: &[u8], dst: &mut [f32]) {
    blocks::<210, 256>(src, dst, |b, y| {
        let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
        let d = half_at(b, 208);
        for (half, out) in y.chunks_exact_mut(128).enumerate() {
            let (ql, qh, sc) = (&ql[half * 64..], &qh[half * 32..], &scales[half * 8..]);
            for l in 0..32 {
                let is = l / 16;
                let q = [
                    (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                ];
                for (k, &q) in q.iter().enumerate() {
                    out[l + 32 * k] = d * sc[is + 2 * k] as i8 as f32 * (q as i32 - 32) as f32;
                }
            }
        }
    });
}

fn q8_k(src: &[u8], dst: &mut [f32]) {
    blocks::<292, 256>(src, dst, |b, y| {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (o, &q) in y.iter_mut().zip(&b[4..260]) {
            *o = d * q as i8 as f32;
        }
    });
}

fn iq4_nl(src: &[u8], dst: &mut [f32]) {
    blocks::<18, 32>(src, dst, |b, y| {
        let d = half_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = d * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    });
}

/// IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (4 low bits in `scales_l`, 2 high in `scales_h`).
fn iq4_xs(src: &[u8], dst: &mut [f32]) {
    blocks::<136, 256>(src, dst, |b, y| {
        let d = half_at(b, 0);
        let scales_h = u16::from_le_bytes([b[2], b[3]]);
        let (scales_l, qs) = (&b[4..8], &b[8..136]);
        for (ib, out) in y.chunks_exact_mut(32).enumerate() {
            let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
            let high = ((scales_h >> (2 * ib)) & 3) as u8;
            let dl = d * ((low | high << 4) as i32 - 32) as f32;
            let q = &qs[ib * 16..ib * 16 + 16];
            for j in 0..16 {
                out[j] = dl * KVALUES_IQ4NL[(q[j] & 0xF) as usize] as f32;
                out[j + 16] = dl * KVALUES_IQ4NL[(q[j] >> 4) as usize] as f32;
            }
        }
    });
}
