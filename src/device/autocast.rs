//! Autocast in a chosen dtype on CPU or CUDA, through the C++ shim `csrc/autocast.cpp`
//! (tch's own `tch::autocast` only toggles CUDA autocast, always in fp16).
//!
//! Inside [`autocast`], libtorch runs the ops on its lower-precision list (linear, matmul,
//! convolutions, attention) in the chosen dtype and keeps the precision-sensitive ones
//! (softmax, norms, losses) in fp32, exactly as `torch.autocast(device_type, dtype)`.
use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Kind};

extern "C" {
    fn studioize_autocast_state(
        device: c_int,
        enabled: *mut bool,
        dtype: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn studioize_autocast_enter(
        device: c_int,
        dtype: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn studioize_autocast_exit(
        device: c_int,
        enabled: bool,
        dtype: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// `c10::DeviceType` values of the devices autocast supports here.
const CPU: c_int = 0;
const CUDA: c_int = 1;

/// `c10::ScalarType` values of the dtypes autocast runs in (and fp32).
const HALF: c_int = 5;
const FLOAT: c_int = 6;
const BFLOAT16: c_int = 15;

/// `kind` as a `c10::ScalarType` (one of those [`check`] allows).
fn scalar_type(kind: Kind) -> c_int {
    match kind {
        Kind::BFloat16 => BFLOAT16,
        _ => HALF,
    }
}

/// Refuses what [`autocast`] cannot do: a device other than CPU / CUDA, a dtype other than
/// fp16 / bf16.
pub fn check(device: Device, dtype: Kind) -> Result<()> {
    device_type(device)?;
    if !matches!(dtype, Kind::Half | Kind::BFloat16) {
        bail!("autocast runs in fp16 or bf16, not {dtype:?}");
    }
    Ok(())
}

fn device_type(device: Device) -> Result<c_int> {
    match device {
        Device::Cpu => Ok(CPU),
        Device::Cuda(_) => Ok(CUDA),
        other => bail!("autocast is not supported on {other:?} (only CPU and CUDA)"),
    }
}

/// Runs `f` under [`autocast`] when `on` names a device and dtype, else as it is.
pub fn autocast_if<T>(on: Option<(Device, Kind)>, f: impl FnOnce() -> T) -> T {
    match on {
        Some((device, dtype)) => autocast(device, dtype, f),
        None => f(),
    }
}

/// Runs `f` with autocast on for `device`'s type in `dtype` (fp16 or bf16). Regions nest; on
/// leaving, even by a panic, the device's previous autocast flag and dtype come back, and
/// the outermost region clears libtorch's cast cache.
///
/// # Panics
/// On a device or dtype that [`check`] refuses (call it first where they come from input).
pub fn autocast<T>(device: Device, dtype: Kind, f: impl FnOnce() -> T) -> T {
    if let Err(e) = check(device, dtype) {
        panic!("{e}");
    }
    let device = device_type(device).expect("checked");
    let (enabled, previous) = raw_state(device);
    shim("enter", |err, len| {
        // SAFETY: an error buffer of `len` bytes.
        (
            unsafe { studioize_autocast_enter(device, scalar_type(dtype), err, len) },
            (),
        )
    });
    let _restore = Restore {
        device,
        enabled,
        dtype: previous,
    };
    f()
}

/// Leaves the region when dropped: on return and on unwinding alike.
struct Restore {
    device: c_int,
    enabled: bool,
    dtype: c_int,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let Restore {
            device,
            enabled,
            dtype,
        } = *self;
        shim("exit", |err, len| {
            // SAFETY: an error buffer of `len` bytes; `dtype` is what libtorch reported.
            (
                unsafe { studioize_autocast_exit(device, enabled, dtype, err, len) },
                (),
            )
        });
    }
}

/// Calls one shim function with an error buffer; a failure (libtorch threw) is a bug, not an
/// input error, so it panics with libtorch's message.
fn shim<T>(what: &str, call: impl FnOnce(*mut c_char, usize) -> (c_int, T)) -> T {
    let mut err = [0 as c_char; 512];
    let (rc, value) = call(err.as_mut_ptr(), err.len());
    if rc != 0 {
        // SAFETY: the shim NUL-terminates the message inside the buffer.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
        panic!("autocast {what}: {}", msg.to_string_lossy());
    }
    value
}

/// A device type's autocast flag and `c10::ScalarType`.
fn raw_state(device: c_int) -> (bool, c_int) {
    shim("state", |err, len| {
        let (mut enabled, mut dtype) = (false, 0);
        // SAFETY: valid out-pointers and an error buffer of `len` bytes.
        let rc = unsafe { studioize_autocast_state(device, &mut enabled, &mut dtype, err, len) };
        (rc, (enabled, dtype))
    })
}

/// The device's autocast flag and dtype now (tests and diagnostics).
pub fn state(device: Device) -> Result<(bool, Kind)> {
    let (enabled, dtype) = raw_state(device_type(device)?);
    let kind = match dtype {
        HALF => Kind::Half,
        FLOAT => Kind::Float,
        BFLOAT16 => Kind::BFloat16,
        other => bail!("autocast dtype {other} is not fp16, bf16 or fp32"),
    };
    Ok((enabled, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::Tensor;

    fn linear() -> nn::Linear {
        let vs = nn::VarStore::new(Device::Cpu);
        nn::linear(vs.root(), 8, 4, Default::default())
    }

    /// The shim's dtype is the one asked for: a linear's output inside the region, and fp32
    /// again after it.
    #[test]
    fn cpu_autocast_runs_linear_in_the_chosen_dtype() {
        let lin = linear();
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        assert_eq!(lin.forward(&x).kind(), Kind::Float);
        let y = autocast(Device::Cpu, Kind::BFloat16, || lin.forward(&x));
        assert_eq!(y.kind(), Kind::BFloat16);
        let y = autocast(Device::Cpu, Kind::Half, || lin.forward(&x));
        assert_eq!(y.kind(), Kind::Half);
        assert_eq!(lin.forward(&x).kind(), Kind::Float);
        // Ops on libtorch's CPU fp32 list (losses) run in fp32 inside the region.
        let s = autocast(Device::Cpu, Kind::BFloat16, || {
            let y = lin.forward(&x);
            y.mse_loss(&y.zeros_like(), tch::Reduction::Mean)
        });
        assert_eq!(s.kind(), Kind::Float);
    }

    /// Nested regions restore the outer one's dtype; leaving the outermost restores the state
    /// before it, also when the closure panics.
    #[test]
    fn nesting_and_panics_restore_the_previous_state() {
        let lin = linear();
        let x = Tensor::randn([2, 8], (Kind::Float, Device::Cpu));
        let before = state(Device::Cpu).unwrap();
        assert!(!before.0);
        autocast(Device::Cpu, Kind::BFloat16, || {
            let inner = autocast(Device::Cpu, Kind::Half, || lin.forward(&x));
            assert_eq!(inner.kind(), Kind::Half);
            assert_eq!(state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
            assert_eq!(lin.forward(&x).kind(), Kind::BFloat16);
        });
        assert_eq!(state(Device::Cpu).unwrap(), before);
        let caught = std::panic::catch_unwind(|| {
            autocast(Device::Cpu, Kind::Half, || panic!("inside autocast"))
        });
        assert!(caught.is_err());
        assert_eq!(state(Device::Cpu).unwrap(), before);
        assert_eq!(lin.forward(&x).kind(), Kind::Float);
        // The CUDA flag is separate (settable without a GPU) and untouched by CPU regions.
        assert!(!state(Device::Cuda(0)).unwrap().0);
    }

    #[test]
    fn check_refuses_fp32_and_other_devices() {
        assert!(check(Device::Cpu, Kind::Float).is_err());
        assert!(check(Device::Mps, Kind::Half).is_err());
        assert!(check(Device::Cuda(0), Kind::BFloat16).is_ok());
    }
}
