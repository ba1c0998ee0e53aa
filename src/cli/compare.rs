//! `studioize compare RUN_OR_EXPERIMENT...`: the same photos transformed (fixed seed) by every
//! selected checkpoint, as a labelled grid next to the losses at those checkpoints.
//!
//! Writes into `--out DIR`: `<row>/<input-stem>.png` per image (`<row>` is `step-N`, or
//! `<run-id>/step-N` when several runs are compared, or `base`), `grid.png`, `metrics.png`,
//! `compare.png` (both side by side), `compare.csv` (one row per image) and `compare.json`
//! (the parameters and the grid layout). The base model is loaded once; only the UNet is swapped
//! per checkpoint, which gives the same images as `transform --unet <checkpoint>`.
use super::args::{DeviceArgs, ModelArgs, ModelFiles, SamplingArgs};
use super::common::{input_images, make_scheduler, step_bar};
use crate::imageio;
use crate::monitor::{find_runs, read_validation, run_id};
use crate::pipelines::img2img::{image_to_image, ImageToImage};
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::StableDiffusion;
use crate::plot::compare::{
    chart_height, draw_grid, draw_losses, side_by_side, GridRow, LossSeries,
};
use crate::schedulers::Scheduler;
use anyhow::{bail, Context, Result};
use image::RgbImage;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folders or experiment (sweep) folders.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Checkpoints to compare, e.g. step-1000,step-5000 (default: all, by step).
    #[arg(long, value_delimiter = ',')]
    pub checkpoints: Vec<String>,
    /// Input photos: files, folders (recursive) or glob patterns.
    #[arg(long, required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// How far to move from the photo, in (0, 1].
    #[arg(long, default_value_t = 0.6)]
    pub strength: f64,
    /// Resize so the long side has this many pixels (as `transform --size`).
    #[arg(long)]
    pub size: Option<u32>,
    /// The base model: a folder, a file or a Hugging Face repo id (default: `[model] base` of
    /// the runs' config.toml).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Add a first row with the base model's UNet.
    #[arg(long)]
    pub include_base: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// One row of the comparison.
#[derive(Debug, Clone)]
struct Row {
    /// `None` for the base model.
    run: Option<String>,
    checkpoint: String,
    step: u64,
    unet: Option<PathBuf>,
    val_loss: Option<f64>,
    prior_loss: Option<f64>,
    /// Relative to the output folder.
    folder: PathBuf,
}

/// A run's checkpoints with a UNet, sorted by step.
fn checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
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
                    found.push((step, path.join("unet")));
                }
            }
        }
    }
    found.sort();
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
fn select_rows(args: &Args) -> Result<(Vec<Row>, Vec<PathBuf>, bool)> {
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
                "{}: no checkpoints (no checkpoints/step-N/unet/ folders; set [train] checkpoint_every)",
                run.display()
            );
        }
        let chosen = choose_checkpoints(run, &id, &all, &wanted, several, &mut used)?;
        with_ckpts.push(run.clone());
        push_checkpoint_rows(&mut rows, run, &id, chosen, several)?;
    }
    check_wanted_used(&wanted, &used, &with_ckpts)?;
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
    all: &[(u64, PathBuf)],
    wanted: &[u64],
    several: bool,
    used: &mut [bool],
) -> Result<Vec<(u64, PathBuf)>> {
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
    chosen: Vec<(u64, PathBuf)>,
    several: bool,
) -> Result<()> {
    for (step, unet) in chosen {
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
            unet: Some(unet),
            val_loss,
            prior_loss,
        });
    }
    Ok(())
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
fn base_row(with_ckpts: &[PathBuf]) -> Result<Row> {
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
        unet: None,
        val_loss: base.0,
        prior_loss: base.1,
        folder: PathBuf::from("base"),
    })
}

