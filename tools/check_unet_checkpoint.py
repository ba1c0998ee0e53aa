#!/usr/bin/env python3
"""Checks that a UNet folder written by `studioize train` loads in diffusers and predicts what
studioize predicts: `check_unet_checkpoint.py UNET_DIR CASE.safetensors` where the case file
holds `sample`, `timesteps`, `context` and studioize's `output`. A text-encoder folder
(`model.safetensors`) is loaded with transformers' CLIPTextModel instead, the case holding
`input_ids` and `output`. Exit 0 on agreement (1e-4
relative), 1 otherwise. Pinned: diffusers 0.42.1, torch 2.11.0."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def main(folder, case_file):
    case = load_file(case_file)
    with torch.no_grad():
        if os.path.exists(os.path.join(folder, "model.safetensors")):
            # A text encoder (train_text_encoder): transformers' CLIPTextModel.
            from transformers import CLIPTextModel

            text = CLIPTextModel.from_pretrained(folder).eval()
            out = text(case["input_ids"]).last_hidden_state
        else:
            unet = UNet2DConditionModel.from_pretrained(folder).eval()
            out = unet(case["sample"], case["timesteps"], encoder_hidden_states=case["context"]).sample
    err = ((out - case["output"]).abs().max() / case["output"].abs().max()).item()
    print(f"relative error {err:.3e}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
