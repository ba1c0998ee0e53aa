#!/usr/bin/env python3
"""LoRA reference files and images for studioize's LoRA support, made with PEFT and diffusers.

Writes tests/fixtures/lora/ (see README below, written there too):
  a/pytorch_lora_weights.safetensors        adapter A (PEFT, saved by StableDiffusionPipeline.save_lora_weights
                                            with lora_adapter_metadata): UNet r=4 alpha=8 on
                                            to_q,to_k,to_v,to_out.0,proj_in,proj_out (1x1 convs), text
                                            encoder r=2 alpha=4 on q_proj,k_proj,v_proj,out_proj.
  a-nometa/pytorch_lora_weights.safetensors A's tensors, no header metadata (diffusers: alpha = rank).
  a-prefixed/pytorch_lora_weights.safetensors  A with the text encoder keys spelled as transformers 4
                                            saved them (`text_encoder.text_model.encoder...`), metadata kept.
  b/pytorch_lora_weights.safetensors        adapter B, UNet only, r=8 alpha=8 on attention + ff, metadata.
  kohya-diffusers.safetensors               A in kohya's format, diffusers module names.
  kohya-ldm.safetensors                     A in kohya's format, original LDM UNet module names.
  locon.safetensors                         a kohya LoCon (attention + 1x1 projections r=4 alpha=2, ResNet /
                                            sampler 3x3 convs r=2 alpha=1), diffusers module names.
  old-diffusers.safetensors                 A's UNet part as `unet.<module>.lora.down/up.weight`, no alpha.
  sdxl.safetensors, wrong-shape.safetensors files a SD 1.x loader must refuse.
  *.png + cases.json                        reference images by diffusers' StableDiffusionPipeline /
                                            StableDiffusionImg2ImgPipeline + load_lora_weights on
                                            tests/fixtures/sd/tiny-a (PNDM), each also checked against
                                            the base model with the LoRA deltas merged by hand here.
  step.safetensors + step.json              one LoRA training step (PEFT LoRA on the UNet, the batch of
                                            tests/fixtures/train/step.safetensors, AdamW).

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0, peft 0.21.2 (asserted). CPU, fp32,
one thread, seeded: regenerating gives the same bytes. Usage:
    ~/.cache/studioize/venv/bin/python tools/make_lora_fixtures.py
"""
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import diffusers  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    DDPMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__
assert peft.__version__ == "0.21.2", peft.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "lora"
WEIGHT = "pytorch_lora_weights.safetensors"

