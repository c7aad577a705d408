//! Element-wise CPU kernels that the compiler vectorises: the gated activations `silu(gate) * up` and
//! `gelu_tanh(gate) * up`, and their gradients (for training), and the attention's softmax, with a
//! branch-free polynomial exp (relative error below 5e-7, tested), compiled for AVX-512 and AVX2 and
//! picked at run time ([`Isa::active`]).

use super::isa::Isa;

/// `out[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    act_mul_on(Isa::active(), gate, up, out, silu);
}

/// `out[i] = gelu_tanh(gate[i]) * up[i]`, GELU with the tanh approximation.
pub fn gelu_tanh_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    act_mul_on(Isa::active(), gate, up, out, gelu_tanh);
}

#[inline(always)]
fn silu(g: f32) -> f32 {
    g / (1.0 + exp(-g))
}

/// SiLU and its derivative `s * (1 + g * (1 - s))`, `s = sigmoid(g)`, with `1 - s` as `e^-g * s`
/// (subtracting from 1 loses its digits where `s` is near 1).
#[inline(always)]
fn silu_grad(g: f32) -> (f32, f32) {
    let e = exp(-g);
    let s = 1.0 / (1.0 + e);
    (g * s, s * (1.0 + g * (e * s)))
}

/// `sqrt(2 / pi)` and the cubic coefficient of GELU's tanh approximation.
const GELU_C: f32 = 0.797_884_6;
const GELU_K: f32 = 0.044_715;

/// `e^(-2u)`, `u = sqrt(2 / pi) (g + 0.044715 g^3)`: GELU's tanh approximation `0.5 g (1 + tanh(u))` is
/// `g * sigmoid(2u) = g / (1 + e^(-2u))`, without tanh's cancellation at large negative `u`.
#[inline(always)]
fn gelu_exp(g: f32) -> f32 {
    exp(-2.0 * GELU_C * (g + GELU_K * g * g * g))
}

#[inline(always)]
fn gelu_tanh(g: f32) -> f32 {
    g / (1.0 + gelu_exp(g))
}

/// GELU (tanh approximation) and its derivative `s + g * s * (1 - s) * 2u'`, `s = sigmoid(2u)`, with
/// `1 - s` as `e^(-2u) * s`.
#[inline(always)]
fn gelu_tanh_grad(g: f32) -> (f32, f32) {
    let e = gelu_exp(g);
    let s = 1.0 / (1.0 + e);
    (g * s, s + g * (e * s) * s * 2.0 * GELU_C * (1.0 + 3.0 * GELU_K * g * g))
}

fn act_mul_on(isa: Isa, gate: &[f32], up: &[f32], out: &mut [f32], act: impl Fn(f32) -> f32 + Copy) {
    match isa.narrowed() {
        // SAFETY: the processor has AVX-512F (checked by `Isa::narrowed`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { act_mul_avx512(gate, up, out, act) },
        // SAFETY: the processor has AVX2 and FMA (AVX-VNNI adds nothing here).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { act_mul_avx2(gate, up, out, act) },
        _ => act_mul_portable(gate, up, out, act),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn act_mul_avx512(gate: &[f32], up: &[f32], out: &mut [f32], act: impl Fn(f32) -> f32 + Copy) {
    act_mul_portable(gate, up, out, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn act_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32], act: impl Fn(f32) -> f32 + Copy) {
    act_mul_portable(gate, up, out, act);
}

#[inline(always)]
fn act_mul_portable(gate: &[f32], up: &[f32], out: &mut [f32], act: impl Fn(f32) -> f32 + Copy) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = act(g) * u;
    }
}

/// The gradients of `out = silu(gate) * up` for the output gradient `grad`:
/// `d_gate = grad * up * silu'(gate)` and `d_up = grad * silu(gate)`.
pub fn silu_mul_backward(gate: &[f32], up: &[f32], grad: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    act_mul_backward_on(Isa::active(), (gate, up, grad), (d_gate, d_up), silu_grad);
}

/// The gradients of `out = gelu_tanh(gate) * up`, as [`silu_mul_backward`]'s.
pub fn gelu_tanh_mul_backward(gate: &[f32], up: &[f32], grad: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    act_mul_backward_on(Isa::active(), (gate, up, grad), (d_gate, d_up), gelu_tanh_grad);
}

/// The inputs `(gate, up, grad)` of a backward pass, and its outputs `(d_gate, d_up)`.
type Inputs<'a> = (&'a [f32], &'a [f32], &'a [f32]);
type Grads<'a> = (&'a mut [f32], &'a mut [f32]);

