//! Bakes the libtorch location into the binaries' run path, so that
//! `target/release/studioize` runs without `LD_LIBRARY_PATH`.
//! `LIBTORCH` comes from `.cargo/config.toml`, written by `setup.sh`.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
