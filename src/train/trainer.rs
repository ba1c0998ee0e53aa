//! The training loop, built from parts: the model, an [`Objective`], the [`Trainables`] (what
//! gets gradients), the data [`Sources`], an [`Optimizer`], the [`Forward`] options, the
//! health [`Detector`] and the [`RunDir`]. The loop itself is a few short methods: [`setup`],
//! [`resume`], [`run`] (one [`Trainer::step`] per optimisation step, each of
//! `gradient_accumulation` [`Trainer::micro_step`]s), [`Trainer::validate`] and
//! [`Trainer::checkpoint`]. A new training method adds a part (a `Trainable`, a `Source`, an
//! objective setting, an `Optimizer`), not code here.
//!
//! Every random draw of micro-step `k` comes from the generator seeded with `(seed, k)`, and the
//! data order is a function of `(seed, epoch)`, so a resumed run continues exactly as an
//! uninterrupted one would.
//!
//! [`setup`]: Trainer::setup
//! [`resume`]: Trainer::resume
//! [`run`]: Trainer::run
use super::checkpoint::{self, TrainerState};
use super::config::ExperimentConfig;
use super::distributed::Replica;
use super::forward::Forward;
use super::health::{replay, Detector};
use super::objective::Objective;
use super::optim::{self, Optimizer};
use super::run_dir::{read_metrics, read_validation, Logs, RunDir, StepRecord};
use super::runner::{Outcome, RunOptions};
use super::scaler::{GradScaler, Unscaled};
use super::sources::{Source, Sources};
use super::trainable::Trainables;
use crate::device::Precision;
use crate::pipelines::{LoadOptions, StableDiffusion};
use crate::profile;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

/// One run in progress (see the module docs).
pub struct Trainer<'a> {
    cfg: &'a ExperimentConfig,
    run: RunDir,
    sd: StableDiffusion,
    objective: Objective,
    forward: Forward,
    trainables: Trainables,
    sources: Sources,
    optimizer: Box<dyn Optimizer>,
    scaler: GradScaler,
    /// The other data-parallel processes (none in a single-process run).
    replica: Replica,
    detector: Detector,
    /// Validation losses so far `(step, loss)`: the best checkpoint survives pruning.
    validations: Vec<(u64, f64)>,
    /// Micro-batches per optimisation step.
    accum: u64,
    /// The step the run continues after (0 for a new run).
    start: u64,
    /// The data epoch of the last micro-batch.
    epoch: u64,
    /// Training time before this process (a resumed run), and when this process began.
    elapsed_before: f64,
    clock: Instant,
    bar: ProgressBar,
}

impl<'a> Trainer<'a> {
    /// Loads the model and builds every part of the run at step 0.
    pub fn setup(cfg: &'a ExperimentConfig, opts: &RunOptions, run: RunDir) -> Result<Self> {
        let t = &cfg.train;
        let load = LoadOptions {
            device: opts.device,
            precision: Precision::F32,
            variant: cfg.model.variant.clone(),
            config_dir: cfg.model.config.clone(),
            unet_override: None,
            text_encoder_override: None,
        };
        let mut sd = StableDiffusion::load(&cfg.model.base, &load)?;
        let mut objective = Objective::for_model(&sd, t)?;
        if let Some(db) = &cfg.dreambooth {
            objective = objective.with_prior_loss_weight(db.prior_loss_weight);
        }
        // New trained tensors (LoRA adapters) are drawn from the run's seed.
        tch::manual_seed(t.seed as i64);
        let trainables = profile::time("trainables", || Trainables::for_config(cfg, &mut sd))?;
        let sources = profile::time("data sources", || {
            opts.dist
                .writer_first(|| Sources::open(cfg, &sd, &objective, &run, opts.quiet))
        })?;
        let params = trainables.parameters(&sd)?;
        if let Some(dtype) = cfg.model.weights_dtype {
            super::frozen::apply(&mut sd, dtype, t.mixed_precision, &params)?;
        }
        let scaler = GradScaler::for_config(t, params.values().map(|p| p.shallow_clone()));
        let replica = Replica::new(opts.dist.clone(), &params);
        let optimizer = profile::time("optimizer state", || optim::for_config(t, params));
        let bar = if opts.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(t.steps)
        };
        bar.set_style(
            ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Ok(Self {
            cfg,
            run,
            forward: Forward::for_config(t, opts.device)?,
            sd,
            objective,
            trainables,
            sources,
            optimizer,
            scaler,
            replica,
            detector: Detector::for_run(cfg.monitor.clone(), t.steps),
            validations: Vec::new(),
            accum: t.gradient_accumulation.max(1) as u64,
            start: 0,
            epoch: 0,
            elapsed_before: 0.0,
            clock: Instant::now(),
            bar,
        })
    }

