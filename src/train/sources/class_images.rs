//! DreamBooth's class images (prior preservation): the folder of images of the subject's class,
//! filled up to `num_class_images` with images the base model generates from `class_prompt`,
//! as diffusers' `train_dreambooth.py` does before training. Image `i` is `class-NNNNN.png`,
//! sampled with seed `class_seed + i` (prompt, seed, sampler, steps and guidance in its PNG
//! metadata). A rerun keeps every image already there (any image file in the folder counts) and
//! generates only what is missing; each image is written whole (temporary file, then rename),
//! so a killed run loses at most the image in progress.
use crate::data::dataset::is_image;
use crate::data::Dataset;
use crate::imageio;
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::text2img::{text_to_image, TextToImage};
use crate::pipelines::StableDiffusion;
use crate::schedulers::for_pipeline;
use crate::train::config::DreamBoothSection;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// The file name of generated class image `i`.
pub fn class_file_name(i: usize) -> String {
    format!("class-{i:05}.png")
}

/// Image files directly in `dir` (sorted names; none when it does not exist).
fn images_in(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_image(Path::new(&name)) && !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// What [`ensure`] did.
pub struct ClassImages {
    /// Images that were there before.
    pub found: usize,
    /// Images generated now.
    pub generated: usize,
}

/// Fills `dir` with class images up to `db.num_class_images` at `side` pixels (see the module
/// docs). `class_prompt` must be set.
pub fn ensure(
    sd: &StableDiffusion,
    db: &DreamBoothSection,
    dir: &Path,
    side: u32,
    quiet: bool,
) -> Result<ClassImages> {
    let Some(prompt) = db.class_prompt.as_deref() else {
        bail!("dreambooth.class_prompt: not set, so there are no class images");
    };
    let existing = images_in(dir)?;
    let found = existing.len();
    let missing = db.num_class_images.saturating_sub(found);
    if missing == 0 {
        return Ok(ClassImages {
            found,
            generated: 0,
        });
    }
    let Some(sched_cfg) = &sd.scheduler_config else {
        bail!("the model has no scheduler/scheduler_config.json to generate class images with");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let bar = progress(missing as u64, quiet);
    // The first `missing` indices whose files are not there yet.
    let wanted = (0..)
        .filter(|&i| !existing.contains(&class_file_name(i)))
        .take(missing);
    for i in wanted {
        let seed = db.class_seed + i as u64;
        let (mut sampler, sampler_name, _) = for_pipeline(sched_cfg, db.class_sampler.as_deref())?;
        let request = TextToImage {
            prompt: prompt.to_string(),
            negative_prompt: String::new(),
            steps: db.class_steps,
            guidance: db.class_guidance,
            seed,
            width: i64::from(side),
            height: i64::from(side),
            num_images: 1,
        };
        let images = text_to_image(sd, sampler.as_mut(), &request, |_, _| {})
            .context("generating DreamBooth class images")?;
        let image = to_rgb8(&images)?.remove(0);
        let meta = serde_json::json!({"task": "generate", "prompt": prompt, "seed": seed,
            "sampler": sampler_name, "steps": db.class_steps, "guidance": db.class_guidance,
            "width": side, "height": side, "dreambooth_class_image": i});
        imageio::save_with_params(&dir.join(class_file_name(i)), &image, &meta)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(ClassImages {
        found,
        generated: missing,
    })
}

/// The class set: the first `num_class_images` images directly in `dir` (sorted names), each
/// captioned with the class prompt.
pub fn open(dir: &Path, prompt: &str, num_class_images: usize) -> Result<Dataset> {
    let (ds, report) = Dataset::open_with_prompt(dir, prompt).context("DreamBooth class images")?;
    super::warn_skipped(&report, "class");
    let samples = ds
        .samples()
        .iter()
        .filter(|s| !s.file_name.contains('/'))
        .take(num_class_images)
        .cloned()
        .collect();
    Ok(Dataset::from_samples(ds.root().to_path_buf(), samples))
}

fn progress(n: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template("class images [{bar:30}] {pos}/{len} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
