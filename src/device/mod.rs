//! Device and precision selection.
//!
//! The linker drops `libtorch_cuda.so` from the binary (it is linked "as needed" and no symbol
//! of it is referenced directly), so libtorch would report no CUDA even on a GPU machine.
//! [`init`] loads it explicitly at start-up. [`allocator`] gives large CPU tensors huge pages.
pub mod allocator;
pub mod autocast;

use anyhow::{bail, Result};
pub use autocast::autocast;
use std::str::FromStr;
use std::sync::Once;
use tch::{Device, Kind};

static CUDA_LOAD: Once = Once::new();

/// Loads `libtorch_cuda.so` (if it can be found) so that its CUDA kernels register with
/// libtorch. Safe to call many times; failures are silent (CPU-only machines).
pub fn init() {
    CUDA_LOAD.call_once(|| {
        for name in [
            c"libtorch_cuda.so",
            c"libtorch_cuda_cu.so",
            c"libtorch_cuda_cpp.so",
        ] {
            // SAFETY: dlopen with a valid, NUL-terminated name; the handle is intentionally leaked
            // so the library stays loaded for the life of the process.
            unsafe {
                libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
            }
        }
    });
}

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => match n.parse::<usize>() {
                    Ok(i) => Ok(Self::Cuda(i)),
                    Err(_) => {
                        bail!("invalid device '{s}': the CUDA index must be a number (cuda:0)")
                    }
                },
                None => bail!("invalid device '{s}': expected auto, cpu, cuda or cuda:N"),
            },
        }
    }
}

impl DeviceSpec {
    /// Resolves to a concrete device, failing clearly if CUDA was asked for but is absent.
    pub fn resolve(self) -> Result<Device> {
        init();
        let n = if tch::Cuda::is_available() {
            tch::Cuda::device_count() as usize
        } else {
            0
        };
        match self {
            Self::Auto => Ok(if n > 0 { Device::Cuda(0) } else { Device::Cpu }),
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(i) if i < n => Ok(Device::Cuda(i)),
            Self::Cuda(i) if n == 0 => {
                bail!("device cuda:{i}: CUDA is not available on this machine (no GPU or driver found)")
            }
            Self::Cuda(i) => bail!("device cuda:{i}: only {n} CUDA device(s) present"),
        }
    }
}

/// Working precision: fp32 (default) or bf16 on CPU, half precision on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    #[value(name = "fp32", alias = "f32", alias = "float32")]
    F32,
    #[value(name = "fp16", alias = "f16", alias = "float16", alias = "half")]
    F16,
    #[value(name = "bf16", alias = "bfloat16")]
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Self::F32),
            "fp16" | "f16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => bail!("invalid precision '{s}': expected fp32, fp16 or bf16"),
        }
    }
}

impl Precision {
    /// The default for a device: fp32 on CPU, fp16 on CUDA.
    pub fn default_for(device: Device) -> Self {
        if device.is_cuda() {
            Self::F16
        } else {
            Self::F32
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::Bf16 => Kind::BFloat16,
        }
    }

    /// fp16 on the CPU is slow and poorly supported by libtorch's kernels: refused. bf16 runs
    /// on the CPU (fast where it has AMX / AVX512-BF16).
    pub fn check_device(self, device: Device) -> Result<()> {
        if !device.is_cuda() && self == Self::F16 {
            bail!("precision fp16 is only supported on CUDA; use bf16 or fp32 on the CPU");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The reason `init` exists: libtorch_cuda.so must be in the process after it, even though
    /// the binary does not link it (so CUDA kernels register where a GPU exists). Checked in
    /// the process's own memory map; needs no GPU.
    #[test]
    fn init_loads_libtorch_cuda() {
        super::init();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            maps.contains("libtorch_cuda.so"),
            "libtorch_cuda.so is not loaded"
        );
    }

    use super::*;

    #[test]
    fn parses_device_specs() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("CPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cpu_resolves_and_missing_cuda_is_an_error() {
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
        init();
        if !tch::Cuda::is_available() {
            let err = DeviceSpec::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("CUDA is not available"), "{err}");
            assert_eq!(DeviceSpec::Auto.resolve().unwrap(), Device::Cpu);
        }
    }

    #[test]
    fn half_precision_refused_on_cpu() {
        assert!(Precision::F16.check_device(Device::Cpu).is_err());
        assert!(Precision::Bf16.check_device(Device::Cpu).is_ok());
        assert!(Precision::F32.check_device(Device::Cpu).is_ok());
        assert_eq!(Precision::default_for(Device::Cpu), Precision::F32);
    }
}
