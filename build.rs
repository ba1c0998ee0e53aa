//! Two jobs: bakes the libtorch location into the binaries' run path, so that
//! `target/release/studioize` runs without `LD_LIBRARY_PATH`, and compiles the C++ shim in
//! `csrc/` (every `*.cpp` there, in name order, into one static library) against libtorch's
//! headers, for what tch does not expose (the autocast dtype, c10d's process groups).
//! `LIBTORCH` comes from `.cargo/config.toml`, written by `setup.sh`.
//!
//! The distributed part (`csrc/dist.cpp`) declares c10d's ProcessGroupGloo through the gloo
//! headers vendored in `csrc/third_party/gloo` (`USE_C10D_GLOO`). ProcessGroupNCCL
//! (`csrc/dist_nccl.cpp`) is compiled in only when NCCL's and CUDA's headers and
//! `libtorch_cuda.so` are there (the `nvidia-*` wheels beside torch's), unless
//! `STUDIOIZE_NO_NCCL` is set.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=STUDIOIZE_NO_NCCL");
    println!("cargo:rerun-if-changed=csrc");
    let Ok(dir) = std::env::var("LIBTORCH") else {
        eprintln!("error: LIBTORCH is not set; run ./setup.sh (it writes .cargo/config.toml)");
        std::process::exit(1);
    };
    let libtorch = PathBuf::from(&dir);
    let include = libtorch.join("include");
    if !include.join("ATen").is_dir() {
        eprintln!(
            "error: LIBTORCH={dir} has no include/ATen (not a libtorch folder); run ./setup.sh"
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    compile_shims(Path::new("csrc"), &libtorch);
}

/// Every `csrc/*.cpp`, sorted, into `libstudioize_shim.a`, linked against libtorch's
/// `torch_cpu` and `c10` (as torch-sys links them), and `torch_cuda` / `c10_cuda` with NCCL.
fn compile_shims(csrc: &Path, libtorch: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(csrc)
        .unwrap_or_else(|e| panic!("{}: cannot list ({e})", csrc.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let include = libtorch.join("include");
    let abi = cxx11_abi(&libtorch.join("lib").join("libc10.so"));
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(csrc)
        .include(csrc.join("third_party"))
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi)
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .files(&files);
    let nccl = nccl_includes(libtorch);
    if let Some(includes) = &nccl {
        build.define("USE_C10D_NCCL", None);
        build.define("STUDIOIZE_NCCL", None);
        for i in includes {
            build.include(i);
        }
    }
    build.compile("studioize_shim");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=torch_cuda");
        println!("cargo:rustc-link-lib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
}

/// `torch._C._GLIBCXX_USE_CXX11_ABI` of the libtorch build, read off `libc10.so` itself: a
/// library built with the new ABI exports `std::__cxx11` names, one built with the old ABI has
/// none. The shim must agree with libtorch on `std::string`'s layout.
fn cxx11_abi(c10: &Path) -> &'static str {
    let bytes = std::fs::read(c10).unwrap_or_else(|e| {
        eprintln!(
            "error: {}: cannot read ({e}); run ./setup.sh",
            c10.display()
        );
        std::process::exit(1);
    });
    let needle = b"__cxx11";
    match bytes.windows(needle.len()).any(|w| w == needle) {
        true => "1",
        false => "0",
    }
}

/// The include folders of NCCL and CUDA when everything ProcessGroupNCCL.hpp includes is there:
/// `nccl.h`, the CUDA runtime, its `crt/` headers and CCCL's `nv/target` (the `nvidia-nccl`,
/// `nvidia-cuda-runtime`, `nvidia-cuda-crt` and `nvidia-cuda-cccl` wheels beside torch in
/// site-packages, `$CUDA_HOME/include`, or the folders in `STUDIOIZE_CUDA_INCLUDE`,
/// colon-separated), and libtorch_cuda.so to link.
fn nccl_includes(libtorch: &Path) -> Option<Vec<PathBuf>> {
    println!("cargo:rerun-if-env-changed=STUDIOIZE_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("STUDIOIZE_NO_NCCL").is_some()
        || !libtorch.join("lib/libtorch_cuda.so").is_file()
    {
        return None;
    }
    let nvidia = libtorch.parent()?.join("nvidia");
    let mut candidates: Vec<PathBuf> = std::env::var("STUDIOIZE_CUDA_INCLUDE")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    candidates.extend(["nccl", "cu13", "cu12"].map(|d| nvidia.join(d).join("include")));
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.retain(|d| d.is_dir());
    let needed = [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
    ];
    let found = needed
        .iter()
        .all(|h| candidates.iter().any(|d| d.join(h).exists()));
    found.then_some(candidates)
}
