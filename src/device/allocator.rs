//! Huge pages for libtorch's large CPU tensors.
//!
//! `--profile` with `perf` on the SD 1.4-shaped runs showed the CPU spending a tenth of its time
//! (txt2img) to a quarter (a training step) in the kernel's page faults: glibc hands every
//! tensor over 128 KiB-32 MiB its own `mmap`, returns it with `munmap` when the tensor dies,
//! and the next op's output is faulted in again, 4 KiB at a time (3 million faults per
//! training step of the full UNet). libtorch can ask for transparent huge pages instead
//! (`THP_MEM_ALLOC_ENABLE=1`: allocations of 2 MiB and more are 2 MiB-aligned and advised
//! `MADV_HUGEPAGE`), 512 times fewer faults for the same memory. The variable is read once, at
//! libtorch's first CPU allocation, so it is set before anything else runs. A value the user
//! set (`THP_MEM_ALLOC_ENABLE=0` to compare) is kept.
//!
//! Measured on the development machine (2 cores, THP `madvise`): txt2img's UNet call 10%
//! faster, a full fine-tuning step 24% faster, peak RSS within 2%. glibc's `M_MMAP_THRESHOLD`
//! (reusing freed memory in the heap) was faster still for inference but raised its peak RSS
//! by 12% and did nothing for training, so it is not used.

/// The libtorch variable, and the value studioize gives it.
pub const THP_VARIABLE: &str = "THP_MEM_ALLOC_ENABLE";

/// What to set [`THP_VARIABLE`] to, given its current value: `Some("1")` when unset or empty,
/// `None` (leave it) when the user chose.
pub fn thp_setting(current: Option<&str>) -> Option<&'static str> {
    match current.map(str::trim) {
        None | Some("") => Some("1"),
        Some(_) => None,
    }
}

/// Turns libtorch's huge-page allocations on unless the environment says otherwise. Call
/// first thing in `main`, before any thread or tensor exists.
pub fn use_huge_pages() {
    let current = std::env::var(THP_VARIABLE).ok();
    if let Some(value) = thp_setting(current.as_deref()) {
        std::env::set_var(THP_VARIABLE, value);
    }
}

/// Bytes of this process's anonymous memory in transparent huge pages (`AnonHugePages` of
/// `/proc/self/smaps_rollup`); `None` where the kernel does not say.
pub fn anon_huge_page_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = s.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_variable_is_turned_on_a_chosen_one_kept() {
        assert_eq!(thp_setting(None), Some("1"));
        assert_eq!(thp_setting(Some(" ")), Some("1"));
        assert_eq!(thp_setting(Some("0")), None);
        assert_eq!(thp_setting(Some("1")), None);
    }
}
