//! `studioize bench`: seconds per generated image and training steps per second on one model,
//! measured after a warm-up, for comparison with diffusers in `tools/bench_cpu.py`.
use super::args::ModelArgs;
use crate::pipelines::text2img::{text_to_image, TextToImage};
use crate::schedulers::{from_name, SchedulerConfig};
use crate::train::objective::{mse, NoiseSchedule};
use crate::train::optim::AdamW;
use anyhow::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images to time (after one warm-up image).
    #[arg(long, default_value_t = 5)]
    pub images: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub size: i64,
    /// Training steps to time (after two warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub train_steps: usize,
    #[arg(long, default_value_t = 4)]
    pub batch_size: i64,
    /// Training resolution in pixels.
    #[arg(long, default_value_t = 64)]
    pub train_size: i64,
}

pub fn run(args: Args) -> Result<()> {
    let sd = args.model.load(None, None)?;
    let cfg = sd
        .scheduler_config
        .clone()
        .unwrap_or_else(SchedulerConfig::sd14);
    let mut sched = from_name("pndm", &cfg)?;
    let mut p = TextToImage {
        prompt: "a leather handbag, studio lighting".into(),
        negative_prompt: String::new(),
        steps: args.steps,
        guidance: 7.5,
        seed: 0,
        width: args.size,
        height: args.size,
        num_images: 1,
    };
    let _ = text_to_image(&sd, sched.as_mut(), &p, |_, _| {})?;
    let t0 = Instant::now();
    for i in 0..args.images {
        p.seed = i as u64 + 1;
        let _ = text_to_image(&sd, sched.as_mut(), &p, |_, _| {})?;
    }
    let per_image = t0.elapsed().as_secs_f64() / args.images.max(1) as f64;

    // One training step as in train_text_to_image.py: VAE encode + text encode (frozen), UNet
    // forward + backward, clipping, AdamW.
    let schedule = NoiseSchedule::from_config(&cfg)?;
    let mut opt = AdamW::new(sd.unet_vs.variables(), 0.9, 0.999, 1e-8, 1e-2);
    let b = args.batch_size;
    let pixels = Tensor::rand(
        [b, 3, args.train_size, args.train_size],
        (Kind::Float, sd.device),
    ) * 2.0
        - 1.0;
    let mut step = || -> Result<()> {
        let latents = tch::no_grad(|| sd.vae.encode(&pixels).sample() * sd.vae.scaling_factor());
        let emb = tch::no_grad(|| sd.encode_prompt("a red circle on a white background"))?
            .repeat([b, 1, 1]);
        let noise = latents.randn_like();
        let t = Tensor::randint(1000, [b], (Kind::Int64, sd.device));
        let pred = sd
            .unet
            .forward(&schedule.add_noise(&latents, &noise, &t), &t, &emb);
        let loss = mse(&pred, &noise, None);
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step(1e-5);
        Ok(())
    };
    step()?;
    step()?;
    let t0 = Instant::now();
    for _ in 0..args.train_steps {
        step()?;
    }
    let steps_per_s = args.train_steps as f64 / t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "seconds_per_image": per_image, "image_size": args.size, "sampling_steps": args.steps,
            "train_steps_per_s": steps_per_s, "batch_size": b, "train_size": args.train_size,
            "threads": tch::get_num_threads(), "device": format!("{:?}", sd.device),
        })
    );
    Ok(())
}
