#!/usr/bin/env python3
"""Textual-inversion reference files and images for studioize's embeddings, made with diffusers.

Writes tests/fixtures/embedding/ (see README below, written there too), on tests/fixtures/sd/tiny-a:
  mug.safetensors                  diffusers format, one vector: {"<mug>": [1, 32]}, {"format": "pt"}
                                   (as examples/textual_inversion/textual_inversion.py saves it).
  studio/learned_embeds.safetensors  diffusers format, three vectors: {"<studio-light>": [3, 32]}.
  red-bag.safetensors              kohya's {"emb_params": [2, 32]}: the token is the file stem, `red-bag`.
  sdxl.safetensors, wide.safetensors   files a SD 1.x loader must refuse; a1111.pt  A1111's pickled layout.
  cases.json + *.png               diffusers' images with `load_textual_inversion` (PNDM, fixed seed).
  tokens.json                      transformers' ids after the tokens are added: raw, and after diffusers'
                                   `maybe_convert_prompt`.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted). CPU, fp32, one thread,
seeded: regenerating gives the same bytes. Usage:
    ~/.cache/studioize/venv/bin/python tools/make_embedding_fixtures.py
"""
import json
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "embedding"

# Rows are N(0, 1) * SCALE * std(token_embedding.weight): far enough from the vocabulary's rows
# that the images differ from the base image by several levels.
SCALE = 4.0
# (file relative to OUT, token diffusers is given (None: the file's), vectors, seed, format)
FILES = [
    ("mug.safetensors", None, 1, 201, "diffusers"),
    ("studio/learned_embeds.safetensors", None, 3, 202, "diffusers"),
    ("red-bag.safetensors", "red-bag", 2, 203, "emb_params"),
]
TOKENS = {"mug.safetensors": "<mug>", "studio/learned_embeds.safetensors": "<studio-light>",
          "red-bag.safetensors": "red-bag"}

COMMON = dict(negative_prompt="blurry", seed=1234, steps=6, guidance=7.5, width=32, height=24)
I2I = dict(negative_prompt="blurry", seed=77, steps=10, guidance=7.5, strength=0.6,
           input="../pipelines/input-photo.png")
CASES = [
    # name, files loaded (in order), prompt, task, extra
    ("base", [], "a <mug> and a red-bag, <studio-light>", "generate", {}),
    ("mug", ["mug.safetensors"], "a <mug> on a table, studio lighting", "generate", {}),
    ("studio", ["studio/learned_embeds.safetensors"], "a leather handbag, <studio-light>", "generate", {}),
    ("red-bag", ["red-bag.safetensors"], "a red-bag on a white table", "generate", {}),
    ("all", ["mug.safetensors", "studio/learned_embeds.safetensors", "red-bag.safetensors"],
     "a <mug> and a red-bag, <studio-light>", "generate", {"negative_prompt": "blurry <studio-light>"}),
    ("studio-img2img", ["studio/learned_embeds.safetensors"], "a leather handbag, <studio-light>",
     "transform", {}),
]
TOKEN_PROMPTS = [
    "a <mug> and a red-bag, <studio-light>",
    "a <MUG> on a Red-Bag",
    "x<mug>y <studio-light>s",
    "<studio-light> <studio-light>_1 <studio-light>_2",
    "a photo of a  <mug>\tin  soft light",
    "blurry <studio-light>",
    "a café <studio-light>, naïve ÜNÏCODE <mug>",
]

README = """\
# Textual-inversion fixtures

Made by `tools/make_embedding_fixtures.py` (torch 2.11.0, diffusers 0.42.1, transformers 5.24.0;
CPU, fp32, one thread, seeded, so regenerating gives the same bytes) on the tiny model
`tests/fixtures/sd/tiny-a` (text encoder hidden size 32, the real CLIP vocabulary of 49408 tokens).
Regenerate with

    ~/.cache/studioize/venv/bin/python tools/make_embedding_fixtures.py

Vectors are seeded N(0, 1) x 4 x std(token_embedding.weight).

- `mug.safetensors`: diffusers' format as `textual_inversion.py` saves it: one tensor named by its
  token, `{"<mug>": [1, 32]}` float32, header `{"format": "pt"}`.
- `studio/learned_embeds.safetensors`: the same for three vectors, `{"<studio-light>": [3, 32]}`, in a
  folder as diffusers' training output (`load_textual_inversion(folder)` reads this file name).
- `red-bag.safetensors`: kohya's `{"emb_params": [2, 32]}` (A1111 and ComfyUI read it, by file
  name). diffusers would name its token `emb_params`: it is loaded with `token="red-bag"`, the file
  stem, which is A1111's name and studioize's default.
- `sdxl.safetensors` (`clip_l` [1, 768] + `clip_g` [1, 1280]) and `wide.safetensors` (`{"<wide>": [1, 768]}`,
  SD 1.x's width, not this model's 32): refused (diffusers refuses them as well). `a1111.pt`: A1111's
  pickled `string_to_param` layout (two random rows, token `a1111`); the `.pt` / `.bin` parity files
  are in `../embedding-pt/` (`tools/make_pt_embedding_fixtures.py`).
- `cases.json` + `*.png`: diffusers' `StableDiffusionPipeline` / `StableDiffusionImg2ImgPipeline` images
  (PNDM, `torch.Generator("cpu").manual_seed(seed)`) after `load_textual_inversion` of `files` in
  order; `ids`: the token ids diffusers gave each file's tokens; `base` is the same prompt with no
  embedding loaded (the tokens then are plain BPE pieces).
- `tokens.json`: after loading all three files (ids 49408..49413), for each prompt: `raw`, the ids
  of `tokenizer(prompt, padding="max_length", max_length=77, truncation=True)`; `converted`,
  `maybe_convert_prompt(prompt)` and its ids `converted_ids` (what the pipeline encodes). Note: diffusers'
  conversion is a `str.replace` of the token as the fast tokenizer reports it (lower-cased), so
  `<MUG>`-style capitals are matched by the tokenizer but not expanded.
"""


