#!/usr/bin/env python3
"""Reference for one DreamBooth step with prior preservation, as diffusers'
examples/dreambooth/train_dreambooth.py computes it, on the tiny model tests/fixtures/sd/tiny-a.

The batch is the collate_fn's: two instance rows ("a photo of zwx mug") then two class rows
("a photo of a mug"), embedded by the model's own CLIP text encoder (frozen, as without
--train_text_encoder); fixed latents, noise and timesteps; the UNet prediction is chunked into
the instance and class halves, each half's MSE taken in fp32, and
loss = instance MSE + prior_loss_weight * class MSE. Also the total gradient norm of the UNet
(as clip_grad_norm_ returns it) and the loss after one AdamW step with clipping.

The min-SNR case weights the instance rows by the instance rows' timesteps: train_dreambooth.py
computes the weights over all 2B timesteps and multiplies them into the B instance losses, which
fails for B > 1 (a shape mismatch); this is the corrected computation, noted as such.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_dreambooth_fixtures.py
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "dreambooth"
INSTANCE_PROMPT = "a photo of zwx mug"
CLASS_PROMPT = "a photo of a mug"


def snr_weights(sched, timesteps, gamma):
    ac = sched.alphas_cumprod.to(torch.float32)
    snr = (ac[timesteps] ** 0.5 / (1.0 - ac[timesteps]) ** 0.5) ** 2
    w = torch.stack([snr, gamma * torch.ones_like(timesteps, dtype=snr.dtype)], dim=1).min(dim=1)[0]
    return w / snr


def dreambooth_loss(unet, sched, latents, noise, timesteps, cond, prior_loss_weight, gamma):
    noisy = sched.add_noise(latents, noise, timesteps)
    model_pred = unet(noisy, timesteps, cond).sample
    target = noise
    # train_dreambooth.py: the prior-preservation chunks (instances first, then classes)
    model_pred, model_pred_prior = torch.chunk(model_pred, 2, dim=0)
    target, target_prior = torch.chunk(target, 2, dim=0)
    prior_loss = F.mse_loss(model_pred_prior.float(), target_prior.float(), reduction="mean")
    if gamma is None:
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
    else:
        instance_t = torch.chunk(timesteps, 2, dim=0)[0]
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
        loss = (loss * snr_weights(sched, instance_t, gamma)).mean()
    return loss + prior_loss_weight * prior_loss


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(MODEL / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(MODEL / "text_encoder").eval()
    prompts = [INSTANCE_PROMPT, INSTANCE_PROMPT, CLASS_PROMPT, CLASS_PROMPT]
    ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=77,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        cond = text_encoder(ids)[0]
    g = torch.Generator("cpu").manual_seed(5)
    latents = torch.randn(4, 4, 8, 8, generator=g)
    noise = torch.randn(4, 4, 8, 8, generator=g)
    timesteps = torch.tensor([30, 640, 250, 910], dtype=torch.int64)
    tensors = {"latents": latents, "noise": noise, "timesteps": timesteps, "cond": cond}
    results = []
    for prior_loss_weight, gamma in [(1.0, None), (0.5, None), (1.0, 5.0)]:
        sched = DDPMScheduler.from_pretrained(MODEL, subfolder="scheduler")
        unet = UNet2DConditionModel.from_pretrained(MODEL / "unet").train()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        args = (latents, noise, timesteps, cond, prior_loss_weight, gamma)
        loss = dreambooth_loss(unet, sched, *args)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            after = dreambooth_loss(unet, sched, *args)
        results.append(dict(prompts=prompts, prior_rows=2, prior_loss_weight=prior_loss_weight,
                            snr_gamma=gamma, loss=loss.item(), grad_norm=grad_norm.item(),
                            loss_after_step=after.item(), lr=1e-3, weight_decay=1e-2,
                            max_grad_norm=1.0))
        print(results[-1])
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "step.safetensors")
    (OUT / "step.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
