#!/usr/bin/env python3
"""diffusers' txt2img in bfloat16 on the CPU, for studioize's `--precision bf16` on the CPU.

Runs StableDiffusionPipeline on the tiny test model `tests/fixtures/sd/tiny-a` twice, in fp32
and with the whole pipeline cast to bfloat16 (`pipe.to(torch.bfloat16)`, as diffusers' CPU
bf16 inference), for the `txt2img-ddim` case of tests/fixtures/pipelines/cases.json, and saves
both images plus how far apart they are (mean and 99th percentile of absolute differences in
8-bit levels) into tests/fixtures/precision/. tests/precision.rs holds studioize's bf16 image
to diffusers' bf16 one and its distance from fp32 to what diffusers' own bf16 shows.

Pinned: torch 2.11.0, diffusers 0.42.1 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_bf16_fixtures.py
"""
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import DDIMScheduler, StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
CASES = ROOT / "tests" / "fixtures" / "pipelines" / "cases.json"
OUT = ROOT / "tests" / "fixtures" / "precision"


def render(case, dtype):
    pipe = StableDiffusionPipeline.from_pretrained(
        MODEL, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe = pipe.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=case["prompt"],
        negative_prompt=case["negative_prompt"],
        num_inference_steps=case["steps"],
        guidance_scale=case["guidance"],
        width=case["width"],
        height=case["height"],
        generator=torch.Generator("cpu").manual_seed(case["seed"]),
        output_type="np",
    ).images[0]
    return (np.clip(out.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)


def main():
    case = next(c for c in json.loads(CASES.read_text()) if c["files"] == ["txt2img-ddim.png"])
    OUT.mkdir(parents=True, exist_ok=True)
    fp32 = render(case, torch.float32)
    bf16 = render(case, torch.bfloat16)
    Image.fromarray(fp32).save(OUT / "txt2img-ddim-fp32.png")
    Image.fromarray(bf16).save(OUT / "txt2img-ddim-bf16.png")
    d = np.sort(np.abs(fp32.astype(np.float64) - bf16.astype(np.float64)).ravel())
    p99 = d[min(int(np.ceil(len(d) * 0.99)), len(d) - 1)]
    summary = {"case": case, "fp32_vs_bf16_mean": float(d.mean()), "fp32_vs_bf16_p99": float(p99)}
    (OUT / "bf16.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
