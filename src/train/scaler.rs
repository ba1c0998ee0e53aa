//! Dynamic loss scaling for `train.mixed_precision = "fp16"`, with the semantics of PyTorch's
//! `torch.amp.GradScaler` at its defaults: the loss is multiplied by the scale (initially
//! 65536) before the backward pass, so that small fp16 gradients do not flush to zero; before
//! clipping, the gradients are divided by it again (clipping and the optimizer see the true
//! gradients). When any gradient is inf or NaN the step is skipped (the gradients are zeroed,
//! the optimizer does not move) and the scale is halved; after 2000 consecutive good steps it
//! doubles. The state (scale, good steps since the last change) goes into the checkpoint.
//!
//! A run whose gradients keep overflowing until the scale underflows (no longer a normal f32)
//! has diverged: no scale can make its gradients finite.
use super::config::{MixedPrecision, TrainSection};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `GradScaler(init_scale=2.**16, growth_factor=2.0, backoff_factor=0.5,
/// growth_interval=2000)`.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: u64 = 2000;

/// What a checkpoint keeps of the scaler (`state.json`'s `loss_scaler`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    /// Consecutive good steps since the scale last changed.
    pub growth_tracker: u64,
}

impl Default for ScalerState {
    fn default() -> Self {
        Self {
            scale: INIT_SCALE,
            growth_tracker: 0,
        }
    }
}

/// What [`GradScaler::unscale`] found in a step's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unscaled {
    /// All finite and unscaled: clip and take the step.
    Finite,
    /// Some inf / NaN: the gradients are zeroed, the scale halved; skip the step.
    Skipped,
    /// Skipped, and the scale has underflowed: the run has diverged.
    Underflow,
}

/// The loss scaler of a run: active only for fp16 autocast.
pub struct GradScaler {
    state: Option<ScalerState>,
    params: Vec<Tensor>,
}

impl GradScaler {
    /// The scaler of `train`: on for `mixed_precision = "fp16"` over the trained `params`.
    pub fn for_config(t: &TrainSection, params: impl IntoIterator<Item = Tensor>) -> Self {
        match t.mixed_precision {
            MixedPrecision::Fp16 => Self::new(params),
            MixedPrecision::No | MixedPrecision::Bf16 => Self::disabled(),
        }
    }

    /// An active scaler at the initial scale.
    pub fn new(params: impl IntoIterator<Item = Tensor>) -> Self {
        Self {
            state: Some(ScalerState::default()),
            params: params.into_iter().collect(),
        }
    }

    /// No scaling: every method is the identity.
    pub fn disabled() -> Self {
        Self {
            state: None,
            params: Vec::new(),
        }
    }

    /// The state to checkpoint (`None` when scaling is off).
    pub fn state(&self) -> Option<ScalerState> {
        self.state
    }

    /// The current scale (`None` when scaling is off).
    pub fn scale(&self) -> Option<f64> {
        self.state.map(|s| s.scale)
    }

    /// Restores a checkpoint's state; one without (written before fp16 was on) starts over.
    pub fn load(&mut self, saved: Option<ScalerState>) {
        if self.state.is_some() {
            self.state = Some(saved.unwrap_or_default());
        }
    }

    /// The loss to call `backward` on: `loss * scale`.
    pub fn scaled(&self, loss: &Tensor) -> Tensor {
        match self.state {
            Some(s) => loss * s.scale,
            None => loss.shallow_clone(),
        }
    }

    /// Divides the accumulated gradients by the scale and updates it (see the module docs).
    /// On [`Unscaled::Skipped`] / [`Unscaled::Underflow`] the gradients are zeroed.
    pub fn unscale(&mut self) -> Unscaled {
        let Some(state) = self.state.as_mut() else {
            return Unscaled::Finite;
        };
        let inv = 1.0 / state.scale as f32;
        let mut finite = true;
        for p in &self.params {
            let mut g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = g.g_mul_scalar_(inv as f64);
            finite &= g.isfinite().all().int64_value(&[]) != 0;
        }
        *state = update(*state, !finite);
        if finite {
            return Unscaled::Finite;
        }
        for p in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        if state.scale >= f64::from(f32::MIN_POSITIVE) {
            Unscaled::Skipped
        } else {
            Unscaled::Underflow
        }
    }
}

