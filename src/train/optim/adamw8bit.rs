//! 8-bit AdamW: bitsandbytes' `AdamW8bit` (its CPU reference semantics, 0.50). Tensors of at
//! least `min_8bit_size` elements keep both moments as uint8 codes of the dynamic maps, blockwise
//! with an fp32 absmax per block (signed map for the first moment, unsigned for the second);
//! each step dequantises them, does the Adam update in fp32 with bias correction and decoupled
//! weight decay, and requantises. Smaller tensors keep fp32 moments and take bitsandbytes'
//! 32-bit update (its eps is scaled by the second bias correction, so it is not torch's AdamW).
//!
//! State in a checkpoint: `m.<param>` / `v.<param>` (uint8 codes or fp32 moments) and, for the
//! quantised ones, `m_absmax.<param>` / `v_absmax.<param>`.
use super::quant::{self, DynamicMap};
use super::{add_scaled_, clip_grad_norm, named_state, sorted, zero_grads, Optimizer, Saved};
use anyhow::Result;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// The two moments of one parameter: fp32, or uint8 codes with the absmax of each block.
struct Moments {
    m: Tensor,
    v: Tensor,
    /// The absmax of `m`'s and of `v`'s blocks when they are codes.
    absmax: Option<[Tensor; 2]>,
}

impl Moments {
    /// The state tensors under their checkpoint prefixes (views of the live ones).
    fn parts(&self) -> Vec<(&'static str, Tensor)> {
        let mut out = vec![("m", self.m.shallow_clone()), ("v", self.v.shallow_clone())];
        if let Some([am, av]) = &self.absmax {
            out.push(("m_absmax", am.shallow_clone()));
            out.push(("v_absmax", av.shallow_clone()));
        }
        out
    }
}

pub struct AdamW8bit {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
    /// (name, parameter, moments), sorted by name.
    params: Vec<(String, Tensor, Moments)>,
    /// The signed map (first moment) and the unsigned map (second moment).
    signed: DynamicMap,
    unsigned: DynamicMap,
}

impl AdamW8bit {
    /// Parameters with fewer than `min_8bit_size` elements keep fp32 state.
    pub fn new(
        named: HashMap<String, Tensor>,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        min_8bit_size: u64,
    ) -> Self {
        let params: Vec<(String, Tensor, Moments)> = sorted(named)
            .into_iter()
            .map(|(n, p)| {
                let zeros = |kind| Tensor::zeros(p.size(), (kind, p.device()));
                let quantized = (p.numel() as u64) >= min_8bit_size;
                let kind = if quantized { Kind::Uint8 } else { Kind::Float };
                let blocks = [quant::blocks(p.numel() as i64)];
                let absmax = || Tensor::zeros(blocks, (Kind::Float, p.device()));
                let moments = Moments {
                    m: zeros(kind),
                    v: zeros(kind),
                    absmax: quantized.then(|| [absmax(), absmax()]),
                };
                (n, p, moments)
            })
            .collect();
        let device = params.first().map_or(Device::Cpu, |p| p.1.device());
        Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            step: 0,
            params,
            signed: DynamicMap::new(true, device),
            unsigned: DynamicMap::new(false, device),
        }
    }

    /// One update of every parameter with a gradient, then the gradients are zeroed. The
    /// operations of bitsandbytes' CPU kernels in their order (fused `add_(alpha=)` included),
    /// with its Python-side scalars (`1 - beta**step` through libm's pow, as Python's `**`).
    fn update(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as f64;
        let c1 = 1.0 - self.beta1.powf(t);
        let c2 = (1.0 - self.beta2.powf(t)).sqrt();
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        tch::no_grad(|| {
            for (_, p, moments) in self.params.iter_mut() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g32 = g.to_kind(Kind::Float);
                let mut p32 = p.to_kind(Kind::Float);
                let Moments { m, v, absmax } = moments;
                match absmax {
                    None => {
                        let _ = m.g_mul_scalar_(b1);
                        add_scaled_(m, &g32, 1.0 - b1);
                        let _ = v.g_mul_scalar_(b2).addcmul_(&(&g32 * (1.0 - b2)), &g32);
                        let step_size = -lr * c2 / c1;
                        if wd > 0.0 {
                            let _ = p32.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let update = &*m / (v.sqrt() + eps * c2);
                        add_scaled_(&mut p32, &update, step_size);
                    }
                    Some([m_absmax, v_absmax]) => {
                        let mut m32 = quant::dequantize(m, m_absmax, &self.signed);
                        let mut v32 = quant::dequantize(v, v_absmax, &self.unsigned);
                        let _ = m32.g_mul_scalar_(b1);
                        add_scaled_(&mut m32, &g32, 1.0 - b1);
                        let _ = v32.g_mul_scalar_(b2).addcmul_(&(&g32 * (1.0 - b2)), &g32);
                        let mut denom = v32.sqrt();
                        let _ = denom.g_div_scalar_(c2).g_add_scalar_(eps);
                        // The new moments are saved first, so that m32 can then turn into the
                        // update in place (one full-size temporary fewer).
                        for (x, map, codes, absmax) in [
                            (&m32, &self.signed, m, m_absmax),
                            (&v32, &self.unsigned, v, v_absmax),
                        ] {
                            let (c, a) = quant::quantize(x, map);
                            codes.copy_(&c);
                            absmax.copy_(&a);
                        }
                        drop(v32);
                        if wd > 0.0 {
                            let _ = p32.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let _ = m32.g_mul_scalar_(-lr / c1);
                        let _ = p32.addcdiv_(&m32, &denom);
                    }
                }
                if p32.data_ptr() != p.data_ptr() {
                    p.shallow_clone().copy_(&p32);
                }
                let _ = g.zero_();
            }
        });
    }
}

impl Optimizer for AdamW8bit {
    fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        clip_grad_norm(self.params.iter().map(|s| &s.1), max_norm)
    }
    fn step(&mut self, lr: f64) {
        self.update(lr)
    }
    fn zero_grad(&self) {
        zero_grads(self.params.iter().map(|s| &s.1))
    }
    fn steps(&self) -> u64 {
        self.step
    }
    /// `m.` / `v.` (codes or fp32 moments) and `m_absmax.` / `v_absmax.` of each parameter.
    fn state(&self) -> Vec<(String, Tensor)> {
        named_state(self.params.iter().map(|(n, _, m)| (n.as_str(), m.parts())))
    }
    fn load_state(&mut self, tensors: Vec<(String, Tensor)>, steps: u64) -> Result<()> {
        let parts = self.params.iter().map(|(n, _, m)| (n.as_str(), m.parts()));
        Saved::new(tensors).restore_all(parts)?;
        self.step = steps;
        Ok(())
    }
}
