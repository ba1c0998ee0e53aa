#!/usr/bin/env python3
"""Checks single files written by `studioize export` with diffusers' own single-file loader.

    check_export.py CASES.json

CASES.json is a list of {"file", "folder", "dtype", "unet"?, "text_encoder"?}: the exported
file, the diffusers folder it was exported from (also its configs), the export dtype (fp32,
fp16, bf16) and the component folders that replaced the folder's own, if any. For each case:

- the file holds only CompVis/LDM keys (model.diffusion_model.*, first_stage_model.*,
  cond_stage_model.transformer.text_model.*), all in the export dtype, the VAE mid-block
  attention projections as 1x1 convolutions [C, C, 1, 1] (LDM's AttnBlock, as A1111 and
  ComfyUI hold them);
- `StableDiffusionPipeline.from_single_file(file, config=folder)` gives, for unet, vae and
  text_encoder, exactly the state dict of the folder pipeline (`from_pretrained`, with the
  replaced components), whose weights are first rounded to the export dtype;
- both pipelines generate the same image (fixed seed, 3 steps), bit for bit.

Exit 0 if every case passes, 1 otherwise. Pinned: torch 2.11.0, diffusers 0.42.1,
transformers 5.24.0 (asserted).
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
COMPONENTS = ("unet", "vae", "text_encoder")


def check_keys(path, dtype):
    sd = load_file(path)
    bad = [k for k in sd if not k.startswith(PREFIXES)]
    assert not bad, f"keys outside the CompVis components: {bad[:5]}"
    wrong = [k for k, v in sd.items() if v.dtype != dtype]
    assert not wrong, f"not {dtype}: {wrong[:5]}"
    for side in ("encoder", "decoder"):
        for p in ("q", "k", "v", "proj_out"):
            k = f"first_stage_model.{side}.mid.attn_1.{p}.weight"
            s = tuple(sd[k].shape)
            assert len(s) == 4 and s[2:] == (1, 1) and s[0] == s[1], (k, s)
    return len(sd)


def variant_of(folder):
    """'fp16' if some component folder has only fp16-variant weights (as the tiny-b fixture)."""
    for c, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        d = Path(folder) / c
        plain = (d / f"{stem}.safetensors").exists() or (d / f"{stem}.safetensors.index.json").exists()
        if not plain and any(d.glob(f"{stem}.fp16.*")):
            return "fp16"
    return None


def folder_pipeline(case, dtype):
    pipe = StableDiffusionPipeline.from_pretrained(
        case["folder"], variant=variant_of(case["folder"]), torch_dtype=torch.float32, local_files_only=True)
    if case.get("unet"):
        pipe.unet = UNet2DConditionModel.from_pretrained(case["unet"], torch_dtype=torch.float32)
    if case.get("text_encoder"):
        pipe.text_encoder = CLIPTextModel.from_pretrained(case["text_encoder"], torch_dtype=torch.float32)
    with torch.no_grad():
        for c in COMPONENTS:
            for t in list(getattr(pipe, c).parameters()) + list(getattr(pipe, c).buffers()):
                if t.is_floating_point():
                    t.copy_(t.to(dtype).to(torch.float32))
    return pipe


def image(pipe):
    g = torch.Generator("cpu").manual_seed(7)
    return pipe("a product photo of a red sneaker", num_inference_steps=3, guidance_scale=7.5,
                generator=g, output_type="np").images


def check(case):
    dtype = DTYPES[case["dtype"]]
    n = check_keys(case["file"], dtype)
    ref = folder_pipeline(case, dtype)
    single = StableDiffusionPipeline.from_single_file(
        case["file"], config=case["folder"], local_files_only=True, torch_dtype=torch.float32)
    for c in COMPONENTS:
        a, b = getattr(single, c).state_dict(), getattr(ref, c).state_dict()
        assert set(a) == set(b), (c, sorted(set(a) ^ set(b))[:10])
        for k in a:
            assert a[k].shape == b[k].shape, (c, k, a[k].shape, b[k].shape)
            assert torch.equal(a[k].to(torch.float32), b[k].to(torch.float32)), (c, k)
    single.set_progress_bar_config(disable=True)
    ref.set_progress_bar_config(disable=True)
    x, y = image(single), image(ref)
    assert x.shape == y.shape and x.std() > 0, (x.shape, x.std())
    assert np.array_equal(x, y), f"images differ by up to {np.abs(x - y).max()}"
    print(f"ok {case['file']}: {n} tensors, {case['dtype']}, state dicts equal, image {x.shape} equal")


def main(cases_file):
    cases = json.loads(Path(cases_file).read_text())
    failed = 0
    for case in cases:
        try:
            check(case)
        except AssertionError as e:
            failed += 1
            print(f"FAIL {case['file']}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
