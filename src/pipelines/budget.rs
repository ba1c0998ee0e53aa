//! Up-front size checks of a sampling request: a side no SD 1.x model can sample, or a batch
//! whose VAE decode needs more memory than the machine has, is refused with a message that says
//! what to lower, instead of an allocation abort half-way through.
use super::request::{Param, RequestError};
use super::StableDiffusion;
use anyhow::{bail, Result};
use tch::{Device, Kind};

/// The largest image side accepted (pixels).
pub const MAX_SIDE: i64 = 16384;

/// Bytes of memory available to this process: `MemAvailable` of `/proc/meminfo` on the CPU;
/// on CUDA, where libtorch's free-memory query is not exposed, `None` (the side limit alone).
pub fn available_bytes(device: Device) -> Option<u64> {
    if device != Device::Cpu {
        return None;
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl StableDiffusion {
    /// Estimated peak bytes of decoding `n` images of `width` x `height`: the VAE decoder's
    /// full-resolution level holds about four activations of its first block's channels.
    pub fn decode_bytes(&self, width: i64, height: i64, n: i64) -> f64 {
        let channels = self
            .vae
            .config()
            .block_out_channels
            .first()
            .copied()
            .unwrap_or(128);
        let elem = if self.vae_kind == Kind::Float {
            4.0
        } else {
            2.0
        };
        4.0 * channels as f64 * width as f64 * height as f64 * n as f64 * elem
    }

    /// Refuses sizes above [`MAX_SIDE`] and batches of `n` images whose decode would not fit in
    /// memory; `count` is the request field that sets `n` (named in the error).
    pub fn check_image_budget(&self, width: i64, height: i64, n: i64, count: Param) -> Result<()> {
        if width > MAX_SIDE || height > MAX_SIDE {
            bail!("image size {width}x{height}: each side must be at most {MAX_SIDE} pixels");
        }
        let need = self.decode_bytes(width, height, n);
        if let Some(have) = available_bytes(self.device) {
            if need > have as f64 {
                bail!(RequestError::DecodeMemory {
                    images: n,
                    count,
                    width,
                    height,
                    need,
                    have: have as f64,
                });
            }
        }
        Ok(())
    }
}
