#!/usr/bin/env python3
"""Tiny random-weight Stable Diffusion 1.x checkpoints and reference outputs for studioize's tests.

Writes tests/fixtures/sd/:
  tiny-a/            diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
                     scheduler/): 2 resolution levels, int attention_head_dim, conv projections.
  tiny-b/            a second shape: 3 levels, list attention_head_dim, linear projections,
                     upcast_attention; its UNet saved sharded, its text encoder as an fp16
                     variant only (model.fp16.safetensors).
  tiny-a.safetensors tiny-a's weights as one original CompVis/LDM-keyed file, checked by
                     diffusers' own single-file converters.
  tiny-?.refs.safetensors  reference tensors (see `references`), from the models reloaded from disk.
  tokens.json        CLIPTokenizer ids for awkward prompts.
  params.json        sum(p.numel()) per component.

The tokenizer uses the real CLIP BPE vocabulary, taken from the open_clip_torch wheel.
Norm weights are randomised too, so that a wrong layer order shows.

Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_sd_fixtures.py
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "sd"

SD14_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
)

PROMPTS = [
    "a photo of a red sneaker on a white background",
    "Studio photo, soft light; 50mm!! (product)",
    "café crème brûlée — naïve façade",
    "a 🔥 emoji and 👟 shoes",
    " ".join(["a long prompt about a ceramic vase with glaze and texture"] * 12),
    "",
    "  multiple   spaces\tand\nnewlines ",
    "UPPERCASE Words and Numbers 12345 3.14",
    "don't can't it's",
    "<|endoftext|> inside text",
]


README = """\
# Tiny SD 1.x fixtures

Random-weight Stable Diffusion 1.x checkpoints and reference outputs for studioize's tests,
made by `tools/make_sd_fixtures.py` (torch 2.11.0, diffusers 0.42.1, transformers 5.24.0; CPU,
fp32, seeded, so regenerating gives the same bytes). Regenerate with

    ~/.cache/studioize/venv/bin/python tools/make_sd_fixtures.py

- `tiny-a/`: diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
  scheduler/ = PNDM with SD 1.4's config); 2 levels, int attention_head_dim, conv projections.
  tokenizer/ as in SD 1.4 (vocab.json, merges.txt, tokenizer_config.json,
  special_tokens_map.json); text encoder keys `text_model.`-prefixed as in SD 1.4.
- `tiny-b/`: 3 levels, attention_head_dim [2, 4, 8], linear projections, upcast_attention;
  unet/ sharded (`diffusion_pytorch_model-0000N-of-00008.safetensors` + index.json),
  text_encoder/ only as the fp16 variant `model.fp16.safetensors` (transformers 5 key names,
  no `text_model.` prefix); tokenizer/ as transformers 5 saves it (tokenizer.json).
- `tiny-a.safetensors`: tiny-a as one original CompVis/LDM-keyed file (model.diffusion_model.*,
  first_stage_model.*, cond_stage_model.transformer.text_model.*), checked with diffusers'
  single-file loader.
- `tiny-a.refs.safetensors`, `tiny-b.refs.safetensors`: reference inputs/outputs (text
  encoder, UNet, VAE encode/decode) from the models reloaded from disk, fp32.
- `tokens.json`: CLIP token ids (77, padded) for awkward prompts.
- `params.json`: parameter counts per component.
"""


# ---------------------------------------------------------------- vocabulary
@lru_cache(None)
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_vocab(folder: Path):
    """vocab.json + merges.txt as in openai/clip-vit-large-patch14, from open_clip's BPE file."""
    spec = importlib.util.find_spec("open_clip")
    bpe = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in merges[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}, ensure_ascii=False))
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(" ".join(m) + "\n")


def make_tokenizer(tmp: Path):
    write_clip_vocab(tmp)
    return CLIPTokenizer(
        vocab=str(tmp / "vocab.json"), merges=str(tmp / "merges.txt"),
        model_max_length=77, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>",
    )


def check_tokens_against_open_clip(tokens):
    """Cross-check the ids with open_clip's own BPE tokenizer (loaded from its file: importing the
    open_clip package needs torchvision). It does not treat "<|endoftext|>" in the text as special,
    so that prompt is skipped. ftfy, if missing, is replaced by the identity (the HF tokenizer
    does not use it either)."""
    import types
    if importlib.util.find_spec("ftfy") is None:
        sys.modules.setdefault("ftfy", types.SimpleNamespace(fix_text=lambda x: x))
    src = Path(importlib.util.find_spec("open_clip").origin).parent / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    oc = mod.SimpleTokenizer()
    for t in tokens:
        if "<|" in t["prompt"]:
            continue
        ids = [49406] + oc.encode(t["prompt"])[:75] + [49407]
        ids += [49407] * (77 - len(ids))
        assert ids == t["ids"], (t["prompt"], ids, t["ids"])


