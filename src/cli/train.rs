//! `studioize train CONFIG`: one run, or every point of the config's `[sweep]`.
use crate::device::DeviceSpec;
use crate::train::runner::{train, Outcome, RunOptions};
use crate::train::RunDir;
use crate::train::{ExperimentConfig, SweepPoint};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The experiment config (TOML).
    pub config: PathBuf,
    /// Override a config key, e.g. --set train.learning_rate=3e-6 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from the newest checkpoint (sweeps always resume unfinished points).
    #[arg(long)]
    pub resume: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run only the sweep point with this id (e.g. lr=3e-06).
    #[arg(long)]
    pub only: Option<String>,
    /// Run only sweep point number N (0-based; as a Slurm array task does).
    #[arg(long)]
    pub index: Option<usize>,
    /// Run sweep points in parallel, one process per device: GPU numbers (0,1,2,3 means
    /// cuda:0..cuda:3) or device names (cuda:1, cpu).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Write an sbatch job-array script that runs every sweep point, and exit.
    #[arg(long, value_name = "FILE")]
    pub emit_slurm: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = ExperimentConfig::load(&args.config, &args.set)?;
    let points = cfg.sweep_points()?;
    if let Some(file) = &args.emit_slurm {
        write_slurm(file, &args, &cfg, points.len())?;
        eprintln!(
            "wrote {} (array of {} point(s))",
            file.display(),
            points.len()
        );
        return Ok(());
    }
    let selected: Vec<&SweepPoint> = match (&args.only, args.index) {
        (Some(id), _) => {
            let p = points.iter().find(|p| &p.id == id).with_context(|| {
                let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
                format!(
                    "--only {id}: no such sweep point (have: {})",
                    ids.join(", ")
                )
            })?;
            vec![p]
        }
        (None, Some(i)) => vec![points
            .get(i)
            .with_context(|| format!("--index {i}: the sweep has {} point(s)", points.len()))?],
        (None, None) => points.iter().collect(),
    };
    if !args.devices.is_empty() && selected.len() > 1 {
        return run_on_devices(&args, &selected);
    }
    let device = args.device.parse::<DeviceSpec>()?.resolve()?;
    let sweep = points.len() > 1;
    let mut failed = Vec::new();
    for p in selected {
        let name = if p.id.is_empty() {
            cfg.experiment.clone()
        } else {
            p.id.clone()
        };
        if sweep && is_finished(&p.config.output.dir) {
            eprintln!("{name}: already finished, skipped");
            continue;
        }
        if sweep {
            eprintln!("{name}: training into {}", p.config.output.dir.display());
        }
        let opts = RunOptions {
            device,
            resume: args.resume || sweep,
            quiet: args.quiet,
        };
        match train(&p.config, &opts) {
            Ok(Outcome::Finished { step }) => eprintln!("{name}: finished at step {step}"),
            Ok(Outcome::Stopped { step, reason }) => {
                eprintln!("{name}: stopped at step {step}: {reason}")
            }
            Err(e) if sweep => {
                eprintln!("{name}: failed: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
            Err(e) => return Err(e),
        }
    }
    report_failed(&failed)
}

fn is_finished(run: &Path) -> bool {
    matches!(RunDir::new(run).read_status(), Ok(Some(s)) if s.is_done())
}

/// Fails the command, naming them, when sweep points failed.
fn report_failed(failed: &[String]) -> Result<()> {
    if !failed.is_empty() {
        bail!(
            "{} sweep point(s) failed: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// `--devices` entries as `--device` values: a bare number N is `cuda:N`.
fn device_names(devices: &[String]) -> Result<Vec<String>> {
    devices
        .iter()
        .map(|d| {
            let d = d.trim();
            let name = match d.parse::<usize>() {
                Ok(n) => format!("cuda:{n}"),
                Err(_) => d.to_string(),
            };
            let spec = name
                .parse::<DeviceSpec>()
                .with_context(|| format!("--devices: '{d}' is not a device"))?;
            // Fail here, once, rather than in every child.
            spec.resolve().context("--devices")?;
            Ok(name)
        })
        .collect()
}

/// One child process per device, each running its share of the points in turn; then every
/// point's `status.json` says whether it finished, and failed points fail the command as in a
/// sequential sweep.
fn run_on_devices(args: &Args, points: &[&SweepPoint]) -> Result<()> {
    let exe = std::env::current_exe()?;
    let devices = device_names(&args.devices)?;
    let mut children = Vec::new();
    for (slot, dev) in devices.iter().enumerate() {
        let mine: Vec<&&SweepPoint> = points.iter().skip(slot).step_by(devices.len()).collect();
        if mine.is_empty() {
            continue;
        }
        let ids: Vec<String> = mine.iter().map(|p| p.id.clone()).collect();
        let mut script = String::new();
        for id in &ids {
            let mut cmd = vec![
                shell_quote(&exe.display().to_string()),
                "train".into(),
                shell_quote(&args.config.display().to_string()),
                "--only".into(),
                shell_quote(id),
                "--device".into(),
                shell_quote(dev),
                "--quiet".into(),
            ];
            for s in &args.set {
                cmd.push("--set".into());
                cmd.push(shell_quote(s));
            }
            script.push_str(&cmd.join(" "));
            script.push_str(" || true\n");
        }
        eprintln!("{dev}: {}", ids.join(", "));
        children.push(
            std::process::Command::new("bash")
                .arg("-c")
                .arg(script)
                .spawn()?,
        );
    }
    for mut c in children {
        c.wait()?;
    }
    let failed: Vec<String> = points
        .iter()
        .filter(|p| !is_finished(&p.config.output.dir))
        .map(|p| {
            let reason = RunDir::new(&p.config.output.dir)
                .read_status()
                .ok()
                .flatten()
                .and_then(|s| s.reason)
                .unwrap_or_else(|| "did not start (see the messages above)".into());
            format!("{}: {reason}", p.id)
        })
        .collect();
    report_failed(&failed)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_slurm(file: &Path, args: &Args, cfg: &ExperimentConfig, n: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let config = std::fs::canonicalize(&args.config)?;
    let cwd = std::env::current_dir()?;
    let logs = cfg.output.dir.join("slurm");
    let mut sets = String::new();
    for s in &args.set {
        sets.push_str(&format!(" --set {}", shell_quote(s)));
    }
    let script = format!(
        "#!/bin/bash\n\
         # studioize sweep '{exp}': {n} point(s), one Slurm array task each.\n\
         # Submit with: sbatch {file}\n\
         #SBATCH --job-name=studioize-{exp}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --gres=gpu:1\n\
         #SBATCH --cpus-per-task=8\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         set -euo pipefail\n\
         mkdir -p {logs_q}\n\
         cd {cwd}\n\
         exec {exe} train {config} --index \"$SLURM_ARRAY_TASK_ID\" --resume --device cuda --quiet{sets}\n",
        exp = cfg.experiment,
        n = n,
        file = file.display(),
        last = n.saturating_sub(1),
        logs = logs.display(),
        logs_q = shell_quote(&logs.display().to_string()),
        cwd = shell_quote(&cwd.display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
        config = shell_quote(&config.display().to_string()),
        sets = sets,
    );
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // sbatch opens the --output file before the script runs, so its folder must exist now.
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;
    crate::fsutil::write_atomic(file, script.as_bytes())
}