/// `[model]` of a run's config.toml: (base, config, variant).
pub(crate) fn run_model(run: &Path) -> Result<(PathBuf, Option<PathBuf>, Option<String>)> {
    let path = run.join(crate::monitor::run::CONFIG_TOML);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (pass --model to name the base model)",
            path.display()
        )
    })?;
    let t: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    let m = t.get("model").and_then(|m| m.as_table());
    let s = |k: &str| m.and_then(|m| m.get(k)).and_then(|v| v.as_str());
    let base = s("base").with_context(|| format!("{}: no [model] base", path.display()))?;
    Ok((
        PathBuf::from(base),
        s("config").map(PathBuf::from),
        s("variant").map(String::from),
    ))
}

fn model_args(args: &Args, runs: &[PathBuf]) -> Result<ModelArgs> {
    let (model, config, variant) = match &args.model {
        Some(m) => (m.clone(), None, None),
        None => {
            let first = run_model(&runs[0])?;
            for r in &runs[1..] {
                if run_model(r)?.0 != first.0 {
                    bail!(
                        "runs {} and {} have different base models; compare them separately or pass --model",
                        run_id(&runs[0]),
                        run_id(r)
                    );
                }
            }
            first
        }
    };
    Ok(ModelArgs {
        model,
        files: ModelFiles { config, variant },
        device: args.device.clone(),
    })
}

/// Reads and resizes every input (as `transform` does) before any model is loaded.
fn read_inputs(args: &Args) -> Result<Vec<(String, RgbImage)>> {
    let paths = input_images(&args.inputs)?;
    let names = imageio::stem_names(paths.iter().map(|p| p.as_path()));
    let mut out: Vec<(String, RgbImage)> = Vec::new();
    for (p, name) in paths.iter().zip(names) {
        let img = imageio::read_rgb_upright(p)?;
        let (w, h) = imageio::target_size(img.width(), img.height(), args.size, 8)
            .with_context(|| p.display().to_string())?;
        out.push((name, imageio::resize(&img, w, h)));
    }
    Ok(out)
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

pub fn run(args: Args) -> Result<()> {
    let p = args.sampling.img2img(args.strength, 1);
    p.validate()?;
    let (rows, runs, several) = select_rows(&args)?;
    let inputs = read_inputs(&args)?;
    let model = model_args(&args, &runs)?;
    let sd = model.load(None, None)?;
    let (scheduler, sampler_name) = make_scheduler(&sd, args.sampling.sampler)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let per_input = p.denoising_steps() as u64;
    let bar = step_bar(per_input * (inputs.len() * rows.len()) as u64, "compare");
    let mut t = Transformer {
        sd,
        scheduler,
        p: &p,
        sampler_name: &sampler_name,
        model: &model,
        out: &args.out,
    };
    let grid_rows = t.all_rows(&rows, &inputs, several, &bar)?;

    let headers: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
    let (grid, layout) = draw_grid(&headers, &grid_rows)?;
    let series = loss_series(&runs, &rows);
    let chart = draw_losses(&series, chart_height(grid.height()))?;
    for (name, img) in [
        ("grid.png", &grid),
        ("metrics.png", &chart),
        ("compare.png", &side_by_side(&grid, &chart)),
    ] {
        let path = args.out.join(name);
        crate::imageio::save_png(&path, img)?;
    }
    let meta = serde_json::json!({
        "runs": runs, "rows": rows.iter().map(|r| r.folder.display().to_string()).collect::<Vec<_>>(),
        "inputs": headers, "prompt": p.prompt, "negative_prompt": p.negative_prompt,
        "sampler": sampler_name, "steps": p.steps, "guidance": p.guidance, "seed": p.seed,
        "strength": p.strength, "size": args.size, "model": model.model, "grid": layout,
    });
    let path = args.out.join("compare.json");
    crate::fsutil::write_atomic(
        &path,
        (serde_json::to_string_pretty(&meta)? + "\n").as_bytes(),
    )?;
    eprintln!(
        "compared {} checkpoint(s) on {} input(s): {}",
        rows.len(),
        inputs.len(),
        args.out.join("compare.png").display()
    );
    Ok(())
}

/// The loaded model and sampling parameters every row's images are made with.
struct Transformer<'a> {
    sd: StableDiffusion,
    scheduler: Box<dyn Scheduler>,
    p: &'a ImageToImage,
    sampler_name: &'a str,
    model: &'a ModelArgs,
    /// The output folder.
    out: &'a Path,
}