# ---------------------------------------------------------------- models
def randomise_norms(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


SHAPES = {
    "tiny-a": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4,
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                  block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
                  cross_attention_dim=32, norm_num_groups=8, use_linear_projection=False),
        vae=dict(in_channels=3, out_channels=3, block_out_channels=(32, 64),
                 down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                 latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=32),
        text=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
    ),
    "tiny-b": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4,
                  down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                  block_out_channels=(32, 48, 64), layers_per_block=2, attention_head_dim=[2, 4, 8],
                  cross_attention_dim=24, norm_num_groups=16, use_linear_projection=True,
                  upcast_attention=True),
        vae=dict(in_channels=3, out_channels=3, block_out_channels=(16, 32, 32),
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 latent_channels=4, layers_per_block=2, norm_num_groups=8, sample_size=32),
        text=dict(hidden_size=24, intermediate_size=50, num_hidden_layers=3, num_attention_heads=2),
    ),
}


def build(name, seed, tok):
    shape = SHAPES[name]
    gen = torch.Generator("cpu").manual_seed(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**shape["unet"])
    vae = AutoencoderKL(**shape["vae"])
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **shape["text"]))
    for m in (unet, vae, text):
        randomise_norms(m, gen)
    with torch.no_grad():
        unet.conv_out.weight.mul_(4.0)  # make the noise prediction matter for sampling tests
    sched = PNDMScheduler(**SD14_SCHEDULER)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe


# ---------------------------------------------------------------- CompVis single file
RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def unet_to_ldm(sd, cfg):
    lpb = cfg["layers_per_block"]
    out = {}

    def resnet(rest):
        head, tail = rest.split(".", 1)
        return RESNET_TO_LDM[head] + "." + tail

    for k, v in sd.items():
        p = k.split(".")
        if k.startswith("time_embedding.linear_1"):
            n = "time_embed.0." + p[-1]
        elif k.startswith("time_embedding.linear_2"):
            n = "time_embed.2." + p[-1]
        elif k.startswith("conv_in."):
            n = "input_blocks.0.0." + p[-1]
        elif k.startswith("conv_norm_out."):
            n = "out.0." + p[-1]
        elif k.startswith("conv_out."):
            n = "out.2." + p[-1]
        elif p[0] == "down_blocks":
            level, kind, j = int(p[1]), p[2], int(p[3])
            rest = ".".join(p[4:])
            if kind == "resnets":
                n = f"input_blocks.{1 + level * (lpb + 1) + j}.0.{resnet(rest)}"
            elif kind == "attentions":
                n = f"input_blocks.{1 + level * (lpb + 1) + j}.1.{rest}"
            else:  # downsamplers.0.conv
                n = f"input_blocks.{1 + level * (lpb + 1) + lpb}.0.op.{p[-1]}"
        elif p[0] == "mid_block":
            kind, j, rest = p[1], int(p[2]), ".".join(p[3:])
            n = f"middle_block.{1 if kind == 'attentions' else 2 * j}." + (resnet(rest) if kind == "resnets" else rest)
        elif p[0] == "up_blocks":
            level, kind = int(p[1]), p[2]
            has_attn = any(x.startswith(f"up_blocks.{level}.attentions.") for x in sd)
            if kind == "resnets":
                j = int(p[3])
                n = f"output_blocks.{level * (lpb + 1) + j}.0.{resnet('.'.join(p[4:]))}"
            elif kind == "attentions":
                j = int(p[3])
                n = f"output_blocks.{level * (lpb + 1) + j}.1.{'.'.join(p[4:])}"
            else:  # upsamplers.0.conv
                n = f"output_blocks.{level * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv.{p[-1]}"
        else:
            raise KeyError(k)
        out[n] = v
    return out


