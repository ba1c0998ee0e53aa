//! Bakes the libtorch location into the binaries' run path, so that
//! `target/release/studioize` runs without `LD_LIBRARY_PATH`, and compiles the C++ shim
//! (every `csrc/*.cpp`, sorted) into one static library against libtorch's headers.
//! `LIBTORCH` comes from `.cargo/config.toml`, written by `setup.sh`.
//!
//! The shim's distributed part (`csrc/dist.cpp`) declares c10d's ProcessGroupGloo through the
//! gloo headers vendored in `csrc/third_party/gloo` (`USE_C10D_GLOO`). ProcessGroupNCCL
//! (`csrc/dist_nccl.cpp`) is compiled in only when NCCL's and CUDA's headers and
//! `libtorch_cuda.so` are there (the `nvidia-*` wheels beside torch's), unless
//! `STUDIOIZE_NO_NCCL` is set.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=STUDIOIZE_NO_NCCL");
    println!("cargo:rerun-if-changed=csrc");
    let Ok(dir) = std::env::var("LIBTORCH") else {
        panic!("LIBTORCH is not set: run setup.sh (it writes .cargo/config.toml)");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    let libtorch = PathBuf::from(&dir);
    let mut sources: Vec<PathBuf> = std::fs::read_dir("csrc")
        .expect("csrc/ is part of the crate")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    sources.sort();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .files(&sources)
        .include("csrc")
        .include("csrc/third_party")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    let nccl = nccl_includes(&libtorch);
    if let Some(includes) = &nccl {
        build.define("USE_C10D_NCCL", None);
        build.define("STUDIOIZE_NCCL", None);
        for i in includes {
            build.include(i);
        }
    }
    build.compile("studioize_shim");
    println!("cargo:rustc-link-search=native={dir}/lib");
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
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