    /// Continues from checkpoint `dir`: the trained weights (and EMA) and the optimizer state
    /// come back, the logs are cut to its step, and the detector and the validation history
    /// are replayed from them.
    pub fn resume(&mut self, dir: &Path, state: &TrainerState) -> Result<()> {
        self.trainables.load(&self.sd, dir, state)?;
        self.optimizer
            .load_state(checkpoint::optimizer_state(dir)?, state.optimizer_step)
            .with_context(|| format!("{}: optimizer state", dir.display()))?;
        self.scaler.load(state.loss_scaler);
        self.start = state.step;
        self.elapsed_before = state.elapsed_s;
        self.run.truncate_logs(state.step)?;
        // A log file without its header yet (none, or an empty one) has no rows.
        let written = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
        let metrics_csv = self.run.metrics_csv();
        let metrics = match written(&metrics_csv) {
            true => read_metrics(&metrics_csv)?,
            false => Vec::new(),
        };
        let validation_csv = self.run.validation_csv();
        let validation = match written(&validation_csv) {
            true => Some(read_validation(&validation_csv)?),
            false => None,
        };
        replay(&mut self.detector, &metrics, validation.as_ref());
        self.validations = validation
            .map(|v| v.rows.iter().map(|r| (r.step, r.val_loss)).collect())
            .unwrap_or_default();
        Ok(())
    }

    /// Trains from the start step to `train.steps` (validating at step 0 of a new run).
    pub fn run(mut self) -> Result<Outcome> {
        let cfg = self.cfg;
        let t = &cfg.train;
        let mut logs = Logs::open(&self.run, &self.sources.timesteps)?;
        let mut data = profile::time("data stream", || {
            self.sources
                .stream(self.cfg, &self.sd, self.start * self.accum)
        })?;
        self.bar.set_position(self.start);
        self.replica.sync_weights()?;
        self.clock = Instant::now();
        if self.start == 0 && t.validate_every > 0 {
            // The events of the step-0 validation stop nothing.
            self.validate(&mut logs, 0)?;
        }
        for step in self.start + 1..=t.steps {
            if let Some(outcome) = self.step(step, data.as_mut(), &mut logs)? {
                self.bar.finish_and_clear();
                return Ok(outcome);
            }
        }
        self.bar.finish_and_clear();
        if let Some(cache) = &self.forward.text_cache {
            let c = cache.borrow();
            eprintln!(
                "text embeddings: {} caption(s) encoded, {} taken from the cache",
                c.misses, c.hits
            );
        }
        Ok(Outcome::Finished { step: t.steps })
    }

