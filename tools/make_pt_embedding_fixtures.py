#!/usr/bin/env python3
"""Pickled textual-inversion embeddings (torch.save) for studioize's restricted unpickler.

Writes tests/fixtures/embedding-pt/ from the safetensors fixtures of
tools/make_embedding_fixtures.py (run that first), with the same vectors bit for bit, so that
the images diffusers rendered from those files are the references for these:
  red-bag.pt                  A1111's dict: string_to_token {"*": 265}, string_to_param {"*": [2, 32]},
                              name, step, sd_checkpoint, sd_checkpoint_name (red-bag.safetensors' rows).
  param/red-bag.pt            the same with a torch.nn.Parameter (torch._utils._rebuild_parameter).
  paramdict/red-bag.pt        string_to_param as an nn.ParameterDict (A1111's oldest files).
  strided/red-bag.pt          the rows as a transposed view at storage offset 2 (stride [1, 2]).
  studio/learned_embeds.bin   diffusers' torch.save({"<studio-light>": [3, 32]}).
  evil.pt                     a dict whose value's __reduce__ is os.system("touch MARKER"): never to run.
  other.pt                    a pickle of tensors in neither layout.

Pinned: torch 2.11.0 (asserted). torch.save writes a random `.data/serialization_id`, so the
bytes differ between regenerations (nothing else does). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_pt_embedding_fixtures.py
"""
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "tests" / "fixtures" / "embedding"
OUT = ROOT / "tests" / "fixtures" / "embedding-pt"
# The file evil.pt would create if it were unpickled (tests/embedding.rs checks it is not).
MARKER = "/tmp/studioize-evil-pt-marker"


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def a1111(param, name):
    return {"string_to_token": {"*": 265}, "string_to_param": {"*": param}, "name": name, "step": 500,
            "sd_checkpoint": "a1b2c3d4", "sd_checkpoint_name": "tiny-a"}


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    red = load_file(SRC / "red-bag.safetensors")["emb_params"]
    studio = load_file(SRC / "studio" / "learned_embeds.safetensors")["<studio-light>"]
    assert red.shape == (2, 32) and studio.shape == (3, 32)
    for sub in ["param", "paramdict", "strided", "studio"]:
        (OUT / sub).mkdir(parents=True)
    torch.save(a1111(red.clone(), "red-bag"), OUT / "red-bag.pt")
    torch.save(a1111(torch.nn.Parameter(red.clone()), "red-bag"), OUT / "param" / "red-bag.pt")
    old = a1111(None, "red-bag")
    old["string_to_param"] = torch.nn.ParameterDict({"*": torch.nn.Parameter(red.clone())})
    torch.save(old, OUT / "paramdict" / "red-bag.pt")
    big = torch.zeros(33, 2)
    big[1:] = red.t()
    view = big[1:].t()
    assert view.stride() == (1, 2) and view.storage_offset() == 2 and torch.equal(view, red)
    torch.save(a1111(view, "red-bag"), OUT / "strided" / "red-bag.pt")
    torch.save({"<studio-light>": studio.clone()}, OUT / "studio" / "learned_embeds.bin")
    torch.save({"string_to_param": {"*": Evil()}}, OUT / "evil.pt")
    torch.save({"a": red.clone(), "b": studio.clone()}, OUT / "other.pt")

    # what torch reads back: the same rows
    for f in ["red-bag.pt", "param/red-bag.pt", "paramdict/red-bag.pt", "strided/red-bag.pt"]:
        d = torch.load(OUT / f, weights_only=False)
        p = d["string_to_param"]
        p = getattr(p, "_parameters", p)
        assert torch.equal(p["*"], red), f
    assert torch.equal(torch.load(OUT / "studio" / "learned_embeds.bin")["<studio-light>"], studio)
    try:
        torch.load(OUT / "evil.pt", weights_only=True)
        raise SystemExit("torch's weights_only loader accepted evil.pt")
    except Exception as e:  # noqa: BLE001
        print(f"  torch.load(weights_only=True) refuses evil.pt: {str(e).splitlines()[0][:120]}")
    assert not os.path.exists(MARKER)
    print(f"wrote {sorted(str(p.relative_to(OUT)) for p in OUT.rglob('*') if p.is_file())}")


if __name__ == "__main__":
    sys.exit(main())
