#!/usr/bin/env python3
"""Reference schedules and sampling trajectories of diffusers' schedulers for studioize's tests.

For each sampler x timestep_spacing x number of steps (SD 1.4's noise schedule): timesteps,
sigmas and init_noise_sigma. And full trajectories with a fake deterministic "model"
(0.3 * scaled_sample + 0.05 * sin(t / 100)) from seeded latents, with the generator passed to
`step` as the pipelines do, plus img2img begin indices and add_noise results
(schedules.json, trajectories.safetensors).

Per-class defaults (defaults.json, defaults.safetensors): SD 1.4's real scheduler_config.json
with keys removed (one at a time and several), each read by every sampler's class through
`Class.from_config(cfg)`: the resolved config values, schedule and a short trajectory; the
training schedule (DDPMScheduler alphas_cumprod) of such configs; configs as each class saves
them (save_config); and the end-to-end repro: diffusers' image of tiny-a without "clip_sample",
`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`.

Pinned: torch 2.11.0, diffusers 0.42.1, scipy 1.17.1 (LMS). Writes tests/fixtures/schedulers/.
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, LMSDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
)
from safetensors.torch import save_file  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "schedulers"
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


# SD 1.4's scheduler/scheduler_config.json (CompVis/stable-diffusion-v1-4), less _diffusers_version.
SD14_FILE = {"_class_name": "PNDMScheduler", **BASE, "trained_betas": None}
# The same with the keys SD 1.4 predates, at values no class defaults to (as an SD 2.x file has).
SD14_TRAILING_V = {**SD14_FILE, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}
# What each resolved config value is called on the scheduler's config.
RESOLVED_KEYS = ["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset",
                 "set_alpha_to_one", "skip_prk_steps", "timestep_spacing", "prediction_type", "clip_sample",
                 "clip_sample_range", "use_karras_sigmas", "final_sigmas_type"]


def without(cfg, *keys):
    return {k: v for k, v in cfg.items() if k not in keys}


def default_configs():
    """(name, file config): SD 1.4's file with keys removed one at a time and several at once."""
    out = [("sd14", SD14_FILE)]
    out += [(f"sd14-{k}", without(SD14_FILE, k)) for k in SD14_FILE if k != "_class_name"]
    out += [("sd14+trailing+v", SD14_TRAILING_V)]
    out += [(f"sd14+trailing+v-{k}", without(SD14_TRAILING_V, k)) for k in ("timestep_spacing", "prediction_type")]
    out += [("sd14-betas", without(SD14_FILE, "beta_start", "beta_end", "beta_schedule")),
            ("sd14-ddim-keys", without(SD14_FILE, "clip_sample", "set_alpha_to_one", "steps_offset")),
            ("sd14-pndm-keys", without(SD14_FILE, "skip_prk_steps", "set_alpha_to_one", "steps_offset")),
            ("class-only", {"_class_name": "PNDMScheduler"}),
            ("empty", {}),
            ("ddim-class-cosine", {**without(SD14_FILE, "clip_sample"), "_class_name": "DDIMScheduler",
                                   "beta_schedule": "squaredcos_cap_v2"})]
    return out


def resolved(s):
    """The values the class's __init__ was given (its config also keeps other classes' keys)."""
    init_keys = type(s)._get_init_keys(type(s))
    return {k: s.config[k] for k in RESOLVED_KEYS if k in init_keys}