impl Transformer<'_> {
    /// Transforms every input for every row (saving each image and `compare.csv`) and returns
    /// the grid's rows.
    fn all_rows(
        &mut self,
        rows: &[Row],
        inputs: &[(String, RgbImage)],
        several: bool,
        bar: &ProgressBar,
    ) -> Result<Vec<GridRow>> {
        let mut grid_rows = Vec::new();
        let csv_path = self.out.join("compare.csv");
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record([
            "run",
            "checkpoint",
            "step",
            "val_loss",
            "prior_loss",
            "input",
            "image",
        ])?;
        for (k, row) in rows.iter().enumerate() {
            bar.set_message(format!("row {}/{}", k + 1, rows.len()));
            // The base row (if any) comes first, before any swap.
            if let Some(u) = &row.unet {
                self.sd.swap_unet(u)?;
            }
            let images = self.row_images(row, inputs, &mut csv, bar)?;
            grid_rows.push(GridRow {
                label: row_label(row, several),
                images,
            });
        }
        bar.finish_and_clear();
        let bytes = csv
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: {e}", csv_path.display()))?;
        crate::fsutil::write_atomic(&csv_path, &bytes)?;
        Ok(grid_rows)
    }

    /// One row's images: each input transformed by the current UNet, saved with its
    /// parameters and listed in the CSV.
    fn row_images(
        &mut self,
        row: &Row,
        inputs: &[(String, RgbImage)],
        csv: &mut csv::Writer<Vec<u8>>,
        bar: &ProgressBar,
    ) -> Result<Vec<RgbImage>> {
        let (sd, p) = (&self.sd, self.p);
        let mut images = Vec::new();
        for (name, img) in inputs {
            let x = imageio::to_model_input(img);
            let out = image_to_image(sd, self.scheduler.as_mut(), p, &x, |_, _| bar.inc(1))?;
            let out = to_rgb8(&out)?.remove(0);
            let rel = row.folder.join(format!("{name}.png"));
            let params = serde_json::json!({
                "task": "compare", "input": name, "prompt": p.prompt,
                "negative_prompt": p.negative_prompt, "sampler": self.sampler_name, "steps": p.steps,
                "guidance": p.guidance, "seed": p.seed, "strength": p.strength,
                "width": img.width(), "height": img.height(), "model": self.model.model,
                "unet": row.unet, "run": row.run, "checkpoint": row.checkpoint,
                "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
                "studioize": env!("CARGO_PKG_VERSION"),
            });
            imageio::save_with_params(&self.out.join(&rel), &out, &params)?;
            csv.write_record([
                row.run.clone().unwrap_or_else(|| "base".into()),
                row.checkpoint.clone(),
                row.step.to_string(),
                opt(row.val_loss),
                opt(row.prior_loss),
                name.clone(),
                rel.display().to_string(),
            ])?;
            images.push(out);
        }
        Ok(images)
    }
}

/// A grid row's label lines: the run (with several runs), the checkpoint and its losses.
fn row_label(row: &Row, several: bool) -> Vec<String> {
    let mut label = Vec::new();
    if let (Some(r), true) = (&row.run, several) {
        label.push(r.clone());
    }
    label.push(row.checkpoint.clone());
    if let Some(v) = row.val_loss {
        label.push(format!("val {v:.4}"));
    }
    if let Some(v) = row.prior_loss {
        label.push(format!("prior {v:.4}"));
    }
    label
}

/// One loss curve per run: its rows' losses by step (the base row in every run's).
fn loss_series(runs: &[PathBuf], rows: &[Row]) -> Vec<LossSeries> {
    runs.iter()
        .map(|r| {
            let id = run_id(r);
            LossSeries {
                points: rows
                    .iter()
                    .filter(|row| row.run.as_deref() == Some(&id) || row.run.is_none())
                    .map(|row| (row.step, row.val_loss, row.prior_loss))
                    .collect(),
                label: id,
            }
        })
        .collect()
}
