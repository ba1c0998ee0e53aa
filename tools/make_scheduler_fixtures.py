#!/usr/bin/env python3
"""Reference schedules and sampling trajectories of diffusers' schedulers for studioize's tests.

For each sampler x timestep_spacing x number of steps (SD 1.4's noise schedule): timesteps,
sigmas and init_noise_sigma. And full trajectories with a fake deterministic "model"
(0.3 * scaled_sample + 0.05 * sin(t / 100)) from seeded latents, with the generator passed to
`step` as the pipelines do, plus img2img begin indices and add_noise results.

Pinned: torch 2.11.0, diffusers 0.42.1, scipy 1.17.1 (LMS). Writes tests/fixtures/schedulers/.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
    LMSDiscreteScheduler, PNDMScheduler,
)
from safetensors.torch import save_file  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "schedulers"
BASE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            steps_offset=1, set_alpha_to_one=False, clip_sample=False, skip_prk_steps=True)
SAMPLERS = {
    "pndm": (PNDMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "lms": (LMSDiscreteScheduler, {}),
}


def make(name, **over):
    cls, extra = SAMPLERS[name]
    cfg = {**BASE, **extra, **over}
    return cls.from_config(cfg)


def fake_model(x, t):
    return 0.3 * x + 0.05 * torch.sin(torch.as_tensor(t, dtype=torch.float32) / 100.0)


def trajectory(s, steps, seed, eta=None):
    s.set_timesteps(steps)
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g) * s.init_noise_sigma
    for t in s.timesteps:
        out = fake_model(s.scale_model_input(x, t), t)
        kw = {"eta": eta} if eta is not None else {}
        if "generator" in s.step.__code__.co_varnames:
            kw["generator"] = g
        x = s.step(out, t, x, **kw).prev_sample
    return x


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    schedules = []
    for name in SAMPLERS:
        for spacing in ("leading", "trailing", "linspace"):
            for steps in (10, 25, 50):
                s = make(name, timestep_spacing=spacing)
                s.set_timesteps(steps)
                sig = getattr(s, "sigmas", None)
                schedules.append(dict(
                    sampler=name, spacing=spacing, steps=steps,
                    timesteps=[float(t) for t in s.timesteps],
                    sigmas=None if sig is None or name in ("pndm", "ddim") else [float(v) for v in sig],
                    init_noise_sigma=float(s.init_noise_sigma),
                ))
    tensors, runs = {}, []
    cases = [(n, {}, st) for n in SAMPLERS for st in (10, 25)]
    cases += [("ddim", {"prediction_type": "v_prediction"}, 10), ("euler", {"prediction_type": "v_prediction"}, 10),
              ("dpmpp-2m", {"prediction_type": "v_prediction"}, 10), ("pndm", {"prediction_type": "v_prediction"}, 10),
              ("ddim", {"eta": 0.5}, 10), ("dpmpp-2m", {"timestep_spacing": "trailing"}, 25),
              ("euler-a", {"timestep_spacing": "trailing"}, 10)]
    for i, (name, over, steps) in enumerate(cases):
        eta = over.pop("eta", None) if "eta" in over else None
        s = make(name, **over)
        key = f"traj_{i}"
        tensors[key] = trajectory(s, steps, seed=i, eta=eta)
        runs.append(dict(key=key, sampler=name, steps=steps, seed=i, eta=eta, **over))
    img2img = []
    for name in ("ddim", "euler", "dpmpp-2m", "pndm", "euler-a", "lms"):
        for steps, strength in ((15, 0.6), (10, 0.35), (20, 1.0)):
            s = make(name)
            s.set_timesteps(steps)
            init = min(int(steps * strength), steps)
            begin = max(steps - init, 0) * s.order
            s.set_begin_index(begin) if hasattr(s, "set_begin_index") else None
            g = torch.Generator("cpu").manual_seed(5)
            x0, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
            key = f"addnoise_{name}_{steps}_{int(strength * 100)}"
            tensors[key + "_x0"], tensors[key + "_noise"] = x0, noise
            tensors[key] = s.add_noise(x0, noise, s.timesteps[begin:begin + 1])
            img2img.append(dict(key=key, sampler=name, steps=steps, strength=strength, begin=begin))
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "trajectories.safetensors")
    (OUT / "schedules.json").write_text(json.dumps(dict(schedules=schedules, runs=runs, img2img=img2img)) + "\n")
    print(f"{len(schedules)} schedules, {len(runs)} trajectories, {len(img2img)} img2img cases")


if __name__ == "__main__":
    sys.exit(main())
