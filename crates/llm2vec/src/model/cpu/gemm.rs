//! Matrix products on slices through the `gemm` crate. An operand is a pointer with its strides, so a
//! kernel reads a head, a column block or a transposed matrix where it lies, without copies; and the
//! transposed copy that a layer's weights are stored as, made once at load.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::Real;

/// A matrix operand of a product: a pointer with the strides of a step along a row (`cs`) and down
/// a column (`rs`).
#[derive(Clone, Copy)]
pub(crate) struct Matrix<T> {
    pub ptr: *const T,
    pub cs: isize,
    pub rs: isize,
}

impl<T> Matrix<T> {
    /// Row-major rows of `width` elements from the start of `v`.
    pub fn rows(v: &[T], width: usize) -> Self {
        Self { ptr: v.as_ptr(), cs: 1, rs: width as isize }
    }

    pub fn t(self) -> Self {
        Self { ptr: self.ptr, cs: self.rs, rs: self.cs }
    }
}

/// `dst = beta * lhs rhs` (`[m, k] x [k, n]`), or `dst += beta * lhs rhs` when `accumulate`, for a `dst`
/// whose rows start every `dst_rs` elements: the one call of `gemm` that every product goes through.
///
/// SAFETY: `dst` addresses an `[m, n]` matrix with row stride `dst_rs` that no one else touches
/// meanwhile (read only when `accumulate`); `lhs` and `rhs` address `[m, k]` and `[k, n]` matrices
/// through their strides.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product_at<T: Real>(
    dst: *mut T,
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Matrix<T>,
    rhs: Matrix<T>,
    beta: T,
    accumulate: bool,
    parallelism: Parallelism,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::of(1.0),
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// [`product_at`] into the rows of a slice, on the rayon pool when large.
///
/// SAFETY: `lhs` and `rhs` address `[m, k]` and `[k, n]` matrices through their strides.
pub(crate) unsafe fn product<T: Real>(
    dst: &mut [T],
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Matrix<T>,
    rhs: Matrix<T>,
    beta: f64,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= dst_rs && dst.len() >= (m - 1) * dst_rs + n, "product: the destination is too small");
    // SAFETY: the destination fits (checked above); the operands as the caller promises.
    unsafe { product_at(dst.as_mut_ptr(), dst_rs, (m, n, k), lhs, rhs, T::of(beta), accumulate, parallelism(m, n, k)) }
}

/// Large products run on the rayon pool.
fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m * n * k >= 1 << 18 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `beta * lhs rhs` (`[m, k] x [k, n]`) as a new row-major `[m, n]` matrix, written in full by the
/// product (never zeroed first).
///
/// SAFETY: as for `product`.
pub(crate) unsafe fn new_product<T: Real>(
    (m, n, k): (usize, usize, usize),
    lhs: Matrix<T>,
    rhs: Matrix<T>,
    beta: f64,
) -> Vec<T> {
    if m == 0 || n == 0 || k == 0 {
        return vec![T::of(0.0); m * n];
    }
    let mut out: Vec<T> = Vec::with_capacity(m * n);
    // SAFETY: `out` has room for `[m, n]`, which the product writes in full before `set_len`.
    unsafe {
        product_at(out.as_mut_ptr(), n, (m, n, k), lhs, rhs, T::of(beta), false, parallelism(m, n, k));
        out.set_len(m * n);
    }
    out
}

/// `src: [rows, cols]` (row-major) as `[cols, rows]`, a tile of 32 x 32 at a time (both tiles
/// stay in the nearest cache, where a plain strided copy misses on every write), the output's row blocks
/// in parallel.
pub fn transposed<T: Copy + Default + Send + Sync>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut dst = vec![T::default(); rows * cols];
    if rows == 0 {
        return dst;
    }
    dst.par_chunks_mut(TILE * rows).enumerate().for_each(|(block, out)| {
        let (c0, width) = (block * TILE, out.len() / rows);
        for r0 in (0..rows).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for (c, &v) in src[r * cols + c0..][..width].iter().enumerate() {
                    out[c * rows + r] = v;
                }
            }
        }
    });
    dst
}

#[cfg(test)]
mod tests {
    use super::transposed;

    #[test]
    fn transposed_moves_every_value_once() {
        for (rows, cols) in [(0, 3), (3, 0), (1, 1), (3, 70), (33, 31), (64, 64), (100, 7)] {
            let src: Vec<u32> = (0..(rows * cols) as u32).collect();
            let want: Vec<u32> = (0..cols).flat_map(|c| (0..rows).map(move |r| (r * cols + c) as u32)).collect();
            assert_eq!(transposed(&src, rows, cols), want, "{rows} x {cols}");
        }
    }
}
