#!/usr/bin/env python3
"""References for studioize's 8-bit AdamW and Adafactor: four steps of the Python optimizers on
fixed gradients, over parameters of varied shapes (a 1-D bias and a 2-D weight under
bitsandbytes' 4096-element min_8bit_size, so with fp32 state there; a 2-D weight, a 4-D conv
weight and a long 1-D tensor above it, each with several 256-element blocks and a partial last
one).

- tests/fixtures/train/adamw8bit.safetensors: the real `bitsandbytes.optim.AdamW8bit` (its CPU
  backend: dequantise both moments, fp32 Adam update with bias correction and decoupled weight
  decay, requantise blockwise with the dynamic maps) with lr 1e-3, betas (0.9, 0.999), eps 1e-8,
  weight decay 1e-2. Saved: `qmap1` / `qmap2` (the signed and unsigned dynamic maps), per
  parameter `<p>.start`, `<p>.grad<k>`, and after each step k `<p>.param<k>`, `<p>.state1_<k>`,
  `<p>.state2_<k>` (uint8 codes, or fp32 moments under min_8bit_size) and `<p>.absmax1_<k>` /
  `<p>.absmax2_<k>` (fp32, one per block).
- tests/fixtures/train/adafactor.safetensors: `transformers.optimization.Adafactor` with
  scale_parameter=False, relative_step=False, lr 1e-3, in two settings: `plain.` (transformers'
  defaults: eps (1e-30, 1e-3), clip_threshold 1.0, decay_rate -0.8, beta1 None, weight_decay 0)
  and `beta1.` (beta1 0.9, weight_decay 1e-2, clip_threshold 0.5) on the same start values and
  gradients (`<p>.start`, `<p>.grad<k>`). Saved per setting and parameter: `param<k>` after each
  step and the final state (`row` / `col` for parameters of 2 or more dims, else `sq`; `m` with
  beta1).

bitsandbytes does not go into the shared venv: it is installed into a throwaway folder and put
on PYTHONPATH. Pinned: torch 2.11.0, bitsandbytes 0.50.2, transformers 5.24.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/pip install --no-deps --target /tmp/bnb bitsandbytes==0.50.2
    PYTHONPATH=/tmp/bnb ~/.cache/studioize/venv/bin/python tools/make_optimizer_fixtures.py
"""
import sys
from pathlib import Path

import torch
import bitsandbytes as bnb
import transformers
from safetensors.torch import save_file
from transformers.optimization import Adafactor

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert bnb.__version__ == "0.50.2", bnb.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train"
STEPS = 4
SHAPES = {
    "bias": (320,),
    "small": (40, 50),
    "linear": (65, 97),
    "conv": (33, 16, 3, 3),
    "long": (5000,),
}


def start_and_grads(seed):
    """Start values and per-step gradients (their scale changes from step to step)."""
    g = torch.Generator("cpu").manual_seed(seed)
    start = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    grads = {
        n: [torch.randn(s, generator=g) * (10.0 ** (k % 3 - 1)) for k in range(STEPS)]
        for n, s in SHAPES.items()
    }
    return start, grads


def run(make_opt, start, grads, on_step):
    ps = {n: torch.nn.Parameter(v.clone()) for n, v in start.items()}
    opt = make_opt(list(ps.values()))
    for k in range(STEPS):
        for n, p in ps.items():
            p.grad = grads[n][k].clone()
        opt.step()
        opt.zero_grad()
        on_step(k + 1, ps, opt)
    return ps, opt


def adamw8bit():
    start, grads = start_and_grads(31)
    out = {}
    for n in SHAPES:
        out[f"{n}.start"] = start[n].clone()
        for k in range(STEPS):
            out[f"{n}.grad{k + 1}"] = grads[n][k].clone()

    def on_step(k, ps, opt):
        for n, p in ps.items():
            st = opt.state[p]
            out[f"{n}.param{k}"] = p.detach().clone()
            for key in ("state1", "state2", "absmax1", "absmax2"):
                if key in st:
                    out[f"{n}.{key}_{k}"] = st[key].clone()
            if "qmap1" in st:
                out["qmap1"] = st["qmap1"].clone()
                out["qmap2"] = st["qmap2"].clone()

    def make(params):
        return bnb.optim.AdamW8bit(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)

    run(make, start, grads, on_step)
    save_file(out, OUT / "adamw8bit.safetensors")


def adafactor():
    out = {}
    settings = {
        "plain": {},
        "beta1": {"beta1": 0.9, "weight_decay": 1e-2, "clip_threshold": 0.5},
    }
    start, grads = start_and_grads(41)
    for n in SHAPES:
        out[f"{n}.start"] = start[n].clone()
        for k in range(STEPS):
            out[f"{n}.grad{k + 1}"] = grads[n][k].clone()
    for name, extra in settings.items():

        def on_step(k, ps, opt, name=name):
            for n, p in ps.items():
                out[f"{name}.{n}.param{k}"] = p.detach().clone()

        def make(params, extra=extra):
            return Adafactor(params, lr=1e-3, scale_parameter=False, relative_step=False, **extra)

        ps, opt = run(make, start, grads, on_step)
        names = {"exp_avg_sq_row": "row", "exp_avg_sq_col": "col", "exp_avg_sq": "sq", "exp_avg": "m"}
        for n, p in ps.items():
            for key, short in names.items():
                if key in opt.state[p]:
                    out[f"{name}.{n}.{short}"] = opt.state[p][key].clone()
    save_file(out, OUT / "adafactor.safetensors")


def main():
    adamw8bit()
    adafactor()


if __name__ == "__main__":
    sys.exit(main())
