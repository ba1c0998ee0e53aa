#!/usr/bin/env python3
"""CPU captioning benchmark: `studioize caption` against transformers on the same machine, in
the same run, on the same model and images.

Both caption a folder of N images (copies of the BLIP fixture images) in batches, from image
files to caption strings: decoding, preprocessing (Pillow-resampled to the model's size), the
vision encoder and the text decoder with its KV cache. transformers is timed after one warm-up
batch; studioize reports its own images/s, measured after the model is loaded. Greedy and beam
search are both timed. Same thread count on both sides (torch's default, all cores).

Usage: ~/.cache/studioize/venv/bin/python tools/bench_caption.py [MODEL] [--images N]
Pinned: torch 2.11.0, transformers 5.24.0.
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import BlipForConditionalGeneration, BlipProcessor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=str(ROOT / "tests/fixtures/blip/tiny"))
    ap.add_argument("--binary", default=str(ROOT / "target/release/studioize"))
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp())
    src = sorted((ROOT / "tests/fixtures/blip/images").glob("*.png"))
    folder = tmp / "photos"
    folder.mkdir()
    for i in range(a.images):
        shutil.copy(src[i % len(src)], folder / f"p{i:04d}.png")
    files = sorted(folder.glob("*.png"))

    model = BlipForConditionalGeneration.from_pretrained(a.model).eval()
    processor = BlipProcessor.from_pretrained(a.model)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(f"model: {a.model}, {a.images} images, batch {a.batch_size}, max_new_tokens {a.max_new_tokens}")

    for beams in (1, 3):
        kw = dict(max_new_tokens=a.max_new_tokens, num_beams=beams, do_sample=False)

        def caption(batch):
            imgs = [Image.open(f) for f in batch]
            inputs = processor(images=imgs, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**inputs, **kw)
            return processor.batch_decode(out, skip_special_tokens=True)

        caption(files[: a.batch_size])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(files), a.batch_size):
            caption(files[i : i + a.batch_size])
        hf = len(files) / (time.perf_counter() - t0)

        out_csv = tmp / f"captions-{beams}.csv"
        run = subprocess.run(
            [a.binary, "caption", "--model", a.model, "--device", "cpu", "--beams", str(beams),
             "--max-new-tokens", str(a.max_new_tokens), "--batch-size", str(a.batch_size),
             "--out", str(out_csv), str(folder)],
            capture_output=True, text=True, check=True)
        m = re.search(r"at ([0-9.]+) images/s", run.stderr)
        ours = float(m.group(1))
        print(f"beams={beams}: transformers {hf:.1f} images/s, studioize {ours:.1f} images/s, ratio {ours / hf:.2f}x")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
