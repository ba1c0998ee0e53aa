//! The fine-tuning loop of `studioize train`: diffusers' `train_text_to_image.py` objective on
//! the UNet (text encoder and VAE frozen), with a run folder that makes every run reproducible,
//! resumable and measured:
//!
//! `config.toml` (resolved), `metrics.csv` (one row per optimisation step, flushed),
//! `validation.csv` (deterministic validation and prior losses), `status.json`, and
//! `checkpoints/step-N/` (see [`super::checkpoint`]).
//!
//! Every random draw of step `k` comes from the generator seeded with `(seed, k)`, and the data
//! order is a function of `(seed, epoch)`, so a resumed run continues exactly as an
//! uninterrupted one would.
use super::checkpoint::{self, CheckpointData, TrainerState};
use super::config::{ExperimentConfig, MixedPrecision};
use super::ema::Ema;
use super::objective::{mse, target, NoiseSchedule};
use super::optim::AdamW;
use super::validation::{fixed_timesteps, FixedSet, LatentCache};
use crate::data::{Batches, Dataset, LoaderOptions};
use crate::device::Precision;
use crate::fsutil::Lock;
use crate::monitor::Detector;
use crate::pipelines::{LoadOptions, StableDiffusion};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub device: Device,
    /// Continue from the newest checkpoint of the run folder (or start if it has none).
    pub resume: bool,
    /// Hide the progress bar.
    pub quiet: bool,
}

/// How a run ended without an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        step: u64,
    },
    /// Ended early by `train.stop_on`.
    Stopped {
        step: u64,
        reason: String,
    },
}

/// The lock file of a run folder: one `train` process at a time.
pub const LOCK_FILE: &str = ".lock";

/// `status.json`: written atomically; if that fails (a full disk has no room for the temporary
/// file), overwritten in place, which reuses the old file's space.
pub fn write_status(run: &Path, state: &str, reason: &str, step: u64) -> Result<()> {
    let v = serde_json::json!({ "state": state, "reason": reason, "step": step });
    let text = serde_json::to_string_pretty(&v)? + "\n";
    let path = run.join("status.json");
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .or_else(|e| std::fs::write(&path, &text).map_err(|_| e))
}
/// `buckets.csv` in the run folder: every aspect bucket in use and how many training images it
/// holds, so a researcher sees how the data was shaped.
fn write_buckets(
    run: &Path,
    spec: &crate::data::buckets::BucketSpec,
    train: &Dataset,
) -> Result<()> {
    let plan = crate::data::buckets::BucketPlan::new(
        spec,
        train.samples().iter().map(|s| (s.width, s.height)),
    );
    let mut text = String::from("width,height,images\n");
    for (size, members) in plan.sizes.iter().zip(plan.members()) {
        if !members.is_empty() {
            text += &format!("{},{},{}\n", size.0, size.1, members.len());
        }
    }
    let path = run.join("buckets.csv");
    crate::fsutil::write_atomic(&path, text.as_bytes())
}

/// SplitMix64 of `(seed, step)`: the generator seed of one optimisation micro-step.
fn step_seed(seed: u64, k: u64) -> i64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Keeps the CSV rows whose first column (the step) is at most `max_step` (resume).
fn truncate_csv(path: &Path, max_step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let keep = i == 0
            || line
                .split(',')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s <= max_step);
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}

/// An append-only CSV of the run folder; every row is flushed, errors name the file.
struct CsvLog {
    file: std::fs::File,
    path: PathBuf,
}

impl CsvLog {
    fn open(path: &Path, header: &str) -> Result<Self> {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let mut log = Self {
            file,
            path: path.to_path_buf(),
        };
        if fresh {
            log.row(header)?;
        }
        Ok(log)
    }

