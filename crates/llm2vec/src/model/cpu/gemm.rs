//! Matrix products on slices through the `gemm` crate. An operand is a pointer with its strides, so a
//! kernel reads a head, a column block or a transposed matrix where it lies, without copies.

use gemm::{gemm, Parallelism};

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
