//! Optimizers: the [`Optimizer`] trait the trainer steps through and its three implementations,
//! chosen by `train.optimizer` in [`for_config`]:
//!
//! - [`AdamW`] (adamw.rs): torch.optim.AdamW's update, fp32 moments;
//! - [`AdamW8bit`] (adamw8bit.rs): bitsandbytes' `AdamW8bit`, both moments as 8-bit codes of
//!   its dynamic maps with an fp32 absmax per block (quant.rs);
//! - [`Adafactor`] (adafactor.rs): transformers' `Adafactor` with an external learning rate,
//!   factored second moments.
//!
//! Each writes its state as named tensors (any dtype) into the checkpoint's
//! `resume/optimizer.safetensors` and restores it exactly. What they share is here: total-norm
//! gradient clipping as `torch.nn.utils.clip_grad_norm_`, zeroing, the fused `x += a * y` of
//! PyTorch's `add_(y, alpha=a)`, and the checked restore of saved tensors.
mod adafactor;
mod adamw;
mod adamw8bit;
pub mod quant;

pub use adafactor::{Adafactor, AdafactorSettings};
pub use adamw::AdamW;
pub use adamw8bit::AdamW8bit;

use super::config::{OptimizerKind, TrainSection};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// What the training loop needs of an optimizer. The parameters are given at construction.
pub trait Optimizer {
    /// The L2 norm of all gradients together; above `max_norm` (> 0) they are scaled down to
    /// it. Returns the norm before clipping.
    fn clip_grad_norm(&self, max_norm: f64) -> f64;
    /// One update with learning rate `lr`; the gradients are zeroed after it.
    fn step(&mut self, lr: f64);
    /// Zeroes every gradient (a step that is not taken).
    fn zero_grad(&self);
    /// Updates taken so far.
    fn steps(&self) -> u64;
    /// The state to save, as named tensors.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state saved by [`Optimizer::state`] after `steps` updates.
    fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: u64) -> Result<()>;
}

/// The optimizer `train.optimizer` names over `params`, with its settings from `train`.
pub fn for_config(t: &TrainSection, params: HashMap<String, Tensor>) -> Box<dyn Optimizer> {
    let (b1, b2, eps, wd) = (
        t.adam_beta1,
        t.adam_beta2,
        t.adam_epsilon,
        t.adam_weight_decay,
    );
    match t.optimizer {
        OptimizerKind::Adamw => Box::new(AdamW::new(params, b1, b2, eps, wd)),
        OptimizerKind::Adamw8bit => Box::new(AdamW8bit::new(
            params,
            b1,
            b2,
            eps,
            wd,
            t.adamw8bit_min_size,
        )),
        OptimizerKind::Adafactor => Box::new(Adafactor::new(
            params,
            AdafactorSettings {
                eps: t.adafactor_eps,
                clip_threshold: t.adafactor_clip_threshold,
                decay_rate: t.adafactor_decay_rate,
                beta1: t.adafactor_beta1,
                weight_decay: t.adafactor_weight_decay,
            },
        )),
    }
}

/// The named parameters sorted by name (the order every optimizer updates them in).
fn sorted(named: HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = named.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// L2 norm of all gradients of `params` together; if above `max_norm` (> 0), scales them down
/// to it (`clip_grad_norm_`'s `max_norm / (total + 1e-6)`). Returns the norm before clipping.
pub fn clip_grad_norm<'a>(params: impl Iterator<Item = &'a Tensor> + Clone, max_norm: f64) -> f64 {
    let norms: Vec<Tensor> = params
        .clone()
        .filter_map(|p| {
            let g = p.grad();
            g.defined().then(|| g.to_kind(Kind::Float).norm())
        })
        .collect();
    if norms.is_empty() {
        return 0.0;
    }
    let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::NAN);
    if max_norm > 0.0 && total.is_finite() {
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        if coef < 1.0 {
            tch::no_grad(|| {
                for p in params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(coef);
                    }
                }
            });
        }
    }
    total
}

/// Zeroes the gradient of each of `params` that has one.
pub fn zero_grads<'a>(params: impl Iterator<Item = &'a Tensor>) {
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// `x += alpha * y` as PyTorch's `x.add_(y, alpha=alpha)` computes it: one fused multiply-add
/// per element with `alpha` in fp32. tch's `add_` takes no alpha; `addcmul_` with a 0-d `alpha`
/// runs the same fused kernel (a separate multiply and add would round twice).
fn add_scaled_(x: &mut Tensor, y: &Tensor, alpha: f64) {
    let a = Tensor::scalar_tensor(alpha, (Kind::Float, x.device()));
    let _ = x.addcmul_(y, &a);
}

/// The state tensors of each parameter (name, its tensors under their prefixes) as the named
/// tensors of a checkpoint: `<prefix>.<name>`.
fn named_state<'a>(
    params: impl Iterator<Item = (&'a str, Vec<(&'static str, Tensor)>)>,
) -> Vec<(String, Tensor)> {
    params
        .flat_map(|(n, parts)| parts.into_iter().map(move |(k, t)| (format!("{k}.{n}"), t)))
        .collect()
}

/// The tensors of a saved optimizer state, taken one by one into the live state.
struct Saved(HashMap<String, Tensor>);

impl Saved {
    fn new(tensors: Vec<(String, Tensor)>) -> Self {
        Saved(tensors.into_iter().collect())
    }

    /// Copies the saved `key` into `dst`, which it must match in shape and dtype.
    fn restore(&mut self, key: &str, dst: &mut Tensor) -> Result<()> {
        let src = self.0.remove(key).ok_or_else(|| {
            anyhow!("optimizer state has no '{key}' (was it saved by another train.optimizer?)")
        })?;
        if src.size() != dst.size() || src.kind() != dst.kind() {
            bail!(
                "optimizer state '{key}' is {:?} {:?}, expected {:?} {:?}",
                src.kind(),
                src.size(),
                dst.kind(),
                dst.size()
            );
        }
        tch::no_grad(|| dst.copy_(&src));
        Ok(())
    }

    /// Restores every tensor [`named_state`] names for `params` (views of the live state).
    fn restore_all<'a>(
        &mut self,
        params: impl Iterator<Item = (&'a str, Vec<(&'static str, Tensor)>)>,
    ) -> Result<()> {
        for (n, parts) in params {
            for (k, mut t) in parts {
                self.restore(&format!("{k}.{n}"), &mut t)?;
            }
        }
        Ok(())
    }
}
