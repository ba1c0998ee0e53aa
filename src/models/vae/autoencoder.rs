//! The autoencoder and its latent distribution.
use super::coder::{Decoder, Encoder};
use super::config::VaeConfig;
use crate::models::blocks::conv1;
use crate::models::lora::Conv2d;
use anyhow::Result;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// The encoder's output: a diagonal Gaussian over latents.
#[derive(Debug)]
pub struct DiagonalGaussian {
    pub mean: Tensor,
    pub logvar: Tensor,
    pub std: Tensor,
}

impl DiagonalGaussian {
    fn from_moments(moments: &Tensor) -> Self {
        let parts = moments.chunk(2, 1);
        let mean = parts[0].shallow_clone();
        let logvar = parts[1].clamp(-30.0, 20.0);
        let std = (&logvar * 0.5).exp();
        Self { mean, logvar, std }
    }

    /// `mean + std * noise`.
    pub fn sample_with(&self, noise: &Tensor) -> Tensor {
        &self.mean
            + &self.std
                * noise
                    .to_device(self.mean.device())
                    .to_kind(self.mean.kind())
    }

    /// Draws the noise on the CPU default generator in the latents' dtype (as diffusers'
    /// `randn_tensor` with a CPU generator does; fp16 draws differ from fp32 draws), so that after
    /// `tch::manual_seed(s)` this equals diffusers'
    /// `latent_dist.sample(generator=torch.Generator("cpu").manual_seed(s))`.
    /// The distribution in `kind` (a half-precision VAE's posterior in fp32 for training).
    pub fn to_kind(&self, kind: Kind) -> Self {
        Self {
            mean: self.mean.to_kind(kind),
            logvar: self.logvar.to_kind(kind),
            std: self.std.to_kind(kind),
        }
    }

    pub fn sample(&self) -> Tensor {
        let noise = Tensor::randn(self.mean.size(), (self.mean.kind(), Device::Cpu));
        self.sample_with(&noise)
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    config: VaeConfig,
}

impl AutoencoderKL {
    pub fn new(p: &nn::Path, cfg: &VaeConfig) -> Result<Self> {
        cfg.validate()?;
        let l = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::new(p / "encoder", cfg),
            decoder: Decoder::new(p / "decoder", cfg),
            quant_conv: cfg
                .use_quant_conv
                .then(|| conv1(p / "quant_conv", 2 * l, 2 * l)),
            post_quant_conv: cfg
                .use_post_quant_conv
                .then(|| conv1(p / "post_quant_conv", l, l)),
            config: cfg.clone(),
        })
    }

    /// Images `[B, 3, H, W]` in [-1, 1] to the latent distribution (unscaled latents).
    pub fn encode(&self, x: &Tensor) -> DiagonalGaussian {
        DiagonalGaussian::from_moments(&x.apply(&self.encoder).apply_opt(&self.quant_conv))
    }

    /// Unscaled latents to images (roughly [-1, 1]).
    pub fn decode(&self, z: &Tensor) -> Tensor {
        z.apply_opt(&self.post_quant_conv).apply(&self.decoder)
    }

    pub fn scaling_factor(&self) -> f64 {
        self.config.scaling_factor
    }

    /// Image pixels per latent pixel (8 for SD 1.x), diffusers' `vae_scale_factor`.
    pub fn scale_factor(&self) -> i64 {
        self.config.scale_factor()
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }
}

/// Old diffusers checkpoints name the mid-block attention `query`/`key`/`value`/`proj_attn`;
/// maps those names to the current `to_q`/`to_k`/`to_v`/`to_out.0`.
pub fn rename_legacy_vae_keys(name: &str) -> String {
    const MAP: [(&str, &str); 4] = [
        (".query.", ".to_q."),
        (".key.", ".to_k."),
        (".value.", ".to_v."),
        (".proj_attn.", ".to_out.0."),
    ];
    if name.contains(".attentions.") {
        for (old, new) in MAP {
            if name.contains(old) {
                return name.replacen(old, new, 1);
            }
        }
    }
    name.to_string()
}
