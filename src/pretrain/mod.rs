//! `studioize pretrain`: a tiny Stable Diffusion 1.x model trained from scratch on the CPU, on a
//! synthetic catalogue (`data::catalogue`), written in the diffusers folder layout:
//!
//! 1. the catalogue's general scenes, casual photos and a share of its studio photos are read
//!    with their captions ([`data`]);
//! 2. CLIP's BPE is cut down to the merges the captions use ([`vocab`]) and a small
//!    CLIPTextModel is initialised from the seed (trained with the UNet in step 4, or kept
//!    frozen at its random features with `text.train = false`);
//! 3. an AutoencoderKL is trained (MSE + KL), its reconstructions measured (PSNR) and the latent
//!    scaling factor measured ([`vae`]);
//! 4. a UNet2DConditionModel (and the text encoder) is trained on the latents with the
//!    epsilon objective, min-SNR-weighted ([`unet`]);
//! 5. configs ([`architecture`]), tokenizer and fp32 safetensors are written to a staging folder
//!    renamed into place at the end ([`output`]), with `pretrain.json` (config and figures).
//!
//! Deterministic for a seed: the torch thread count is fixed (`threads`), every random draw
//! comes from the CPU generator seeded per stage and step, batches from `SplitMix64` streams.
pub mod architecture;
pub mod config;
pub mod data;
pub mod output;
pub mod unet;
pub mod vae;
pub mod vocab;

pub use config::PretrainConfig;

use crate::models::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer};
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::schedulers::SchedulerConfig;
use crate::train::objective::NoiseSchedule;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use output::{write_json, write_weights, Staging};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The random streams of the stages.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    TextInit = 201,
    VaeInit = 202,
    UnetInit = 203,
    Vae = 204,
    Latents = 205,
    Unet = 206,
}

/// The torch seed of `step` of `stage`.
pub fn step_seed(seed: u64, stage: Stage, step: u64) -> i64 {
    (crate::data::rng::derive_seed(&[seed, stage as u64, step]) >> 1) as i64
}

/// A progress bar in the style of `train`'s; when stderr is not a terminal (the bar is hidden)
/// [`Progress::inc`] prints a line at every tenth instead.
pub struct Progress {
    bar: ProgressBar,
    name: String,
    len: u64,
    clock: std::time::Instant,
}

impl Progress {
    pub fn inc(&self, loss: f64) {
        self.bar.inc(1);
        let pos = self.bar.position();
        if pos % 10 == 1 || pos == self.len {
            self.bar.set_message(format!("loss {loss:.5}"));
        }
        if self.bar.is_hidden() && (pos.is_multiple_of((self.len / 10).max(1)) || pos == self.len) {
            let secs = self.clock.elapsed().as_secs_f64();
            eprintln!(
                "{} {pos}/{} loss {loss:.5} ({:.3}s/step)",
                self.name,
                self.len,
                secs / pos as f64
            );
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The progress of a stage of `len` steps.
pub fn progress_bar(name: &str, len: u64) -> Progress {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{name} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    Progress {
        bar,
        name: name.to_string(),
        len,
        clock: std::time::Instant::now(),
    }
}

/// What a run measured (written to `pretrain.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub config: PretrainConfig,
    pub images: BTreeMap<String, usize>,
    pub vocab_size: usize,
    pub parameters: BTreeMap<String, i64>,
    pub vae: vae::VaeReport,
    pub unet: unet::UnetReport,
    pub seconds: f64,
    pub out: PathBuf,
}

/// Builds a model from `init`, in a fresh variable store, after seeding with `stage`'s seed.
fn seeded<T>(
    seed: u64,
    stage: Stage,
    init: impl FnOnce(&VarStore) -> Result<T>,
) -> Result<(VarStore, T)> {
    tch::manual_seed(step_seed(seed, stage, 0));
    let vs = VarStore::new(Device::Cpu);
    let model = init(&vs)?;
    Ok((vs, model))
}

/// All variables of a store, by name.
fn variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().collect()
}

/// The token ids of every distinct caption and the empty prompt, and the encoder's outputs for
/// them when it stays `frozen`.
fn encode_captions(
    tokenizer: &ClipTokenizer,
    encoder: &ClipTextModel,
    captions: &[String],
    frozen: bool,
) -> Result<unet::Conditioning> {
    let mut distinct: Vec<&str> = captions.iter().map(String::as_str).collect();
    distinct.push("");
    distinct.sort_unstable();
    distinct.dedup();
    let ids = tokenizer.encode_batch(&distinct)?;
    let flat: Vec<i64> = ids.concat();
    let ids = Tensor::from_slice(&flat).view([distinct.len() as i64, -1]);
    let frozen = frozen.then(|| {
        tch::no_grad(|| {
            let parts: Vec<Tensor> = ids
                .split(64, 0)
                .iter()
                .map(|c| encoder.forward(c))
                .collect();
            Tensor::cat(&parts, 0)
        })
    });
    let pos = |c: &str| distinct.binary_search(&c).expect("listed") as i64;
    Ok(unet::Conditioning {
        ids,
        frozen,
        caption_of: captions.iter().map(|c| pos(c)).collect(),
        empty: pos(""),
    })
}

/// Runs the whole pretraining (see the module docs) and returns what it measured.
pub fn run(cfg: &PretrainConfig) -> Result<Summary> {
    cfg.validate()?;
    let clock = std::time::Instant::now();
    let staging = Staging::new(&cfg.out)?;
    let dir = staging.path().to_path_buf();
    tch::set_num_threads(cfg.threads);
    let images = data::read_catalogue(&cfg.catalogue, cfg.size, cfg.studio_share)?;
    eprintln!(
        "pretrain: {} images ({} general, {} casual, {} studio) at {}x{}",
        images.len(),
        images.count(data::Part::General),
        images.count(data::Part::Casual),
        images.count(data::Part::Studio),
        cfg.size,
        cfg.size
    );

    let vocab = vocab::Vocabulary::for_texts(images.captions.iter().map(String::as_str));
    vocab.write(&dir.join("tokenizer"))?;
    let tokenizer = ClipTokenizer::from_dir(&dir.join("tokenizer"))?;
    let te_file = dir.join("text_encoder").join("config.json");
    write_json(
        &te_file,
        &architecture::text_encoder_config(cfg, vocab.len() as i64),
    )?;
    let te_cfg = ClipTextConfig::from_file(&te_file)?;
    let (te_vs, text_encoder) = seeded(cfg.seed, Stage::TextInit, |vs| {
        ClipTextModel::new(&vs.root(), &te_cfg)
    })?;
    let cond = encode_captions(&tokenizer, &text_encoder, &images.captions, !cfg.text.train)?;

    let vae_file = dir.join("vae").join("config.json");
    write_json(&vae_file, &architecture::vae_config(cfg, 1.0))?;
    let vae_cfg = VaeConfig::from_file(&vae_file)?;
    let (vae_vs, vae) = seeded(cfg.seed, Stage::VaeInit, |vs| {
        AutoencoderKL::new(&vs.root(), &vae_cfg)
    })?;
    let unet_file = dir.join("unet").join("config.json");
    write_json(&unet_file, &architecture::unet_config(cfg))?;
    let unet_cfg = UNetConfig::from_file(&unet_file)?;
    let (unet_vs, unet) = seeded(cfg.seed, Stage::UnetInit, |vs| {
        UNet2DConditionModel::new(&vs.root(), &unet_cfg)
    })?;
    let sched_file = dir.join("scheduler").join("scheduler_config.json");
    write_json(&sched_file, &architecture::scheduler_config())?;
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::from_file(&sched_file)?)?;
    let parameters = BTreeMap::from([
        (
            "text_encoder".to_string(),
            crate::weights::parameter_count(&te_vs),
        ),
        ("vae".to_string(), crate::weights::parameter_count(&vae_vs)),
        (
            "unet".to_string(),
            crate::weights::parameter_count(&unet_vs),
        ),
    ]);
    eprintln!(
        "pretrain: parameters {parameters:?}, vocabulary {} tokens",
        vocab.len()
    );

