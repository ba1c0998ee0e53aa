//! `studioize analyze RUN_OR_EXPERIMENT` and `studioize plot RUN_OR_EXPERIMENT...`.
use crate::monitor::{analyze_experiment, DetectorConfig};
use crate::plot::{load_runs, plot_runs, Format};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// A run folder (with metrics.csv) or an experiment folder of runs.
    pub dir: PathBuf,
}

pub fn analyze(args: AnalyzeArgs) -> Result<()> {
    let summary = analyze_experiment(&args.dir, &DetectorConfig::default())?;
    println!("{}", summary.table());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Run or experiment folders.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output folder (default: <first dir>/plots).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// png, svg or both (comma separated).
    #[arg(long, default_value = "png,svg", value_delimiter = ',')]
    pub format: Vec<String>,
}

pub fn plot(args: PlotArgs) -> Result<()> {
    let formats: Vec<Format> = args
        .format
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_>>()?;
    let mut runs = Vec::new();
    for d in &args.dirs {
        // Analyse first so that the detector's events and the best checkpoint are marked.
        analyze_experiment(d, &DetectorConfig::default())
            .with_context(|| format!("{}", d.display()))?;
        runs.extend(load_runs(d)?);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dirs[0].join("plots"));
    for f in plot_runs(&runs, &out, &formats)? {
        println!("{}", f.display());
    }
    Ok(())
}
