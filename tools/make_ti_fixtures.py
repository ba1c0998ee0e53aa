#!/usr/bin/env python3
"""Reference for one textual-inversion step, as diffusers' examples/textual_inversion/
textual_inversion.py takes it, on the tiny model tests/fixtures/sd/tiny-a.

The placeholder "<zwx-mug>" with 3 vectors (tokens "<zwx-mug>", "<zwx-mug>_1", "<zwx-mug>_2"
added with add_tokens, the text encoder resized), each row initialised from the initializer token
"mug"; only the token embedding trains (vae, unet, encoder layers, final layer norm and position
embedding frozen); the prompts are two object templates with the placeholder string; fixed
latents, noise and timesteps; loss = MSE to the noise; AdamW over the whole token-embedding
matrix (lr 1e-3, weight decay 1e-2 as the script's default), then every other row restored from
the original embeddings (`index_no_updates`). Saved: the new rows' gradient, the new rows after
the step, and the loss.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_ti_fixtures.py
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "sd" / "tiny-a"
OUT = ROOT / "tests" / "fixtures" / "textual_inversion"
TOKEN = "<zwx-mug>"
INITIALIZER = "mug"
NUM_VECTORS = 3
TEMPLATES = ["a photo of a {}", "a close-up photo of the {}"]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(MODEL / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(MODEL / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(MODEL / "unet")
    sched = DDPMScheduler.from_pretrained(MODEL, subfolder="scheduler")

    # textual_inversion.py: add the placeholder tokens, initialise them from the initializer
    placeholder_tokens = [TOKEN] + [f"{TOKEN}_{i}" for i in range(1, NUM_VECTORS)]
    assert tokenizer.add_tokens(placeholder_tokens) == NUM_VECTORS
    init_ids = tokenizer.encode(INITIALIZER, add_special_tokens=False)
    assert len(init_ids) == 1, init_ids
    ids = tokenizer.convert_tokens_to_ids(placeholder_tokens)
    text_encoder.resize_token_embeddings(len(tokenizer))
    token_embeds = text_encoder.get_input_embeddings().weight.data
    with torch.no_grad():
        for i in ids:
            token_embeds[i] = token_embeds[init_ids[0]].clone()

    unet.requires_grad_(False)
    # transformers 5 drops the `text_model.` level (4.x: text_encoder.text_model.encoder)
    text_model = getattr(text_encoder, "text_model", text_encoder)
    text_model.encoder.requires_grad_(False)
    text_model.final_layer_norm.requires_grad_(False)
    text_model.embeddings.position_embedding.requires_grad_(False)
    text_encoder.train()
    unet.train()
    opt = torch.optim.AdamW(text_encoder.get_input_embeddings().parameters(), lr=1e-3,
                            betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    orig = text_encoder.get_input_embeddings().weight.data.clone()

    placeholder_string = " ".join(tokenizer.convert_ids_to_tokens(ids))
    prompts = [t.format(placeholder_string) for t in TEMPLATES]
    input_ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=77,
                          return_tensors="pt").input_ids
    g = torch.Generator("cpu").manual_seed(11)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    timesteps = torch.tensor([120, 820], dtype=torch.int64)

    cond = text_encoder(input_ids)[0]
    noisy = sched.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps, cond).sample
    loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    loss.backward()
    grad = text_encoder.get_input_embeddings().weight.grad[ids].clone()
    opt.step()
    opt.zero_grad()
    index_no_updates = torch.ones((len(tokenizer),), dtype=torch.bool)
    index_no_updates[min(ids): max(ids) + 1] = False
    with torch.no_grad():
        weight = text_encoder.get_input_embeddings().weight
        weight[index_no_updates] = orig[index_no_updates]
        rows_after = weight[ids].clone()
        assert torch.equal(weight[index_no_updates], orig[index_no_updates])

    tensors = {"latents": latents, "noise": noise, "timesteps": timesteps, "input_ids": input_ids,
               "rows_before": orig[ids].clone(), "grad": grad, "rows_after": rows_after}
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "step.safetensors")
    info = dict(token=TOKEN, initializer=INITIALIZER, num_vectors=NUM_VECTORS, ids=ids,
                prompts=prompts, loss=loss.item(), lr=1e-3, weight_decay=1e-2)
    (OUT / "step.json").write_text(json.dumps(info, indent=1) + "\n")
    print(info)


if __name__ == "__main__":
    sys.exit(main())
