#!/usr/bin/env python3
"""LoRA against full fine-tuning on an SD 1.4-shaped UNet: time per training step and peak
memory, diffusers + PEFT and studioize in the same run, on the same machine and thread count.

The UNet has SD 1.4's config (860 M parameters; random weights, so nothing is downloaded). One
step is the train_text_to_image.py objective on fixed random latents and text embeddings: UNet
forward + backward, grad-norm clipping, AdamW. Full: every weight trains (AdamW state for all);
LoRA: PEFT's LoraConfig(r, lora_alpha=r, target_modules=[to_q, to_k, to_v, to_out.0]) with the
base frozen. Each (library, mode) runs in its own process, so its peak resident memory
(ru_maxrss / VmHWM) is its own.

Usage: ~/.cache/studioize/venv/bin/python tools/bench_lora.py [--binary target/release/studioize]
       [--rank 4] [--steps 3] [--batch-size 1] [--latent-size 8] [--threads 2]
Pinned: torch 2.11.0, diffusers 0.42.1, peft 0.21.2 (asserted).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def python_step(a):
    """One (mode) measurement in this process: prints a JSON line."""
    import torch
    import torch.nn.functional as F
    import diffusers
    import peft
    from diffusers import UNet2DConditionModel

    assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
    assert diffusers.__version__ == "0.42.1", diffusers.__version__
    assert peft.__version__ == "0.21.2", peft.__version__
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(a.config)).train()
    base = sum(p.numel() for p in unet.parameters())
    if a.mode == "lora":
        unet.requires_grad_(False)
        unet.add_adapter(peft.LoraConfig(r=a.rank, lora_alpha=a.rank, target_modules=TARGETS,
                                         init_lora_weights=True))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    b, s = a.batch_size, a.latent_size
    latents = torch.randn(b, 4, s, s)
    context = torch.randn(b, 77, unet.config.cross_attention_dim)

    def step():
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (b,))
        loss = F.mse_loss(unet(latents + noise, t, context).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    per_step = (time.perf_counter() - t0) / a.steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(mode=a.mode, seconds_per_step=per_step, peak_rss_bytes=rss,
                          base_parameters=base, trained_parameters=sum(p.numel() for p in params))))


def run(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "target/release/studioize"))
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--latent-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mode", choices=["full", "lora"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        return python_step(a)

    from diffusers import UNet2DConditionModel

    with tempfile.TemporaryDirectory() as tmp:
        # SD 1.4's UNet: diffusers' defaults are its shapes, with CLIP ViT-L's 768-wide context.
        UNet2DConditionModel(cross_attention_dim=768, sample_size=64).save_config(tmp)
        config = str(Path(tmp) / "config.json")
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1")
        common = ["--steps", str(a.steps), "--batch-size", str(a.batch_size), "--latent-size", str(a.latent_size)]
        results = {}
        for mode in ["full", "lora"]:
            results[("diffusers", mode)] = run(
                [sys.executable, __file__, "--mode", mode, "--config", config, "--rank", str(a.rank),
                 "--threads", str(a.threads)] + common, env)
            results[("studioize", mode)] = run(
                [a.binary, "bench-train", "--unet-config", config, "--device", "cpu",
                 "--lora-rank", str(a.rank if mode == "lora" else 0)] + common, env)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {a.threads} threads"
    print(f"machine: {machine}; SD 1.4-shaped UNet, batch {a.batch_size}, latent {a.latent_size}x{a.latent_size} "
          f"({8 * a.latent_size} px), LoRA rank {a.rank} on {', '.join(TARGETS)}")
    print("| library | mode | trained parameters | s/step | peak memory (GiB) |")
    print("|---|---|---|---|---|")
    for (lib, mode), r in results.items():
        print(f"| {lib} | {mode} | {r['trained_parameters'] / 1e6:.2f} M | {r['seconds_per_step']:.2f} | "
              f"{r['peak_rss_bytes'] / 2**30:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
