//! Large CPU tensors live in transparent huge pages: studioize turns on libtorch's
//! `THP_MEM_ALLOC_ENABLE` (see src/device/allocator.rs) unless the user set it, and
//! `THP_MEM_ALLOC_ENABLE=0` turns it off. Read from the kernel (`AnonHugePages`), as
//! `bench-train` reports it, on a UNet whose convolutions are over 2 MiB each.
mod common;

use serde_json::Value;

/// `anon_huge_page_bytes` of a `bench-train` run with `THP_MEM_ALLOC_ENABLE` set to `thp`
/// (unset: `None`).
fn huge_page_bytes(config: &std::path::Path, thp: Option<&str>) -> u64 {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_studioize"));
    cmd.args(["bench-train", "--unet-config", config.to_str().unwrap()])
        .args(["--latent-size", "8", "--steps", "1", "--device", "cpu"])
        .env_remove("THP_MEM_ALLOC_ENABLE");
    if let Some(v) = thp {
        cmd.env("THP_MEM_ALLOC_ENABLE", v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["anon_huge_page_bytes"]
        .as_u64()
        .expect("AnonHugePages")
}

#[test]
fn large_tensors_get_huge_pages_unless_turned_off() {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !mode.contains("[madvise]") && !mode.contains("[always]") {
        eprintln!("skipped: this kernel gives no transparent huge pages ({mode:?})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::fixtures().join("sd/tiny-a/unet/config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(tiny).unwrap()).unwrap();
    // 256 -> 320 channels: 3x3 convolutions of 2.4-3.7 MB, their gradients and AdamW moments.
    cfg["block_out_channels"] = serde_json::json!([256, 320]);
    cfg["norm_num_groups"] = 32.into();
    let config = dir.path().join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();

    let on = huge_page_bytes(&config, None);
    assert!(on >= 2 << 20, "{on} bytes in huge pages by default");
    let off = huge_page_bytes(&config, Some("0"));
    if mode.contains("[madvise]") {
        // Only memory advised MADV_HUGEPAGE gets them: none without libtorch's advice.
        assert_eq!(off, 0, "THP_MEM_ALLOC_ENABLE=0");
    } else {
        assert!(off < on, "{off} >= {on} with THP_MEM_ALLOC_ENABLE=0");
    }
}
