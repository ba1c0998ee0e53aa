#!/usr/bin/env bash
# The GPU check (issues #15 and #16): one script, at most ~8 minutes on one H100/H200, that runs
# studioize's CUDA paths and prints one table.
#
#   1. generate, transform, caption and a 30-step training run (tiny-studio, the BLIP test model,
#      the synthetic shapes) in fp16 and in bf16 on cuda:0, each timed, its exit status kept;
#   2. with 2 or more GPUs, a 2-process data-parallel run (NCCL) of the same training;
#   3. tools/bench_full.py at 512x512 on CUDA against diffusers (when this machine's Python has
#      the pinned diffusers / transformers; bitsandbytes for the 8-bit rows if importable),
#      one run a side, no warm-up, the rows of $BENCH_ROWS.
#
# It needs a release binary built elsewhere (the device machine has no Rust toolchain):
#   cargo build --release   # then carry target/release/studioize to the GPU machine
# and finds libtorch in that machine's own torch (2.11) through LD_LIBRARY_PATH.
#
# Usage: tools/gpu_check.sh [OUT_DIR]      (default: $OUT or /tmp/gpu-check)
# Environment: BIN (default target/release/studioize), PYTHON (default python3), DEVICE, BENCH_ROWS,
#              BENCH_BUDGET_S (skip the benchmark when less time than this is left, default 60),
#              SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT_DIR=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUT_DIR"
BIN=${BIN:-target/release/studioize}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of the script itself (fp16 inference is refused there)
BENCH_ROWS=${BENCH_ROWS:-txt2img,train,train-ckpt-8bit,train-bf16,train-fp16,train-lora}
TABLE="$OUT_DIR/table.md"

TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
  echo "gpu_check: $PYTHON has no torch: cannot find libtorch" >&2
  exit 1
}
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x "$BIN" ] || { echo "gpu_check: $BIN: no such binary (cargo build --release, then carry it)" >&2; exit 1; }
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
echo "gpu_check: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1), $GPUS GPU(s);" \
  "torch $("$PYTHON" -c 'import torch; print(torch.__version__)') at $TORCH_LIB"

printf '| check | precision | status | seconds | note |\n|---|---|---|---|---|\n' > "$TABLE"
FAILED=0

# check NAME PRECISION COMMAND...: runs the command, adds a table row.
check() {
  local name=$1 prec=$2
  shift 2
  local t0 t1 rc note
  t0=$(date +%s.%N)
  "$@" > "$OUT_DIR/$name-$prec.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  note=$(grep -v '^\s*$' "$OUT_DIR/$name-$prec.log" | tail -1 | cut -c1-100 | tr '|' '/')
  if [ $rc -eq 0 ]; then status=ok; else status="FAILED ($rc)"; FAILED=1; fi
  printf '| %s | %s | %s | %.1f | %s |\n' "$name" "$prec" "$status" "$(awk -v a="$t0" -v b="$t1" "BEGIN{print b-a}")" "$note" >> "$TABLE"
  echo "  $name $prec: $status"
}

WORK="$OUT_DIR/work"
rm -rf "$WORK"
mkdir -p "$WORK"
"$BIN" make-shapes "$WORK/shapes" > "$WORK/shapes.log" 2>&1 || { echo "make-shapes failed" >&2; cat "$WORK/shapes.log"; exit 1; }
PHOTO=$(ls "$WORK"/shapes/train/*.png | head -1)
cat > "$WORK/exp.toml" <<EOF
[model]
base = "$PWD/models/tiny-studio"
[data]
images = "$WORK/shapes/train"
captions = "$WORK/shapes/train/metadata.csv"
resolution = 64
validation_split = 0.1
[train]
steps = 30
batch_size = 4
learning_rate = 1e-4
checkpoint_every = 30
validate_every = 10
validation_timesteps = 4
EOF

for p in fp16 bf16; do
  check generate $p "$BIN" generate --model models/tiny-studio --prompt "a red mug on a white background, studio product photo" \
    --num-images 8 --steps 20 --device "$DEVICE" --precision $p --out "$OUT_DIR/generate-$p"
  check transform $p "$BIN" transform --model models/tiny-studio --prompt "a green bottle, studio product photo" \
    --strength 0.6 --variations 4 --device "$DEVICE" --precision $p --out "$OUT_DIR/transform-$p" "$PHOTO"
  check caption $p "$BIN" caption --model tests/fixtures/blip/tiny --beams 3 --device "$DEVICE" --precision $p \
    --out "$OUT_DIR/captions-$p.csv" tests/fixtures/blip/images
  check train $p "$BIN" train "$WORK/exp.toml" --device "$DEVICE" --quiet --set train.mixed_precision=$p \
    --set output.dir="$OUT_DIR/run-$p"
done
check train-gradckpt-8bit bf16 "$BIN" train "$WORK/exp.toml" --device "$DEVICE" --quiet --set train.mixed_precision=bf16 \
  --set train.gradient_checkpointing=true --set train.optimizer=adamw8bit --set output.dir="$OUT_DIR/run-ckpt8"
if [ "$GPUS" -ge 2 ]; then
  check train-2gpu-nccl fp16 "$BIN" train "$WORK/exp.toml" --device "$DEVICE" --quiet --world-size 2 \
    --set train.mixed_precision=fp16 --set train.batch_size=2 --set output.dir="$OUT_DIR/run-ddp"
else
  printf '| train-2gpu-nccl | fp16 | skipped | 0 | one GPU |\n' >> "$TABLE"
fi

LEFT=$((480 - ($(date +%s) - START)))
if [ "${SKIP_BENCH:-0}" = 1 ]; then
  echo "benchmark: skipped (SKIP_BENCH=1)" >> "$TABLE"
elif ! "$PYTHON" -c 'import diffusers, transformers' 2>/dev/null; then
  echo "benchmark: skipped ($PYTHON has no diffusers / transformers)" >> "$TABLE"
elif [ "$LEFT" -lt "${BENCH_BUDGET_S:-60}" ]; then
  echo "benchmark: skipped (${LEFT}s of the 8 minutes left)" >> "$TABLE"
else
  echo "benchmark (${LEFT}s left): $BENCH_ROWS at 512x512"
  timeout "$LEFT" "$PYTHON" tools/bench_full.py --device "$DEVICE" --runs 1 --warmups 0 --rows "$BENCH_ROWS" \
    --binary "$BIN" --cache "$OUT_DIR/bench-cache" --out "$OUT_DIR/bench.json" --threads "$(nproc)" \
    > "$OUT_DIR/bench.log" 2>&1
  echo "benchmark exit status $?" >> "$TABLE"
  sed -n '/^| what/,$p' "$OUT_DIR/bench.log" >> "$TABLE"
  rm -rf "$OUT_DIR/bench-cache"
fi
echo
cat "$TABLE"
echo "gpu_check: $(( $(date +%s) - START )) s; logs in $OUT_DIR"
exit $FAILED