def vae_to_ldm(sd, cfg):
    levels = len(cfg["block_out_channels"])
    out = {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for k, v in sd.items():
        n = k
        for half in ("encoder", "decoder"):
            if not k.startswith(half + "."):
                continue
            rest = k[len(half) + 1:]
            p = rest.split(".")
            if p[0] == "down_blocks":
                if p[2] == "resnets":
                    n = f"{half}.down.{p[1]}.block.{p[3]}." + ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
                else:
                    n = f"{half}.down.{p[1]}.downsample.conv.{p[-1]}"
            elif p[0] == "up_blocks":
                lvl = levels - 1 - int(p[1])
                if p[2] == "resnets":
                    n = f"{half}.up.{lvl}.block.{p[3]}." + ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
                else:
                    n = f"{half}.up.{lvl}.upsample.conv.{p[-1]}"
            elif p[0] == "mid_block":
                if p[1] == "resnets":
                    n = f"{half}.mid.block_{int(p[2]) + 1}." + ".".join(p[3:])
                else:
                    inner = ".".join(p[3:-1])
                    n = f"{half}.mid.attn_1.{attn[inner]}.{p[-1]}"
                    if inner != "group_norm" and p[-1] == "weight":
                        v = v.reshape(*v.shape, 1, 1)
            elif p[0] == "conv_norm_out":
                n = f"{half}.norm_out.{p[-1]}"
        out[n] = v
    return out


def write_compvis(pipe_dir: Path, path: Path):
    unet_sd = load_file(pipe_dir / "unet" / "diffusion_pytorch_model.safetensors")
    vae_sd = load_file(pipe_dir / "vae" / "diffusion_pytorch_model.safetensors")
    text_sd = load_file(pipe_dir / "text_encoder" / "model.safetensors")
    assert all(k.startswith("text_model.") for k in text_sd), "expects the SD 1.x (prefixed) text encoder layout"
    unet_cfg = json.loads((pipe_dir / "unet" / "config.json").read_text())
    vae_cfg = json.loads((pipe_dir / "vae" / "config.json").read_text())
    full = {}
    full.update({"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet_sd, unet_cfg).items()})
    full.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae_sd, vae_cfg).items()})
    full.update({"cond_stage_model.transformer." + k: v for k, v in text_sd.items()})
    save_file({k: v.contiguous() for k, v in full.items()}, path)

    # Check with diffusers' own converters that this is the layout it reads.
    ckpt = load_file(path)
    back_unet = convert_ldm_unet_checkpoint(ckpt, unet_cfg)
    back_vae = convert_ldm_vae_checkpoint(ckpt, vae_cfg)
    back_text = convert_ldm_clip_checkpoint(ckpt)
    for name, orig, back in [("unet", unet_sd, back_unet), ("vae", vae_sd, back_vae), ("text", text_sd, back_text)]:
        back = {k: v for k, v in back.items() if not k.endswith("position_ids")}
        orig = {k: v for k, v in orig.items() if not k.endswith("position_ids")}
        assert set(back) == set(orig), (name, sorted(set(back) ^ set(orig))[:10])
        for k in orig:
            assert torch.equal(orig[k], back[k].reshape(orig[k].shape)), (name, k)

    # ... and with the whole single-file loader, against the folder pipeline.
    single = StableDiffusionPipeline.from_single_file(str(path), config=str(pipe_dir), local_files_only=True)
    folder = StableDiffusionPipeline.from_pretrained(pipe_dir, local_files_only=True)
    for c in ("unet", "vae", "text_encoder"):
        a, b = getattr(single, c).state_dict(), getattr(folder, c).state_dict()
        assert set(a) == set(b), (c, sorted(set(a) ^ set(b))[:10])
        for k in a:
            assert torch.equal(a[k], b[k]), (c, k)
    print(f"  {path.name}: {len(full)} tensors, verified with diffusers' single-file converters and from_single_file")