    fn row(&mut self, line: &str) -> Result<()> {
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

fn open_set(images: &Path, captions: Option<&PathBuf>, what: &str) -> Result<Dataset> {
    let (ds, report) = Dataset::open(images, captions.map(|p| p.as_path()))
        .with_context(|| format!("{what} set"))?;
    for issue in &report.issues {
        eprintln!(
            "warning: {what} set: skipped {}: {}",
            issue.path.display(),
            issue.reason
        );
    }
    Ok(ds)
}

/// Trains one run (one sweep point) into `cfg.output.dir`.
///
/// The run folder is locked for the whole run. Once the run has started, every way it can end
/// is recorded in `status.json`: finished, stopped (by the detector, or a non-finite loss), or
/// failed with the reason (errors and panics alike).
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<Outcome> {
    let run = cfg.output.dir.clone();
    if cfg.data.latent_cache && (!cfg.data.center_crop || cfg.data.random_flip) {
        bail!("data.latent_cache needs data.center_crop = true and data.random_flip = false (a cached latent must not depend on a random crop or flip)");
    }

    std::fs::create_dir_all(&run)
        .with_context(|| format!("{}: cannot create the run folder", run.display()))?;
    let _lock = Lock::acquire(
        &run.join(LOCK_FILE),
        &format!("run folder {}", run.display()),
    )?;
    if !opts.resume && run.join("metrics.csv").exists() {
        bail!(
            "{}: the run folder already holds a run; pass --resume to continue it, or choose another output.dir",
            run.display()
        );
    }
    let start = || -> Result<Option<(PathBuf, TrainerState)>> {
        checkpoint::remove_partial(&run)?;
        let resume_from = if opts.resume {
            checkpoint::latest(&run)?
        } else {
            None
        };
        if resume_from.is_none() {
            for f in ["metrics.csv", "validation.csv"] {
                let _ = std::fs::remove_file(run.join(f));
            }
        }
        crate::fsutil::write_atomic(&run.join("config.toml"), cfg.to_toml().as_bytes())?;
        let start_step = resume_from.as_ref().map_or(0, |(_, s)| s.step);
        write_status(&run, "running", "", start_step)?;
        Ok(resume_from)
    };
    let result = start().and_then(|resume_from| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_inner(cfg, opts, &run, resume_from)
        }))
        .unwrap_or_else(|panic| Err(anyhow!("internal error: {}", panic_text(&panic))))
    });
    match &result {
        Ok(Outcome::Finished { step }) => write_status(&run, "finished", "", *step)?,
        Ok(Outcome::Stopped { step, reason }) => write_status(&run, "stopped", reason, *step)?,
        Err(e) => {
            let step = crate::monitor::read_status(&run)
                .ok()
                .flatten()
                .and_then(|s| s.step)
                .unwrap_or(0);
            if let Err(se) = write_status(&run, "failed", &format!("{e:#}"), step) {
                eprintln!("error: cannot record the failure in status.json: {se:#}");
            }
        }
    }
    result
}

/// The message of a caught panic.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
        .replace('\n', " ")
}

