#!/usr/bin/env python3
"""Real-shape benchmark: studioize against diffusers / transformers on full-size random-weight
models, each side in its own whole process, alternating A B A B.

The models (built once into --cache by the pinned reference libraries, random weights, saved in
the public layouts with safetensors):
  sd14/        StableDiffusionPipeline with SD 1.4's shapes: UNet2DConditionModel (SD 1.4's
               config, 859.5 M parameters), AutoencoderKL (128-256-512-512), CLIP ViT-L/14 text
               encoder (12 layers, 768), the real CLIP BPE vocabulary, PNDM as in SD 1.4.
  blip-base/   BlipForConditionalGeneration with BlipConfig() (ViT-B/16 at 384, BERT-base text),
               the real BERT uncased vocabulary + [DEC]/[ENC].
  blip-large/  the same with the ViT-L/16 vision tower (1024 wide, 24 layers).
  images/      16 photos (256x256 PNG) to caption and to transform.

Rows (CPU sizes; --size 512 on CUDA): load, txt2img (10 PNDM steps, CFG 7.5, including the
load), img2img (strength 0.75, 10 steps, including the load), a training step (batch 1, the
train_text_to_image objective on the UNet: forward, backward, clip, AdamW; steady state from
the process's own timer), BLIP-base captioning of 16 images greedy and beam 3, BLIP-large beam 3
(from files to strings, including the load; a cache folder is built only when a row needs it).
txt2img-bf16 / img2img-bf16: the same in bfloat16 on both sides (`--precision bf16`; diffusers'
`pipe.to(torch.bfloat16)`). The training step's memory / precision variants (--rows
train-ckpt,... ; TRAIN_VARIANTS below): gradient checkpointing, 8-bit AdamW (bitsandbytes), both,
Adafactor (transformers), bf16 autocast, fp16 autocast with loss scaling (CUDA), LoRA rank 4
(PEFT), each as `studioize bench-train` flags and the same configuration in PyTorch / diffusers.
Each row runs one warm-up of each side, then --runs pairs alternating studioize / reference, each
a fresh process with the same torch thread count (OMP_NUM_THREADS and torch.set_num_threads).
Wall time and peak RSS (os.wait4's ru_maxrss) are the child's own; on CUDA also the peak of the
GPU's used memory over the process's life (nvidia-smi polled every 0.2 s, minus the idle
baseline: the same measure for both sides). Medians and min-max are printed as a Markdown table
and saved as JSON.

bitsandbytes (8-bit rows) is not in the shared venv: install it into a folder on PYTHONPATH
(`pip install --no-deps --target /tmp/bnb bitsandbytes==0.50.2; PYTHONPATH=/tmp/bnb ...`).

Usage: ~/.cache/studioize/venv/bin/python tools/bench_full.py [--rows load,txt2img,...]
       [--runs 3] [--threads 2] [--cache DIR] [--binary target/release/studioize] [--out FILE]
       [--scale full|small]   (small: the same layouts at a fraction of the widths, to check the
                               harness itself in seconds; its numbers mean nothing)
Pinned: torch 2.11.0, diffusers 0.42.1, transformers 5.24.0 (asserted).
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a leather handbag on a white background, studio product photo"
ROWS = ["load", "txt2img", "img2img", "train", "caption-greedy", "caption-beam3", "caption-large-beam3"]
# The training step's memory/precision variants (the `train-*` rows): flags of
# `studioize bench-train`, and what the reference does for the same configuration.
TRAIN_VARIANTS = {
    "train": [],  # fp32, AdamW, every activation kept
    "train-ckpt": ["--gradient-checkpointing"],  # diffusers: unet.enable_gradient_checkpointing()
    "train-8bit": ["--optimizer", "adamw8bit"],  # bitsandbytes.optim.AdamW8bit
    "train-ckpt-8bit": ["--gradient-checkpointing", "--optimizer", "adamw8bit"],
    "train-adafactor": ["--optimizer", "adafactor"],  # transformers' Adafactor, lr given
    "train-bf16": ["--mixed-precision", "bf16"],  # torch.autocast(dtype=torch.bfloat16)
    "train-fp16": ["--mixed-precision", "fp16"],  # autocast fp16 + torch.amp.GradScaler (CUDA)
    "train-lora": ["--lora-rank", "4"],  # PEFT LoRA r=4 on to_q/k/v/out.0, base frozen
}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# Rows of the pipelines; `-bf16`: the same in bfloat16 (`--precision bf16`, `pipe.to(torch.bfloat16)`).
SAMPLING_ROWS = ["load", "txt2img", "img2img", "txt2img-bf16", "img2img-bf16"]


# ---------------------------------------------------------------- building the models
def sd14_shapes(scale):
    w = 1 if scale == "full" else 8
    unet = dict(sample_size=64, cross_attention_dim=768 // w, attention_head_dim=8,
                block_out_channels=[c // w for c in (320, 640, 1280, 1280)])
    vae = dict(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
               block_out_channels=[c // w for c in (128, 256, 512, 512)], layers_per_block=2,
               latent_channels=4, sample_size=512, norm_num_groups=32 // w if w > 1 else 32)
    text = dict(hidden_size=768 // w, intermediate_size=3072 // w, num_hidden_layers=12,
                num_attention_heads=12, projection_dim=768 // w)
    if w > 1:
        unet["norm_num_groups"] = 8
        unet["attention_head_dim"] = 2
        text["num_attention_heads"] = 4
    return unet, vae, text


def build_sd14(out: Path, scale):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    sys.path.insert(0, str(ROOT / "tools"))
    from make_sd_fixtures import SD14_SCHEDULER, make_tokenizer

    torch.manual_seed(0)
    unet_kw, vae_kw, text_kw = sd14_shapes(scale)
    unet = UNet2DConditionModel(**unet_kw)
    vae = AutoencoderKL(**vae_kw)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **text_kw))
    with tempfile.TemporaryDirectory() as tmp:
        tok = make_tokenizer(Path(tmp))
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                       scheduler=PNDMScheduler(**SD14_SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(out, safe_serialization=True)


def build_blip(out: Path, large: bool, scale):
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil,
                              BlipProcessor)
    sys.path.insert(0, str(ROOT / "tools"))
    from make_blip_fixtures import bert_vocab

    tokenizer = BertTokenizer(vocab=str(bert_vocab()), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16) \
        if large else {}
    text = {}
    if scale != "full":
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    cfg = BlipConfig(vision_config=dict(image_size=384, **vision),
                     text_config=dict(vocab_size=len(tokenizer), **text))
    torch.manual_seed(1)
    model = BlipForConditionalGeneration(cfg)
    model.save_pretrained(out, safe_serialization=True)
    BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 384, "width": 384}),
                  tokenizer=tokenizer).save_pretrained(out)


def build_images(out: Path):
    import numpy as np
    from PIL import Image
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        y, x = np.mgrid[0:256, 0:256]
        base = rng.uniform(60, 200, size=3)
        img = base + 40 * np.sin(x[..., None] / (7 + i) + y[..., None] / (11 + i) + rng.uniform(0, 6, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / f"photo{i:02d}.png")


def needs(row):
    """The cache folders a row reads."""
    if row.startswith("caption"):
        return {blip_of(row), "images"}
    return {"sd14", "images"} if row.startswith("img2img") else {"sd14"}


def blip_of(row):
    """caption-large-* rows caption with the ViT-L BLIP, the others with the ViT-B one."""
    return "blip-large" if "-large" in row else "blip-base"


def ensure_cache(cache: Path, scale, rows):
    cache = cache / scale
    wanted = set().union(*(needs(r) for r in rows))
    for name, make in [("sd14", lambda d: build_sd14(d, scale)),
                       ("blip-base", lambda d: build_blip(d, False, scale)),
                       ("blip-large", lambda d: build_blip(d, True, scale)),
                       ("images", build_images)]:
        if name not in wanted:
            continue
        d = cache / name
        if not (d / ".complete").exists():
            print(f"building {d} (once)", flush=True)
            t0 = time.perf_counter()
            make(d)
            (d / ".complete").write_text("")
            print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return cache


# ---------------------------------------------------------------- the reference side
def py_child(row, cache: Path, size, threads, device):
    """The reference side of one row, in this process. Prints one JSON line."""
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    result = {}
    if row in SAMPLING_ROWS:
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
        bf16, row = row.endswith("-bf16"), row.removesuffix("-bf16")
        cls = StableDiffusionImg2ImgPipeline if row == "img2img" else StableDiffusionPipeline
        pipe = cls.from_pretrained(cache / "sd14", safety_checker=None, requires_safety_checker=False).to(device)
        if bf16:  # diffusers' CPU bf16 inference: the whole pipeline cast
            pipe = pipe.to(torch.bfloat16)
        pipe.set_progress_bar_config(disable=True)
        if row == "load":
            # first-use paging: every weight read once, as studioize's finiteness check does
            with torch.no_grad():
                for m in (pipe.unet, pipe.vae, pipe.text_encoder):
                    for p in m.parameters():
                        p.max()
        elif row == "txt2img":
            pipe(PROMPT, num_inference_steps=10, guidance_scale=7.5, width=size, height=size,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0].save(os.devnull, format="png")
        else:
            from PIL import Image
            init = Image.open(cache / "images" / "photo00.png").convert("RGB").resize((size, size))
            pipe(PROMPT, image=init, strength=0.75, num_inference_steps=10, guidance_scale=7.5,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0].save(os.devnull, format="png")
    elif row in TRAIN_VARIANTS:
        result.update(py_train_step(row, cache, size, device))
    elif row.startswith("caption"):
        from PIL import Image
        from transformers import BlipForConditionalGeneration, BlipProcessor
        model = BlipForConditionalGeneration.from_pretrained(cache / blip_of(row)).to(device).eval()
        processor = BlipProcessor.from_pretrained(cache / blip_of(row))
        files = sorted((cache / "images").glob("*.png"))
        beams = 3 if row.endswith("beam3") else 1
        captions = []
        for i in range(0, len(files), 8):
            imgs = [Image.open(f).convert("RGB") for f in files[i:i + 8]]
            inputs = processor(images=imgs, return_tensors="pt").to(device)
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=20, num_beams=beams, do_sample=False)
            captions += processor.batch_decode(out, skip_special_tokens=True)
        result["captions"] = len(captions)
    else:
        raise SystemExit(f"unknown row {row}")
    result["inner_s"] = time.perf_counter() - t0
    print(json.dumps(result))


def py_train_step(row, cache: Path, size, device):
    """The training step of `row` (a TRAIN_VARIANTS key) in PyTorch / diffusers: seconds per
    step after two warm-up steps, and on CUDA the peak of torch's allocator."""
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel
    cfg = UNet2DConditionModel.load_config(cache / "sd14" / "unet")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg).to(device).train()
    if "ckpt" in row:
        unet.enable_gradient_checkpointing()
    if row == "train-lora":
        import peft
        unet.requires_grad_(False)
        unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    if "8bit" in row:
        import bitsandbytes as bnb  # not in the venv: see the module docstring
        opt = bnb.optim.AdamW8bit(params, lr=1e-4, weight_decay=1e-2)
    elif row == "train-adafactor":
        from transformers.optimization import Adafactor
        opt = Adafactor(params, lr=1e-4, scale_parameter=False, relative_step=False, warmup_init=False)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    dtype = {"train-bf16": torch.bfloat16, "train-fp16": torch.float16}.get(row)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=row == "train-fp16")
    s = size // 8
    latents = torch.randn(1, 4, s, s, device=device)
    context = torch.randn(1, 77, cfg["cross_attention_dim"], device=device)

    def step():
        t = torch.randint(0, 1000, (1,), device=device)
        noise = torch.randn_like(latents)
        with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            pred = unet(latents + noise, t, context).sample
        loss = F.mse_loss(pred.float(), noise)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    step()
    step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t1 = time.perf_counter()
    for _ in range(3):
        step()
    sync()
    out = {"seconds_per_step": (time.perf_counter() - t1) / 3}
    if device.startswith("cuda"):
        out["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    return out


def studioize_cmd(row, cache: Path, size, binary, device, work: Path):
    sd, imgs = str(cache / "sd14"), str(cache / "images")
    common = ["--device", device]
    if row in ("txt2img-bf16", "img2img-bf16"):
        common += ["--precision", "bf16"]
        row = row.removesuffix("-bf16")
    if row == "load":
        return [binary, "inspect", sd]
    if row == "txt2img":
        return [binary, "generate", "--model", sd, "--prompt", PROMPT, "--steps", "10", "--guidance", "7.5",
                "--sampler", "pndm", "--seed", "0", "--width", str(size), "--height", str(size),
                "--num-images", "1", "--out", str(work / "txt2img")] + common
    if row == "img2img":
        return [binary, "transform", "--model", sd, "--prompt", PROMPT, "--strength", "0.75", "--steps", "10",
                "--guidance", "7.5", "--seed", "0", "--size", str(size), "--out", str(work / "img2img"),
                str(Path(imgs) / "photo00.png")] + common
    if row in TRAIN_VARIANTS:
        return [binary, "bench-train", "--unet-config", str(cache / "sd14" / "unet" / "config.json"),
                "--latent-size", str(size // 8), "--steps", "3", "--batch-size", "1"] + TRAIN_VARIANTS[row] + common
    if row.startswith("caption"):
        beams = "3" if row.endswith("beam3") else "1"
        out = work / f"{row}.csv"
        out.unlink(missing_ok=True)
        return [binary, "caption", "--model", str(cache / blip_of(row)), "--beams", beams, "--max-new-tokens", "20",
                "--batch-size", "8", "--out", str(out), imgs] + common
    raise SystemExit(f"unknown row {row}")


# ---------------------------------------------------------------- measuring whole processes
def gpu_used_bytes(index):
    """The used memory of GPU `index` in bytes, as nvidia-smi reports it."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                          "-i", str(index)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 2**20


class GpuPeak:
    """Polls a GPU's used memory while a child runs; `peak` is the largest reading above the
    reading before it started."""

    def __init__(self, device):
        import threading
        self.index = int(device.split(":")[1]) if ":" in device else 0
        self.base = gpu_used_bytes(self.index)
        self.peak, self.done = 0, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self):
        while not self.done.wait(0.2):
            self.peak = max(self.peak, gpu_used_bytes(self.index) - self.base)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def measure_wait4(cmd, env, device="cpu"):
    """Runs `cmd` as a child: its wall time, peak RSS (bytes, from wait4), on CUDA the peak GPU
    memory, and its last JSON line."""
    gpu = GpuPeak(device) if device.startswith("cuda") else None
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        peak_gpu = gpu.stop() if gpu else None
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    info = {}
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            info = json.loads(line)
            break
    return {"wall_s": wall, "peak_rss": usage.ru_maxrss * 1024, "peak_gpu": peak_gpu, "info": info}


def child_env(threads):
    """The environment of every measured process: the same torch thread count on both sides,
    nothing from the network."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def machine_name(threads):
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} threads"


def summarise(runs, key):
    vals = [r[key] for r in runs]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def row_time(run, row):
    """The time a row reports: the steady-state step for training, else the process's wall time."""
    if row in TRAIN_VARIANTS:
        return run["info"]["seconds_per_step"]
    return run["wall_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--build-cache", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmups", type=int, default=1, help="untimed runs of each side first")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/studioize/bench-full"))
    ap.add_argument("--binary", default=str(ROOT / "target/release/studioize"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None, help="256 on CPU, 512 on CUDA")
    ap.add_argument("--scale", choices=["full", "small"], default="full")
    ap.add_argument("--out", default=None, help="JSON results (default: CACHE/results-<scale>.json)")
    ap.add_argument("--reference-env", action="append", default=[], metavar="KEY=VALUE",
                    help="set for the reference side only, e.g. THP_MEM_ALLOC_ENABLE=1 (PyTorch's huge "
                         "pages for large CPU tensors, off by default in PyTorch, on in studioize)")
    a = ap.parse_args()
    size = a.size or (512 if a.device.startswith("cuda") else 256)
    cache = Path(a.cache)
    if a.child:
        return py_child(a.child, cache, size, a.threads, a.device)
    if a.build_cache:
        return ensure_cache(cache, a.scale, a.rows.split(","))

    # This process stays small: Linux starts a child's peak RSS (wait4's ru_maxrss) at the
    # parent's RSS when it forks, so the models are built by a child and torch is never
    # imported here.
    from importlib.metadata import version
    for lib, want in (("torch", "2.11.0"), ("diffusers", "0.42.1"), ("transformers", "5.24.0")):
        assert version(lib).split("+")[0] == want, f"{lib} {version(lib)}, not {want}"
    subprocess.run([sys.executable, __file__, "--build-cache", "--cache", str(cache), "--scale", a.scale,
                    "--rows", a.rows], check=True)
    cache = cache / a.scale
    env = child_env(a.threads)
    ref_env = dict(env, **dict(kv.split("=", 1) for kv in a.reference_env))
    machine = machine_name(a.threads)
    print(f"machine: {machine}; device {a.device}; {size}x{size}; {a.runs} runs a side after {a.warmups} warm-up(s)"
          f"{'; reference env ' + ' '.join(a.reference_env) if a.reference_env else ''}", flush=True)
    results = {"machine": machine, "device": a.device, "size": size, "scale": a.scale,
               "reference_env": a.reference_env, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for row in a.rows.split(","):
            ours = studioize_cmd(row, cache, size, a.binary, a.device, work)
            ref = [sys.executable, __file__, "--child", row, "--cache", str(cache), "--threads", str(a.threads),
                   "--device", a.device, "--size", str(size)]
            sides = {"studioize": [], "reference": []}
            for i in range(a.warmups + a.runs):
                for name, cmd in (("studioize", ours), ("reference", ref)):
                    if name == "studioize":  # again: it clears the caption CSV, which resumes
                        cmd = studioize_cmd(row, cache, size, a.binary, a.device, work)
                    r = measure_wait4(cmd, env if name == "studioize" else ref_env, a.device)
                    if i >= a.warmups:
                        sides[name].append(r)
                    gpu = f", GPU {r['peak_gpu'] / 2**30:.2f} GiB" if r["peak_gpu"] is not None else ""
                    print(f"  {row} {name} run {i}: {row_time(r, row):.2f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB"
                          f"{gpu}{' (warm-up)' if i < a.warmups else ''}", flush=True)
            results["rows"][row] = {
                "studioize_cmd": shlex.join(ours), "reference_cmd": shlex.join(ref),
                **{name: {"time": summarise([{"t": row_time(r, row)} for r in runs], "t"),
                          "peak_rss": summarise(runs, "peak_rss"),
                          **({"peak_gpu": summarise(runs, "peak_gpu")} if a.device.startswith("cuda") else {})}
                   for name, runs in sides.items()},
            }
    out = Path(a.out) if a.out else cache / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"saved {out}")


def print_table(results):
    print(f"\n{results['machine']}, device {results['device']}, {results['size']}x{results['size']}\n")
    gpu = results["device"].startswith("cuda")
    extra = " GPU GiB |" if gpu else ""
    print(f"| what | studioize s (min-max) | peak RSS GiB |{extra} reference s (min-max) | peak RSS GiB |{extra} time ratio |")
    print("|---|---|---|---|---|---|" + ("---|---|" if gpu else ""))
    for row, r in results["rows"].items():
        s, p = r["studioize"], r["reference"]
        fmt = lambda x: f"{x['time']['median']:.2f} ({x['time']['min']:.2f}-{x['time']['max']:.2f})"  # noqa: E731
        mem = lambda x: f"{x['peak_rss']['median'] / 2**30:.2f} |" + (  # noqa: E731
            f" {x['peak_gpu']['median'] / 2**30:.2f} |" if gpu else "")
        ratio = s["time"]["median"] / p["time"]["median"]
        print(f"| {row} | {fmt(s)} | {mem(s)} {fmt(p)} | {mem(p)} {ratio:.2f}x |")


if __name__ == "__main__":
    main()
