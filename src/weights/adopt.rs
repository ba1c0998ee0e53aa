//! Giving a checkpoint's tensors to a model's variables with as little memory as possible.
//!
//! A variable whose dtype and device are the file's takes the file's tensor itself (a view of
//! the private memory map, see [`super::files::read_safetensors`]): no copy, and the pages are
//! read once, by the finiteness check. Any other variable gets its own converted copy, made one
//! tensor at a time, after which the mapped pages of the source are given back to the kernel,
//! so a load never holds a second copy of the weights.
use anyhow::Result;
use std::collections::HashSet;
use tch::{Kind, Tensor};

/// How the values reach the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The variable's storage is replaced (`set_data`): the file's tensor where dtype and device
    /// match, else a converted copy. For freshly built models.
    Adopt,
    /// The values are copied into the variable's own storage, which stays the one that the
    /// optimizer and every other holder see (e.g. resuming training), and no file stays mapped.
    Copy,
}

/// Whether every value of `t` is finite: one reduction, and the exact elementwise test only
/// when the sum is not finite (a NaN or infinity, or a sum that overflowed).
pub fn all_finite(t: &Tensor) -> Result<bool> {
    if !t.is_floating_point() || t.numel() == 0 {
        return Ok(true);
    }
    let sum = f64::try_from(t.f_sum(None::<Kind>)?)?;
    if sum.is_finite() {
        return Ok(true);
    }
    Ok(bool::try_from(t.f_isfinite()?.f_all()?)?)
}

/// Moves the values of `src` into the variable `var` (see [`Mode`]). `maps` are the files'
/// memory maps (whole-file `uint8` tensors); `adopted` the data pointers already given to a
/// variable, so that no two variables share storage.
pub fn into_var(
    var: &Tensor,
    src: &Tensor,
    mode: Mode,
    maps: &[Tensor],
    adopted: &mut HashSet<usize>,
) -> Result<()> {
    let mut var = var.shallow_clone();
    let same = src.kind() == var.kind() && src.device() == var.device();
    if mode == Mode::Adopt && same && src.is_contiguous() && adopted.insert(src.data_ptr() as usize)
    {
        var.f_set_data(src)?;
        return Ok(());
    }
    match mode {
        Mode::Adopt => {
            let copy = Tensor::f_empty(var.size(), (var.kind(), var.device()))?;
            copy.shallow_clone().f_copy_(src)?;
            var.f_set_data(&copy)?;
        }
        Mode::Copy => var.f_copy_(src)?,
    }
    if !adopted.contains(&(src.data_ptr() as usize)) {
        release_pages(src, maps);
    }
    Ok(())
}

/// Gives back the resident pages of `src` when it lies inside one of the private file maps
/// `maps` and has been copied out: the pages wholly inside its bytes are dropped
/// (`MADV_DONTNEED`; read again from the file if ever touched). Tensors in ordinary memory are
/// left alone.
fn release_pages(src: &Tensor, maps: &[Tensor]) {
    if src.device() != tch::Device::Cpu || !src.is_contiguous() {
        return;
    }
    let start = src.data_ptr() as usize;
    let end = start + src.numel() * src.kind().elt_size_in_bytes();
    let inside = maps.iter().any(|m| {
        let m_start = m.data_ptr() as usize;
        start >= m_start && end <= m_start + m.numel()
    });
    if !inside {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let first = start.next_multiple_of(page);
    let last = end / page * page;
    if last > first {
        // SAFETY: the range lies inside a private file mapping that `maps` keeps alive and that
        // nothing has written (the pages were only read); dropped pages are read again from the
        // file, unchanged, if anything touches them later.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_DONTNEED,
            );
        }
    }
}
