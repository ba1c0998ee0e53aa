#!/usr/bin/env python3
"""Reference images for studioize's `generate` / `transform`, made by diffusers' pipelines.

Runs diffusers' StableDiffusionPipeline and StableDiffusionImg2ImgPipeline on the tiny test
model `tests/fixtures/sd/tiny-a` (made by tools/make_sd_fixtures.py) for every sampler, with
`generator=torch.Generator("cpu").manual_seed(seed)`, and saves the images as PNGs with the
parameters in `cases.json`. The Rust tests (tests/pipelines.rs) redo each case and compare.

Pinned: torch 2.11.0, diffusers 0.42.1 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_pipeline_fixtures.py
"""
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)
from PIL import Image  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "pipelines"

SAMPLERS = {
    "pndm": (PNDMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "lms": (LMSDiscreteScheduler, {}),
}


def scheduler(name, base_config):
    cls, extra = SAMPLERS[name]
    return cls.from_config(base_config, **extra)


def save(images, stem):
    names = []
    for i, img in enumerate(images):
        name = f"{stem}-{i}.png" if len(images) > 1 else f"{stem}.png"
        img.save(OUT / name)
        names.append(name)
    return names


def input_photo():
    """A small synthetic 'product photo': a shaded box on a gradient, 40x32 (multiples of 8)."""
    h, w = 32, 40
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.float64)
    img[..., 0] = 0.55 + 0.3 * x / w
    img[..., 1] = 0.5 + 0.2 * y / h
    img[..., 2] = 0.6
    box = (x > 10) & (x < 30) & (y > 8) & (y < 26)
    img[box] = [0.8, 0.15, 0.1]
    img[box & (x < 14)] = [0.5, 0.08, 0.05]
    return Image.fromarray((img * 255).round().astype(np.uint8))


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    torch.set_num_threads(2)
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    base = pipe.scheduler.config
    cases = []
    common = dict(prompt="a leather handbag, studio lighting", negative_prompt="blurry, cluttered background",
                  guidance=7.5, steps=6, width=32, height=24)
    for name in SAMPLERS:
        seed = 1234
        n = 2 if name == "euler-a" else 1
        pipe.scheduler = scheduler(name, base)
        out = pipe(prompt=common["prompt"], negative_prompt=common["negative_prompt"],
                   guidance_scale=common["guidance"], num_inference_steps=common["steps"],
                   width=common["width"], height=common["height"], num_images_per_prompt=n,
                   generator=torch.Generator("cpu").manual_seed(seed)).images
        files = save(out, f"txt2img-{name}")
        cases.append(dict(task="generate", sampler=name, seed=seed, num_images=n, files=files, **common))

    photo = input_photo()
    photo.save(OUT / "input-photo.png")
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    for name, strength, n in [("ddim", 0.6, 1), ("euler-a", 0.6, 2), ("dpmpp-2m", 0.6, 1), ("pndm", 0.6, 1), ("euler", 0.8, 1)]:
        seed = 77
        i2i.scheduler = scheduler(name, base)
        out = i2i(prompt="a studio product photo of a red box", negative_prompt="dark, noisy",
                  image=photo, strength=strength, guidance_scale=6.0, num_inference_steps=15,
                  num_images_per_prompt=n, generator=torch.Generator("cpu").manual_seed(seed)).images
        files = save(out, f"img2img-{name}")
        cases.append(dict(task="transform", sampler=name, seed=seed, num_images=n, files=files,
                          prompt="a studio product photo of a red box", negative_prompt="dark, noisy",
                          guidance=6.0, steps=15, strength=strength, input="input-photo.png"))
    (OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
