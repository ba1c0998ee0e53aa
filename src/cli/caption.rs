//! `studioize caption`: BLIP captions for a product-photo folder, to a `file_name,text` CSV.
//! Images are decoded and resized in parallel (rayon, on a separate thread) while the model
//! works on the previous batch; each row is flushed as soon as it is made, so an interrupted
//! run loses nothing and a rerun only captions what is missing. The output is locked for the
//! run; a run that fails before its first row leaves no new file behind.
use super::args::DeviceArgs;
use super::common::spinner;
use crate::captions::inputs::{self, Input, Rejected};
use crate::captions::metadata::Metadata;
use crate::captions::output;
use crate::captions::sidecar::{self, Outcome};
use crate::captions::template::Template;
use crate::captions::writer::RowWriter;
use crate::data::captions::{parse_csv, CaptionRow};
use crate::imageio::escaped;
use crate::models::blip::processor::ImageProcessor;
use crate::pipelines::caption::{Captioner, DecodeOptions};
use crate::weights::hub;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A BLIP captioning folder in the Hugging Face layout (config.json, model.safetensors,
    /// tokenizer files, preprocessor_config.json or processor_config.json), or a Hugging Face
    /// repo id (`Salesforce/blip-image-captioning-large[@REVISION]`) read from the hub cache and
    /// downloaded there when missing, unless HF_HUB_OFFLINE=1.
    #[arg(long)]
    pub model: PathBuf,
    /// Conditional captioning: the caption starts with this text (kept in the output).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Beam search width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beams: usize,
    #[arg(long, default_value_t = 30)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: usize,
    /// > 1 discourages repeated words.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Caption template, or a template file (see captions/): "{title}, {caption}, studio photo".
    #[arg(long)]
    pub template: Option<String>,
    /// Product metadata CSV (e.g. a Shopify product export) joined on file name, for templates.
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Also write kohya-style `image.txt` captions next to the images. An existing `.txt` that
    /// holds something else (a hand-written caption) or is a symlink is left alone, with a
    /// warning, unless --overwrite.
    #[arg(long)]
    pub sidecar: bool,
    /// With --sidecar: replace existing `.txt` files (a symlink is replaced, not written
    /// through).
    #[arg(long)]
    pub overwrite: bool,
    /// Where images that are not captioned are listed (default: OUT with `.errors.csv`); must
    /// not be OUT.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Output CSV (`file_name,text`); an existing one is resumed. Locked while the run lasts
    /// (`OUT.lock` beside it), so a second `caption` to it fails at once.
    #[arg(long)]
    pub out: PathBuf,
    /// Image files, folders (recursive; jpg, png, webp) or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Everything needed to turn a model caption into a CSV row (and a sidecar).
struct Rows {
    template: Option<Template>,
    metadata: Option<Metadata>,
    out: RowWriter,
    errors: RowWriter,
    sidecar: bool,
    overwrite: bool,
    /// Sidecars left alone: they exist and hold something else.
    kept: Vec<PathBuf>,
}

impl Rows {
    fn text(&self, file_name: &str, caption: &str) -> String {
        match &self.template {
            None => caption.trim().to_string(),
            Some(t) => t.render(
                caption,
                self.metadata.as_ref().and_then(|m| m.lookup(file_name)),
            ),
        }
    }

    fn write(&mut self, input: &Input, caption: &str) -> Result<()> {
        let text = self.text(&input.file_name, caption);
        self.out.write_row(&[&input.file_name, &text])?;
        if self.sidecar {
            self.write_sidecar(&input.path, &text)?;
        }
        Ok(())
    }

    fn write_sidecar(&mut self, image: &Path, text: &str) -> Result<()> {
        if sidecar::write(image, text, self.overwrite)? == Outcome::Kept {
            self.kept.push(sidecar::path(image));
        }
        Ok(())
    }

    /// Lists the images that cannot be captioned (names the CSV cannot hold) in the errors CSV.
    fn reject(&mut self, rejected: &[Rejected]) -> Result<()> {
        for r in rejected {
            eprintln!("skipping {}: {}", escaped(&r.path), r.reason);
            self.errors.write_row(&[&r.shown, &r.reason])?;
        }
        Ok(())
    }

    /// Ends the run's files (an outdated errors CSV is removed when there was no error) and
    /// warns about the sidecars left alone.
    fn finish(self) -> Result<()> {
        self.errors.finish()?;
        if !self.kept.is_empty() {
            for k in self.kept.iter().take(10) {
                eprintln!(
                    "warning: kept {}: it exists and is not this caption",
                    escaped(k)
                );
            }
            eprintln!(
                "warning: {} existing sidecar .txt file(s) left alone (hand-written, other \
                 captions or symlinks); --overwrite replaces them",
                self.kept.len()
            );
        }
        Ok(())
    }
}

pub fn run(a: Args) -> Result<()> {
    let opts = decode_options(&a)?;
    let found = find_inputs(&a.inputs)?;
    let (template, metadata) = read_template(&a)?;

    // One process per output: a second one fails here, before reading or writing anything.
    let errors_path = a
        .errors
        .clone()
        .unwrap_or_else(|| output::default_errors_path(&a.out));
    output::check_distinct(&a.out, &errors_path)?;
    let _out_lock = output::lock(&a.out, "captions file")?;
    let _errors_lock = output::lock(&errors_path, "errors file")?;

    let (mut rows, done) = resume_rows(&a, &errors_path, template, metadata)?;
    let all = &found.inputs;
    if a.sidecar {
        write_done_sidecars(&mut rows, all, &done)?;
    }
    let pending = pending_inputs(all, &done);
    let skipped = all.len() - pending.len();
    if pending.is_empty() {
        return finish_nothing_pending(rows, &found.rejected, skipped, &a.out, &errors_path);
    }

    let captioner = load_captioner(&a)?;
    rows.reject(&found.rejected)?;

    let pb = progress_bar(pending.len());
    let started = std::time::Instant::now();
    let made = caption_all(
        &captioner,
        &pending,
        a.batch_size,
        a.prompt.as_deref(),
        &opts,
        &mut rows,
        &pb,
    )?;
    pb.finish_and_clear();
    let failed = rows.errors.rows();
    let rate = made as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "captioned {made} image(s) into {} ({skipped} already there) at {rate:.2} images/s{}",
        a.out.display(),
        failed_note(failed, &errors_path)
    );
    rows.finish()?;
    if made == 0 && skipped == 0 && failed > 0 {
        bail!("no image could be captioned; see {}", errors_path.display());
    }
    Ok(())
}

