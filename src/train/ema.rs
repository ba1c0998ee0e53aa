//! Exponential moving average of trainable weights (diffusers' `EMAModel` with its default
//! warm-up-free decay: `min(decay, (1 + n) / (10 + n))` after `n` updates).
use tch::{nn::VarStore, Tensor};

pub struct Ema {
    decay: f64,
    updates: u64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Starts from a copy of the current weights.
    pub fn new(vs: &VarStore, decay: f64) -> Self {
        let mut shadow: Vec<(String, Tensor)> = tch::no_grad(|| {
            vs.variables()
                .into_iter()
                .map(|(n, t)| (n, t.detach().copy()))
                .collect()
        });
        shadow.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            decay,
            updates: 0,
            shadow,
        }
    }

    /// The decay used for the next update.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// `shadow = decay * shadow + (1 - decay) * weights`.
    pub fn update(&mut self, vs: &VarStore) {
        let d = self.current_decay();
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, s) in self.shadow.iter_mut() {
                let w = &vars[name.as_str()];
                let _ = s.g_mul_scalar_(d).g_add_(&(w * (1.0 - d)));
            }
        });
        self.updates += 1;
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    pub fn set_updates(&mut self, n: u64) {
        self.updates = n;
    }

    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.shadow
    }

    /// Replaces the shadow weights (resume).
    pub fn load(&mut self, tensors: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        let mut map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        for (name, s) in self.shadow.iter_mut() {
            let t = map
                .remove(name)
                .ok_or_else(|| anyhow::anyhow!("EMA state has no tensor '{name}'"))?;
            tch::no_grad(|| s.copy_(&t));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn ema_follows_weights_with_warmup_decay() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().zeros("w", &[3]);
        let mut ema = Ema::new(&vs, 0.9);
        assert!((ema.current_decay() - 0.1).abs() < 1e-12);
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(1.0);
        });
        ema.update(&vs);
        // decay 0.1: shadow = 0.1 * 0 + 0.9 * 1
        let s = &ema.tensors()[0].1;
        assert!(s.allclose(
            &Tensor::full([3], 0.9, (Kind::Float, Device::Cpu)),
            1e-6,
            1e-6,
            false
        ));
        assert!((ema.current_decay() - 2.0 / 11.0).abs() < 1e-12);
    }
}
