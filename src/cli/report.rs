//! `studioize report EXPERIMENT`: one self-contained `report.html` (see [`crate::report`]).
use crate::report::{find_compare_dirs, write_report, ReportOptions};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An experiment folder of runs (or a single run folder).
    pub experiment: PathBuf,
    /// Output file (default: <EXPERIMENT>/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A folder written by `studioize compare` to include (repeatable; default: the ones under
    /// <EXPERIMENT>/compare).
    #[arg(long)]
    pub compare: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let compare_dirs = if args.compare.is_empty() {
        find_compare_dirs(&args.experiment)?
    } else {
        for d in &args.compare {
            if !d.join("compare.png").is_file() {
                anyhow::bail!(
                    "--compare {}: no compare.png in it (write it with studioize compare --out {})",
                    d.display(),
                    d.display()
                );
            }
        }
        args.compare.clone()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.experiment.join("report.html"));
    let opts = ReportOptions {
        compare_dirs,
        plots_dir: None,
    };
    write_report(&args.experiment, &out, &opts)?;
    println!("{}", out.display());
    Ok(())
}