/// The decoding options from the arguments, with the arguments' own consistency checks.
fn decode_options(a: &Args) -> Result<DecodeOptions> {
    let opts = DecodeOptions {
        beams: a.beams,
        max_new_tokens: a.max_new_tokens,
        min_new_tokens: a.min_new_tokens,
        repetition_penalty: a.repetition_penalty,
        ..Default::default()
    };
    opts.validate()?;
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.overwrite && !a.sidecar {
        bail!("--overwrite replaces existing sidecar .txt files and needs --sidecar");
    }
    Ok(opts)
}

/// The images named by the inputs (noting folders reached twice); an error when there are none.
fn find_inputs(given: &[PathBuf]) -> Result<inputs::Collected> {
    let found = inputs::collect(given)?;
    for r in &found.repeated {
        eprintln!(
            "note: not searching {} again: it is a folder already searched (a symlink loop or \
             a second link)",
            escaped(r)
        );
    }
    if found.inputs.is_empty() && found.rejected.is_empty() {
        let given: Vec<String> = given.iter().map(|p| escaped(p)).collect();
        bail!("no images (jpg, jpeg, png, webp) in {}", given.join(" "));
    }
    Ok(found)
}

/// The caption template and product metadata, checked against each other.
fn read_template(a: &Args) -> Result<(Option<Template>, Option<Metadata>)> {
    let template = a.template.as_deref().map(Template::from_arg).transpose()?;
    let metadata = a.metadata.as_deref().map(Metadata::read).transpose()?;
    if metadata.is_some() && template.is_none() {
        bail!("--metadata is used through --template (e.g. --template \"{{title}}, {{caption}}\")");
    }
    if let Some(t) = &template {
        let cols = metadata
            .as_ref()
            .map(|m| m.columns.clone())
            .unwrap_or_default();
        t.check_fields(&cols, a.metadata.as_deref())?;
    }
    Ok((template, metadata))
}

/// Opens the output for resuming: the row writers, and the finished rows read back (a torn
/// last row is dropped when writing starts).
fn resume_rows(
    a: &Args,
    errors_path: &Path,
    template: Option<Template>,
    metadata: Option<Metadata>,
) -> Result<(Rows, Vec<CaptionRow>)> {
    let out = RowWriter::resume(&a.out, &["file_name", "text"])?;
    let done = match out.existing() {
        "" => Vec::new(),
        text => parse_csv(&a.out, text.as_bytes())?,
    };
    let rows = Rows {
        template,
        metadata,
        out,
        errors: RowWriter::replace(errors_path, &["file_name", "error"]),
        sidecar: a.sidecar,
        overwrite: a.overwrite,
        kept: Vec::new(),
    };
    Ok((rows, done))
}

