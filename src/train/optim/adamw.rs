//! AdamW with decoupled weight decay (Loshchilov & Hutter), written out so that its state can
//! be saved in a checkpoint and restored exactly; numerically torch.optim.AdamW's update.
use super::{clip_grad_norm, sorted, zero_grads, Optimizer, Saved};
use anyhow::Result;
use std::collections::HashMap;
use tch::{Kind, Tensor};

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimisation steps taken.
    pub step: u64,
    /// (name, parameter, first moment, second moment), sorted by name.
    params: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(
        named: HashMap<String, Tensor>,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> Self {
        let params = sorted(named)
            .into_iter()
            .map(|(n, p)| {
                let m = Tensor::zeros_like(&p).to_kind(Kind::Float);
                let v = Tensor::zeros_like(&p).to_kind(Kind::Float);
                (n, p, m, v)
            })
            .collect();
        Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            step: 0,
            params,
        }
    }

    /// L2 norm of all gradients together; if above `max_norm` (> 0), scales them down to it.
    /// Returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        clip_grad_norm(self.params.iter().map(|s| &s.1), max_norm)
    }

    /// One update with learning rate `lr`, then the gradients are zeroed. The operations of
    /// `torch.optim.AdamW`'s single-tensor path (its CPU default), in place: decay, `lerp_` of
    /// the first moment, `mul_` + `addcmul_` of the second, `addcdiv_` of the parameter; a
    /// scalar factor tch's `addcmul_` / `addcdiv_` do not take is applied to their first
    /// operand, which is where PyTorch's kernels apply it, so the result is the same.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        tch::no_grad(|| {
            for (_, p, m, v) in self.params.iter_mut() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g32 = g.to_kind(Kind::Float);
                let mut p = p.shallow_clone();
                if self.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = m.lerp_(&g32, 1.0 - self.beta1);
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .addcmul_(&(&g32 * (1.0 - self.beta2)), &g32);
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bc2_sqrt).g_add_scalar_(self.eps);
                let scaled = &*m * -step_size;
                if p.kind() == Kind::Float {
                    let _ = p.addcdiv_(&scaled, &denom);
                } else {
                    let _ = p.g_add_(&(scaled / &denom).to_kind(p.kind()));
                }
                let _ = g.zero_();
            }
        });
    }

    /// Zeroes every gradient (after a skipped step).
    pub fn zero_grad(&self) {
        zero_grads(self.params.iter().map(|s| &s.1))
    }

    /// The moments, named `m.<param>` / `v.<param>`, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for (n, _, m, v) in &self.params {
            out.push((format!("m.{n}"), m.shallow_clone()));
            out.push((format!("v.{n}"), v.shallow_clone()));
        }
        out
    }

    /// Restores the moments saved by [`AdamW::state`] and the step count.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>, step: u64) -> Result<()> {
        let mut saved = Saved::new(tensors);
        for (n, _, m, v) in self.params.iter_mut() {
            saved.restore(&format!("m.{n}"), m)?;
            saved.restore(&format!("v.{n}"), v)?;
        }
        self.step = step;
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        AdamW::clip_grad_norm(self, max_norm)
    }
    fn step(&mut self, lr: f64) {
        AdamW::step(self, lr)
    }
    fn zero_grad(&self) {
        AdamW::zero_grad(self)
    }
    fn steps(&self) -> u64 {
        self.step
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        AdamW::state(self)
    }
    fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: u64) -> Result<()> {
        AdamW::load_state(self, tensors, steps)
    }
}
