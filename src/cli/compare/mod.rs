//! `studioize compare RUN_OR_EXPERIMENT...`: the same photos transformed (fixed seed) by every
//! selected checkpoint, as a labelled grid next to the losses at those checkpoints.
//!
//! Writes into `--out DIR`: `<row>/<input-stem>.png` per image (`<row>` is `step-N`, or
//! `<run-id>/step-N` when several runs are compared, or `base`), `grid.png`, `metrics.png`,
//! `compare.png` (both side by side), `compare.csv` (one row per image) and `compare.json`
//! (the parameters and the grid layout). The base model is loaded once; per checkpoint only the
//! UNet is swapped (a full fine-tune, the same images as `transform --unet <checkpoint>`) or a
//! LoRA attached (a LoRA run's checkpoints and `--lora` files, as `transform --lora`). LoRA rows
//! are made before any UNet is swapped, so they always sit on the base UNet.
mod rows;

use super::args::{DeviceArgs, EmbeddingArgs, ModelArgs, ModelFiles, SamplingArgs};
use super::common::{input_images, make_scheduler, step_bar};
use crate::imageio;
use crate::monitor::run_id;
use crate::pipelines::img2img::{image_to_image, ImageToImage};
use crate::pipelines::lora::{self, LoraSpec};
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::StableDiffusion;
use crate::plot::compare::{
    chart_height, draw_grid, draw_losses, side_by_side, GridRow, LossSeries,
};
use crate::schedulers::Scheduler;
use anyhow::{bail, Context, Result};
use image::RgbImage;
use indicatif::ProgressBar;
use rows::{select_rows, Row, Weights};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folders or experiment (sweep) folders (full fine-tunes and LoRA runs).
    pub runs: Vec<PathBuf>,
    /// A LoRA file (or diffusers LoRA folder) as a row of its own, on the base model, with
    /// its weight after a colon (`style.safetensors:0.8`); repeatable.
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub loras: Vec<LoraSpec>,
    /// Textual-inversion embeddings, on every row (as `transform --embedding`).
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
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
        None if runs.is_empty() => bail!("--model: needed to compare --lora files without a run"),
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
    if args.runs.is_empty() && args.loras.is_empty() {
        bail!("nothing to compare: give run or experiment folders, or --lora files");
    }
    let p = args.sampling.img2img(args.strength, 1);
    p.validate()?;
    let (rows, runs, several) = select_rows(&args)?;
    let inputs = read_inputs(&args)?;
    let model = model_args(&args, &runs)?;
    let mut sd = model.load(None, None)?;
    let embeddings = crate::pipelines::embedding::params(&args.embedding.apply(&mut sd)?);
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
        embeddings: &embeddings,
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
        "embeddings": embeddings,
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
    /// The embeddings' parameters record (every row has them).
    embeddings: &'a serde_json::Value,
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
        // Rows on the base UNet (the base, LoRAs) first, then the swapped UNets; the grid
        // keeps the rows' order.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| matches!(rows[i].weights, Weights::Unet(_)));
        let mut images_of: Vec<Option<Vec<RgbImage>>> = vec![None; rows.len()];
        for (k, &i) in order.iter().enumerate() {
            let row = &rows[i];
            bar.set_message(format!("row {}/{}", k + 1, rows.len()));
            self.sd.unet.lora_layers().clear();
            self.sd.text_encoder.lora_layers().clear();
            match &row.weights {
                Weights::Base => {}
                Weights::Unet(u) => self.sd.swap_unet(u)?,
                Weights::Lora(spec) => {
                    lora::apply(&self.sd, std::slice::from_ref(spec))?;
                }
            }
            images_of[i] = Some(self.row_images(row, inputs, &mut csv, bar)?);
        }
        for (row, images) in rows.iter().zip(images_of) {
            grid_rows.push(GridRow {
                label: row_label(row, several),
                images: images.expect("every row is made"),
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
                "unet": match &row.weights { Weights::Unet(u) => Some(u), _ => None },
                "loras": match &row.weights {
                    Weights::Lora(l) => serde_json::json!([{"path": l.path, "scale": l.scale}]),
                    _ => serde_json::json!([]),
                },
                "embeddings": self.embeddings, "run": row.run, "checkpoint": row.checkpoint,
                "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
                "studioize": env!("CARGO_PKG_VERSION"),
            });
            imageio::save_with_params(&self.out.join(&rel), &out, &params)?;
            let run = match (&row.run, &row.weights) {
                (Some(r), _) => r.clone(),
                (None, Weights::Lora(_)) => "lora".into(),
                (None, _) => "base".into(),
            };
            csv.write_record([
                run,
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
                    .filter(|row| row.run.as_deref() == Some(&id) || row.weights == Weights::Base)
                    .map(|row| (row.step, row.val_loss, row.prior_loss))
                    .collect(),
                label: id,
            }
        })
        .collect()
}
