//! DreamBooth's prior-preservation stream: each micro-batch is an instance batch followed by a
//! class batch of the same size, concatenated (instances first, as `train_dreambooth.py`'s
//! `collate_fn`), so one VAE sample, one noise draw and one timestep draw cover both halves;
//! the objective weights the class rows by the prior-loss weight.
use super::{Example, Source};
use crate::models::vae::DiagonalGaussian;
use crate::pipelines::StableDiffusion;
use anyhow::{bail, Result};
use tch::Tensor;

/// Instance batches with class batches appended.
pub struct WithClass {
    instance: Box<dyn Source>,
    class: Box<dyn Source>,
}

impl WithClass {
    pub fn new(instance: Box<dyn Source>, class: Box<dyn Source>) -> Self {
        Self { instance, class }
    }
}

impl Source for WithClass {
    fn next(&mut self, sd: &StableDiffusion) -> Result<Example> {
        let a = self.instance.next(sd)?;
        let b = self.class.next(sd)?;
        let (sa, sb) = (a.posterior.mean.size(), b.posterior.mean.size());
        if sa[1..] != sb[1..] {
            bail!(
                "instance latents {:?} and class latents {:?} differ in size (DreamBooth batches hold both)",
                &sa[1..],
                &sb[1..]
            );
        }
        let cat = |x: &Tensor, y: &Tensor| Tensor::cat(&[x, y], 0);
        let posterior = DiagonalGaussian {
            mean: cat(&a.posterior.mean, &b.posterior.mean),
            logvar: cat(&a.posterior.logvar, &b.posterior.logvar),
            std: cat(&a.posterior.std, &b.posterior.std),
        };
        let prior_rows = b.captions.len() as i64;
        let mut captions = a.captions;
        captions.extend(b.captions);
        Ok(Example {
            posterior,
            captions,
            epoch: a.epoch,
            prior_rows,
        })
    }
}