fn train_inner(
    cfg: &ExperimentConfig,
    opts: &RunOptions,
    run: &Path,
    resume_from: Option<(PathBuf, TrainerState)>,
) -> Result<Outcome> {
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
    if !t.train_text_encoder {
        sd.text_encoder_vs.freeze();
    }
    sd.vae_vs.freeze();
    let autocast = opts.device.is_cuda() && t.mixed_precision != MixedPrecision::No;

    // The noise schedule and target of `DDPMScheduler.from_pretrained(model)`, with
    // `train.prediction_type` registered over the file's, as train_text_to_image.py does.
    let Some(sched_cfg) = &sd.scheduler_config else {
        bail!(
            "the model has no scheduler/scheduler_config.json (training needs its noise schedule)"
        );
    };
    let mut sched_cfg = sched_cfg.clone();
    if let Some(p) = t.prediction_type {
        sched_cfg.prediction_type = Some(p.into());
    }
    let ddpm = NoiseSchedule::ddpm(&sched_cfg)?;
    let schedule = NoiseSchedule::new(&ddpm);
    let prediction = ddpm.prediction_type;

    // Data: training, validation (held out or a separate folder), prior (forgetting).
    let all = open_set(&cfg.data.images, cfg.data.captions.as_ref(), "training")?;
    let (train_set, val_set) = match &cfg.data.validation_images {
        Some(dir) => (
            all,
            open_set(dir, cfg.data.validation_captions.as_ref(), "validation")?,
        ),
        None => all.split(cfg.data.validation_split(), cfg.data.validation_seed)?,
    };
    if train_set.is_empty() {
        bail!(
            "{}: no training images left after the validation split",
            cfg.data.images.display()
        );
    }
    if let Some(spec) = cfg.data.bucket_spec() {
        write_buckets(run, &spec, &train_set)?;
    }
    let prior_set = match &cfg.data.prior_images {
        Some(dir) => Some(open_set(dir, cfg.data.prior_captions.as_ref(), "prior")?),
        None => None,
    };
    let n_train = schedule.num_train_timesteps();
    let val_ts = fixed_timesteps(n_train, t.validation_timesteps.max(1));
    let val_opts = LoaderOptions::validation(cfg);
    let val = FixedSet::build(
        &sd,
        Arc::new(val_set),
        val_opts,
        val_ts.clone(),
        cfg.data.validation_seed,
    )?;
    let prior = match prior_set {
        Some(p) => FixedSet::build(
            &sd,
            Arc::new(p),
            val_opts,
            val_ts.clone(),
            cfg.data.validation_seed + 7,
        )?,
        None => None,
    };

    let mut trained = sd.unet_vs.variables();
    if t.train_text_encoder {
        for (n, v) in sd.text_encoder_vs.variables() {
            trained.insert(format!("text_encoder.{n}"), v);
        }
    }
    let mut optimizer = AdamW::new(
        trained,
        t.adam_beta1,
        t.adam_beta2,
        t.adam_epsilon,
        t.adam_weight_decay,
    );
    let mut ema = t.ema.then(|| Ema::new(&sd.unet_vs, t.ema_decay));
    let mut start = 0u64;
    let mut elapsed_before = 0.0;
    if let Some((dir, state)) = &resume_from {
        super::resume::restore(
            dir,
            state,
            &sd,
            t.train_text_encoder,
            &mut optimizer,
            ema.as_mut(),
        )?;
        start = state.step;
        elapsed_before = state.elapsed_s;
        truncate_csv(&run.join("metrics.csv"), start)?;
        truncate_csv(&run.join("validation.csv"), start)?;
    }

    let mut metrics = CsvLog::open(
        &run.join("metrics.csv"),
        "step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s",
    )?;
    let mut vheader = String::from("step,val_loss,prior_loss");
    for ts in &val_ts {
        vheader.push_str(&format!(",val_t{ts}"));
    }
    for ts in &val_ts {
        vheader.push_str(&format!(",prior_t{ts}"));
    }
    let mut validation = CsvLog::open(&run.join("validation.csv"), &vheader)?;
    let mut detector = Detector::for_run(cfg.monitor.clone(), t.steps);
    // Validation losses so far, for keeping the best checkpoint when old ones are pruned.
    let mut val_history = if resume_from.is_some() {
        super::resume::replay(run, &mut detector)?
    } else {
        Vec::new()
    };

    let accum = t.gradient_accumulation.max(1) as u64;
    let train_arc = Arc::new(train_set);
    let cache = if cfg.data.latent_cache {
        Some(LatentCache::build(
            &sd,
            train_arc.clone(),
            LoaderOptions::fixed_order(cfg),
        )?)
    } else {
        None
    };
    let mut batches = Batches::new(train_arc, LoaderOptions::training(cfg), start * accum)?;
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
    bar.set_position(start);
    let clock = Instant::now();
    let mut epoch = 0u64;

    let validate = |sd: &StableDiffusion,
                    step: u64,
                    f: &mut CsvLog,
                    d: &mut Detector|
     -> Result<Option<f64>> {
        let (Some(v), batch) = (val.as_ref(), t.batch_size as i64) else {
            return Ok(None);
        };
        let (vl, vt) = v.loss(sd, &schedule, prediction, batch, t.train_text_encoder)?;
        let (pl, pt) = match prior.as_ref() {
            Some(p) => {
                let (a, b) = p.loss(sd, &schedule, prediction, batch, t.train_text_encoder)?;
                (Some(a), b)
            }
            None => (None, Vec::new()),
        };
        let mut row = format!(
            "{step},{vl},{}",
            pl.map(|x| x.to_string()).unwrap_or_default()
        );
        for x in &vt {
            row.push_str(&format!(",{x}"));
        }
        for k in 0..vt.len() {
            row.push_str(&format!(
                ",{}",
                pt.get(k).map(|x| x.to_string()).unwrap_or_default()
            ));
        }
        f.row(&row)?;
        // Events are read back from `d.events()` by the caller.
        let _ = d.observe_validation(step, vl, pl);
        Ok(Some(vl))
    };
    if start == 0 && t.validate_every > 0 {
        if let Some(vl) = validate(&sd, 0, &mut validation, &mut detector)? {
            val_history.push((0, vl));
        }
    }

    for step in start + 1..=t.steps {
        let step_clock = Instant::now();
        let lr = t.learning_rate * t.lr_schedule.factor(step - 1, t.warmup_steps, t.steps);
        let mut loss_sum = 0.0;
        for micro in 0..accum {
            let batch = batches.next().context("the training data loader ended")??;
            epoch = batch.epoch as u64;
            tch::manual_seed(step_seed(t.seed, (step - 1) * accum + micro));
            let px = batch.pixels.to_device(sd.device);
            let posterior = match &cache {
                Some(c) => c.posterior(&batch.indices)?,
                None => tch::no_grad(|| sd.vae.encode(&px)),
            };
            let latents = tch::no_grad(|| posterior.sample() * sd.vae.scaling_factor());
            let mut noise =
                Tensor::randn(latents.size(), (Kind::Float, Device::Cpu)).to_device(sd.device);
            if t.noise_offset > 0.0 {
                let s = latents.size();
                noise += Tensor::randn([s[0], s[1], 1, 1], (Kind::Float, Device::Cpu))
                    .to_device(sd.device)
                    * t.noise_offset;
            }
            let b = latents.size()[0];
            let timesteps =
                Tensor::randint(n_train, [b], (Kind::Int64, Device::Cpu)).to_device(sd.device);
            let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
            let embeddings = if t.train_text_encoder {
                sd.embed_prompts(&captions)?
            } else {
                tch::no_grad(|| sd.embed_prompts(&captions))?
            };
            let noisy = schedule.add_noise(&latents, &noise, &timesteps);
            let tgt = target(&schedule, prediction, &latents, &noise, &timesteps);
            let weights = t
                .snr_gamma
                .map(|g| schedule.min_snr_weights(&timesteps, g, prediction));
            let pred = tch::autocast(autocast, || {
                sd.unet.forward(&noisy, &timesteps, &embeddings)
            });
            let loss = mse(&pred, &tgt, weights.as_ref()) / accum as f64;
            let value = f64::try_from(&loss).unwrap_or(f64::NAN);
            if !value.is_finite() {
                optimizer.zero_grad();
                // The row stays in metrics.csv, so the analysis sees the divergence.
                let elapsed = elapsed_before + clock.elapsed().as_secs_f64();
                metrics.row(&format!("{step},{epoch},{value},{lr},NaN,0,{elapsed:.3}"))?;
                bar.finish_and_clear();
                return Ok(diverged(&mut detector, step, value, f64::NAN));
            }
            loss.backward();
            loss_sum += value;
        }
        let grad_norm = optimizer.clip_grad_norm(t.max_grad_norm);
        if !grad_norm.is_finite() {
            optimizer.zero_grad();
            let elapsed = elapsed_before + clock.elapsed().as_secs_f64();
            metrics.row(&format!(
                "{step},{epoch},{loss_sum},{lr},{grad_norm},0,{elapsed:.3}"
            ))?;
            bar.finish_and_clear();
            return Ok(diverged(&mut detector, step, loss_sum, grad_norm));
        }
        optimizer.step(lr);
        if let Some(e) = ema.as_mut() {
            e.update(&sd.unet_vs);
        }
        let images = (t.batch_size as u64 * accum) as f64;
        let ips = images / step_clock.elapsed().as_secs_f64().max(1e-9);
        let elapsed = elapsed_before + clock.elapsed().as_secs_f64();
        metrics.row(&format!(
            "{step},{epoch},{loss_sum},{lr},{grad_norm},{ips:.3},{elapsed:.3}"
        ))?;
        write_status(run, "running", "", step)?;
        bar.set_position(step);
        bar.set_message(format!("loss {loss_sum:.4} lr {lr:.2e} {ips:.1} img/s"));

        let mut stop: Option<String> = None;
        if let Some(e) = detector.observe_train(step, loss_sum, grad_norm) {
            bar.println(format!(
                "detector at step {step}: {}: {}",
                e.label, e.reason
            ));
            if t.stop_on.iter().any(|s| s == e.label.as_str()) {
                stop = Some(format!("{} at step {}: {}", e.label, e.step, e.reason));
            }
        }
        if t.validate_every > 0 && (step % t.validate_every == 0 || step == t.steps) {
            let before = detector.events().len();
            if let Some(vl) = validate(&sd, step, &mut validation, &mut detector)? {
                val_history.push((step, vl));
            }
            for e in &detector.events()[before..] {
                bar.println(format!(
                    "detector at step {step}: {}: {}",
                    e.label, e.reason
                ));
                if stop.is_none() && t.stop_on.iter().any(|s| s == e.label.as_str()) {
                    stop = Some(format!("{} at step {}: {}", e.label, e.step, e.reason));
                }
            }
        }
        let last = step == t.steps || stop.is_some();
        if (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || last {
            let state = TrainerState {
                step,
                epoch,
                optimizer_step: optimizer.step,
                ema_updates: ema.as_ref().map_or(0, |e| e.updates()),
                elapsed_s: elapsed,
                seed: t.seed,
            };
            let mut unet: Vec<(String, Tensor)> = sd.unet_vs.variables().into_iter().collect();
            unet.sort_by(|a, b| a.0.cmp(&b.0));
            checkpoint::write(
                run,
                &CheckpointData {
                    unet_config: &sd.unet_config_file,
                    unet,
                    unet_ema: ema.as_ref().map(|e| {
                        e.tensors()
                            .iter()
                            .map(|(n, t)| (n.clone(), t.shallow_clone()))
                            .collect()
                    }),
                    text_encoder: t.train_text_encoder.then(|| {
                        let mut te: Vec<(String, Tensor)> =
                            sd.text_encoder_vs.variables().into_iter().collect();
                        te.sort_by(|a, b| a.0.cmp(&b.0));
                        (sd.text_encoder_config_file.as_path(), te)
                    }),
                    optimizer: optimizer.state(),
                    state,
                    save_kind: t.save_dtype.kind(),
                },
            )?;
            if let Some(limit) = t.checkpoints_total_limit {
                let best = best_checkpoint(&checkpoint::list(run)?, &val_history);
                for s in checkpoint::prune(run, limit, best)? {
                    bar.println(format!(
                        "removed checkpoint step-{s} (checkpoints_total_limit = {limit})"
                    ));
                }
            }
            if t.sample_every_checkpoint {
                super::samples::write_samples(&sd, cfg, run, step)?;
            }
        }
        if let Some(reason) = stop {
            bar.finish_and_clear();
            return Ok(Outcome::Stopped { step, reason });
        }
    }
    bar.finish_and_clear();
    Ok(Outcome::Finished { step: t.steps })
}

/// Ends a run whose loss or gradient went non-finite: it cannot continue, so it stops as the
/// detector labels it (diverged), keeping the checkpoints written so far.
fn diverged(detector: &mut Detector, step: u64, loss: f64, grad_norm: f64) -> Outcome {
    let reason = match detector.observe_train(step, loss, grad_norm) {
        Some(e) => format!("{} at step {}: {}", e.label, e.step, e.reason),
        None => format!("diverged at step {step}: non-finite loss or gradient"),
    };
    Outcome::Stopped { step, reason }
}

/// The checkpoint with the lowest validation loss: each checkpoint is scored by the last
/// validation at or before its step (checkpoints without one are not candidates).
fn best_checkpoint(steps: &[u64], val_history: &[(u64, f64)]) -> Option<u64> {
    steps
        .iter()
        .filter_map(|&s| {
            val_history
                .iter()
                .filter(|(v, l)| *v <= s && l.is_finite())
                .max_by_key(|(v, _)| *v)
                .map(|&(_, l)| (s, l))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}