    /// One optimisation step: accumulated micro-steps, clipping, the update, the logs, the
    /// detector, and the validation and checkpoint when due. `Some` when the run ends here.
    fn step(
        &mut self,
        step: u64,
        data: &mut dyn Source,
        logs: &mut Logs,
    ) -> Result<Option<Outcome>> {
        let cfg = self.cfg;
        let t = &cfg.train;
        let step_clock = Instant::now();
        let lr = t.learning_rate * t.lr_schedule.factor(step - 1, t.warmup_steps, t.steps);
        let mut loss = 0.0;
        for micro in 0..self.accum {
            let value = self.micro_step(data, step, micro)?;
            if !value.is_finite() {
                // The row stays in metrics.csv, so the analysis sees the divergence.
                return self.diverged(logs, step, value, lr, f64::NAN).map(Some);
            }
            loss += value;
        }
        let stage = profile::scope("step");
        profile::time("all-reduce", || self.replica.all_reduce_grads())?;
        let loss_scale = self.scaler.scale();
        let skipped = match self.scaler.unscale() {
            Unscaled::Finite => false,
            Unscaled::Skipped => true,
            Unscaled::Underflow => {
                return self.diverged(logs, step, loss, lr, f64::INFINITY).map(Some)
            }
        };
        let grad_norm = match skipped {
            true => f64::INFINITY,
            false => profile::time("clip gradients", || {
                self.optimizer.clip_grad_norm(t.max_grad_norm)
            }),
        };
        if !grad_norm.is_finite() && !skipped {
            return self.diverged(logs, step, loss, lr, grad_norm).map(Some);
        }
        if !skipped {
            profile::time("optimizer", || self.optimizer.step(lr));
            profile::time("after step", || self.trainables.after_step(&self.sd));
        }
        let logging = profile::scope("logs");
        let images = (t.batch_size as u64 * self.accum) as f64;
        let ips = images / step_clock.elapsed().as_secs_f64().max(1e-9);
        let elapsed = self.elapsed();
        let record = self.record(step, loss, lr, grad_norm, Some(ips), elapsed);
        logs.metrics.row(&StepRecord {
            loss_scale,
            skipped,
            ..record
        })?;
        self.run.write_status("running", "", step)?;
        self.bar.set_position(step);
        self.bar
            .set_message(format!("loss {loss:.4} lr {lr:.2e} {ips:.1} img/s"));

        drop(logging);
        drop(stage);
        let seen = self.detector.events().len();
        // Events are read back from `events()` below; a skipped fp16 step is no event.
        if !skipped {
            let _ = self.detector.observe_train(step, loss, grad_norm);
        }
        if t.validate_every > 0 && (step.is_multiple_of(t.validate_every) || step == t.steps) {
            self.validate(logs, step)?;
        }
        let stop = self.react(step, seen);
        let last = step == t.steps || stop.is_some();
        if (t.checkpoint_every > 0 && step.is_multiple_of(t.checkpoint_every)) || last {
            self.checkpoint(step, elapsed)?;
        }
        Ok(stop.map(|reason| Outcome::Stopped { step, reason }))
    }

    /// One micro-batch: its latents, the step's random draws, the forward pass and the loss
    /// (scaled for accumulation), whose gradient is added when it is finite. Returns the loss.
    fn micro_step(&mut self, data: &mut dyn Source, step: u64, micro: u64) -> Result<f64> {
        let _stage = profile::scope("micro-step");
        let mut example = profile::time("data", || data.next(&self.sd))?;
        self.epoch = example.epoch;
        let k = (step - 1) * self.accum + micro;
        tch::manual_seed(step_seed(self.cfg.train.seed, k));
        let sd = &self.sd;
        let latents = tch::no_grad(|| example.posterior.sample() * sd.vae.scaling_factor());
        let draws = self.objective.draw(&latents);
        let (latents, draws) = self.replica.shard(latents, draws, &mut example)?;
        let text_grad = self.trainables.trains_text_path();
        self.trainables.set_training(sd, true);
        let embeddings = profile::time("text embeddings", || {
            self.forward.embed(sd, &example.captions, text_grad)
        })?;
        let noisy = self
            .objective
            .noisy(&latents, &draws.noise, &draws.timesteps);
        let pred = profile::time("unet forward", || {
            self.forward
                .predict(sd, &noisy, &draws.timesteps, &embeddings)
        });
        self.trainables.set_training(sd, false);
        let loss = self
            .objective
            .loss(&pred, &latents, &draws, example.prior_rows)
            / self.accum as f64;
        let value = self
            .replica
            .dist()
            .mean(f64::try_from(&loss).unwrap_or(f64::NAN))?;
        if value.is_finite() {
            let _stage = profile::scope("backward");
            self.forward.backward(sd, &self.scaler.scaled(&loss));
        }
        Ok(value)
    }

