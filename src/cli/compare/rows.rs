//! The rows of a comparison: the checkpoints of the runs (a full fine-tune's `unet/`, a LoRA
//! run's `pytorch_lora_weights.safetensors`), LoRA files given with `--lora`, and the base.
use super::Args;
use crate::monitor::{find_runs, read_validation, run_id};
use crate::pipelines::lora::LoraSpec;
use crate::weights::lora::DIFFUSERS_FILE;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What a row's images are made with, on top of the base model.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Weights {
    Base,
    /// A UNet folder that replaces the base UNet.
    Unet(PathBuf),
    /// A LoRA on the base model.
    Lora(LoraSpec),
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// The run a checkpoint row comes from (`None` for the base and `--lora` rows).
    pub run: Option<String>,
    pub checkpoint: String,
    pub step: u64,
    pub weights: Weights,
    pub val_loss: Option<f64>,
    pub prior_loss: Option<f64>,
    /// Relative to the output folder.
    pub folder: PathBuf,
}

/// A run's checkpoints with a UNet or a LoRA, sorted by step.
fn checkpoints(run: &Path) -> Result<Vec<(u64, Weights)>> {
    let dir = run.join("checkpoints");
    let mut found = Vec::new();
    if dir.is_dir() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            let step = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-"))
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(step) = step {
                if path.join("unet").join("config.json").is_file() {
                    found.push((step, Weights::Unet(path.join("unet"))));
                } else if path.join(DIFFUSERS_FILE).is_file() {
                    let spec = LoraSpec {
                        path: path.join(DIFFUSERS_FILE),
                        scale: 1.0,
                    };
                    found.push((step, Weights::Lora(spec)));
                }
            }
        }
    }
    found.sort_by_key(|(s, _)| *s);
    Ok(found)
}

/// `step-1000` or `1000` as a step.
fn parse_checkpoint(name: &str) -> Result<u64> {
    let n = name.trim();
    n.strip_prefix("step-")
        .unwrap_or(n)
        .parse()
        .with_context(|| format!("--checkpoints {name:?}: expected step-N"))
}

/// The validation and prior loss logged at `step`, if any.
fn losses_at(run: &Path, step: u64) -> Result<(Option<f64>, Option<f64>)> {
    let path = run.join(crate::monitor::run::VALIDATION_CSV);
    if !path.is_file() {
        return Ok((None, None));
    }
    let v = read_validation(&path)?;
    Ok(v.rows
        .iter()
        .find(|r| r.step == step)
        .map_or((None, None), |r| (Some(r.val_loss), r.prior_loss)))
}

