#!/usr/bin/env python3
"""CPU benchmark: studioize against diffusers on the same machine, in the same run.

Times, on a model folder (default: the tiny test model), (1) seconds per generated image with
PNDM, classifier-free guidance, N steps, and (2) training steps per second of the
train_text_to_image.py objective (VAE encode + text encode frozen, UNet forward + backward,
grad clipping, AdamW), both after warm-up, with the same thread count. Then runs
`studioize bench` with the same settings and prints both and their ratio.

Usage: ~/.cache/studioize/venv/bin/python tools/bench_cpu.py [MODEL] [--binary target/release/studioize]
Pinned: torch 2.11.0, diffusers 0.42.1.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import DDPMScheduler, PNDMScheduler, StableDiffusionPipeline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=str(ROOT / "tests/fixtures/sd/tiny-a"))
    ap.add_argument("--binary", default=str(ROOT / "target/release/studioize"))
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--train-size", type=int, default=64)
    a = ap.parse_args()

    pipe = StableDiffusionPipeline.from_pretrained(a.model, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a leather handbag, studio lighting", guidance_scale=7.5, num_inference_steps=a.steps,
              width=a.size, height=a.size)
    pipe(**kw, generator=torch.Generator("cpu").manual_seed(0))
    t0 = time.perf_counter()
    for i in range(a.images):
        pipe(**kw, generator=torch.Generator("cpu").manual_seed(i + 1))
    per_image = (time.perf_counter() - t0) / a.images

    unet, vae, text, tok = pipe.unet.train(), pipe.vae, pipe.text_encoder, pipe.tokenizer
    vae.requires_grad_(False)
    text.requires_grad_(False)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5, weight_decay=1e-2)
    b = a.batch_size
    pixels = torch.rand(b, 3, a.train_size, a.train_size) * 2 - 1
    ids = tok(["a red circle on a white background"] * b, padding="max_length", max_length=77,
              truncation=True, return_tensors="pt").input_ids

    def step():
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            emb = text(ids)[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (b,))
        pred = unet(sched.add_noise(latents, noise, t), t, emb).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(a.train_steps):
        step()
    steps_per_s = a.train_steps / (time.perf_counter() - t0)

    cmd = [a.binary, "bench", "--model", a.model, "--device", "cpu", "--images", str(a.images),
           "--steps", str(a.steps), "--size", str(a.size), "--train-steps", str(a.train_steps),
           "--batch-size", str(b), "--train-size", str(a.train_size)]
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    print(f"machine: {machine}; model: {a.model}")
    print(f"generate {a.size}x{a.size}, {a.steps} PNDM steps, CFG: diffusers {per_image:.3f} s/image, "
          f"studioize {ours['seconds_per_image']:.3f} s/image, ratio (diffusers/studioize) {per_image / ours['seconds_per_image']:.2f}")
    print(f"train batch {b} at {a.train_size}px: diffusers {steps_per_s:.2f} steps/s, studioize "
          f"{ours['train_steps_per_s']:.2f} steps/s, ratio (studioize/diffusers) {ours['train_steps_per_s'] / steps_per_s:.2f}")


if __name__ == "__main__":
    sys.exit(main())
