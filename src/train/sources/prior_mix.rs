//! `data.prior_mix`: plain fine-tuning that also trains on the prior (general) images, the
//! remedy for the forgetting that the measured prior loss shows. Each micro-batch is, with
//! probability `prior_mix`, a batch of prior images instead of training images: a draw from
//! `(seed, micro-batch)`, so the share holds for any batch size (one image included) and a
//! resumed run replays the same choices and continues both streams where they were.
use super::{Example, Source};
use crate::data::rng::SplitMix64;
use crate::pipelines::StableDiffusion;
use anyhow::Result;

/// Salt of the prior-or-training draws (apart from every other draw of a run).
const SALT: u64 = 0x5052_494F_525F_4D49;

/// Whether micro-batch `k` of a run is a prior batch.
pub fn is_prior_batch(seed: u64, share: f64, k: u64) -> bool {
    SplitMix64::derived(&[seed, SALT, k]).chance(share)
}

/// How many of the micro-batches before `start` were prior batches.
pub fn prior_batches_before(seed: u64, share: f64, start: u64) -> u64 {
    (0..start)
        .filter(|&k| is_prior_batch(seed, share, k))
        .count() as u64
}

/// Training batches with prior batches mixed in.
pub struct PriorMix {
    training: Box<dyn Source>,
    prior: Box<dyn Source>,
    share: f64,
    seed: u64,
    /// The next micro-batch's index.
    k: u64,
    /// The training set's epoch of the last training batch (reported for prior batches).
    epoch: u64,
}

impl PriorMix {
    /// The mix from micro-batch `start` on; the streams must start where the choices before
    /// `start` left them ([`prior_batches_before`]).
    pub fn new(
        training: Box<dyn Source>,
        prior: Box<dyn Source>,
        share: f64,
        seed: u64,
        start: u64,
    ) -> Self {
        Self {
            training,
            prior,
            share,
            seed,
            k: start,
            epoch: 0,
        }
    }
}

impl Source for PriorMix {
    fn next(&mut self, sd: &StableDiffusion) -> Result<Example> {
        let prior = is_prior_batch(self.seed, self.share, self.k);
        self.k += 1;
        if prior {
            let mut e = self.prior.next(sd)?;
            e.epoch = self.epoch;
            Ok(e)
        } else {
            let e = self.training.next(sd)?;
            self.epoch = e.epoch;
            Ok(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_of_prior_batches_is_the_setting() {
        let n = 20_000;
        let got = prior_batches_before(7, 0.25, n) as f64 / n as f64;
        assert!((got - 0.25).abs() < 0.01, "{got}");
        assert_eq!(prior_batches_before(7, 0.0, 100), 0);
        let a: Vec<bool> = (0..50).map(|k| is_prior_batch(1, 0.5, k)).collect();
        let b: Vec<bool> = (0..50).map(|k| is_prior_batch(2, 0.5, k)).collect();
        assert_ne!(a, b, "the choices depend on the seed");
    }
}
