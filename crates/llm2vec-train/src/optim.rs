//! The optimizer of Hugging Face's Trainer: AdamW (PyTorch's, decoupled weight decay), the linear
//! schedule with warmup, and clipping by the global gradient norm. Its state saves and loads.

use crate::{Result, TrainError};
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// AdamW hyper-parameters (PyTorch defaults for betas and eps).
#[derive(Debug, Clone)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW over a fixed list of variables.
pub struct AdamW {
    config: AdamWConfig,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: usize,
}

impl AdamW {
    pub fn new(vars: &[&Var], config: AdamWConfig) -> Result<Self> {
        let zeros = |v: &&Var| v.as_tensor().zeros_like();
        let m = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { config, m, v, steps: 0 })
    }

    /// One update with learning rate `lr`; `grads[i]` belongs to `vars[i]`.
    pub fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64) -> Result<()> {
        let c = &self.config;
        self.steps += 1;
        let t = self.steps as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            self.m[i] = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&self.v[i] / bc2)?.sqrt()? + c.eps)?;
            let update = ((&self.m[i] / bc1)? / denom)?;
            let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Writes the moments and step count to `path` (safetensors), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            tensors.insert(format!("m.{i}"), m.to_device(&Device::Cpu)?);
            tensors.insert(format!("v.{i}"), v.to_device(&Device::Cpu)?);
        }
        tensors.insert("steps".into(), Tensor::new(&[self.steps as u32], &Device::Cpu)?);
        Ok(llm2vec::fs::write_atomic_with(path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?)
    }

    /// Restores the state written by [`AdamW::save`], onto the device of this optimizer's state.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let mut take = |name: String, like: &Tensor| -> Result<Tensor> {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| TrainError::Invalid(format!("{}: `{name}` missing", path.display())))?;
            if t.dims() != like.dims() || t.dtype() != like.dtype() {
                let (got, expected) = ((t.dtype(), t.dims()), (like.dtype(), like.dims()));
                return Err(TrainError::Invalid(format!(
                    "{}: `{name}` is {got:?}, expected {expected:?}",
                    path.display()
                )));
            }
            Ok(t.to_device(like.device())?)
        };
        for i in 0..self.m.len() {
            self.m[i] = take(format!("m.{i}"), &self.m[i])?;
            self.v[i] = take(format!("v.{i}"), &self.v[i])?;
        }
        let steps = tensors
            .remove("steps")
            .ok_or_else(|| TrainError::Invalid(format!("{}: `steps` missing", path.display())))?;
        self.steps = steps.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Hugging Face's linear schedule: the rate rises from 0 over `warmup` steps, then falls linearly to 0
/// at `total`. `step` counts optimizer steps taken so far (the first update uses step 0).
pub fn linear_schedule(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    base * (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (as `clip_grad_norm_`); returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut total = 0.0;
    for g in grads.iter() {
        total += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * factor)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_hugging_face() {
        // get_linear_schedule_with_warmup(opt, 2, 10): lambdas 0, .5, 1, 7/8, ..., 0
        let lrs: Vec<f64> = (0..11).map(|s| linear_schedule(1.0, s, 2, 10)).collect();
        assert_eq!(lrs[0], 0.0);
        assert_eq!(lrs[1], 0.5);
        assert_eq!(lrs[2], 1.0);
        assert!((lrs[3] - 7.0 / 8.0).abs() < 1e-12);
        assert_eq!(lrs[10], 0.0);
        assert_eq!(linear_schedule(1.0, 0, 0, 4), 1.0);
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(&[&var], AdamWConfig::default()).unwrap();
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).unwrap();
        opt.step(&[&var], &[g], 0.1).unwrap();
        let v: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut grads = vec![Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()];
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let g: Vec<f32> = grads[0].to_vec1().unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
    }
}
