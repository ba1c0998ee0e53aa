//! Helpers shared by the sampling commands (`generate`, `transform`, `compare`): the scheduler,
//! progress bars, input images, output names.
use crate::imageio;
use crate::pipelines::StableDiffusion;
use crate::schedulers::{self, Sampler, Scheduler};
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// The scheduler asked for, or the model's own, as diffusers' Stable Diffusion pipelines run
/// it ([`schedulers::for_pipeline`]); warns about the outdated values they rewrite.
pub fn make_scheduler(
    sd: &StableDiffusion,
    sampler: Option<Sampler>,
) -> Result<(Box<dyn Scheduler>, String)> {
    let Some(cfg) = &sd.scheduler_config else {
        bail!("the model has no scheduler/scheduler_config.json");
    };
    let (scheduler, name, rewrites) = schedulers::for_pipeline(cfg, sampler.map(Sampler::name))?;
    for r in rewrites {
        eprintln!(
            "warning: {}: {} {} is outdated; using {}, as diffusers' StableDiffusionPipeline does",
            cfg.source_name(),
            r.key,
            r.from,
            r.to
        );
    }
    Ok((scheduler, name))
}

/// The input images named by files, folders (recursive) and glob patterns; none is an error.
pub fn input_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let found = imageio::collect_inputs(inputs)?;
    if found.is_empty() {
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        bail!("no input images found in {}", names.join(", "));
    }
    Ok(found)
}

pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

pub fn step_bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Where the images of one batch go.
pub enum OutTarget {
    /// `--out x.png`: exactly this file (only for a single image).
    File(PathBuf),
    /// `--out folder/`: named files plus a contact sheet.
    Folder(PathBuf),
}

impl OutTarget {
    /// A path with an image extension names a file; a path without an extension (or an
    /// existing folder) a folder; any other extension is refused (`x.bmp` is not a folder).
    pub fn parse(out: &Path, images: usize) -> Result<Self> {
        let ext = out
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some(e) if imageio::OUTPUT_EXTS.contains(&e) && images == 1 => {
                Ok(Self::File(out.to_path_buf()))
            }
            Some(e) if imageio::OUTPUT_EXTS.contains(&e) => bail!(
                "--out {} names one file, but {images} images will be made; give a folder instead",
                out.display()
            ),
            Some(e) if !out.is_dir() => bail!(
                "--out {}: '.{e}' is not a format studioize writes (.png, .jpg, .webp); give such a file or a folder",
                out.display()
            ),
            _ => Ok(Self::Folder(out.to_path_buf())),
        }
    }

    /// The files one batch of `n` images made from `stem` (a relative path: its folders become
    /// sub-folders of the output folder) with `seed` will be written to.
    pub fn paths(&self, stem: &Path, seed: u64, n: usize) -> Vec<PathBuf> {
        match self {
            Self::File(path) => vec![path.clone()],
            Self::Folder(dir) => {
                let mut out: Vec<PathBuf> = (0..n)
                    .map(|i| suffixed(&dir.join(stem), &format!("-s{seed}-{i:03}.png")))
                    .collect();
                out.push(suffixed(&dir.join(stem), &format!("-s{seed}-sheet.png")));
                out
            }
        }
    }

    /// Writes one batch of images made from `stem` with `seed`, and a folder's contact sheet of
    /// the batch; returns the written paths (the sheet last).
    pub fn write(
        &self,
        stem: &Path,
        seed: u64,
        images: &[image::RgbImage],
        params: &serde_json::Value,
    ) -> Result<Vec<PathBuf>> {
        let mut paths = self.write_images(stem, seed, images, params)?;
        if let Self::Folder(_) = self {
            let sheet_path = self
                .paths(stem, seed, images.len())
                .pop()
                .expect("a sheet path");
            let sheet =
                imageio::contact_sheet(images, (images.len() as f64).sqrt().ceil() as usize);
            let mut p = params.clone();
            p["contact_sheet"] = images.len().into();
            imageio::save_with_params(&sheet_path, &sheet, &p)?;
            paths.push(sheet_path);
        }
        Ok(paths)
    }

    /// Writes one batch of images made from `stem` with `seed`, each with its `index` in the
    /// batch, and no contact sheet; returns the written paths.
    pub fn write_images(
        &self,
        stem: &Path,
        seed: u64,
        images: &[image::RgbImage],
        params: &serde_json::Value,
    ) -> Result<Vec<PathBuf>> {
        let mut paths = self.paths(stem, seed, images.len());
        paths.truncate(images.len());
        for (i, (path, img)) in paths.iter().zip(images).enumerate() {
            let mut p = params.clone();
            p["index"] = i.into();
            imageio::save_with_params(path, img, &p)?;
        }
        Ok(paths)
    }
}