    /// Validation and prior losses with the current weights into `validation.csv` and the
    /// detector (nothing without a validation set).
    pub fn validate(&mut self, logs: &mut Logs, step: u64) -> Result<()> {
        let _stage = profile::scope("validation");
        let batch = self.cfg.train.batch_size as i64;
        let fresh_text = self.trainables.trains_text_path();
        let losses = self
            .sources
            .validate(&self.sd, &self.objective, batch, fresh_text)?;
        let Some(r) = losses else {
            return Ok(());
        };
        logs.validation.row(step, &r)?;
        self.validations.push((step, r.val_loss));
        // Events are read back from `events()` by the caller.
        let _ = self
            .detector
            .observe_validation(step, r.val_loss, r.prior_loss);
        Ok(())
    }

    /// Writes checkpoint `step`, prunes old ones (`train.checkpoints_total_limit`, keeping the
    /// best by validation), and writes its samples (`train.sample_every_checkpoint`).
    pub fn checkpoint(&mut self, step: u64, elapsed: f64) -> Result<()> {
        if !self.run.writes() {
            return Ok(());
        }
        let _stage = profile::scope("checkpoint");
        let cfg = self.cfg;
        let t = &cfg.train;
        let state = TrainerState {
            step,
            epoch: self.epoch,
            optimizer_step: self.optimizer.steps(),
            ema_updates: self.trainables.ema_updates(),
            elapsed_s: elapsed,
            seed: t.seed,
            loss_scaler: self.scaler.state(),
        };
        let kind = t.save_dtype.kind();
        let (sd, trainables) = (&self.sd, &self.trainables);
        checkpoint::write(&self.run, &state, &self.optimizer.state(), |dir| {
            trainables.save(sd, dir, kind)
        })?;
        if let Some(limit) = t.checkpoints_total_limit {
            let best = checkpoint::best(&checkpoint::list(&self.run)?, &self.validations);
            for s in checkpoint::prune(&self.run, limit, best)? {
                self.bar.println(format!(
                    "removed checkpoint step-{s} (checkpoints_total_limit = {limit})"
                ));
            }
        }
        if t.sample_every_checkpoint {
            super::samples::write_samples(&self.sd, self.cfg, &self.run, step)?;
        }
        Ok(())
    }

    /// Prints the detector's events since the first `seen`; the reason to stop when one of
    /// them is in `train.stop_on`.
    fn react(&self, step: u64, seen: usize) -> Option<String> {
        let mut stop = None;
        for e in &self.detector.events()[seen..] {
            self.bar.println(format!(
                "detector at step {step}: {}: {}",
                e.label, e.reason
            ));
            if stop.is_none() && self.cfg.train.stop_on.iter().any(|s| s == e.label.as_str()) {
                stop = Some(format!("{} at step {}: {}", e.label, e.step, e.reason));
            }
        }
        stop
    }

    /// Ends a run whose loss or gradient went non-finite: the step is not taken but logged,
    /// and the run stops as the detector labels it (diverged), keeping the checkpoints written
    /// so far.
    fn diverged(
        &mut self,
        logs: &mut Logs,
        step: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
    ) -> Result<Outcome> {
        self.optimizer.zero_grad();
        let elapsed = self.elapsed();
        logs.metrics
            .row(&self.record(step, loss, lr, grad_norm, None, elapsed))?;
        let reason = match self.detector.observe_train(step, loss, grad_norm) {
            Some(e) => format!("{} at step {}: {}", e.label, e.step, e.reason),
            None => format!("diverged at step {step}: non-finite loss or gradient"),
        };
        Ok(Outcome::Stopped { step, reason })
    }

    /// The `metrics.csv` row of a step.
    fn record(
        &self,
        step: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        images_per_s: Option<f64>,
        elapsed_s: f64,
    ) -> StepRecord {
        StepRecord {
            step,
            epoch: self.epoch,
            loss,
            lr,
            grad_norm,
            images_per_s,
            elapsed_s,
            loss_scale: self.scaler.scale(),
            skipped: false,
        }
    }

    /// Training time so far, this process and the ones before it.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.clock.elapsed().as_secs_f64()
    }
}

/// SplitMix64 of `(seed, step)`: the generator seed of one optimisation micro-step.
fn step_seed(seed: u64, k: u64) -> i64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}