    let mut vae_report = vae::train(&vae, &vae_vs, &images, cfg)?;
    let (latents, scaling) = vae::encode_all(&vae, &images, cfg.seed);
    vae_report.scaling_factor = scaling;
    eprintln!(
        "pretrain: VAE {} steps in {:.0}s, loss {:.5}, PSNR {:.2} dB (studio {:.2}, casual {:.2}, general {:.2}), scaling factor {:.5}",
        vae_report.steps,
        vae_report.seconds,
        vae_report.final_loss,
        vae_report.psnr_all,
        vae_report.psnr_studio,
        vae_report.psnr_casual,
        vae_report.psnr_general,
        scaling
    );
    if !scaling.is_finite() {
        anyhow::bail!("the VAE's latents have no finite spread (scaling factor {scaling})");
    }
    write_json(&vae_file, &architecture::vae_config(cfg, scaling))?;
    write_weights(
        &dir.join("vae").join("diffusion_pytorch_model.safetensors"),
        variables(&vae_vs),
    )?;

    let text = unet::Text {
        encoder: &text_encoder,
        vs: &te_vs,
    };
    let (unet_report, trained) = unet::train(
        &unet, &unet_vs, text, &latents, scaling, &cond, &schedule, cfg,
    )?;
    eprintln!(
        "pretrain: UNet {} steps in {:.0}s, loss {:.4} -> {:.4}",
        unet_report.steps, unet_report.seconds, unet_report.first_loss, unet_report.final_loss
    );
    write_weights(
        &dir.join("unet").join("diffusion_pytorch_model.safetensors"),
        trained.unet,
    )?;
    write_weights(
        &dir.join("text_encoder").join("model.safetensors"),
        trained.text,
    )?;
    write_json(&dir.join("model_index.json"), &architecture::model_index())?;

    let summary = Summary {
        config: cfg.clone(),
        images: [data::Part::General, data::Part::Casual, data::Part::Studio]
            .map(|p| (p.folder().to_string(), images.count(p)))
            .into_iter()
            .collect(),
        vocab_size: vocab.len(),
        parameters,
        vae: vae_report,
        unet: unet_report,
        seconds: clock.elapsed().as_secs_f64(),
        out: cfg.out.clone(),
    };
    write_json(
        &dir.join("pretrain.json"),
        &serde_json::to_value(&summary).context("pretrain.json")?,
    )?;
    staging.finish()?;
    Ok(summary)
}
