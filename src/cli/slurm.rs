//! `studioize train CONFIG --emit-slurm FILE`: an sbatch job-array script with one array task
//! per sweep point, either one GPU each, or (`--nodes N --gpus-per-node G`) each point trained
//! data-parallel on N nodes x G GPUs: one `srun` task per GPU, the tasks joining the process
//! group through Slurm's variables, with `MASTER_ADDR` the job's first node.
use crate::train::ExperimentConfig;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The resources of one array task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub nodes: usize,
    pub gpus_per_node: usize,
}

impl Layout {
    /// `--nodes` / `--gpus-per-node` (either set: data-parallel; both unset: one GPU).
    pub fn from_flags(nodes: Option<usize>, gpus_per_node: Option<usize>) -> Result<Option<Self>> {
        if nodes.is_none() && gpus_per_node.is_none() {
            return Ok(None);
        }
        let layout = Self {
            nodes: nodes.unwrap_or(1),
            gpus_per_node: gpus_per_node.unwrap_or(1),
        };
        if layout.nodes == 0 || layout.gpus_per_node == 0 {
            bail!("--nodes and --gpus-per-node must be at least 1");
        }
        Ok(Some(layout))
    }
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes the script of `n` sweep points of `cfg` to `file`; `sets` are the `--set` overrides.
pub fn write(
    file: &Path,
    config: &Path,
    sets: &[String],
    cfg: &ExperimentConfig,
    n: usize,
    layout: Option<Layout>,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("{}: cannot resolve", config.display()))?;
    let cwd = std::env::current_dir()?;
    let logs = cfg.output.dir.join("slurm");
    let mut sets_text = String::new();
    for s in sets {
        sets_text.push_str(&format!(" --set {}", shell_quote(s)));
    }
    let (what, resources, launch) = match layout {
        None => (
            "one Slurm array task each".to_string(),
            "#SBATCH --gres=gpu:1\n".to_string(),
            "exec".to_string(),
        ),
        Some(l) => (
            format!(
                "one Slurm array task each, data-parallel on {} node(s) x {} GPU(s), one process per GPU",
                l.nodes, l.gpus_per_node
            ),
            format!(
                "#SBATCH --nodes={n}\n#SBATCH --ntasks-per-node={g}\n#SBATCH --gres=gpu:{g}\n",
                n = l.nodes,
                g = l.gpus_per_node
            ),
            "# The tasks join through SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (GPU = local id).\n\
             export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n\
             export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n\
             exec srun --kill-on-bad-exit=1"
                .to_string(),
        ),
    };
    let script = format!(
        "#!/bin/bash\n\
         # studioize sweep '{exp}': {n} point(s), {what}.\n\
         # Submit with: sbatch {file}\n\
         #SBATCH --job-name=studioize-{exp}\n\
         #SBATCH --array=0-{last}\n\
         {resources}\
         #SBATCH --cpus-per-task=8\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         set -euo pipefail\n\
         mkdir -p {logs_q}\n\
         cd {cwd}\n\
         {launch} {exe} train {config} --index \"$SLURM_ARRAY_TASK_ID\" --resume --device cuda --quiet{sets}\n",
        exp = cfg.experiment,
        file = file.display(),
        last = n.saturating_sub(1),
        logs = logs.display(),
        logs_q = shell_quote(&logs.display().to_string()),
        cwd = shell_quote(&cwd.display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
        config = shell_quote(&config.display().to_string()),
        sets = sets_text,
    );
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // sbatch opens the --output file before the script runs, so its folder must exist now.
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;
    crate::fsutil::write_atomic(file, script.as_bytes())
}