def defaults_fixtures():
    """Every sampler's class reading configs with keys removed, as `Class.from_config(cfg)`."""
    tensors, cases = {}, []
    for ci, (cname, cfg) in enumerate(default_configs()):
        for name in SAMPLERS:
            cls, extra = SAMPLERS[name]
            s = cls.from_config(dict(cfg), **extra)
            steps = 10
            s.set_timesteps(steps)
            sig = getattr(s, "sigmas", None)
            key = f"defaults_{ci}_{name}"
            try:
                tensors[key] = trajectory(cls.from_config(dict(cfg), **extra), steps, seed=7)
            except IndexError:
                # diffusers' own failure: Karras sigmas on the cosine schedule repeat timesteps
                # (998 four times), and DPMSolverMultistep's step-index lookup runs off the end.
                assert (cname, name) == ("ddim-class-cosine", "dpmpp-2m-karras"), (cname, name)
                key = None
            cases.append(dict(config_name=cname, config=cfg, sampler=name, steps=steps, seed=7, key=key,
                              resolved=resolved(s), timesteps=[float(t) for t in s.timesteps],
                              sigmas=None if sig is None or name in ("pndm", "ddim") else [float(v) for v in sig],
                              init_noise_sigma=float(s.init_noise_sigma)))
    training = []
    train_cfgs = [(n, c) for n, c in default_configs() if n.startswith("sd14") or n in ("empty", "class-only")]
    train_cfgs += [(f"sd14+{b}", {**SD14_FILE, "beta_schedule": b}) for b in ("linear", "squaredcos_cap_v2", "sigmoid")]
    for i, (cname, cfg) in enumerate(train_cfgs):
        s = DDPMScheduler.from_config(dict(cfg))
        key = f"train_{i}"
        tensors[key] = s.alphas_cumprod.to(torch.float32)
        training.append(dict(config_name=cname, config=cfg, key=key, prediction_type=s.config.prediction_type))
    saved = []
    for name in ("pndm", "ddim", "euler", "euler-a", "dpmpp-2m-karras", "lms"):
        cls, extra = SAMPLERS[name]
        with tempfile.TemporaryDirectory() as d:
            cls.from_config(SD14_FILE, **extra).save_config(d)
            text = (Path(d) / "scheduler_config.json").read_text()
        s = cls.from_config(json.loads(text))
        s.set_timesteps(10)
        saved.append(dict(sampler=name, file=text, timesteps=[float(t) for t in s.timesteps]))
    return tensors, dict(cases=cases, training=training, saved=saved)


REPRO = dict(prompt="a leather handbag, studio lighting", negative_prompt="blurry, cluttered background",
             guidance=7.5, steps=6, width=32, height=24, seed=1234)


def repro_images():
    """diffusers' images of tiny-a with a scheduler key removed (the txt2img case of
    tests/pipelines.rs): the model's own scheduler as the pipeline loads it (sampler None; its
    __init__ rewrites steps_offset != 1 to 1), or `pipe.scheduler = Class.from_config(pipe.scheduler.config)`."""
    cases = []
    for removed, sampler in (("clip_sample", "ddim"), ("steps_offset", None), ("steps_offset", "ddim")):
        with tempfile.TemporaryDirectory() as d:
            model = Path(d) / "tiny-a"
            shutil.copytree(ROOT / "tests" / "fixtures" / "sd" / "tiny-a", model)
            sc = model / "scheduler" / "scheduler_config.json"
            sc.write_text(json.dumps(without(json.loads(sc.read_text()), removed), indent=2) + "\n")
            pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            if sampler is not None:
                cls, extra = SAMPLERS[sampler]
                pipe.scheduler = cls.from_config(pipe.scheduler.config, **extra)
            case = dict(REPRO, removed=removed, sampler=sampler, file=f"txt2img-{sampler or 'own'}-no-{removed}.png",
                        resolved=resolved(pipe.scheduler))
            torch.set_num_threads(2)
            img = pipe(prompt=case["prompt"], negative_prompt=case["negative_prompt"], guidance_scale=case["guidance"],
                       num_inference_steps=case["steps"], width=case["width"], height=case["height"],
                       generator=torch.Generator("cpu").manual_seed(case["seed"])).images[0]
            img.save(OUT / case["file"])
            cases.append(case)
    return cases


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
    tensors, defaults = defaults_fixtures()
    defaults["repro"] = repro_images()
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "defaults.safetensors")
    (OUT / "defaults.json").write_text(json.dumps(defaults) + "\n")
    print(f"{len(defaults['cases'])} default cases, {len(defaults['training'])} training schedules")


if __name__ == "__main__":
    sys.exit(main())
