//! Data-parallel training on PyTorch's c10d (`csrc/dist.cpp`): N processes, one per device,
//! each training on its share of every global batch, their gradients averaged before each
//! update, so that all of them hold the same weights at every step.
//!
//! - [`env`]: the process's rank, world size, local rank and rendezvous from its launcher's
//!   environment (torchrun's variables, or Slurm's under `srun`);
//! - [`group`]: the process group (TCPStore rendezvous, Gloo on CPU, NCCL on CUDA);
//! - [`launch`]: `studioize train --world-size N`, N local processes of this binary;
//! - [`Dist`]: what a run needs of the group, and [`Replica`]: the trainer's side of it.
//!
//! The split of the data: `train.batch_size` is per process, and rank `r` of `N` takes rows
//! `r, r + N, ...` of the global micro-batch that a single process with `batch_size * N` draws
//! (the same images, latent samples, noise and timesteps: every rank draws the whole global
//! batch from the same generators and keeps its rows). Each rank's loss is the mean over its
//! rows and all ranks hold the same number of rows (of instance and of class rows alike), so
//! the mean of the ranks' losses and gradients is the global batch's: an N-process run
//! follows the single-process run with the doubled batch up to float rounding.
//!
//! Rank 0 alone writes the run folder (metrics, validation, status, checkpoints, samples);
//! the other ranks read it ([`super::RunDir::reader`]) to resume from the same checkpoint.
//! Validation is computed on every rank (the same weights and fixed draws give the same
//! losses), so that the detector decides the same on every rank.
pub mod env;
pub mod group;
pub mod launch;

pub use env::Place;
pub use group::{Group, Rendezvous};

use super::config::ExperimentConfig;
use super::objective::Draws;
use super::sources::Example;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// This process's part in a data-parallel job (a world of one without a group).
#[derive(Debug, Clone)]
pub struct Dist {
    group: Option<Arc<Group>>,
    rank: usize,
    world: usize,
    /// Where the collectives' tensors live (NCCL needs CUDA tensors).
    device: Device,
}

impl Dist {
    /// A single process.
    pub fn single() -> Self {
        Self {
            group: None,
            rank: 0,
            world: 1,
            device: Device::Cpu,
        }
    }

    /// Joins the job of `place` with collectives on `device` (NCCL for CUDA, else Gloo),
    /// failing after `timeout` when a rank does not come.
    pub fn join(place: &Place, device: Device, timeout: Duration) -> Result<Self> {
        let rv = Rendezvous {
            rank: place.rank,
            world: place.world,
            addr: place.master_addr.clone(),
            port: place.master_port,
            timeout,
        };
        let group = Group::join(&rv, device.is_cuda())?;
        Ok(Self {
            group: Some(Arc::new(group)),
            rank: place.rank,
            world: place.world,
            device,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Rank 0 writes the run folder.
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }

    /// The config the trainer of every rank runs with: the global batch (`batch_size` per
    /// process times the world size) is what each rank draws before taking its rows.
    pub fn global_config(&self, cfg: &ExperimentConfig) -> ExperimentConfig {
        let mut global = cfg.clone();
        global.train.batch_size *= self.world;
        global
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        match &self.group {
            Some(g) => g.barrier(),
            None => Ok(()),
        }
    }

    /// Runs `f` on rank 0 first and on the other ranks once it has succeeded (what rank 0
    /// writes that the others read, such as generated class images).
    pub fn writer_first<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.group.is_none() {
            return f();
        }
        if self.is_writer() {
            let out = f()?;
            self.barrier()?;
            Ok(out)
        } else {
            self.barrier()?;
            f()
        }
    }

    /// The mean of `value` over the ranks.
    pub fn mean(&self, value: f64) -> Result<f64> {
        let Some(g) = &self.group else {
            return Ok(value);
        };
        let t = Tensor::from_slice(&[value]).to_device(self.device);
        g.all_reduce_mean(std::slice::from_ref(&t))?;
        Ok(f64::try_from(&t.to_device(Device::Cpu)).unwrap_or(f64::NAN))
    }
}

/// The trainer's side of a [`Dist`]: the trained parameters in one order on every rank
/// (sorted by name), whose gradients it averages and whose values it makes equal.
pub struct Replica {
    dist: Dist,
    params: Vec<Tensor>,
}

impl Replica {
    pub fn new(dist: Dist, params: &HashMap<String, Tensor>) -> Self {
        let mut named: Vec<(&String, &Tensor)> = params.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        Self {
            dist,
            params: named.into_iter().map(|(_, t)| t.shallow_clone()).collect(),
        }
    }

    pub fn dist(&self) -> &Dist {
        &self.dist
    }

    /// Gives every rank rank 0's weights (a resumed or freshly initialised run starts the same
    /// everywhere, as DistributedDataParallel does at construction).
    pub fn sync_weights(&self) -> Result<()> {
        match &self.dist.group {
            Some(g) => g.broadcast(&self.params, 0),
            None => Ok(()),
        }
    }

    /// Averages the accumulated gradients over the ranks (before clipping and the update).
    pub fn all_reduce_grads(&self) -> Result<()> {
        match &self.dist.group {
            Some(g) => g.all_reduce_grads(&self.params),
            None => Ok(()),
        }
    }

    /// This rank's rows `r, r + N, ...` of a global micro-batch: of the latents, the draws and
    /// the example's captions (its class rows stay last, `prior_rows / N` of them).
    pub fn shard(
        &self,
        latents: Tensor,
        draws: Draws,
        example: &mut Example,
    ) -> Result<(Tensor, Draws)> {
        let (r, n) = (self.dist.rank, self.dist.world);
        if n == 1 {
            return Ok((latents, draws));
        }
        let rows = latents.size()[0] as usize;
        if !rows.is_multiple_of(n) || !(example.prior_rows as usize).is_multiple_of(n) {
            bail!(
                "a global micro-batch of {rows} rows ({} class rows) does not split evenly over {n} processes",
                example.prior_rows
            );
        }
        let index = Tensor::arange_start_step(
            r as i64,
            rows as i64,
            n as i64,
            (Kind::Int64, latents.device()),
        );
        let take = |t: &Tensor| t.index_select(0, &index.to_device(t.device()));
        example.captions = example
            .captions
            .iter()
            .skip(r)
            .step_by(n)
            .cloned()
            .collect();
        example.prior_rows /= n as i64;
        let draws = Draws {
            noise: take(&draws.noise),
            timesteps: take(&draws.timesteps),
        };
        Ok((take(&latents), draws))
    }
}
