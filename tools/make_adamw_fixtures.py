#!/usr/bin/env python3
"""Reference for studioize's AdamW: torch.optim.AdamW (its CPU default, the single-tensor path)
over three steps of fixed gradients on two fixed tensors, lr 1e-3, betas (0.9, 0.999), eps 1e-8,
weight decay 1e-2. Saves the start values, each step's gradients, and the parameters and both
moments after the third step (tests/train.rs checks studioize's AdamW gives the same bits).

Pinned: torch 2.11.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_adamw_fixtures.py
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train" / "adamw.safetensors"


def main():
    g = torch.Generator("cpu").manual_seed(21)
    params = {"a": torch.randn(64, 33, generator=g), "b": torch.randn(1000, generator=g)}
    out = {f"{n}.start": p.clone() for n, p in params.items()}
    ps = {n: torch.nn.Parameter(p.clone()) for n, p in params.items()}
    opt = torch.optim.AdamW(list(ps.values()), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    for step in range(1, 4):
        for n, p in ps.items():
            grad = torch.randn(p.shape, generator=g) * (10.0 ** (step - 2))
            out[f"{n}.grad{step}"] = grad.clone()
            p.grad = grad
        opt.step()
        opt.zero_grad()
    for n, p in ps.items():
        out[f"{n}.end"] = p.detach().clone()
        out[f"{n}.m"] = opt.state[p]["exp_avg"].clone()
        out[f"{n}.v"] = opt.state[p]["exp_avg_sq"].clone()
    save_file(out, OUT)


if __name__ == "__main__":
    sys.exit(main())
