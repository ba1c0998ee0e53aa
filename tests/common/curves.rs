//! Synthetic training curves and the online detector of the monitor tests (tests/monitor.rs,
//! tests/monitor_runs.rs).
use studioize::monitor::{Analysis, Detector, DetectorConfig};

/// A small deterministic generator (SplitMix64 + Box-Muller), so that the tests need no crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A synthetic run: per-step (step, loss, lr, grad_norm) and per-validation
/// (step, val_loss, prior_loss).
#[derive(Default)]
pub struct Run {
    pub train: Vec<(u64, f64, f64, f64)>,
    pub val: Vec<(u64, f64, Option<f64>)>,
}

/// Shapes of the synthetic curves, as functions of the step.
pub struct Shape {
    pub steps: u64,
    pub val_every: u64,
    pub lr: f64,
    /// Noise-free training loss.
    pub train: Box<dyn Fn(u64) -> f64>,
    /// Noise-free validation loss.
    pub val: Box<dyn Fn(u64) -> f64>,
    /// Noise-free prior loss (None: no prior set).
    pub prior: Option<Box<dyn Fn(u64) -> f64>>,
    /// Multiplier of the gradient norm.
    pub grad: Box<dyn Fn(u64) -> f64>,
    /// Relative noise of validation and prior losses.
    pub val_noise: f64,
}

impl Shape {
    /// A healthy fine-tune: training and validation loss decrease, prior loss stays flat.
    pub fn healthy() -> Shape {
        Shape {
            steps: 8000,
            val_every: 250,
            lr: 3e-6,
            train: Box::new(|s| 0.08 + 0.1 * (-(s as f64) / 3000.0).exp()),
            val: Box::new(|s| 0.1 + 0.1 * (-(s as f64) / 4000.0).exp()),
            prior: Some(Box::new(|_| 0.15)),
            grad: Box::new(|_| 1.0),
            val_noise: 0.01,
        }
    }

    /// Generates the run: training loss with heavy-tailed (log-normal, sigma 0.5) noise as in
    /// diffusion training, gradient norm with log-normal noise and occasional 5x spikes.
    pub fn generate(&self, seed: u64) -> Run {
        let mut rng = Rng(seed);
        let mut run = Run::default();
        for s in 0..=self.steps {
            if s % self.val_every == 0 {
                let v = (self.val)(s) * (1.0 + self.val_noise * rng.normal());
                let p = self
                    .prior
                    .as_ref()
                    .map(|f| f(s) * (1.0 + self.val_noise * rng.normal()));
                run.val.push((s, v, p));
            }
            if s == self.steps {
                break;
            }
            let step = s + 1;
            let loss = (self.train)(step) * (0.5 * rng.normal() - 0.125).exp();
            let spike = if rng.uniform() < 0.01 { 5.0 } else { 1.0 };
            let grad = (self.grad)(step) * (0.3 * rng.normal()).exp() * spike;
            run.train.push((step, loss, self.lr, grad));
        }
        run
    }
}

/// Feeds a run to a fresh detector in step order (a validation at step s follows training
/// step s) and returns its analysis.
pub fn feed(run: &Run, cfg: &DetectorConfig) -> Analysis {
    let mut det = Detector::new(cfg.clone());
    let mut vi = 0;
    for &(step, loss, _, grad) in &run.train {
        while vi < run.val.len() && run.val[vi].0 < step {
            let (s, v, p) = run.val[vi];
            det.observe_validation(s, v, p);
            vi += 1;
        }
        det.observe_train(step, loss, grad);
    }
    for &(s, v, p) in &run.val[vi..] {
        det.observe_validation(s, v, p);
    }
    det.analysis()
}

pub fn summary(a: &Analysis) -> String {
    let events: Vec<String> = a
        .events
        .iter()
        .map(|e| format!("{}@{}: {}", e.label, e.step, e.reason))
        .collect();
    format!("label {} events {:#?}", a.label, events)
}
