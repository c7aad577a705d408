//! The CPU kernels on plain slices, below the ops that hand them candle's tensors (`model/ops/`): matrix
//! products with strided operands (`gemm`), dropout masks, the vectorised SiLU (`simd`), 8-bit weight
//! products (`q8`), the float types they are generic over, and the choice of instruction set (`isa`).

pub mod dropout;
pub mod gemm;
pub mod isa;
pub mod q8;
mod real;
pub mod simd;

pub(crate) use real::{softmax, Real};
