#!/usr/bin/env python3
"""Checks a model folder written by `studioize pretrain` with diffusers and transformers.

    check_pretrained.py MODEL [PNG]

- `StableDiffusionPipeline.from_pretrained(MODEL)` loads every component with no missing or
  unexpected weights (diffusers / transformers report them as errors here);
- the tokenizer (CLIPTokenizer from the folder's vocab.json / merges.txt) splits the catalogue
  words of the prompt into whole-word tokens (`red</w>`, `mug</w>`, ...);
- the pipeline generates "a red mug on a white background, studio product photo" (seed 0,
  20 PNDM steps, guidance 7.5), written to PNG if given; with STUDIOIZE_PNG=<file> set to
  `studioize generate`'s image of the same request, the two must agree within 2/255 on
  average (same seed, same sampler: the same image up to float rounding).

Exit 0 if every check passes, 1 otherwise. Pinned: torch 2.11.0, diffusers 0.42.1,
transformers 5.24.0 (asserted).
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

PROMPT = "a red mug on a white background, studio product photo"


def main():
    model = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else None
    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    for name in ("unet", "vae", "text_encoder"):
        dtype = getattr(pipe, name).dtype
        assert dtype == torch.float32, (name, dtype)
    toks = pipe.tokenizer.tokenize(PROMPT)
    for word in ("a", "red", "mug", "white", "background", "studio", "product", "photo"):
        assert f"{word}</w>" in toks, (word, toks)
    img = pipe(
        PROMPT,
        num_inference_steps=20,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).images[0]
    px = (img * 255).round().astype(np.uint8)
    if out:
        Image.fromarray(px).save(out)
    theirs = os.environ.get("STUDIOIZE_PNG")
    if theirs:
        ours = np.asarray(Image.open(theirs).convert("RGB")).astype(np.float64)
        diff = np.abs(ours - px.astype(np.float64)).mean()
        print(f"mean |studioize - diffusers| = {diff:.3f} / 255")
        assert diff < 2.0, diff
    print(f"ok: {model} loads in diffusers {diffusers.__version__} and generates {px.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
