//! Adafactor (Shazeer & Stern 2018) as transformers' `Adafactor(scale_parameter=False,
//! relative_step=False, warmup_init=False)`: the learning rate is the one given, the second
//! moment of a parameter with 2 or more dims is factored into running means over its last dim
//! (rows) and its second-to-last dim (columns), the update is clipped to an RMS of
//! `clip_threshold`, the decay of the second moment is `1 - step^decay_rate`; an optional first
//! moment (`beta1`) and weight decay scaled by the learning rate.
//!
//! State in a checkpoint: `row.<param>` / `col.<param>` (factored), `v.<param>` (1-D), and
//! `m.<param>` with `beta1`.
use super::{add_scaled_, clip_grad_norm, named_state, sorted, zero_grads, Optimizer, Saved};
use anyhow::Result;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// transformers' Adafactor settings that apply with an external learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdafactorSettings {
    /// Added to the squared gradient (transformers' `eps[0]`; its `eps[1]` only scales the
    /// learning rate with `scale_parameter`, which is off).
    pub eps: f64,
    /// The update's RMS is clipped to this.
    pub clip_threshold: f64,
    /// The second moment's decay is `1 - step^decay_rate`.
    pub decay_rate: f64,
    /// First-moment decay; none: no first moment.
    pub beta1: Option<f64>,
    pub weight_decay: f64,
}

impl Default for AdafactorSettings {
    /// transformers' defaults.
    fn default() -> Self {
        AdafactorSettings {
            eps: 1e-30,
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta1: None,
            weight_decay: 0.0,
        }
    }
}

/// The state of one parameter.
struct Slot {
    name: String,
    param: Tensor,
    /// Factored: the row and column means; else the full second moment.
    second: Second,
    /// The first moment, with `beta1`.
    m: Option<Tensor>,
}

enum Second {
    Factored { row: Tensor, col: Tensor },
    Full(Tensor),
}

impl Slot {
    /// The state tensors under their checkpoint prefixes (views of the live ones).
    fn parts(&self) -> Vec<(&'static str, Tensor)> {
        let mut out = match &self.second {
            Second::Factored { row, col } => {
                vec![("row", row.shallow_clone()), ("col", col.shallow_clone())]
            }
            Second::Full(v) => vec![("v", v.shallow_clone())],
        };
        if let Some(m) = &self.m {
            out.push(("m", m.shallow_clone()));
        }
        out
    }
}

pub struct Adafactor {
    settings: AdafactorSettings,
    step: u64,
    /// Sorted by name.
    slots: Vec<Slot>,
}

impl Adafactor {
    pub fn new(named: HashMap<String, Tensor>, settings: AdafactorSettings) -> Self {
        let slots = sorted(named)
            .into_iter()
            .map(|(name, param)| {
                let shape = param.size();
                let zeros = |s: Vec<i64>| Tensor::zeros(s, (Kind::Float, param.device()));
                let second = if shape.len() >= 2 {
                    let d = shape.len();
                    let mut col = shape[..d - 2].to_vec();
                    col.push(shape[d - 1]);
                    Second::Factored {
                        row: zeros(shape[..d - 1].to_vec()),
                        col: zeros(col),
                    }
                } else {
                    Second::Full(zeros(shape.clone()))
                };
                let m = settings.beta1.map(|_| zeros(shape.clone()));
                Slot {
                    name,
                    param,
                    second,
                    m,
                }
            })
            .collect();
        Adafactor {
            settings,
            step: 0,
            slots,
        }
    }

    /// One update of every parameter with a gradient, then the gradients are zeroed; the
    /// operations of transformers' `Adafactor.step` in its order (fused `add_(alpha=)`
    /// included), its scalars through libm's pow as Python's.
    fn update(&mut self, lr: f64) {
        self.step += 1;
        let s = self.settings;
        let beta2t = 1.0 - (self.step as f64).powf(s.decay_rate);
        tch::no_grad(|| {
            for slot in self.slots.iter_mut() {
                let mut g = slot.param.grad();
                if !g.defined() {
                    continue;
                }
                let g32 = g.to_kind(Kind::Float);
                let mut p32 = slot.param.to_kind(Kind::Float);
                let squared = g32.square() + s.eps;
                let mut update = match &mut slot.second {
                    Second::Factored { row, col } => {
                        let _ = row.g_mul_scalar_(beta2t);
                        add_scaled_(row, &squared.mean_dim(-1, false, None), 1.0 - beta2t);
                        let _ = col.g_mul_scalar_(beta2t);
                        add_scaled_(col, &squared.mean_dim(-2, false, None), 1.0 - beta2t);
                        let r = (&*row / row.mean_dim(-1, true, None))
                            .rsqrt_()
                            .unsqueeze(-1);
                        let c = col.unsqueeze(-2).rsqrt();
                        (r * c).g_mul_(&g32)
                    }
                    Second::Full(v) => {
                        let _ = v.g_mul_scalar_(beta2t);
                        add_scaled_(v, &squared, 1.0 - beta2t);
                        v.rsqrt().g_mul_(&g32)
                    }
                };
                let rms = update.norm() / (update.numel() as f64).powf(0.5);
                let _ = update.g_div_(&(rms / s.clip_threshold).clamp_min_(1.0));
                let _ = update.g_mul_scalar_(lr);
                if let (Some(m), Some(b1)) = (&mut slot.m, s.beta1) {
                    let _ = m.g_mul_scalar_(b1);
                    add_scaled_(m, &update, 1.0 - b1);
                    update = m.shallow_clone();
                }
                if s.weight_decay != 0.0 {
                    let p = p32.shallow_clone();
                    add_scaled_(&mut p32, &p, -s.weight_decay * lr);
                }
                let _ = p32.g_sub_(&update);
                if p32.data_ptr() != slot.param.data_ptr() {
                    slot.param.shallow_clone().copy_(&p32);
                }
                let _ = g.zero_();
            }
        });
    }
}

impl Optimizer for Adafactor {
    fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        clip_grad_norm(self.slots.iter().map(|s| &s.param), max_norm)
    }
    fn step(&mut self, lr: f64) {
        self.update(lr)
    }
    fn zero_grad(&self) {
        zero_grads(self.slots.iter().map(|s| &s.param))
    }
    fn steps(&self) -> u64 {
        self.step
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        named_state(self.slots.iter().map(|s| (s.name.as_str(), s.parts())))
    }
    fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: u64) -> Result<()> {
        let parts = self.slots.iter().map(|s| (s.name.as_str(), s.parts()));
        Saved::new(tensors).restore_all(parts)?;
        self.step = steps;
        Ok(())
    }
}
