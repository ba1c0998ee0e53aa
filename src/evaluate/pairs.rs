//! Which output belongs to which input: by relative name in two folders, or through the
//! `compare.csv` of a `studioize compare --out` folder (one output per checkpoint and input).
use crate::imageio::{walk, IMAGE_EXTS};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One image to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The input's path relative to the inputs folder (`p00001.png`, `sub/a.jpg`).
    pub input_name: String,
    pub input: PathBuf,
    /// The output's path relative to the outputs folder.
    pub output_name: String,
    pub output: PathBuf,
    /// The compare row (`base` or a run id) and checkpoint (`base`, `step-N`), step.
    pub run: Option<String>,
    pub checkpoint: Option<String>,
    pub step: Option<u64>,
}

/// The images below `dir`, sorted, with their relative names (`/`-separated).
pub fn images_below(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    Ok(walk(dir)?
        .images
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap_or(&p);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            (name, p)
        })
        .collect())
}

/// `dir/<rel>`, or `dir/<rel without extension>.<ext>` for any image extension.
pub fn find_like(dir: &Path, rel: &str, suffix: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if suffix.is_empty() && dir.join(rel).is_file() {
        return Some(dir.join(rel));
    }
    let stem = rel.with_extension("");
    let base = format!("{}{suffix}", stem.display());
    IMAGE_EXTS
        .iter()
        .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
        .map(|e| dir.join(format!("{base}.{e}")))
        .find(|p| p.is_file())
}

/// Inputs paired with the outputs of the same relative name. Every input needs an output.
pub fn by_name(inputs: &Path, outputs: &Path) -> Result<Vec<Job>> {
    let found = images_below(inputs)?;
    if found.is_empty() {
        bail!("{}: no images", inputs.display());
    }
    if !outputs.is_dir() {
        bail!("{}: not a folder", outputs.display());
    }
    found
        .into_iter()
        .map(|(name, input)| {
            let output = find_like(outputs, &name, "").with_context(|| {
                format!(
                    "{}: no output for input {name} (outputs must have the inputs' relative names)",
                    outputs.display()
                )
            })?;
            let output_name = output
                .strip_prefix(outputs)
                .unwrap_or(&output)
                .display()
                .to_string();
            Ok(Job {
                input_name: name,
                input,
                output_name,
                output,
                run: None,
                checkpoint: None,
                step: None,
            })
        })
        .collect()
}

/// The rows of `dir/compare.csv` (written by `studioize compare --out dir --inputs INPUTS`),
/// each paired with its input in `inputs`.
pub fn from_compare(inputs: &Path, dir: &Path) -> Result<Vec<Job>> {
    let csv_path = dir.join("compare.csv");
    let found = images_below(inputs)?;
    let names = crate::imageio::stem_names(found.iter().map(|(_, p)| p.as_path()));
    let mut reader = csv::Reader::from_path(&csv_path)
        .with_context(|| format!("{}: cannot read", csv_path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read", csv_path.display()))?
        .clone();
    let col = |n: &str| {
        headers
            .iter()
            .position(|h| h == n)
            .with_context(|| format!("{}: no column {n:?}", csv_path.display()))
    };
    let (c_run, c_ckpt, c_step, c_input, c_image) = (
        col("run")?,
        col("checkpoint")?,
        col("step")?,
        col("input")?,
        col("image")?,
    );
    let mut jobs = Vec::new();
    for (k, rec) in reader.records().enumerate() {
        let line = k + 2;
        let rec =
            rec.with_context(|| format!("{}: line {line}: invalid CSV", csv_path.display()))?;
        let get = |c: usize| rec.get(c).unwrap_or("").to_string();
        let input_stem = get(c_input);
        let i = names
            .iter()
            .position(|n| *n == input_stem)
            .with_context(|| {
                format!(
                    "{}: line {line}: input {input_stem:?} is not among the images of {}",
                    csv_path.display(),
                    inputs.display()
                )
            })?;
        let image = get(c_image);
        let output = dir.join(&image);
        if !output.is_file() {
            bail!(
                "{}: line {line}: {} does not exist",
                csv_path.display(),
                output.display()
            );
        }
        let step = get(c_step).parse::<u64>().ok();
        jobs.push(Job {
            input_name: found[i].0.clone(),
            input: found[i].1.clone(),
            output_name: image,
            output,
            run: Some(get(c_run)),
            checkpoint: Some(get(c_ckpt)),
            step,
        });
    }
    if jobs.is_empty() {
        bail!("{}: no rows", csv_path.display());
    }
    Ok(jobs)
}

/// [`from_compare`] when `outputs` holds a `compare.csv`, else [`by_name`].
pub fn pair(inputs: &Path, outputs: &Path) -> Result<Vec<Job>> {
    if outputs.join("compare.csv").is_file() {
        from_compare(inputs, outputs)
    } else {
        by_name(inputs, outputs)
    }
}