fn act_mul_backward_on(isa: Isa, inputs: Inputs, grads: Grads, act: impl Fn(f32) -> (f32, f32) + Copy) {
    match isa.narrowed() {
        // SAFETY: the processor has AVX-512F (checked by `Isa::narrowed`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { act_mul_backward_avx512(inputs, grads, act) },
        // SAFETY: the processor has AVX2 and FMA (AVX-VNNI adds nothing here).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { act_mul_backward_avx2(inputs, grads, act) },
        _ => act_mul_backward_portable(inputs, grads, act),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn act_mul_backward_avx512(inputs: Inputs, grads: Grads, act: impl Fn(f32) -> (f32, f32) + Copy) {
    act_mul_backward_portable(inputs, grads, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn act_mul_backward_avx2(inputs: Inputs, grads: Grads, act: impl Fn(f32) -> (f32, f32) + Copy) {
    act_mul_backward_portable(inputs, grads, act);
}

#[inline(always)]
fn act_mul_backward_portable((gate, up, grad): Inputs, (d_gate, d_up): Grads, act: impl Fn(f32) -> (f32, f32) + Copy) {
    let n = gate.len().min(up.len()).min(grad.len()).min(d_gate.len()).min(d_up.len());
    for i in 0..n {
        let (a, da) = act(gate[i]);
        d_gate[i] = grad[i] * up[i] * da;
        d_up[i] = grad[i] * a;
    }
}

/// `row = softmax(row + bias)` in place (`bias` as long as `row`).
pub fn softmax_biased(row: &mut [f32], bias: &[f32]) {
    softmax_biased_on(Isa::active(), row, bias);
}

fn softmax_biased_on(isa: Isa, row: &mut [f32], bias: &[f32]) {
    match isa.narrowed() {
        // SAFETY: the processor has AVX-512F (checked by `Isa::narrowed`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { softmax_biased_avx512(row, bias) },
        // SAFETY: the processor has AVX2 and FMA (AVX-VNNI adds nothing here).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { softmax_biased_avx2(row, bias) },
        _ => softmax_biased_portable(row, bias),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_biased_avx512(row: &mut [f32], bias: &[f32]) {
    softmax_biased_portable(row, bias);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_biased_avx2(row: &mut [f32], bias: &[f32]) {
    softmax_biased_portable(row, bias);
}

/// Lanes of the softmax's running maximum and sum: the reductions run per lane (which the compiler
/// vectorises, as it does not a single running value) and the lanes are combined at the end.
const LANES: usize = 16;

/// Softmax with the maximum subtracted first. Values more than 87 below the maximum (masked ones, and
/// those whose share is below f32's smallest normal) get exactly 0, as the library exp gives masked ones.
#[inline(always)]
fn softmax_biased_portable(row: &mut [f32], bias: &[f32]) {
    assert_eq!(row.len(), bias.len(), "softmax: the bias must be as long as the row");
    let (chunks, tail) = row.as_chunks_mut::<LANES>();
    let (bias_chunks, bias_tail) = bias.as_chunks::<LANES>();
    let mut max = [f32::NEG_INFINITY; LANES];
    for (x, b) in chunks.iter_mut().zip(bias_chunks) {
        for i in 0..LANES {
            x[i] += b[i];
            max[i] = if x[i] > max[i] { x[i] } else { max[i] };
        }
    }
    for (i, (x, b)) in tail.iter_mut().zip(bias_tail).enumerate() {
        *x += b;
        max[i] = if *x > max[i] { *x } else { max[i] };
    }
    let max = max.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let shifted_exp = |x: f32| {
        let x = x - max;
        if x < -87.0 {
            0.0
        } else {
            exp(x)
        }
    };
    let mut sum = [0f32; LANES];
    for x in chunks.iter_mut() {
        for i in 0..LANES {
            x[i] = shifted_exp(x[i]);
            sum[i] += x[i];
        }
    }
    for (i, x) in tail.iter_mut().enumerate() {
        *x = shifted_exp(*x);
        sum[i] += *x;
    }
    let inverse = 1.0 / sum.iter().sum::<f32>();
    row.iter_mut().for_each(|x| *x *= inverse);
}

/// `e^x` for f32 without branches: `2^n * p(r)` with `x = n ln2 + r`, `|r| <= ln2 / 2`, and `p` the
/// degree-6 Taylor polynomial. Inputs are clamped to the finite range of the result.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer n, which then sits in the low mantissa bits
    // (0x4B40_0000 + n), so 2^n is built with integer operations alone (no float-to-int cast, which
    // the compiler does not vectorise).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_std_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, std) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - std) / std).abs());
            x += 0.001;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite());
    }

    /// `act(gate) * up` against `want` in f64, on every path, at lengths with partial vectors.
    fn check_act_mul(act: impl Fn(f32) -> f32 + Copy, want: impl Fn(f64) -> f64) {
        for len in [0, 1, 7, 16, 33, 100] {
            let gate: Vec<f32> = (0..len).map(|i| (i as f32 - 50.0) * 0.37).collect();
            let up: Vec<f32> = (0..len).map(|i| 1.0 + i as f32 * 0.01).collect();
            for isa in Isa::supported() {
                let mut out = vec![0f32; len];
                act_mul_on(isa, &gate, &up, &mut out, act);
                for i in 0..len {
                    let want = want(gate[i] as f64) * up[i] as f64;
                    assert!(
                        (out[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{isa:?} at {i}: {} vs {want}",
                        out[i]
                    );
                }
            }
        }
    }

    /// On every path, at lengths with partial vectors: each share within 1e-6 of the f64 softmax of
    /// `row + bias`, masked values (bias -1e9) exactly 0, and a NaN spreading to the whole row.
    #[test]
    fn softmax_biased_matches_the_formula_at_every_length() {
        for len in [1, 7, 16, 33, 100] {
            let row: Vec<f32> = (0..len).map(|i| ((i * 37) % 23) as f32 * 0.9 - 8.0).collect();
            let bias: Vec<f32> = (0..len).map(|i| if i % 5 == 4 { -1e9 } else { 0.0 }).collect();
            let shifted: Vec<f64> = row.iter().zip(&bias).map(|(&x, &b)| x as f64 + b as f64).collect();
            let max = shifted.iter().fold(f64::MIN, |m, &v| m.max(v));
            let total: f64 = shifted.iter().map(|v| (v - max).exp()).sum();
            for isa in Isa::supported() {
                let mut got = row.clone();
                softmax_biased_on(isa, &mut got, &bias);
                for (i, (&got, v)) in got.iter().zip(&shifted).enumerate() {
                    let want = (v - max).exp() / total;
                    assert!((got as f64 - want).abs() <= 1e-6, "{isa:?} len {len} at {i}: {got} vs {want}");
                    if bias[i] != 0.0 {
                        assert_eq!(got, 0.0, "{isa:?} len {len}: masked value {i}");
                    }
                }
                let mut with_nan = row.clone();
                with_nan[len / 2] = f32::NAN;
                softmax_biased_on(isa, &mut with_nan, &bias);
                assert!(with_nan.iter().all(|v| v.is_nan()), "{isa:?} len {len}: {with_nan:?}");
            }
        }
    }

    #[test]
    fn silu_mul_matches_the_formula_at_every_length() {
        check_act_mul(silu, |g| g / (1.0 + (-g).exp()));
    }

    #[test]
    fn gelu_tanh_mul_matches_the_formula_at_every_length() {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        check_act_mul(gelu_tanh, |g| 0.5 * g * (1.0 + (c * (g + 0.044715 * g * g * g)).tanh()));
    }

    /// The gradients of `act(gate) * up` against `want` (the activation and its derivative in f64), on
    /// every path, at lengths with partial vectors.
    fn check_act_mul_backward(act: impl Fn(f32) -> (f32, f32) + Copy, want: impl Fn(f64) -> (f64, f64)) {
        for len in [0, 1, 7, 16, 33, 100] {
            let gate: Vec<f32> = (0..len).map(|i| (i as f32 - 50.0) * 0.37).collect();
            let up: Vec<f32> = (0..len).map(|i| 1.0 + i as f32 * 0.01).collect();
            let grad: Vec<f32> = (0..len).map(|i| 0.5 - i as f32 * 0.02).collect();
            for isa in Isa::supported() {
                let (mut d_gate, mut d_up) = (vec![0f32; len], vec![0f32; len]);
                act_mul_backward_on(isa, (&gate, &up, &grad), (&mut d_gate, &mut d_up), act);
                for i in 0..len {
                    let ((a, da), u, d) = (want(gate[i] as f64), up[i] as f64, grad[i] as f64);
                    let (want_gate, want_up) = (d * u * da, d * a);
                    let (dg, du) = (d_gate[i] as f64, d_up[i] as f64);
                    assert!(
                        (dg - want_gate).abs() <= 1e-6 * want_gate.abs().max(1.0),
                        "{isa:?} d gate at {i}: {dg} vs {want_gate}"
                    );
                    assert!(
                        (du - want_up).abs() <= 1e-6 * want_up.abs().max(1.0),
                        "{isa:?} d up at {i}: {du} vs {want_up}"
                    );
                }
            }
        }
    }

    #[test]
    fn silu_mul_backward_matches_the_formula_at_every_length() {
        check_act_mul_backward(silu_grad, |g| {
            let s = 1.0 / (1.0 + (-g).exp());
            (g * s, s * (1.0 + g * (1.0 - s)))
        });
    }

    #[test]
    fn gelu_tanh_mul_backward_matches_the_formula_at_every_length() {
        let (c, k) = ((2.0 / std::f64::consts::PI).sqrt(), 0.044715);
        check_act_mul_backward(gelu_tanh_grad, |g| {
            let th = (c * (g + k * g * g * g)).tanh();
            (0.5 * g * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * c * (1.0 + 3.0 * k * g * g))
        });
    }
}
