//! `studioize train` for one run (one sweep point): the locked run folder around a
//! [`Trainer`], with `status.json` recording every way the run ends.
//!
//! The run folder ([`RunDir`]) holds `config.toml` (resolved), `metrics.csv` (one row per
//! optimisation step, flushed), `validation.csv` (deterministic validation and prior losses),
//! `status.json`, and `checkpoints/step-N/` (see [`super::checkpoint`]).
use super::checkpoint::{self, TrainerState};
use super::config::ExperimentConfig;
use super::distributed::Dist;
use super::run_dir::RunDir;
use super::trainer::Trainer;
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use tch::Device;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub device: Device,
    /// Continue from the newest checkpoint of the run folder (or start if it has none).
    pub resume: bool,
    /// Hide the progress bar.
    pub quiet: bool,
    /// The data-parallel job this process is part of ([`Dist::single`] for none).
    pub dist: Dist,
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
pub use super::run_dir::LOCK_FILE;

/// Trains one run (one sweep point) into `cfg.output.dir`.
///
/// The run folder is locked for the whole run. Once the run has started, every way it can end
/// is recorded in `status.json`: finished, stopped (by the detector, or a non-finite loss), or
/// failed with the reason (errors and panics alike).
///
/// In a data-parallel job only rank 0 does this; the other ranks wait until it has prepared
/// the folder and then train beside it, reading the folder ([`follow`]).
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<Outcome> {
    if cfg.data.latent_cache && (!cfg.data.center_crop || cfg.data.random_flip) {
        bail!("data.latent_cache needs data.center_crop = true and data.random_flip = false (a cached latent must not depend on a random crop or flip)");
    }
    if !opts.dist.is_writer() {
        return follow(cfg, opts);
    }
    let run = RunDir::new(&cfg.output.dir);
    run.create()?;
    let _lock = run.lock()?;
    if !opts.resume && run.holds_run() {
        bail!(
            "{}: the run folder already holds a run; pass --resume to continue it, or choose another output.dir",
            run.path().display()
        );
    }
    let result = start(cfg, opts, &run).and_then(|resume_from| {
        opts.dist.barrier()?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_trainer(cfg, opts, run.clone(), resume_from)
        }))
        .unwrap_or_else(|panic| Err(anyhow!("internal error: {}", panic_text(&panic))))
    });
    record(&run, &result)?;
    result
}

/// A data-parallel rank other than 0: once rank 0 has prepared the folder (the barrier),
/// resumes from the same checkpoint (read, with the logs rank 0 cut to its step) and trains.
fn follow(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<Outcome> {
    let run = RunDir::reader(&cfg.output.dir);
    opts.dist.barrier()?;
    let resume_from = match opts.resume {
        true => checkpoint::latest(&run)?,
        false => None,
    };
    run_trainer(cfg, opts, run, resume_from)
}

/// The trainer of one process, on the job's global batch ([`Dist::global_config`]).
fn run_trainer(
    cfg: &ExperimentConfig,
    opts: &RunOptions,
    run: RunDir,
    resume_from: Option<(PathBuf, TrainerState)>,
) -> Result<Outcome> {
    let cfg = opts.dist.global_config(cfg);
    let mut trainer = Trainer::setup(&cfg, opts, run)?;
    if let Some((dir, state)) = &resume_from {
        trainer.resume(dir, state)?;
    }
    trainer.run()
}

/// Prepares the locked folder: removes a half-written checkpoint, finds the checkpoint to
/// resume from (without one, the run starts over and its old logs go), writes `config.toml`
/// and the `running` status.
fn start(
    cfg: &ExperimentConfig,
    opts: &RunOptions,
    run: &RunDir,
) -> Result<Option<(PathBuf, TrainerState)>> {
    checkpoint::remove_partial(run)?;
    let resume_from = if opts.resume {
        checkpoint::latest(run)?
    } else {
        None
    };
    match &resume_from {
        None => run.remove_logs(),
        // Cut here too (the trainer cuts them again), before the other ranks read them.
        Some((_, state)) => run.truncate_logs(state.step)?,
    }
    crate::fsutil::write_atomic(&run.config_toml(), cfg.to_toml().as_bytes())?;
    let start_step = resume_from.as_ref().map_or(0, |(_, s)| s.step);
    run.write_status("running", "", start_step)?;
    Ok(resume_from)
}

/// Records how the run ended in `status.json`; a failure keeps the last step it recorded.
fn record(run: &RunDir, result: &Result<Outcome>) -> Result<()> {
    match result {
        Ok(Outcome::Finished { step }) => run.write_status("finished", "", *step)?,
        Ok(Outcome::Stopped { step, reason }) => run.write_status("stopped", reason, *step)?,
        Err(e) => {
            let step = run
                .read_status()
                .ok()
                .flatten()
                .and_then(|s| s.step)
                .unwrap_or(0);
            if let Err(se) = run.write_status("failed", &format!("{e:#}"), step) {
                eprintln!("error: cannot record the failure in status.json: {se:#}");
            }
        }
    }
    Ok(())
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