/// One `GradScaler.update()` (libtorch's `_amp_update_scale_`): back off on an overflow, else
/// count the good step and grow at the interval (when the grown scale is still finite).
fn update(s: ScalerState, found_inf: bool) -> ScalerState {
    if found_inf {
        return ScalerState {
            scale: (s.scale as f32 * BACKOFF_FACTOR as f32) as f64,
            growth_tracker: 0,
        };
    }
    let tracker = s.growth_tracker + 1;
    if tracker < GROWTH_INTERVAL {
        return ScalerState {
            growth_tracker: tracker,
            ..s
        };
    }
    let grown = s.scale as f32 * GROWTH_FACTOR as f32;
    ScalerState {
        scale: if grown.is_finite() {
            grown as f64
        } else {
            s.scale
        },
        growth_tracker: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn param() -> Tensor {
        Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true)
    }

    /// The gradient of `sum(w * c)` through the scaler is `c`, after unscaling.
    fn backward(s: &GradScaler, w: &Tensor, c: &[f32]) {
        let loss = (w * Tensor::from_slice(c)).sum(Kind::Float);
        s.scaled(&loss).backward();
    }

    #[test]
    fn unscaled_gradients_are_the_true_ones() {
        let w = param();
        let mut s = GradScaler::new([w.shallow_clone()]);
        backward(&s, &w, &[0.5, 1e-6, -3.0]);
        assert_eq!(
            Vec::<f32>::try_from(w.grad()).unwrap(),
            [0.5 * 65536.0, 1e-6 * 65536.0, -3.0 * 65536.0]
        );
        assert_eq!(s.unscale(), Unscaled::Finite);
        let g = Vec::<f32>::try_from(w.grad()).unwrap();
        assert_eq!(g, [0.5, 1e-6, -3.0]);
        assert_eq!(s.state().unwrap().growth_tracker, 1);
        assert_eq!(s.scale(), Some(INIT_SCALE));
    }

    /// The trainer's use: an update (here plain SGD) only on finite unscaled gradients.
    fn step(s: &mut GradScaler, w: &Tensor) -> Unscaled {
        let outcome = s.unscale();
        if outcome == Unscaled::Finite {
            tch::no_grad(|| {
                let mut w = w.shallow_clone();
                let _ = w.f_sub_(&(w.grad() * 0.1)).unwrap();
            });
        }
        let _ = w.grad().zero_();
        outcome
    }

    /// An injected inf skips the step: the parameter is unchanged, the gradients are zeroed
    /// and the scale is halved; a NaN likewise.
    #[test]
    fn an_inf_gradient_skips_the_step_and_halves_the_scale() {
        let w = param();
        let mut s = GradScaler::new([w.shallow_clone()]);
        for _ in 0..5 {
            backward(&s, &w, &[1.0, 1.0, 1.0]);
            assert_eq!(step(&mut s, &w), Unscaled::Finite);
        }
        let before = w.copy();
        assert!(
            !before.equal(&param()),
            "the good steps moved the parameter"
        );
        backward(&s, &w, &[1.0, f32::INFINITY, 1.0]);
        assert_eq!(s.unscale(), Unscaled::Skipped);
        assert_eq!(w.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(s.scale(), Some(32768.0));
        assert_eq!(s.state().unwrap().growth_tracker, 0);
        backward(&s, &w, &[f32::NAN, 1.0, 1.0]);
        assert_eq!(step(&mut s, &w), Unscaled::Skipped);
        assert!(w.equal(&before));
        assert_eq!(s.scale(), Some(16384.0));
    }

    /// 2000 consecutive good steps double the scale; a bad one restarts the count.
    #[test]
    fn good_steps_grow_the_scale_at_the_interval() {
        let mut st = ScalerState::default();
        for _ in 0..GROWTH_INTERVAL - 1 {
            st = update(st, false);
        }
        assert_eq!((st.scale, st.growth_tracker), (INIT_SCALE, 1999));
        st = update(st, false);
        assert_eq!((st.scale, st.growth_tracker), (2.0 * INIT_SCALE, 0));
        let w = param();
        let mut s = GradScaler::new([w.shallow_clone()]);
        for _ in 0..GROWTH_INTERVAL {
            backward(&s, &w, &[1.0, 2.0, 3.0]);
            assert_eq!(s.unscale(), Unscaled::Finite);
            let _ = w.grad().zero_();
        }
        assert_eq!(s.scale(), Some(2.0 * INIT_SCALE));
    }

    /// The update rule is libtorch's own `_amp_update_scale_` (what GradScaler.update runs),
    /// over a sequence with overflows, growths and a growth that would overflow f32.
    #[test]
    fn update_matches_libtorch() {
        let interval = GROWTH_INTERVAL as usize;
        let mut pattern = vec![false; 3 * interval + 5];
        pattern[10] = true;
        pattern[interval + 20] = true;
        let mut ours = ScalerState::default();
        let mut scale = Tensor::from_slice(&[INIT_SCALE as f32]);
        let tracker = Tensor::from_slice(&[0i32]);
        for (i, &inf) in pattern.iter().enumerate() {
            let found = Tensor::from_slice(&[if inf { 1.0f32 } else { 0.0 }]);
            let _ = scale.internal_amp_update_scale_(
                &tracker,
                &found,
                GROWTH_FACTOR,
                BACKOFF_FACTOR,
                GROWTH_INTERVAL as i64,
            );
            ours = update(ours, inf);
            assert_eq!(ours.scale, scale.double_value(&[0]), "step {i}");
            assert_eq!(ours.growth_tracker as i64, tracker.int64_value(&[0]));
        }
        let top = ScalerState {
            scale: f64::from(f32::MAX),
            growth_tracker: GROWTH_INTERVAL - 1,
        };
        assert_eq!(update(top, false).scale, f64::from(f32::MAX));
    }

    /// Overflowing every step halves the scale down to underflow: then the run has diverged.
    #[test]
    fn endless_overflow_underflows_the_scale() {
        let w = param();
        let mut s = GradScaler::new([w.shallow_clone()]);
        let mut outcomes = Vec::new();
        for _ in 0..200 {
            backward(&s, &w, &[f32::INFINITY, 0.0, 0.0]);
            let o = s.unscale();
            outcomes.push(o);
            if o == Unscaled::Underflow {
                break;
            }
        }
        assert_eq!(outcomes.last(), Some(&Unscaled::Underflow));
        // 2^16 down to below 2^-126, the smallest normal f32.
        assert_eq!(outcomes.len(), 16 + 127);
    }

    #[test]
    fn disabled_scaler_is_the_identity_and_state_loads() {
        let w = param();
        let mut s = GradScaler::disabled();
        backward(&s, &w, &[1.0, 2.0, 3.0]);
        assert_eq!(s.unscale(), Unscaled::Finite);
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [1.0, 2.0, 3.0]);
        s.load(Some(ScalerState::default()));
        assert_eq!(s.state(), None);
        let mut s = GradScaler::new([w.shallow_clone()]);
        let saved = ScalerState {
            scale: 1024.0,
            growth_tracker: 17,
        };
        s.load(Some(saved));
        assert_eq!(s.state(), Some(saved));
        s.load(None);
        assert_eq!(s.state(), Some(ScalerState::default()));
    }
}
