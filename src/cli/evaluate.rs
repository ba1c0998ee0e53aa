//! `studioize evaluate --inputs DIR --outputs DIR --out metrics.csv`: studio-ize metrics of
//! transformed photos (see `evaluate`), per image and averaged. `--outputs` may be a folder of
//! outputs named like the inputs, or a `studioize compare --out` folder (then one row per
//! checkpoint and input, and the means per checkpoint).
use crate::evaluate::pairs::{find_like, pair, Job};
use crate::evaluate::report::{summarize, write_rows, write_summary, Row};
use crate::evaluate::{measure, Mask};
use crate::imageio::read_rgb;
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The photos before the transform (e.g. a catalogue's casual/).
    #[arg(long)]
    pub inputs: PathBuf,
    /// The transformed photos, named like the inputs, or a `compare --out` folder.
    #[arg(long)]
    pub outputs: PathBuf,
    /// Product masks named like the inputs (`<stem><suffix>.png`; 255 = product); without them
    /// the product region is estimated from each input.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Appended to the input's stem to name its mask: `-casual` for a catalogue's casual photos.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mask_suffix: String,
    /// Ground-truth photos named like the inputs (a catalogue's studio/): adds PSNR and SSIM.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// The per-image table.
    #[arg(long)]
    pub out: PathBuf,
    /// The means table (default: the --out name with `-summary` before the extension).
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

fn summary_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("metrics");
    out.with_file_name(format!("{stem}-summary.csv"))
}

fn evaluate_one(args: &Args, job: &Job) -> Result<Row> {
    let input = read_rgb(&job.input)?;
    let output = read_rgb(&job.output)?;
    let mask = match &args.masks {
        Some(dir) => {
            let p = find_like(dir, &job.input_name, &args.mask_suffix).with_context(|| {
                format!(
                    "{}: no mask for input {} (looked for {}{}.png)",
                    dir.display(),
                    job.input_name,
                    Path::new(&job.input_name).with_extension("").display(),
                    args.mask_suffix
                )
            })?;
            let m = Mask::read(&p)?;
            if (m.width, m.height) != input.dimensions() {
                anyhow::bail!(
                    "{}: mask is {}x{} but input {} is {}x{}",
                    p.display(),
                    m.width,
                    m.height,
                    job.input.display(),
                    input.width(),
                    input.height()
                );
            }
            Some(m)
        }
        None => None,
    };
    let reference = match &args.reference {
        Some(dir) => {
            let p = find_like(dir, &job.input_name, "").with_context(|| {
                format!(
                    "{}: no reference for input {}",
                    dir.display(),
                    job.input_name
                )
            })?;
            Some(read_rgb(&p)?)
        }
        None => None,
    };
    let metrics = measure(&input, &output, mask.as_ref(), reference.as_ref())
        .with_context(|| format!("{} vs {}", job.input.display(), job.output.display()))?;
    Ok(Row {
        job: job.clone(),
        metrics,
    })
}

fn show(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

pub fn run(args: Args) -> Result<()> {
    let jobs = pair(&args.inputs, &args.outputs)?;
    let compare = jobs.iter().any(|j| j.checkpoint.is_some());
    let rows: Vec<Row> = jobs
        .par_iter()
        .map(|j| evaluate_one(&args, j))
        .collect::<Result<_>>()?;
    let reference = args.reference.is_some();
    write_rows(&args.out, &rows, compare, reference)?;
    let summary = summarize(&rows);
    let spath = args
        .summary
        .clone()
        .unwrap_or_else(|| summary_path(&args.out));
    write_summary(&spath, &summary, compare, reference)?;
    for s in &summary {
        let name = match (&s.run, &s.checkpoint) {
            (Some(r), Some(c)) if r != "base" && r != c => format!("{r}/{c}: "),
            (_, Some(c)) => format!("{c}: "),
            _ => String::new(),
        };
        let mut line = format!(
            "{name}{} images: cleanliness {} -> {}, delta E 2000 {}, product SSIM {}",
            s.images,
            show(s.means[0]),
            show(s.means[1]),
            show(s.means[2]),
            show(s.means[3])
        );
        if reference {
            line += &format!(
                ", reference PSNR {} dB, SSIM {}",
                show(s.means[4]),
                show(s.means[5])
            );
        }
        eprintln!("{line}");
    }
    eprintln!("wrote {} and {}", args.out.display(), spath.display());
    Ok(())
}
