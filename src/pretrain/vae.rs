//! Training the AutoencoderKL from scratch: per-pixel MSE of the reconstruction of a posterior
//! sample plus `kl_weight` times the KL divergence to N(0, I), both per image value as LDM's
//! autoencoder loss (sums per image, the KL weighted); then the reconstruction PSNR of every
//! training image (8-bit, the posterior mean decoded) and the latent scaling factor
//! (`1 / std` of posterior samples, as SD's 0.18215 was chosen).
use super::config::PretrainConfig;
use super::data::{Images, Part};
use super::{progress_bar, step_seed, Stage};
use crate::data::rng::SplitMix64;
use crate::models::vae::AutoencoderKL;
use crate::train::lr::LrSchedule;
use crate::train::optim::AdamW;
use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// What VAE training measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VaeReport {
    pub steps: u64,
    /// Mean loss over the last 50 steps.
    pub final_loss: f64,
    /// Mean PSNR (dB) of the 8-bit reconstructions, per catalogue part and over all.
    pub psnr_studio: f64,
    pub psnr_casual: f64,
    pub psnr_general: f64,
    pub psnr_all: f64,
    pub scaling_factor: f64,
    pub seconds: f64,
}

/// The posterior of every training image, to sample the UNet's latents from.
pub struct Latents {
    /// `[N, C, h, w]` unscaled means and standard deviations.
    pub mean: Tensor,
    pub std: Tensor,
}

/// Per-image KL divergence of the diagonal Gaussian to N(0, I), summed over latent values.
fn kl(mean: &Tensor, logvar: &Tensor) -> Tensor {
    (mean.square() + logvar.exp() - 1.0 - logvar).sum_dim_intlist(
        &[1i64, 2, 3][..],
        false,
        Kind::Float,
    ) * 0.5
}

/// `batch` random square crops of side `crop` (at multiples of 8 pixels) of random images.
fn crops(images: &Images, batch: i64, crop: i64, rng: &mut SplitMix64) -> Tensor {
    let n = images.len() as u64;
    let side = images.pixels.size()[2];
    let slots = ((side - crop) / 8 + 1) as u64;
    let parts: Vec<Tensor> = (0..batch)
        .map(|_| {
            let i = rng.below(n) as i64;
            let (y, x) = (rng.below(slots) as i64 * 8, rng.below(slots) as i64 * 8);
            images.pixels.get(i).narrow(1, y, crop).narrow(2, x, crop)
        })
        .collect();
    Tensor::stack(&parts, 0)
}

