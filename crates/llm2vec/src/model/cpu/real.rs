//! The float types the CPU kernels are generic over: f32, and f64 for the gradient checks.

/// A float type of the kernels, with the few functions they need beyond arithmetic.
pub(crate) trait Real:
    candle_core::WithDType
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
{
    fn of(v: f64) -> Self {
        Self::from_f64(v)
    }
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    /// The slice as f32 when `Self` is f32 (the vectorised kernels' type).
    fn as_f32(v: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(v: &mut [Self]) -> Option<&mut [f32]>;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn as_f32(v: &[Self]) -> Option<&[f32]> {
        Some(v)
    }
    fn as_f32_mut(v: &mut [Self]) -> Option<&mut [f32]> {
        Some(v)
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Softmax of one row in place (the maximum subtracted first).
pub(crate) fn softmax<T: Real>(row: &mut [T]) {
    let Some(&first) = row.first() else { return };
    let max = row.iter().copied().fold(first, |m, x| if x > m { x } else { m });
    let mut sum = T::of(0.0);
    row.iter_mut().for_each(|x| {
        *x = (*x - max).exp();
        sum += *x;
    });
    row.iter_mut().for_each(|x| *x /= sum);
}
