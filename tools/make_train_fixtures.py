#!/usr/bin/env python3
"""Reference for one fine-tuning step of studioize's `train`, computed with diffusers' UNet.

The objective of diffusers' examples/text_to_image/train_text_to_image.py on a fixed batch:
fixed latents, noise and timesteps on the tiny model tests/fixtures/sd/tiny-a; `add_noise` and
`get_velocity` of DDPMScheduler; MSE against the noise (epsilon) or the velocity
(v_prediction), optionally with min-SNR-gamma weighting; the total gradient norm of the UNet
(as clip_grad_norm_ returns it); and the loss after one AdamW step with grad-norm clipping.

Pinned: torch 2.11.0, diffusers 0.42.1 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_train_fixtures.py
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import diffusers  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "train"


def snr_weights(sched, timesteps, gamma, prediction_type):
    ac = sched.alphas_cumprod.to(torch.float32)
    alpha = ac[timesteps] ** 0.5
    sigma = (1.0 - ac[timesteps]) ** 0.5
    snr = (alpha / sigma) ** 2
    w = torch.stack([snr, gamma * torch.ones_like(timesteps, dtype=snr.dtype)], dim=1).min(dim=1)[0]
    return w / snr if prediction_type == "epsilon" else w / (snr + 1)


def loss_of(unet, sched, latents, noise, timesteps, cond, prediction_type, gamma):
    noisy = sched.add_noise(latents, noise, timesteps)
    target = noise if prediction_type == "epsilon" else sched.get_velocity(latents, noise, timesteps)
    pred = unet(noisy, timesteps, cond).sample
    if gamma is None:
        return F.mse_loss(pred.float(), target.float(), reduction="mean")
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
    return (loss * snr_weights(sched, timesteps, gamma, prediction_type)).mean()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    refs = load_file(ROOT / "tests" / "fixtures" / "sd" / "tiny-a.refs.safetensors")
    cond = refs["text_embeddings"]
    g = torch.Generator("cpu").manual_seed(3)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    timesteps = torch.tensor([10, 700], dtype=torch.int64)
    tensors = {"latents": latents, "noise": noise, "timesteps": timesteps, "cond": cond}
    results = []
    for prediction_type, gamma in [("epsilon", None), ("epsilon", 5.0), ("v_prediction", 5.0)]:
        sched = DDPMScheduler.from_pretrained(MODEL, subfolder="scheduler", prediction_type=prediction_type)
        unet = UNet2DConditionModel.from_pretrained(MODEL / "unet").train()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        loss = loss_of(unet, sched, latents, noise, timesteps, cond, prediction_type, gamma)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            after = loss_of(unet, sched, latents, noise, timesteps, cond, prediction_type, gamma)
        results.append(dict(prediction_type=prediction_type, snr_gamma=gamma, loss=loss.item(),
                            grad_norm=grad_norm.item(), loss_after_step=after.item(),
                            lr=1e-3, weight_decay=1e-2, max_grad_norm=1.0))
        print(results[-1])
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "step.safetensors")
    (OUT / "step.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