# ---------------------------------------------------------------- references
@torch.no_grad()
def references(name: Path, variant=None):
    d = OUT / name
    tok = CLIPTokenizer.from_pretrained(d / "tokenizer")
    text = CLIPTextModel.from_pretrained(d / "text_encoder", variant=variant, torch_dtype=torch.float32).eval()
    unet = UNet2DConditionModel.from_pretrained(d / "unet").eval()
    vae = AutoencoderKL.from_pretrained(d / "vae").eval()
    r = {}
    ids = tok(["a product photo of a leather bag", ""], padding="max_length", max_length=77,
              truncation=True, return_tensors="pt").input_ids
    r["input_ids"] = ids.to(torch.int64)
    emb = text(ids).last_hidden_state
    r["text_embeddings"] = emb
    g = torch.Generator("cpu").manual_seed(11)
    r["unet_sample"] = torch.randn(2, 4, 8, 8, generator=g)
    r["unet_timesteps"] = torch.tensor([981, 1], dtype=torch.int64)
    r["unet_out"] = unet(r["unet_sample"], r["unet_timesteps"], encoder_hidden_states=emb).sample
    r["unet_out_scalar_t"] = unet(r["unet_sample"], torch.tensor(500), encoder_hidden_states=emb).sample
    r["vae_image"] = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    dist = vae.encode(r["vae_image"]).latent_dist
    r["vae_mean"], r["vae_std"], r["vae_logvar"] = dist.mean, dist.std, dist.logvar
    r["vae_sample"] = dist.sample(generator=torch.Generator("cpu").manual_seed(42))
    r["vae_latent"] = torch.randn(1, 4, 4, 4, generator=g)
    r["vae_decoded"] = vae.decode(r["vae_latent"]).sample
    save_file({k: v.contiguous() for k, v in r.items()}, OUT / f"{name}.refs.safetensors")
    print(f"  {name}: text std {emb.std():.3f}, unet_out std {r['unet_out'].std():.3f}, "
          f"vae_decoded std {r['vae_decoded'].std():.3f}")
    counts = {c: sum(p.numel() for p in m.parameters()) for c, m in [("unet", unet), ("vae", vae), ("text_encoder", text)]}
    return counts


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    tmp = OUT / "_vocab"
    tok = make_tokenizer(tmp)

    a = build("tiny-a", 0, tok)
    a.save_pretrained(OUT / "tiny-a")
    b = build("tiny-b", 1, tok)
    b.save_pretrained(OUT / "tiny-b")
    # tiny-a's tokenizer folder gets the layout of the real SD 1.4 repository (vocab.json +
    # merges.txt, no tokenizer.json); tiny-b keeps what transformers 5 saves (tokenizer.json).
    ta = OUT / "tiny-a" / "tokenizer"
    shutil.rmtree(ta)
    ta.mkdir()
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(tmp / f, ta / f)
    (ta / "tokenizer_config.json").write_text(json.dumps({
        "add_prefix_space": False, "bos_token": "<|startoftext|>", "do_lower_case": True,
        "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
        "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>"}, indent=2) + "\n")
    (ta / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}, indent=2) + "\n")
    shutil.rmtree(tmp)
    for name in ("tiny-a", "tiny-b"):
        # SD 1.4's own scheduler_config.json also carries keys PNDM ignores (clip_sample).
        sc = OUT / name / "scheduler" / "scheduler_config.json"
        cfg = json.loads(sc.read_text())
        cfg["clip_sample"] = False
        sc.write_text(json.dumps(cfg, indent=2) + "\n")

    # tiny-b: sharded UNet, fp16-variant-only text encoder.
    ub = OUT / "tiny-b" / "unet"
    (ub / "diffusion_pytorch_model.safetensors").unlink()
    b.unet.save_pretrained(ub, max_shard_size="1MB")
    tb = OUT / "tiny-b" / "text_encoder"
    (tb / "model.safetensors").unlink()
    b.text_encoder.to(torch.float16).save_pretrained(tb, variant="fp16")
    shards = sorted(p.name for p in ub.glob("diffusion_pytorch_model*"))
    assert any(s.endswith(".index.json") for s in shards), shards
    assert (tb / "model.fp16.safetensors").exists(), list(tb.iterdir())

    # transformers 5 saves CLIPTextModel without the `text_model.` prefix; the real SD 1.x
    # repositories (saved by transformers 4) have it. tiny-a gets the real layout, tiny-b keeps
    # transformers 5's, so loaders must accept both.
    ta_file = OUT / "tiny-a" / "text_encoder" / "model.safetensors"
    sd_text = load_file(ta_file)
    assert not any(k.startswith("text_model.") for k in sd_text), "transformers now saves the prefix"
    save_file({"text_model." + k: v.contiguous() for k, v in sd_text.items()}, ta_file, metadata={"format": "pt"})

    write_compvis(OUT / "tiny-a", OUT / "tiny-a.safetensors")

    tok = CLIPTokenizer.from_pretrained(OUT / "tiny-a" / "tokenizer")
    tok_b = CLIPTokenizer.from_pretrained(OUT / "tiny-b" / "tokenizer")
    tokens = []
    for p in PROMPTS:
        ids = tok(p, padding="max_length", max_length=77, truncation=True).input_ids
        ids_b = tok_b(p, padding="max_length", max_length=77, truncation=True).input_ids
        assert ids == ids_b, (p, ids, ids_b)
        assert ids[0] == 49406 and len(ids) == 77, ids
        tokens.append({"prompt": p, "ids": ids})
    check_tokens_against_open_clip(tokens)
    (OUT / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False, indent=1) + "\n")

    params = {"tiny-a": references("tiny-a"), "tiny-b": references("tiny-b", variant="fp16")}
    (OUT / "params.json").write_text(json.dumps(params, indent=1) + "\n")
    # Whole-pipeline reloads (tiny-b: the fp16 text encoder variant, the other components plain).
    StableDiffusionPipeline.from_pretrained(OUT / "tiny-a", local_files_only=True)
    StableDiffusionPipeline.from_pretrained(OUT / "tiny-b", variant="fp16", local_files_only=True)
    (OUT / "README.md").write_text(README)
    print(json.dumps(params))


if __name__ == "__main__":
    sys.exit(main())