def load_pipe():
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_files(pipe, files):
    for f in files:
        token = next(t for n, t, *_ in FILES if n == f)
        p = OUT / f
        if p.name == "learned_embeds.safetensors":
            pipe.load_textual_inversion(str(p.parent), token=token)
        else:
            pipe.load_textual_inversion(str(p), token=token)


def render(pipe, prompt, task, extra):
    kw = dict(COMMON if task == "generate" else I2I)
    kw.update(extra)
    gen = torch.Generator("cpu").manual_seed(kw["seed"])
    if task == "generate":
        return pipe(prompt=prompt, negative_prompt=kw["negative_prompt"], guidance_scale=kw["guidance"],
                    num_inference_steps=kw["steps"], width=kw["width"], height=kw["height"],
                    generator=gen).images[0], kw
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    i2i.set_progress_bar_config(disable=True)
    photo = Image.open((OUT / kw["input"]).resolve()).convert("RGB")
    return i2i(prompt=prompt, negative_prompt=kw["negative_prompt"], image=photo, strength=kw["strength"],
               guidance_scale=kw["guidance"], num_inference_steps=kw["steps"], generator=gen).images[0], kw


def diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


def refused(make):
    try:
        make()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return None


def main():
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base = load_pipe()
    w = base.text_encoder.get_input_embeddings().weight.detach()
    dim, std = w.shape[1], w.std().item()

    for name, _, n, seed, fmt in FILES:
        g = torch.Generator("cpu").manual_seed(seed)
        rows = (torch.randn(n, dim, generator=g) * SCALE * std).contiguous()
        p = OUT / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "diffusers":
            save_file({TOKENS[name]: rows}, p, metadata={"format": "pt"})
        else:
            save_file({"emb_params": rows}, p)

    g = torch.Generator("cpu").manual_seed(204)
    save_file({"clip_l": torch.randn(1, 768, generator=g), "clip_g": torch.randn(1, 1280, generator=g)},
              OUT / "sdxl.safetensors")
    save_file({"<wide>": torch.randn(1, 768, generator=g)}, OUT / "wide.safetensors", metadata={"format": "pt"})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn(2, dim, generator=g)},
                "name": "a1111", "step": 10, "sd_checkpoint": None, "sd_checkpoint_name": None}, OUT / "a1111.pt")

    cases, images = [], {}
    for name, files, prompt, task, extra in CASES:
        pipe = load_pipe()
        load_files(pipe, files)
        ids = {f: pipe.tokenizer.convert_tokens_to_ids(
            [TOKENS[f]] + [f"{TOKENS[f]}_{i}" for i in range(1, next(n for m, _, n, *_ in FILES if m == f))])
            for f in files}
        img, kw = render(pipe, prompt, task, extra)
        file = f"{name}.png"
        img.save(OUT / file)
        images[name] = img
        c = dict(name=name, task=task, files=[[f, TOKENS[f]] for f in files], ids=ids, prompt=prompt, **kw,
                 file=file)
        if name != "base":
            ref = images["base"] if task == "generate" else None
            if ref is not None:
                c["mean_diff_vs_base"] = round(diff(img, ref), 3)
        cases.append(c)
        print(f"  {name}: ids {ids} {c.get('mean_diff_vs_base', '')}")
    # the same prompt without the embeddings' vectors moves the image: the tests can tell
    for c in cases[1:]:
        if c["task"] == "generate":
            assert c["mean_diff_vs_base"] > 3.0, c
    (OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")

    pipe = load_pipe()
    load_files(pipe, [f for f, *_ in FILES])
    tok = pipe.tokenizer
    assert len(tok) == 49414, len(tok)
    rows = []
    for prompt in TOKEN_PROMPTS:
        conv = pipe.maybe_convert_prompt(prompt, tok)
        enc = lambda p: tok(p, padding="max_length", max_length=77, truncation=True).input_ids  # noqa: E731
        rows.append(dict(prompt=prompt, raw=enc(prompt), converted=conv, converted_ids=enc(conv)))
    (OUT / "tokens.json").write_text(json.dumps(rows, indent=1) + "\n")

    # what diffusers refuses
    refusals = {
        "sdxl.safetensors": refused(lambda: load_pipe().load_textual_inversion(str(OUT / "sdxl.safetensors"))),
        "wide.safetensors": refused(lambda: load_pipe().load_textual_inversion(str(OUT / "wide.safetensors"))),
        "token in the vocabulary": refused(
            lambda: load_pipe().load_textual_inversion(str(OUT / "mug.safetensors"), token="cat")),
    }
    for what, why in refusals.items():
        assert why, f"diffusers accepts {what}"
        print(f"  diffusers refuses {what}: {why}")
    (OUT / "README.md").write_text(README)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(cases)} cases to {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
