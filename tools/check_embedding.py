#!/usr/bin/env python3
"""Check that a textual-inversion file written by studioize loads where the ecosystem loads it.

For each `--file PATH:TOKEN`, the file is read as diffusers' `load_textual_inversion(path, token=TOKEN)`
loads it into the SD 1.x model folder, and as A1111 reads a single-tensor safetensors file (its
"diffuser concept" branch: the one tensor, 1-D unsqueezed, cast to float32; the name is the file
stem). Prints one JSON line on stdout per file: the keys, dtype, shape and header metadata; the ids
diffusers gave the tokens; the rows diffusers put in the text encoder (as a list); A1111's name and
vector count. Fails (exit 1, one line on stderr) when diffusers refuses the file. With --out, the
pipeline of the last file renders --prompt (guidance 7.5, its own scheduler,
`generator=torch.Generator("cpu").manual_seed(seed)`) to that PNG.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/check_embedding.py --model tests/fixtures/sd/tiny-a \\
        --file /tmp/learned_embeds.safetensors:'<mug>'
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__


def a1111_read(path):
    """A1111's `EmbeddingDatabase.load_from_file` for a safetensors file with one tensor."""
    data = load_file(str(path))
    assert len(data) == 1 and "string_to_param" not in data and "clip_g" not in data, list(data)
    emb = next(iter(data.values()))
    if len(emb.shape) == 1:
        emb = emb.unsqueeze(0)
    return Path(path).stem, emb.to(torch.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--file", action="append", required=True, help="PATH:TOKEN")
    ap.add_argument("--prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out")
    args = ap.parse_args()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    try:
        for spec in args.file:
            path, token = spec.rsplit(":", 1)
            pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None,
                                                           requires_safety_checker=False)
            pipe.load_textual_inversion(path, token=token)
            with safe_open(path, "pt") as f:
                keys, meta = list(f.keys()), f.metadata()
                t = f.get_tensor(keys[0])
            n = t.shape[0] if t.dim() == 2 else 1
            names = [token] + [f"{token}_{i}" for i in range(1, n)]
            ids = pipe.tokenizer.convert_tokens_to_ids(names)
            rows = pipe.text_encoder.get_input_embeddings().weight[ids].detach()
            name, vec = a1111_read(path)
            print(json.dumps(dict(file=path, keys=keys, dtype=str(t.dtype), shape=list(t.shape), metadata=meta,
                                  ids=ids, rows=rows.tolist(), a1111_name=name, a1111_vectors=vec.shape[0])))
        if args.out:
            image = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=7.5,
                         width=args.size, height=args.size,
                         generator=torch.Generator("cpu").manual_seed(args.seed)).images[0]
            image.save(args.out)
    except Exception as e:  # noqa: BLE001
        print(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
