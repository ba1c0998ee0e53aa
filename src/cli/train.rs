//! `studioize train CONFIG`: one run, or every point of the config's `[sweep]`; with
//! `--world-size N` (or under a launcher's environment) each run data-parallel over processes.
use super::slurm::{self, shell_quote};
use crate::device::DeviceSpec;
use crate::train::distributed::{self, Dist};
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
    /// With --emit-slurm: train each point data-parallel on this many nodes.
    #[arg(long, value_name = "N", requires = "emit_slurm")]
    pub nodes: Option<usize>,
    /// With --emit-slurm: processes (GPUs) per node of each point.
    #[arg(long, value_name = "G", requires = "emit_slurm")]
    pub gpus_per_node: Option<usize>,
    /// Train data-parallel in N processes on this machine (one per GPU on CUDA);
    /// train.batch_size is per process.
    #[arg(long, value_name = "N")]
    pub world_size: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = ExperimentConfig::load(&args.config, &args.set)?;
    let points = cfg.sweep_points()?;
    if let Some(file) = &args.emit_slurm {
        let layout = slurm::Layout::from_flags(args.nodes, args.gpus_per_node)?;
        slurm::write(file, &args.config, &args.set, &cfg, points.len(), layout)?;
        eprintln!(
            "wrote {} (array of {} point(s))",
            file.display(),
            points.len()
        );
        return Ok(());
    }
    let place = distributed::env::from_env()?;
    if let Some(n) = args.world_size {
        return launch(&args, n, place.is_some());
    }
    if place.is_some() && !args.devices.is_empty() {
        bail!("--devices: not in a data-parallel job (each rank is one device already)");
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
    let mut device = args.device.parse::<DeviceSpec>()?.resolve()?;
    let dist = match &place {
        None => Dist::single(),
        Some(p) => {
            // Rank r uses GPU LOCAL_RANK unless --device names one.
            if device.is_cuda() && !args.device.contains(':') {
                device = tch::Device::Cuda(p.local_rank);
            }
            let timeout = std::time::Duration::from_secs(cfg.train.dist_timeout_s);
            Dist::join(p, device, timeout)?
        }
    };
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
            quiet: args.quiet || !dist.is_writer(),
            dist: dist.clone(),
        };
        match train(&p.config, &opts) {
            Ok(Outcome::Finished { step }) => eprintln!("{name}: finished at step {step}"),
            Ok(Outcome::Stopped { step, reason }) => {
                eprintln!("{name}: stopped at step {step}: {reason}")
            }
            // A failed rank leaves the group broken: the job ends with the point.
            Err(e) if sweep && dist.world() == 1 => {
                eprintln!("{name}: failed: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
            Err(e) => return Err(e),
        }
    }
    report_failed(&failed)
}

/// `--world-size N`: this command again in N processes (see `distributed::launch`).
fn launch(args: &Args, n: usize, under_launcher: bool) -> Result<()> {
    if n == 0 {
        bail!("--world-size must be at least 1");
    }
    if under_launcher {
        bail!("--world-size: this process already runs in a data-parallel job (RANK / WORLD_SIZE or Slurm's variables are set)");
    }
    if !args.devices.is_empty() {
        bail!("--world-size: not with --devices (one sweep point per device)");
    }
    let cpu = !args.device.parse::<DeviceSpec>()?.resolve()?.is_cuda();
    let all: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    distributed::launch::run(n, &distributed::launch::child_args(&all), cpu)
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
