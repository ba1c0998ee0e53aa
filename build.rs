//! Two jobs: bakes the libtorch location into the binaries' run path, so that
//! `target/release/studioize` runs without `LD_LIBRARY_PATH`, and compiles the C++ shims in
//! `csrc/` (every `*.cpp` there, in name order, into one static library) against libtorch's
//! headers, for what tch does not expose (the autocast dtype).
//! `LIBTORCH` comes from `.cargo/config.toml`, written by `setup.sh`.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
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
/// `torch_cpu` and `c10` (as torch-sys links them).
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
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi)
        .flag_if_supported("-Wno-unused-parameter")
        .files(&files)
        .compile("studioize_shim");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
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