/// Trains `vae` (its variables in `vs`) on `images`.
pub fn train(
    vae: &AutoencoderKL,
    vs: &VarStore,
    images: &Images,
    cfg: &PretrainConfig,
) -> Result<VaeReport> {
    let s = &cfg.vae;
    let clock = std::time::Instant::now();
    let mut opt = AdamW::new(vs.variables(), 0.9, 0.999, 1e-8, 0.0);
    let crop = s.crop.min(cfg.size) as i64;
    let values = (3 * crop * crop) as f64;
    let bar = progress_bar("vae", s.steps);
    let mut recent = Vec::new();
    for step in 0..s.steps {
        let mut rng = SplitMix64::derived(&[cfg.seed, Stage::Vae as u64, step]);
        let x = crops(images, s.batch_size, s.crop.min(cfg.size) as i64, &mut rng);
        tch::manual_seed(step_seed(cfg.seed, Stage::Vae, step));
        let post = vae.encode(&x);
        let recon = vae.decode(&post.sample());
        let mse = (&recon - &x).square().mean(Kind::Float);
        let loss = &mse + kl(&post.mean, &post.logvar).mean(Kind::Float) * (s.kl_weight / values);
        let value = f64::try_from(&loss)?;
        if !value.is_finite() {
            bail!("VAE loss is {value} at step {} (lower vae.lr)", step + 1);
        }
        loss.backward();
        opt.clip_grad_norm(1.0);
        let lr = s.lr * LrSchedule::Cosine.factor(step, (s.steps / 20).min(100), s.steps);
        opt.step(lr);
        recent.push(value);
        if recent.len() > 50 {
            recent.remove(0);
        }
        bar.inc(recent.iter().sum::<f64>() / recent.len() as f64);
    }
    bar.finish();
    let (psnr, all) = psnr_by_part(vae, images);
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Ok(VaeReport {
        steps: s.steps,
        final_loss,
        psnr_studio: psnr[0],
        psnr_casual: psnr[1],
        psnr_general: psnr[2],
        psnr_all: all,
        scaling_factor: 0.0,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// 8-bit pixel values of images in [-1, 1] (as the pipelines write them).
pub fn to_u8(x: &Tensor) -> Tensor {
    ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round()
}

/// PSNR (dB, peak 255) of each image of `a` against `b`, both `[N, 3, H, W]` in [-1, 1].
pub fn psnr(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let mse = (to_u8(a) - to_u8(b))
        .square()
        .mean_dim(&[1i64, 2, 3][..], false, Kind::Double);
    Vec::<f64>::try_from(mse)
        .unwrap_or_default()
        .into_iter()
        .map(|m| 10.0 * (255.0f64 * 255.0 / m.max(1e-10)).log10())
        .collect()
}

/// Images of each part checked for PSNR (the first of each).
const PSNR_IMAGES: usize = 128;

/// Mean PSNR of the reconstructions (posterior mean decoded) of the first [`PSNR_IMAGES`] of
/// each part (studio, casual, general; NaN where a part is absent) and over those together.
fn psnr_by_part(vae: &AutoencoderKL, images: &Images) -> ([f64; 3], f64) {
    let mut picked: Vec<(i64, Part)> = Vec::new();
    for part in [Part::Studio, Part::Casual, Part::General] {
        picked.extend(
            (0..images.len())
                .filter(|&i| images.parts[i] == part)
                .take(PSNR_IMAGES)
                .map(|i| (i as i64, part)),
        );
    }
    let mut values = Vec::with_capacity(picked.len());
    tch::no_grad(|| {
        for chunk in picked.chunks(64) {
            let idx: Vec<i64> = chunk.iter().map(|c| c.0).collect();
            let x = images.pixels.index_select(0, &Tensor::from_slice(&idx));
            let recon = vae.decode(&vae.encode(&x).mean);
            values.extend(psnr(&recon, &x));
        }
    });
    let mean_of = |part: Option<Part>| {
        let v: Vec<f64> = values
            .iter()
            .zip(&picked)
            .filter(|(_, (_, p))| part.is_none_or(|q| *p == q))
            .map(|(v, _)| *v)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    (
        [
            mean_of(Some(Part::Studio)),
            mean_of(Some(Part::Casual)),
            mean_of(Some(Part::General)),
        ],
        mean_of(None),
    )
}

/// The posterior of every image, and the scaling factor: `1 / std` of one posterior sample of
/// every latent value (drawn after seeding with the run's seed).
pub fn encode_all(vae: &AutoencoderKL, images: &Images, seed: u64) -> (Latents, f64) {
    tch::no_grad(|| {
        let (mut means, mut stds) = (Vec::new(), Vec::new());
        for start in (0..images.len() as i64).step_by(64) {
            let len = 64.min(images.len() as i64 - start);
            let post = vae.encode(&images.pixels.narrow(0, start, len));
            means.push(post.mean);
            stds.push(post.std);
        }
        let mean = Tensor::cat(&means, 0);
        let std = Tensor::cat(&stds, 0);
        tch::manual_seed(step_seed(seed, Stage::Latents, 0));
        let z = &mean + &std * Tensor::randn_like(&mean);
        let sd = f64::try_from(z.std(true)).unwrap_or(f64::NAN);
        (Latents { mean, std }, 1.0 / sd)
    })
}
