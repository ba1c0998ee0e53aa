//! Sample images at checkpoints (`train.sample_every_checkpoint`): every validation prompt
//! (text-to-image) and every validation input photo (img2img with the first prompt), with fixed
//! seeds, into `samples/step-N/` of the run folder, so the same pictures can be compared across
//! checkpoints and runs.
use super::config::ExperimentConfig;
use super::run_dir::RunDir;
use crate::imageio;
use crate::pipelines::img2img::{image_to_image, ImageToImage};
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::text2img::{text_to_image, TextToImage};
use crate::pipelines::StableDiffusion;
use crate::schedulers::for_pipeline;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Sampling steps and guidance of the checkpoint samples.
const STEPS: usize = 25;
const GUIDANCE: f64 = 7.5;

pub fn write_samples(
    sd: &StableDiffusion,
    cfg: &ExperimentConfig,
    run: &RunDir,
    step: u64,
) -> Result<Vec<PathBuf>> {
    let t = &cfg.train;
    let dir = run.samples(step);
    let Some(sched_cfg) = &sd.scheduler_config else {
        bail!("the model has no scheduler/scheduler_config.json to sample with");
    };
    let side = i64::from(cfg.data.resolution);
    let seed = cfg.data.validation_seed;
    let mut written = Vec::new();
    let mut sheet = Vec::new();
    for (i, prompt) in t.validation_prompts.iter().enumerate() {
        let (mut s, _, _) = for_pipeline(sched_cfg, None)?;
        let p = TextToImage {
            prompt: prompt.clone(),
            negative_prompt: String::new(),
            steps: STEPS,
            guidance: GUIDANCE,
            seed: seed + i as u64,
            width: side,
            height: side,
            num_images: 1,
        };
        let img = to_rgb8(&text_to_image(sd, s.as_mut(), &p, |_, _| {})?)?.remove(0);
        let path = dir.join(format!("prompt-{i:02}.png"));
        let meta = serde_json::json!({"task": "generate", "prompt": prompt, "seed": p.seed, "steps": STEPS,
            "guidance": GUIDANCE, "checkpoint_step": step});
        imageio::save_with_params(&path, &img, &meta)?;
        sheet.push(img);
        written.push(path);
    }
    let prompt = t.validation_prompts.first().cloned().unwrap_or_default();
    for (j, input) in t.validation_inputs.iter().enumerate() {
        let photo = imageio::read_rgb_upright(input)?;
        let (w, h) =
            imageio::target_size(photo.width(), photo.height(), Some(cfg.data.resolution), 8)?;
        let x = imageio::to_model_input(&imageio::resize(&photo, w, h));
        let (mut s, _, _) = for_pipeline(sched_cfg, None)?;
        let p = ImageToImage {
            prompt: prompt.clone(),
            negative_prompt: String::new(),
            steps: STEPS,
            guidance: GUIDANCE,
            seed,
            strength: 0.6,
            variations: 1,
        };
        let img = to_rgb8(&image_to_image(sd, s.as_mut(), &p, &x, |_, _| {})?)?.remove(0);
        let path = dir.join(format!("input-{j:02}.png"));
        let meta = serde_json::json!({"task": "transform", "input": input, "prompt": prompt, "seed": seed,
            "strength": 0.6, "steps": STEPS, "guidance": GUIDANCE, "checkpoint_step": step});
        imageio::save_with_params(&path, &img, &meta)?;
        sheet.push(img);
        written.push(path);
    }
    if !sheet.is_empty() {
        let path = dir.join("sheet.png");
        let cols = (sheet.len() as f64).sqrt().ceil() as usize;
        imageio::save_with_params(
            &path,
            &imageio::contact_sheet(&sheet, cols),
            &serde_json::json!({"checkpoint_step": step}),
        )?;
        written.push(path);
    }
    Ok(written)
}
