#!/usr/bin/env python3
"""Check that LoRA files load in diffusers, and render an image with them.

Loads the SD 1.x model folder with StableDiffusionPipeline (its own scheduler, safety checker off),
loads each LoRA with `load_lora_weights(folder, weight_name=file)` (diffusers/PEFT files and kohya
files alike), sets the scales (`cross_attention_kwargs={"scale": s}` for one LoRA, which also scales
its text encoder part; `set_adapters` for several), renders with
`generator=torch.Generator("cpu").manual_seed(seed)` and saves the PNG. Prints one JSON line on
stdout: what diffusers made of each file (adapter name, LoRA layers injected into unet and
text_encoder, the distinct ranks and scalings alpha/r of those layers, the LoraConfig r /
lora_alpha / patterns from `peft_config`, the number of LoRA modules in the file), so a test can
tell a file understood from one silently ignored. Fails (exit 1, one line on stderr) when diffusers
refuses a file, warns about LoRA keys it did not use, or injects fewer layers than the file holds.
With --image (and --strength) it runs StableDiffusionImg2ImgPipeline on that image instead.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0, peft 0.21.2 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/check_lora.py --model tests/fixtures/sd/tiny-a \\
        --lora tests/fixtures/lora/a/pytorch_lora_weights.safetensors:1.0 \\
        --prompt "a leather handbag, studio lighting" --negative blurry --seed 1234 --steps 6 \\
        --guidance 7.5 --width 32 --height 24 --out /tmp/a.png
"""
import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # keep stderr to the one failure line


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def parse_lora(spec):
    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep:
        try:
            scale = float(tail)
            path = head
        except ValueError:
            pass
    return Path(path), scale


def file_modules(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    return sum(k.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight")) for k in keys)


def layers_of(model, name):
    from peft.tuners.lora import LoraLayer

    n, ranks, scalings = 0, set(), set()
    for m in model.modules():
        if isinstance(m, LoraLayer) and name in m.lora_A:
            n += 1
            ranks.add(int(m.r[name]))
            scalings.add(round(float(m.scaling[name]), 6))
    out = {"layers": n, "ranks": sorted(ranks), "scalings": sorted(scalings)}
    cfg = getattr(model, "peft_config", {}).get(name)
    if cfg is not None:
        out["config"] = {"r": cfg.r, "lora_alpha": cfg.lora_alpha,
                         "rank_pattern": {str(k): v for k, v in (cfg.rank_pattern or {}).items()},
                         "alpha_pattern": {str(k): v for k, v in (cfg.alpha_pattern or {}).items()}}
    return out


def run(args):
    import torch
    import diffusers
    import peft
    import transformers
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    from PIL import Image

    assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
    assert diffusers.__version__ == "0.42.1", diffusers.__version__
    assert transformers.__version__ == "5.24.0", transformers.__version__
    assert peft.__version__ == "0.21.2", peft.__version__

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
    diffusers.utils.logging.disable_default_handler()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings_seen = Recorder()
    logging.getLogger("diffusers").addHandler(warnings_seen)

    pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    loras = [parse_lora(s) for s in args.lora]
    adapters = []
    for i, (path, scale) in enumerate(loras):
        if not path.is_file():
            raise FileNotFoundError(f"no LoRA file {path}")
        # adapter names that are no substring of each other: diffusers' missing-key warning
        # tests `adapter_name in key`
        name = f"adapter{i}"
        warnings_seen.messages.clear()
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        except Exception as e:
            raise RuntimeError(f"diffusers refused {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        unused = [w for w in warnings_seen.messages if "unexpected keys" in w or "missing keys" in w]
        if unused:
            raise RuntimeError(f"diffusers did not use all LoRA keys of {path}: {unused[0][:300]}")
        info = {"name": name, "file": str(path), "scale": scale, "file_modules": file_modules(path),
                "unet": layers_of(pipe.unet, name), "text_encoder": layers_of(pipe.text_encoder, name)}
        injected = info["unet"]["layers"] + info["text_encoder"]["layers"]
        if injected != info["file_modules"]:
            raise RuntimeError(f"diffusers injected {injected} LoRA layers from {path}, "
                               f"which holds {info['file_modules']} modules")
        info["warnings"] = [w.splitlines()[0][:200] for w in warnings_seen.messages]
        adapters.append(info)

    kwargs = {}
    if len(loras) == 1:
        kwargs["cross_attention_kwargs"] = {"scale": loras[0][1]}
    elif loras:
        pipe.set_adapters([a["name"] for a in adapters], adapter_weights=[s for _, s in loras])
    common = dict(prompt=args.prompt, negative_prompt=args.negative, guidance_scale=args.guidance,
                  num_inference_steps=args.steps, generator=torch.Generator("cpu").manual_seed(args.seed), **kwargs)
    if args.image:
        i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
        i2i.set_progress_bar_config(disable=True)
        img = i2i(image=Image.open(args.image).convert("RGB"), strength=args.strength, **common).images[0]
    else:
        img = pipe(width=args.width, height=args.height, **common).images[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out)
    return {"ok": True, "out": str(args.out), "size": list(img.size), "adapters": adapters,
            "unet_lora_layers": sum(a["unet"]["layers"] for a in adapters),
            "text_encoder_lora_layers": sum(a["text_encoder"]["layers"] for a in adapters)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="SD 1.x model folder (diffusers layout)")
    p.add_argument("--lora", action="append", default=[], help="FILE[:SCALE], repeatable (scale 1.0 if left out)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--image", help="input image: img2img instead of txt2img")
    p.add_argument("--strength", type=float, default=0.6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    try:
        result = run(args)
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"check_lora: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