/// Writes the sidecars of rows made by an earlier run.
fn write_done_sidecars(rows: &mut Rows, all: &[Input], done: &[CaptionRow]) -> Result<()> {
    let by_name: HashMap<&str, &Input> = all.iter().map(|i| (i.file_name.as_str(), i)).collect();
    for r in done {
        if let Some(i) = by_name.get(r.file_name.as_str()) {
            rows.write_sidecar(&i.path, &r.text)?;
        }
    }
    Ok(())
}

/// The inputs that have no row yet, in input order.
fn pending_inputs(all: &[Input], done: &[CaptionRow]) -> Vec<Input> {
    let done_names: HashSet<&str> = done.iter().map(|r| r.file_name.as_str()).collect();
    all.iter()
        .filter(|i| !done_names.contains(i.file_name.as_str()))
        .cloned()
        .collect()
}

/// Ends a run with nothing left to caption: lists the rejected images and says why.
fn finish_nothing_pending(
    mut rows: Rows,
    rejected: &[Rejected],
    skipped: usize,
    out: &Path,
    errors_path: &Path,
) -> Result<()> {
    rows.reject(rejected)?;
    let failed = rows.errors.rows();
    rows.finish()?;
    if skipped == 0 {
        bail!(
            "no image can be captioned; {failed} listed in {}",
            errors_path.display()
        );
    }
    eprintln!(
        "all {skipped} image(s) already captioned in {}",
        out.display()
    );
    Ok(())
}

/// Resolves the device and the model (a repo id is downloaded, with its own progress bar,
/// before the spinner starts) and loads the captioner.
fn load_captioner(a: &Args) -> Result<Captioner> {
    let (device, precision) = a.device.resolve()?;
    precision.check_device(device)?;
    let model = hub::resolve(&a.model, &hub::Pipeline::Blip)?;
    let sp = spinner(&format!("loading {}", a.model.display()));
    let captioner = Captioner::load(&model, device, precision.kind());
    sp.finish_and_clear();
    captioner
}

/// The progress bar over the images to caption.
fn progress_bar(len: usize) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "caption [{bar:30}] {pos}/{len} images {per_sec} eta {eta} {msg}",
        )
        .expect("valid template"),
    );
    pb
}

/// The end-of-run note on images not captioned (empty when there are none).
fn failed_note(failed: usize, errors_path: &Path) -> String {
    if failed > 0 {
        format!(
            "; {failed} image(s) not captioned (unreadable, or a name the CSV cannot hold) \
             listed in {}",
            errors_path.display()
        )
    } else {
        String::new()
    }
}

/// Decoded batches arrive from a loader thread (rayon inside) while the model captions the
/// previous one. Unreadable images go to the errors CSV. Returns the number captioned.
fn caption_all(
    captioner: &Captioner,
    pending: &[Input],
    batch_size: usize,
    prompt: Option<&str>,
    opts: &DecodeOptions,
    rows: &mut Rows,
    pb: &ProgressBar,
) -> Result<usize> {
    type Batch = Vec<(Input, Result<Tensor>)>;
    let processor: ImageProcessor = captioner.processor.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
    let mut made = 0;
    std::thread::scope(|s| -> Result<()> {
        let chunks: Vec<Vec<Input>> = pending.chunks(batch_size).map(<[Input]>::to_vec).collect();
        s.spawn(move || {
            for chunk in chunks {
                let batch: Batch = chunk
                    .into_par_iter()
                    .map(|i| {
                        let px = crate::profile::time("read images (loader)", || {
                            processor.load(&i.path)
                        });
                        (i, px)
                    })
                    .collect();
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
        loop {
            let Ok(batch) = crate::profile::time("wait for images", || rx.recv()) else {
                break;
            };
            let mut good = Vec::new();
            let mut pixels = Vec::new();
            for (input, px) in batch {
                match px {
                    Ok(t) => {
                        good.push(input);
                        pixels.push(t);
                    }
                    Err(e) => {
                        let reason = format!("{e:#}");
                        pb.println(format!("skipping {}: {reason}", escaped(&input.path)));
                        rows.errors.write_row(&[&input.file_name, &reason])?;
                        pb.inc(1);
                    }
                }
            }
            if good.is_empty() {
                continue;
            }
            let captions = captioner.caption(&Tensor::stack(&pixels, 0), prompt, opts)?;
            let _stage = crate::profile::scope("write rows");
            for (input, caption) in good.iter().zip(&captions) {
                rows.write(input, caption)?;
                made += 1;
                pb.inc(1);
            }
        }
        Ok(())
    })?;
    Ok(made)
}