UNET_A = dict(r=4, alpha=8, targets=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"], seed=101)
TEXT_A = dict(r=2, alpha=4, targets=["q_proj", "k_proj", "v_proj", "out_proj"], seed=102)
UNET_B = dict(r=8, alpha=8, targets=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"], seed=103)
STEP = dict(r=4, alpha=8, targets=["to_q", "to_k", "to_v", "to_out.0"], seed=104)
LOCON = dict(r=4, alpha=2.0, conv_r=2, conv_alpha=1.0, seed=105)
# Relative size of a LoRA delta: std(scaling * B @ A) = REL * std(W) for every layer.
REL = 0.25

COMMON = dict(prompt="a leather handbag, studio lighting", negative_prompt="blurry", seed=1234, steps=6,
              guidance=7.5, width=32, height=24)
I2I = dict(prompt="a leather handbag, studio lighting", negative_prompt="blurry", seed=77, steps=10,
           guidance=7.5, strength=0.6, input="../pipelines/input-photo.png")

README = """\
# LoRA fixtures

Made by `tools/make_lora_fixtures.py` (torch 2.11.0, diffusers 0.42.1, transformers 5.24.0, peft
0.21.2; CPU, fp32, one thread, seeded, so regenerating gives the same bytes) on the tiny model
`tests/fixtures/sd/tiny-a`. Regenerate with

    ~/.cache/studioize/venv/bin/python tools/make_lora_fixtures.py

LoRA values are seeded random, A ~ N(0, 1/fan_in) and B scaled so that the delta
`alpha/r * B @ A` of every layer has std 0.25 x std(base weight) (B is not zero).

- `a/pytorch_lora_weights.safetensors`: adapter A, made with PEFT (`LoraConfig` + `add_adapter` on
  the UNet and the text encoder), saved by `StableDiffusionPipeline.save_lora_weights` with
  `unet_lora_adapter_metadata` / `text_encoder_lora_adapter_metadata` (the LoraConfig's `to_dict()`,
  sets as sorted lists). Keys `unet.<module>.lora_A.weight` / `.lora_B.weight`,
  `text_encoder.<module>.lora_A.weight` with the transformers 5 module names
  (`encoder.layers.0.self_attn.q_proj`, no `text_model.`). Header `__metadata__`:
  `format` = `pt`, `lora_adapter_metadata` = JSON (indent 2, sorted keys) of the flat dict
  `{"unet.r": 4, "unet.lora_alpha": 8, "unet.target_modules": [...], ..., "text_encoder.r": 2, ...}`.
  UNet r=4 alpha=8 on to_q,to_k,to_v,to_out.0,proj_in,proj_out (proj_in/out are 1x1 convs: PEFT conv
  LoRA, lora_A [4, in, 1, 1], lora_B [out, 4, 1, 1]); text encoder r=2 alpha=4 on
  q_proj,k_proj,v_proj,out_proj.
- `a-nometa/`: the same tensors, saved with no header metadata at all: diffusers uses alpha = rank.
- `a-prefixed/`: A with the text encoder keys as transformers 4 wrote them
  (`text_encoder.text_model.encoder.layers.0...`), metadata kept; the same image as A.
- `b/`: adapter B, UNet only, r=8 alpha=8 on to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2, metadata.
- `kohya-diffusers.safetensors`: A in kohya's format: `lora_unet_<module, . -> _>.lora_down.weight`
  (= lora_A), `.lora_up.weight` (= lora_B), `.alpha` (0-d float32); text encoder
  `lora_te_text_model_encoder_layers_<i>_self_attn_q_proj.*`.
- `kohya-ldm.safetensors`: the same with the original LDM UNet module names
  (`lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q`, `lora_unet_middle_block_1_proj_in`,
  `lora_unet_output_blocks_2_1_...`). See cases.json `note` for how diffusers takes it.
- `locon.safetensors`: kohya LoCon, UNet only: to_q/k/v/out_0 and proj_in/proj_out at r=4 alpha=2
  (proj_* as 1x1 conv: lora_down [4, in, 1, 1]); ResNet conv1/conv2/conv_shortcut, downsamplers_0_conv,
  upsamplers_0_conv at r=2 alpha=1 (lora_down [2, in, kh, kw] with the base conv's kernel,
  lora_up [out, 2, 1, 1]).
- `old-diffusers.safetensors`: A's UNet part as `unet.<module>.lora.down.weight` /
  `.lora.up.weight`, no alpha (alpha = rank, so not A's image).
- `sdxl.safetensors`: SDXL-style kohya keys (lora_te1_, lora_te2_, 640-wide input_blocks_4): refuse.
- `wrong-shape.safetensors`: kohya-diffusers A with one lora_down's in-dimension wrong: refuse.
- `cases.json` + `*.png`: reference images by diffusers (`load_lora_weights`, one adapter scaled by
  `cross_attention_kwargs={"scale": s}` (which also scales the text encoder LoRA), several by
  `set_adapters`), PNDM, `torch.Generator("cpu").manual_seed(seed)`. `loras`: [file relative to
  this folder, scale]. Every image is also checked against the base model with the LoRA deltas
  merged into the weights by hand (mean |diff| < 0.5 level).
- `step.safetensors` + `step.json`: one LoRA training step: PEFT LoRA r=4 alpha=8 on
  to_q,to_k,to_v,to_out.0 of tiny-a's UNet (base frozen), the batch of
  tests/fixtures/train/step.safetensors, DDPMScheduler, epsilon, MSE loss, clip_grad_norm_ 1.0,
  AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2). Tensors: `<module>.lora_A.weight`
  (as get_peft_model_state_dict names them, no `unet.` prefix) = initial values, `grad.<name>` =
  gradient (before clipping). step.json: loss, grad_norm (clip_grad_norm_'s total norm before
  clipping), loss_after_step, update_norm (L2 norm of all parameter changes of the AdamW step),
  probe_after (the first 8 values of one tensor after the step).
"""


# ---------------------------------------------------------------- helpers
def load_pipe():
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def randomise_lora(model, adapter, seed):
    """A ~ N(0, 1/fan_in); B such that std(scaling * B @ A) = REL * std(W) for each LoRA layer."""
    gen = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, m in sorted(model.named_modules(), key=lambda x: x[0]):
            if not isinstance(m, LoraLayer) or adapter not in m.lora_A:
                continue
            a, b = m.lora_A[adapter].weight, m.lora_B[adapter].weight
            w = m.get_base_layer().weight
            fan_in, r = a[0].numel(), a.shape[0]
            a.copy_(torch.randn(a.shape, generator=gen) / math.sqrt(fan_in))
            sb = REL * w.std().item() * math.sqrt(fan_in) / (m.scaling[adapter] * math.sqrt(r))
            b.copy_(torch.randn(b.shape, generator=gen) * sb)


def config_metadata(cfg):
    """The LoraConfig as diffusers' training scripts put it in the header (`_collate_lora_metadata`:
    `peft_config["default"].to_dict()`), sets made sorted lists so that the JSON is the same every run."""
    d = cfg.to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in d.items()}


def canonical_header(path):
    """safetensors writes `__metadata__` from a Rust HashMap, so the order of its keys ("format",
    "lora_adapter_metadata") changes from run to run; sort them (same bytes otherwise) so that
    regenerating gives the same file."""
    b = path.read_bytes()
    n = int.from_bytes(b[:8], "little")
    raw = b[8:8 + n]
    h = json.loads(raw)
    assert json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode().ljust(n) == raw
    h["__metadata__"] = dict(sorted(h["__metadata__"].items()))
    new = json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode().ljust(n)
    assert len(new) == n
    path.write_bytes(b[:8] + new + b[8 + n:])


def modules_of(sd):
    """{module: (down, up)} from a PEFT state dict (`<module>.lora_A.weight`)."""
    mods = {}
    for k in sd:
        if k.endswith(".lora_A.weight"):
            m = k[: -len(".lora_A.weight")]
            mods[m] = (sd[k], sd[m + ".lora_B.weight"])
    assert len(mods) * 2 == len(sd), sorted(sd)[:5]
    return dict(sorted(mods.items()))


def rand_locon(unet, seed):
    """kohya LoCon tensors with diffusers module names: {kohya name: (down, up, alpha, module)}."""
    gen = torch.Generator("cpu").manual_seed(seed)
    out = {}
    for name, m in sorted(unet.named_modules(), key=lambda x: x[0]):
        attn = isinstance(m, torch.nn.Linear) and (
            name.split(".")[-1] in ("to_q", "to_k", "to_v") or name.endswith("to_out.0"))
        proj = name.split(".")[-1] in ("proj_in", "proj_out") and ".attentions." in name
        conv = isinstance(m, torch.nn.Conv2d) and (
            (".resnets." in name and name.split(".")[-1] in ("conv1", "conv2", "conv_shortcut"))
            or name.endswith("downsamplers.0.conv") or name.endswith("upsamplers.0.conv"))
        if not (attn or proj or conv):
            continue
        r, alpha = (LOCON["r"], LOCON["alpha"]) if (attn or proj) else (LOCON["conv_r"], LOCON["conv_alpha"])
        w = m.weight.detach()
        if w.ndim == 2:
            down_shape, up_shape = (r, w.shape[1]), (w.shape[0], r)
        else:
            down_shape, up_shape = (r, *w.shape[1:]), (w.shape[0], r, 1, 1)
        fan_in = math.prod(down_shape[1:])
        down = torch.randn(down_shape, generator=gen) / math.sqrt(fan_in)
        sb = REL * w.std().item() * math.sqrt(fan_in) / (alpha / r * math.sqrt(r))
        up = torch.randn(up_shape, generator=gen) * sb
        out["lora_unet_" + name.replace(".", "_")] = (down, up, alpha, name)
    return out


def kohya_file(unet_mods, te_mods, unet_alpha, te_alpha, unet_name=lambda m: m):
    t = {}
    for comp, mods, alpha, rename in [("unet", unet_mods, unet_alpha, unet_name), ("te", te_mods, te_alpha, None)]:
        for m, (down, up) in mods.items():
            if comp == "unet":
                key = "lora_unet_" + rename(m).replace(".", "_")
            else:
                key = "lora_te_" + (m if m.startswith("text_model.") else "text_model." + m).replace(".", "_")
            t[key + ".lora_down.weight"] = down
            t[key + ".lora_up.weight"] = up
            t[key + ".alpha"] = torch.tensor(float(alpha))
    return t


def ldm_names(unet_mods, unet_cfg):
    spec = importlib.util.spec_from_file_location("_make_sd_fixtures", ROOT / "tools" / "make_sd_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fake = {m + ".weight": None for m in unet_mods}
    ldm = mod.unet_to_ldm(fake, unet_cfg)
    assert len(ldm) == len(fake)
    mapping = {}
    for k_ldm, k_diff in zip(ldm, fake):  # unet_to_ldm keeps the order
        mapping[k_diff[: -len(".weight")]] = k_ldm[: -len(".weight")]
    return mapping


def file_modules(path):
    """How many LoRA modules a file holds (one down/A tensor each)."""
    keys = load_file(path).keys()
    return sum(k.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight")) for k in keys)


def lora_layers(model):
    """{adapter: number of LoRA-wrapped modules} in a model."""
    counts = {}
    for m in model.modules():
        if isinstance(m, LoraLayer):
            for a in m.lora_A:
                counts[a] = counts.get(a, 0) + 1
    return counts


class Recorder(logging.Handler):
    """diffusers' warnings, to fail on LoRA keys it did not use (`_maybe_warn_for_unhandled_keys`)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


WARNINGS = Recorder()


# ---------------------------------------------------------------- rendering
def render(pipe, scale=None):
    kw = {} if scale is None else {"cross_attention_kwargs": {"scale": scale}}
    return pipe(prompt=COMMON["prompt"], negative_prompt=COMMON["negative_prompt"],
                guidance_scale=COMMON["guidance"], num_inference_steps=COMMON["steps"],
                width=COMMON["width"], height=COMMON["height"],
                generator=torch.Generator("cpu").manual_seed(COMMON["seed"]), **kw).images[0]


def render_i2i(pipe, scale=None):
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    kw = {} if scale is None else {"cross_attention_kwargs": {"scale": scale}}
    photo = Image.open((OUT / I2I["input"]).resolve()).convert("RGB")
    return i2i(prompt=I2I["prompt"], negative_prompt=I2I["negative_prompt"], image=photo,
               strength=I2I["strength"], guidance_scale=I2I["guidance"], num_inference_steps=I2I["steps"],
               generator=torch.Generator("cpu").manual_seed(I2I["seed"]), **kw).images[0]


def merged_pipe(deltas):
    """The base pipeline with W += sum(scale * alpha / r * up @ down) merged by hand.
    deltas: list of (component, module, down, up, alpha, scale)."""
    pipe = load_pipe()
    with torch.no_grad():
        for comp, module, down, up, alpha, scale in deltas:
            m = getattr(pipe, comp).get_submodule(module)
            r = down.shape[0]
            d = (up.reshape(up.shape[0], r) @ down.reshape(r, -1)).reshape(m.weight.shape)
            m.weight.add_(scale * alpha / r * d)
    return pipe


def diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


# ---------------------------------------------------------------- step
def training_step():
    refs = load_file(ROOT / "tests" / "fixtures" / "train" / "step.safetensors")
    latents, noise, timesteps, cond = refs["latents"], refs["noise"], refs["timesteps"], refs["cond"]
    sched = DDPMScheduler.from_pretrained(MODEL, subfolder="scheduler")
    assert sched.config.prediction_type == "epsilon"
    unet = UNet2DConditionModel.from_pretrained(MODEL / "unet")
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=STEP["r"], lora_alpha=STEP["alpha"], target_modules=STEP["targets"],
                                init_lora_weights=True))
    randomise_lora(unet, "default", STEP["seed"])
    unet.train()
    init = {k: v.clone() for k, v in get_peft_model_state_dict(unet).items()}
    named = {n.replace(".default.", "."): p for n, p in unet.named_parameters() if p.requires_grad}
    assert set(named) == set(init), sorted(set(named) ^ set(init))[:5]
    params = [named[k] for k in sorted(named)]

    def loss_of():
        noisy = sched.add_noise(latents, noise, timesteps)
        return F.mse_loss(unet(noisy, timesteps, cond).sample.float(), noise.float(), reduction="mean")

    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    loss = loss_of()
    loss.backward()
    for n, p in unet.named_parameters():
        assert (p.grad is not None) == (".lora_" in n), n
    grads = {k: named[k].grad.clone() for k in sorted(named)}
    grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        after = loss_of()
    tensors = dict(init)
    tensors.update({"grad." + k: v for k, v in grads.items()})
    moved = {k: named[k].detach() - init[k] for k in sorted(named)}
    probe = "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "step.safetensors")
    info = dict(loss=loss.item(), grad_norm=grad_norm.item(), loss_after_step=after.item(), lr=1e-3,
                weight_decay=1e-2, max_grad_norm=1.0, betas=[0.9, 0.999], eps=1e-8, rank=STEP["r"],
                alpha=STEP["alpha"], targets=STEP["targets"], prediction_type="epsilon",
                batch="../train/step.safetensors", lora_modules=len(init) // 2,
                update_norm=torch.sqrt(sum((d.double() ** 2).sum() for d in moved.values())).item(),
                probe=probe, probe_after=named[probe].detach().flatten()[:8].tolist())
    (OUT / "step.json").write_text(json.dumps(info, indent=1) + "\n")
    print("  step:", {k: info[k] for k in ("loss", "grad_norm", "loss_after_step")})


# ---------------------------------------------------------------- main
def main():
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()  # load_adapter's report lists the base weights as MISSING
    logging.getLogger("diffusers").addHandler(WARNINGS)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    # ---- adapter A (UNet + text encoder) and B (UNet) with PEFT, saved by diffusers
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(MODEL / "unet")
    text = CLIPTextModel.from_pretrained(MODEL / "text_encoder")
    unet_cfg = dict(unet.config)
    unet.add_adapter(LoraConfig(r=UNET_A["r"], lora_alpha=UNET_A["alpha"], target_modules=UNET_A["targets"]))
    text_cfg = LoraConfig(r=TEXT_A["r"], lora_alpha=TEXT_A["alpha"], target_modules=TEXT_A["targets"])
    # transformers 5.24's own `add_adapter` asks for peft >= 0.22.0 (not released): PEFT's
    # inject_adapter_in_model, which it would call, does the same.
    text = inject_adapter_in_model(text_cfg, text, adapter_name="default")
    randomise_lora(unet, "default", UNET_A["seed"])
    randomise_lora(text, "default", TEXT_A["seed"])
    unet_sd, text_sd = get_peft_model_state_dict(unet), get_peft_model_state_dict(text)
    StableDiffusionPipeline.save_lora_weights(
        OUT / "a", unet_lora_layers=unet_sd, text_encoder_lora_layers=text_sd,
        unet_lora_adapter_metadata=config_metadata(unet.peft_config["default"]),
        text_encoder_lora_adapter_metadata=config_metadata(text_cfg))
    canonical_header(OUT / "a" / WEIGHT)
    a_unet, a_text = modules_of(unet_sd), modules_of(text_sd)
    print(f"  a: {len(a_unet)} UNet + {len(a_text)} text encoder LoRA modules")

    (OUT / "a-nometa").mkdir()
    a_tensors = load_file(OUT / "a" / WEIGHT)
    save_file(a_tensors, OUT / "a-nometa" / WEIGHT)
    with safe_open(OUT / "a" / WEIGHT, "pt") as f:
        a_meta = f.metadata()
    (OUT / "a-prefixed").mkdir()
    save_file({k.replace("text_encoder.", "text_encoder.text_model.", 1): v for k, v in a_tensors.items()},
              OUT / "a-prefixed" / WEIGHT, metadata=a_meta)
    canonical_header(OUT / "a-prefixed" / WEIGHT)

    unet_b = UNet2DConditionModel.from_pretrained(MODEL / "unet")
    unet_b.add_adapter(LoraConfig(r=UNET_B["r"], lora_alpha=UNET_B["alpha"], target_modules=UNET_B["targets"]))
    randomise_lora(unet_b, "default", UNET_B["seed"])
    b_sd = get_peft_model_state_dict(unet_b)
    StableDiffusionPipeline.save_lora_weights(OUT / "b", unet_lora_layers=b_sd,
                                              unet_lora_adapter_metadata=config_metadata(unet_b.peft_config["default"]))
    canonical_header(OUT / "b" / WEIGHT)
    b_unet = modules_of(b_sd)

    # ---- other formats, renamed by hand
    kd = kohya_file(a_unet, a_text, UNET_A["alpha"], TEXT_A["alpha"])
    save_file(kd, OUT / "kohya-diffusers.safetensors")
    to_ldm = ldm_names(a_unet, unet_cfg)
    save_file(kohya_file(a_unet, a_text, UNET_A["alpha"], TEXT_A["alpha"], unet_name=to_ldm.__getitem__),
              OUT / "kohya-ldm.safetensors")
    locon = rand_locon(UNet2DConditionModel.from_pretrained(MODEL / "unet"), LOCON["seed"])
    lt = {}
    for key, (down, up, alpha, _) in locon.items():
        lt[key + ".lora_down.weight"], lt[key + ".lora_up.weight"] = down, up
        lt[key + ".alpha"] = torch.tensor(float(alpha))
    save_file(lt, OUT / "locon.safetensors")
    old = {}
    for m, (down, up) in a_unet.items():
        old[f"unet.{m}.lora.down.weight"], old[f"unet.{m}.lora.up.weight"] = down, up
    save_file(old, OUT / "old-diffusers.safetensors")

    g = torch.Generator("cpu").manual_seed(106)
    sdxl = {}
    for key, width in [("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", (768, 768)),
                       ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", (1280, 1280)),
                       ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", (640, 640)),
                       ("lora_unet_input_blocks_4_1_proj_in", (640, 640))]:
        sdxl[key + ".lora_down.weight"] = torch.randn(1, width[1], generator=g) * 0.01
        sdxl[key + ".lora_up.weight"] = torch.randn(width[0], 1, generator=g) * 0.01
        sdxl[key + ".alpha"] = torch.tensor(1.0)
    save_file(sdxl, OUT / "sdxl.safetensors")
    wrong = dict(kd)
    bad = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
    assert wrong[bad].shape == (4, 64), wrong[bad].shape
    wrong[bad] = torch.randn(4, 48, generator=g) / 8
    save_file(wrong, OUT / "wrong-shape.safetensors")

    # ---- what a hand merge should give for each case: (component, module, down, up, alpha, scale)
    def deltas_a(scale, unet_alpha=UNET_A["alpha"], text_alpha=TEXT_A["alpha"], text=True):
        d = [("unet", m, dn, up, unet_alpha, scale) for m, (dn, up) in a_unet.items()]
        if text:
            d += [("text_encoder", m, dn, up, text_alpha, scale) for m, (dn, up) in a_text.items()]
        return d

    deltas_b = [("unet", m, dn, up, UNET_B["alpha"], 0.7) for m, (dn, up) in b_unet.items()]
    deltas_locon = [("unet", name, dn, up, alpha, 1.0) for dn, up, alpha, name in locon.values()]

    base_img = render(load_pipe())
    base_i2i = render_i2i(load_pipe())
    cases, images = [], {}

    def case(name, loras, make, deltas, task="generate", scale=None, note=None):
        pipe = load_pipe()
        WARNINGS.messages.clear()
        make(pipe)
        unused = [w for w in WARNINGS.messages if "unexpected keys" in w or "missing keys" in w]
        assert not unused, (name, unused)
        img = render(pipe, scale) if task == "generate" else render_i2i(pipe, scale)
        ref = render(merged_pipe(deltas)) if task == "generate" else render_i2i(merged_pipe(deltas))
        d_ref = diff(img, ref)
        assert d_ref < 0.5, (name, d_ref)
        d_base = diff(img, base_img if task == "generate" else base_i2i)
        injected = {c: lora_layers(getattr(pipe, c)) for c in ("unet", "text_encoder")}
        expected = {}
        for comp, *_ in deltas:
            expected[comp] = expected.get(comp, 0) + 1
        total = {c: sum(v.values()) for c, v in injected.items()}
        assert all(total[c] == expected.get(c, 0) for c in total), (name, injected, expected)
        in_files = sum(file_modules(OUT / f) for f, _ in loras)
        assert in_files == sum(total.values()), (name, in_files, total)
        file = f"{name}.png"
        img.save(OUT / file)
        images[name] = img
        c = dict(name=name, task=task, loras=loras)
        if task == "generate":
            c.update(COMMON)
        else:
            c.update(I2I)
        c.update(file=file, mean_diff_vs_base=round(d_base, 3), mean_diff_vs_hand_merge=round(d_ref, 4),
                 lora_layers={k: v for k, v in total.items()})
        if note:
            c["note"] = note
        cases.append(c)
        print(f"  {name}: vs base {d_base:.2f} levels, vs hand merge {d_ref:.4f}; layers {injected}")

    base_img.save(OUT / "base.png")
    cases.append(dict(name="base", task="generate", loras=[], **COMMON, file="base.png"))
    images["base"] = base_img

    def load(file, **kw):
        p = OUT / file
        return lambda pipe: pipe.load_lora_weights(str(p.parent), weight_name=p.name, **kw)

    case("a", [["a/" + WEIGHT, 1.0]], load("a/" + WEIGHT), deltas_a(1.0), scale=1.0)
    case("a-0.5", [["a/" + WEIGHT, 0.5]], load("a/" + WEIGHT), deltas_a(0.5), scale=0.5)
    case("a-nometa", [["a-nometa/" + WEIGHT, 1.0]], load("a-nometa/" + WEIGHT),
         deltas_a(1.0, unet_alpha=UNET_A["r"], text_alpha=TEXT_A["r"]), scale=1.0,
         note="no header metadata: diffusers uses alpha = rank (scale 1 instead of 2)")
    case("a-prefixed", [["a-prefixed/" + WEIGHT, 1.0]], load("a-prefixed/" + WEIGHT), deltas_a(1.0), scale=1.0)
    case("kohya-diffusers", [["kohya-diffusers.safetensors", 1.0]], load("kohya-diffusers.safetensors"),
         deltas_a(1.0), scale=1.0)
    assert diff(images["kohya-diffusers"], images["a"]) < 0.5

    # kohya with LDM names: StableDiffusionPipeline.lora_state_dict only maps the LDM block names
    # (_maybe_map_sgm_blocks_to_diffusers) when it is given `unet_config`, which the SD 1.x
    # load_lora_weights does not pass.
    try:
        load("kohya-ldm.safetensors")(load_pipe())
        ldm_note = "diffusers' load_lora_weights takes it as is"
        ldm_make = load("kohya-ldm.safetensors")
    except Exception as e:  # noqa: BLE001
        print(f"  kohya-ldm: load_lora_weights refuses it: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        ldm_note = (f"diffusers 0.42.1 StableDiffusionPipeline.load_lora_weights refuses it ({type(e).__name__}: "
                    "its kohya converter turns input_blocks_1_1 into down_blocks.1.1, not found in the UNet); "
                    "the image is made with lora_state_dict(..., unet_config=unet.config), which maps the LDM "
                    "block names, + load_lora_into_unet / load_lora_into_text_encoder, and equals A's")

        def ldm_make(pipe):
            sd, alphas = pipe.lora_state_dict(str(OUT), weight_name="kohya-ldm.safetensors",
                                              unet_config=pipe.unet.config)
            pipe.load_lora_into_unet(sd, alphas, pipe.unet, _pipeline=pipe)
            pipe.load_lora_into_text_encoder(sd, alphas, pipe.text_encoder, _pipeline=pipe)
    case("kohya-ldm", [["kohya-ldm.safetensors", 1.0]], ldm_make, deltas_a(1.0), scale=1.0, note=ldm_note)
    assert diff(images["kohya-ldm"], images["a"]) < 0.5

    case("locon", [["locon.safetensors", 1.0]], load("locon.safetensors"), deltas_locon, scale=1.0)
    case("old-diffusers", [["old-diffusers.safetensors", 1.0]], load("old-diffusers.safetensors"),
         deltas_a(1.0, unet_alpha=UNET_A["r"], text=False), scale=1.0,
         note="no alpha: alpha = rank; UNet only")

    def two(pipe):
        # (not "a" / "b": diffusers' missing-key warning tests `adapter_name in key`)
        load("a/" + WEIGHT, adapter_name="adapter_a")(pipe)
        load("b/" + WEIGHT, adapter_name="adapter_b")(pipe)
        pipe.set_adapters(["adapter_a", "adapter_b"], adapter_weights=[1.0, 0.7])
    case("a+b", [["a/" + WEIGHT, 1.0], ["b/" + WEIGHT, 0.7]], two, deltas_a(1.0) + deltas_b)
    case("a-img2img", [["a/" + WEIGHT, 0.8]], load("a/" + WEIGHT), deltas_a(0.8), task="transform", scale=0.8)
    base_i2i.save(OUT / "base-img2img.png")
    cases.append(dict(name="base-img2img", task="transform", loras=[], **I2I, file="base-img2img.png"))

    # ---- files diffusers must refuse
    for bad_file in ("sdxl.safetensors", "wrong-shape.safetensors"):
        try:
            load(bad_file)(load_pipe())
            refused = None
        except Exception as e:  # noqa: BLE001
            refused = type(e).__name__
            print(f"  {bad_file}: diffusers refuses it: {refused}: {str(e).splitlines()[0][:200]}")
        assert refused, f"diffusers loads {bad_file}"
        cases.append(dict(name=bad_file.split(".")[0], task="refuse", loras=[[bad_file, 1.0]],
                          diffusers=f"refused ({refused})"))

    (OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    training_step()
    (OUT / "README.md").write_text(README)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(cases)} cases to {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