/// The rows to draw, in order, the run folders they come from, and whether several runs were
/// given (then rows name their run).
pub(super) fn select_rows(args: &Args) -> Result<(Vec<Row>, Vec<PathBuf>, bool)> {
    let mut runs = Vec::new();
    for d in &args.runs {
        runs.extend(find_runs(d)?);
    }
    let wanted: Vec<u64> = args
        .checkpoints
        .iter()
        .map(|c| parse_checkpoint(c))
        .collect::<Result<_>>()?;
    let several = runs.len() > 1;
    let mut rows = Vec::new();
    let mut used = vec![false; wanted.len()];
    let mut with_ckpts = Vec::new();
    for run in &runs {
        let id = run_id(run);
        let all = checkpoints(run)?;
        if all.is_empty() {
            if several {
                eprintln!("warning: run {id} has no checkpoints; skipped");
                continue;
            }
            bail!(
                "{}: no checkpoints (no checkpoints/step-N/ with unet/ or {DIFFUSERS_FILE}; set [train] checkpoint_every)",
                run.display()
            );
        }
        let chosen = choose_checkpoints(run, &id, &all, &wanted, several, &mut used)?;
        with_ckpts.push(run.clone());
        push_checkpoint_rows(&mut rows, run, &id, chosen, several)?;
    }
    check_wanted_used(&wanted, &used, &with_ckpts)?;
    push_lora_rows(&mut rows, &args.loras);
    if rows.is_empty() {
        bail!(
            "no checkpoints in {}",
            args.runs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if args.include_base {
        rows.insert(0, base_row(&with_ckpts)?);
    }
    Ok((rows, with_ckpts, several))
}

/// The checkpoints of one run to compare: all of them, or those of `wanted` it has (marking
/// them in `used`); a missing one is a warning with several runs, else an error.
fn choose_checkpoints(
    run: &Path,
    id: &str,
    all: &[(u64, Weights)],
    wanted: &[u64],
    several: bool,
    used: &mut [bool],
) -> Result<Vec<(u64, Weights)>> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    let available = || {
        all.iter()
            .map(|(s, _)| format!("step-{s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut c = Vec::new();
    for (k, w) in wanted.iter().enumerate() {
        match all.iter().find(|(s, _)| s == w) {
            Some(x) => {
                used[k] = true;
                c.push(x.clone());
            }
            None if several => {
                eprintln!(
                    "warning: run {id} has no checkpoint step-{w} (has {})",
                    available()
                )
            }
            None => bail!(
                "{}: no checkpoint step-{w} (available: {})",
                run.display(),
                available()
            ),
        }
    }
    Ok(c)
}

/// Appends one row per chosen checkpoint of a run, with the losses logged at its step.
fn push_checkpoint_rows(
    rows: &mut Vec<Row>,
    run: &Path,
    id: &str,
    chosen: Vec<(u64, Weights)>,
    several: bool,
) -> Result<()> {
    for (step, weights) in chosen {
        let (val_loss, prior_loss) = losses_at(run, step).with_context(|| format!("run {id}"))?;
        let name = format!("step-{step}");
        rows.push(Row {
            run: Some(id.to_string()),
            folder: if several {
                PathBuf::from(id).join(&name)
            } else {
                PathBuf::from(&name)
            },
            checkpoint: name,
            step,
            weights,
            val_loss,
            prior_loss,
        });
    }
    Ok(())
}

/// One row per `--lora` file, after the runs' rows, named `lora/<stem>` (`<stem>@<scale>`
/// when the scale is not 1).
fn push_lora_rows(rows: &mut Vec<Row>, loras: &[LoraSpec]) {
    for spec in loras {
        let p = &spec.path;
        let stem = match p.is_dir() {
            true => p.file_name(),
            false => p.file_stem(),
        };
        let mut name = stem.map_or("lora".into(), |s| s.to_string_lossy().into_owned());
        if spec.scale != 1.0 {
            name = format!("{name}@{}", spec.scale);
        }
        let taken = |n: &str| rows.iter().any(|r| r.folder == Path::new("lora").join(n));
        let mut unique = name.clone();
        let mut k = 2;
        while taken(&unique) {
            unique = format!("{name}-{k}");
            k += 1;
        }
        rows.push(Row {
            run: None,
            checkpoint: unique.clone(),
            step: 0,
            weights: Weights::Lora(spec.clone()),
            val_loss: None,
            prior_loss: None,
            folder: Path::new("lora").join(unique),
        });
    }
}

/// An error naming the first `--checkpoints` step that no run has.
fn check_wanted_used(wanted: &[u64], used: &[bool], with_ckpts: &[PathBuf]) -> Result<()> {
    if let Some(k) = used.iter().position(|u| !u) {
        if !wanted.is_empty() {
            bail!(
                "no run has a checkpoint step-{} (runs: {})",
                wanted[k],
                with_ckpts
                    .iter()
                    .map(|r| run_id(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// The base model's row, with the first step-0 validation of the runs (it is the base model's).
pub(super) fn base_row(with_ckpts: &[PathBuf]) -> Result<Row> {
    let mut base = (None, None);
    for r in with_ckpts {
        base = losses_at(r, 0)?;
        if base.0.is_some() {
            break;
        }
    }
    Ok(Row {
        run: None,
        checkpoint: "base".into(),
        step: 0,
        weights: Weights::Base,
        val_loss: base.0,
        prior_loss: base.1,
        folder: PathBuf::from("base"),
    })
}
