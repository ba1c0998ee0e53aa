//! `studioize bench-train`: one training step of a UNet built from a `config.json` with random
//! weights (SD 1.4's shape needs no download), as a full fine-tune (every weight, AdamW state
//! for all) or as LoRA (adapters on the attention projections, the base frozen): seconds per
//! step after warm-up and the process's peak resident memory. Run once per mode (the peak is
//! per process); `tools/bench_lora.py` runs both modes here and in diffusers + PEFT.
//! `--gradient-checkpointing` recomputes each resnet / transformer in the backward pass
//! (`train::checkpointing`), as `train.gradient_checkpointing` does; `--optimizer` and
//! `--mixed-precision` take `train.optimizer`'s and `train.mixed_precision`'s values and run
//! the trainer's own optimizers, autocast and fp16 loss scaler. `tools/bench_full.py` runs each
//! configuration here and in diffusers / PyTorch.
use super::args::DeviceArgs;
use crate::device::autocast;
use crate::models::lora::Adapter;
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::profile;
use crate::train::checkpointing::Tape;
use crate::train::config::TrainSection;
use crate::train::objective::mse;
use crate::train::optim;
use crate::train::scaler::{GradScaler, Unscaled};
use crate::train::trainable::{lora_target_matches, new_lora_pair};
use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::{nn, Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A UNet `config.json` (e.g. SD 1.4's); the weights are random.
    #[arg(long)]
    pub unet_config: PathBuf,
    /// LoRA rank on to_q, to_k, to_v, to_out.0 (0: full fine-tune).
    #[arg(long, default_value_t = 0)]
    pub lora_rank: i64,
    /// Steps to time, after two warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub batch_size: i64,
    /// Latent side (pixels / 8).
    #[arg(long, default_value_t = 8)]
    pub latent_size: i64,
    /// Recompute activations in the backward pass instead of keeping them.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// `train.optimizer`: adamw, adamw8bit or adafactor (their default settings).
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// `train.mixed_precision`: no, bf16 or fp16 (autocast; fp16 with loss scaling).
    #[arg(long, default_value = "no")]
    pub mixed_precision: String,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The peak resident set of this process in bytes (`VmHWM`), where Linux reports it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A flag's value as the config key of the same name reads it.
fn config_value<T: DeserializeOwned>(flag: &str, v: &str) -> Result<T> {
    toml::Value::String(v.to_string())
        .try_into()
        .map_err(|_| anyhow!("--{flag} {v}: not one of the values of its train.* config key"))
}

pub fn run(args: Args) -> Result<()> {
    if args.steps == 0 || args.batch_size < 1 || args.latent_size < 1 || args.lora_rank < 0 {
        bail!("--steps, --batch-size and --latent-size must be at least 1, --lora-rank at least 0");
    }
    let (device, _) = args.device.resolve()?;
    let train = TrainSection {
        optimizer: config_value("optimizer", &args.optimizer)?,
        mixed_precision: config_value("mixed-precision", &args.mixed_precision)?,
        ..TrainSection::default()
    };
    let on = train.mixed_precision.kind().map(|dtype| (device, dtype));
    if let Some((device, dtype)) = on {
        autocast::check(device, dtype)?;
    }
    let cfg = UNetConfig::from_file(&args.unet_config)?;
    let mut vs = nn::VarStore::new(device);
    let unet = UNet2DConditionModel::new(&vs.root(), &cfg)?;
    let base_params: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let mut trained: HashMap<String, Tensor> = HashMap::new();
    if args.lora_rank > 0 {
        vs.freeze();
        let targets = ["to_q", "to_k", "to_v", "to_out.0"];
        let layers = unet.lora_layers();
        for (path, layer) in layers.iter() {
            if targets.iter().any(|t| lora_target_matches(path, t)) {
                let (down, up) = new_lora_pair(&layer.shape, args.lora_rank, device);
                let adapter = Adapter {
                    down: down.shallow_clone(),
                    up: up.shallow_clone(),
                    scale: 1.0,
                    dropout: 0.0,
                };
                layers.attach(path, adapter)?;
                trained.insert(format!("{path}.lora_A.weight"), down);
                trained.insert(format!("{path}.lora_B.weight"), up);
            }
        }
    } else {
        trained = vs.variables();
    }
    let trained_params: i64 = trained.values().map(|t| t.numel() as i64).sum();
    let mut scaler = GradScaler::for_config(&train, trained.values().map(|t| t.shallow_clone()));
    let mut opt = optim::for_config(&train, trained);
    let (b, s) = (args.batch_size, args.latent_size);
    let opts = (Kind::Float, device);
    let latents = Tensor::randn([b, cfg.in_channels, s, s], opts);
    let context = Tensor::randn([b, 77, cfg.cross_attention_dim], opts);
    let mut step = || {
        let t = Tensor::randint(1000, [b], (Kind::Int64, device));
        let noise = latents.randn_like();
        let noisy = &latents + &noise;
        let _stage = profile::scope("step");
        let mut tape = Tape::default();
        let forward = profile::scope("unet forward");
        let pred = autocast::autocast_if(on, || {
            if args.gradient_checkpointing {
                let mut run = tape.recorder(&unet, |u| u, true);
                unet.forward_segments(&noisy, &t, &context, &mut run)
            } else {
                unet.forward(&noisy, &t, &context)
            }
        });
        let loss = scaler.scaled(&mse(&pred.to_kind(Kind::Float), &noise, None));
        drop(forward);
        profile::time("backward", || {
            loss.backward();
            tape.backward(&unet, &|recompute| autocast::autocast_if(on, recompute));
        });
        match scaler.unscale() {
            Unscaled::Finite => {
                profile::time("clip gradients", || opt.clip_grad_norm(1.0));
                profile::time("optimizer", || opt.step(1e-4));
            }
            _ => opt.zero_grad(),
        }
    };
    step();
    step();
    let t0 = Instant::now();
    for _ in 0..args.steps {
        step();
    }
    let per_step = t0.elapsed().as_secs_f64() / args.steps as f64;
    println!(
        "{}",
        serde_json::json!({
            "mode": if args.lora_rank > 0 { "lora" } else { "full" },
            "lora_rank": args.lora_rank, "seconds_per_step": per_step,
            "peak_rss_bytes": peak_rss(),
            "anon_huge_page_bytes": crate::device::allocator::anon_huge_page_bytes(),
            "base_parameters": base_params,
            "trained_parameters": trained_params, "batch_size": b, "latent_size": s,
            "threads": tch::get_num_threads(), "device": format!("{device:?}"),
            "gradient_checkpointing": args.gradient_checkpointing,
            "optimizer": args.optimizer, "mixed_precision": args.mixed_precision,
        })
    );
    Ok(())
}