/// `base` with `suffix` appended to its file name (names need not be UTF-8).
fn suffixed(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    base.with_file_name(name)
}

/// Output stems for input files, unique within the run: the file stem, with its extension
/// when a file of another format shares folder and stem (`x-png`, `x-jpg`), then as many
/// parent folders as it takes to tell equal stems apart (`a/x`, `b/x`), then a counter. Two
/// inputs never write to one file.
pub fn unique_stems(inputs: &[PathBuf]) -> Vec<PathBuf> {
    use std::ffi::OsString;
    let n = inputs.len();
    let parents: Vec<Vec<OsString>> = inputs
        .iter()
        .map(|p| {
            p.parent()
                .map(|d| {
                    d.components()
                        .filter_map(|c| match c {
                            std::path::Component::Normal(n) => Some(n.to_os_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let stem = |i: usize| inputs[i].file_stem().unwrap_or_default().to_os_string();
    let bases: Vec<OsString> = (0..n)
        .map(|i| {
            let twin = (0..n).any(|j| {
                parents[j] == parents[i]
                    && stem(j) == stem(i)
                    && inputs[j].extension() != inputs[i].extension()
            });
            let mut b = stem(i);
            if let (true, Some(ext)) = (twin, inputs[i].extension()) {
                b.push("-");
                b.push(ext);
            }
            b
        })
        .collect();
    let key = |i: usize, d: usize| -> PathBuf {
        let p = &parents[i];
        let mut k: PathBuf = p[p.len() - d.min(p.len())..].iter().collect();
        k.push(&bases[i]);
        k
    };
    let mut depth = vec![0usize; n];
    loop {
        let keys: Vec<PathBuf> = (0..n).map(|i| key(i, depth[i])).collect();
        let mut changed = false;
        for i in 0..n {
            // Only a clash with a file in another folder can be told apart by folders.
            let clash = (0..n).any(|j| j != i && keys[j] == keys[i] && parents[j] != parents[i]);
            if clash && depth[i] < parents[i].len() {
                depth[i] += 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut seen = std::collections::HashSet::new();
    (0..n)
        .map(|i| {
            let base = key(i, depth[i]);
            let mut stem = base.clone();
            let mut k = 2;
            while !seen.insert(stem.clone()) {
                stem = suffixed(&base, &format!("-{k}"));
                k += 1;
            }
            stem
        })
        .collect()
}

/// Refuses outputs that would overwrite an input photo (`transform --out photo.png photo.png`).
pub fn check_not_inputs(outputs: &[PathBuf], inputs: &[PathBuf]) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let inputs: std::collections::HashSet<PathBuf> =
        inputs.iter().filter_map(|p| canon(p)).collect();
    for out in outputs {
        if let Some(c) = canon(out) {
            if inputs.contains(&c) {
                bail!(
                    "--out {}: would overwrite the input photo {}; choose another output",
                    out.display(),
                    c.display()
                );
            }
        }
    }
    Ok(())
}

/// A file-name-safe slug of a prompt, for generated images' names.
pub fn slug(text: &str, max: usize) -> String {
    let mut s = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= max {
            break;
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "image".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_unique_and_short() {
        let p = |s: &str| PathBuf::from(s);
        let stems = unique_stems(&[
            p("/d/in/a/x.png"),
            p("/d/in/b/x.png"),
            p("/d/in/x.jpg"),
            p("/d/in/x.png"),
            p("/d/in/y.png"),
            p("/d/in/y.png"),
        ]);
        let want = ["a/x", "b/x", "x-jpg", "x-png", "y", "y-2"];
        assert_eq!(stems, want.iter().map(PathBuf::from).collect::<Vec<_>>());
        assert_eq!(unique_stems(&[p("photo.jpg")]), vec![p("photo")]);
    }
}
