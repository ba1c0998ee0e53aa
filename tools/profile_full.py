#!/usr/bin/env python3
"""Where the time goes on full-size models, stage by stage, studioize next to diffusers /
transformers: the profile behind the rows of tools/bench_full.py.

For each row, one process of each side (alternating, --runs times, after --warmups untimed
ones) on the same cached models as bench_full.py (`--cache`, built there when missing):
  - studioize runs the row's command with `--profile-json`: wall seconds per named stage (see
    src/profile);
  - the reference runs the same work in Python with timers wrapped around the same stages: the
    text encoder's, UNet's and VAE's forward / encode / decode, the scheduler's `step`, BLIP's
    vision model and text decoder, and in a training step the forward, backward, clipping and
    optimizer update (torch.cuda.synchronize before each timer reads, on CUDA).
Rows: txt2img, img2img, caption-greedy, caption-beam3, caption-large-beam3, train (the
`bench-train` step: 2 warm-up + 3 timed steps, all 5 counted on both sides).

Prints, per row, a Markdown table: stage, calls and mean ms per call of each side (medians over
runs), the ratio of the means, and each side's total; saves everything as JSON (--out).

Usage: ~/.cache/studioize/venv/bin/python tools/profile_full.py [--rows txt2img,train,...]
       [--runs 1] [--threads 2] [--cache DIR] [--binary target/release/studioize] [--out FILE]
       tools/profile_full.py --tables FILE   (the tables of a saved run again)
"""
import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_full as bf  # noqa: E402  (the models, commands and measuring of the benchmark)

ROWS = ["txt2img", "img2img", "train", "caption-greedy", "caption-beam3", "caption-large-beam3"]
# Per row: (label, studioize's stage path, the reference's stage name); `a+b`: the sum of
# stages (calls of the first that exists).
STAGES = {
    "txt2img": [("load model", "load model", "load model"),
                ("text encoder", "text-to-image/text encoder", "text encoder"),
                ("unet", "text-to-image/unet", "unet"),
                ("scheduler step", "text-to-image/scheduler", "scheduler"),
                ("vae decode", "text-to-image/vae decode", "vae decode"),
                ("write image", "write images", "write image")],
    "img2img": [("load model", "load model", "load model"),
                ("read image", "read image", "read image"),
                ("text encoder", "image-to-image/text encoder", "text encoder"),
                ("vae encode", "image-to-image/vae encode", "vae encode"),
                ("unet", "image-to-image/unet", "unet"),
                ("scheduler step", "image-to-image/scheduler", "scheduler"),
                ("vae decode", "image-to-image/vae decode", "vae decode"),
                ("write image", "write images", "write image")],
    "caption": [("load model", "load model", "load model"),
                ("read images (exposed)", "wait for images", "read images"),
                ("captioning a batch", "captions", "captions"),
                ("vision encoder", "captions/vision encoder", "vision encoder"),
                ("text decoder step", "captions/text decoder", "text decoder"),
                ("search (greedy / beam)",
                 "captions/greedy search+captions/beam search+captions/cache reorder", "search"),
                ("write rows", "write rows", None)],
    "train": [("unet forward + loss", "step/unet forward", "unet forward"),
              ("backward", "step/backward", "backward"),
              ("clip gradients", "step/clip gradients", "clip gradients"),
              ("optimizer", "step/optimizer", "optimizer")],
}


def stages_of(row):
    return STAGES["caption" if row.startswith("caption") else row]


class Timers:
    """Calls and seconds per stage name, on the reference side."""

    def __init__(self, device):
        import torch
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.stages = {}

    def add(self, name, seconds):
        c = self.stages.setdefault(name, [0, 0.0])
        c[0] += 1
        c[1] += seconds

    def wrap(self, obj, attr, name):
        f = getattr(obj, attr)

        @functools.wraps(f)  # keeps the signature, which transformers' generate inspects
        def timed(*a, **k):
            self.sync()
            t = time.perf_counter()
            out = f(*a, **k)
            self.sync()
            self.add(name, time.perf_counter() - t)
            return out
        setattr(obj, attr, timed)

    def block(self, name):
        timers = self

        class Block:
            def __enter__(self):
                timers.sync()
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timers.sync()
                timers.add(name, time.perf_counter() - self.t)
        return Block()


def py_child(row, cache: Path, size, threads, device):
    """The reference side of one row with its stage timers, in this process; one JSON line."""
    t_import = time.perf_counter()
    import torch
    torch.set_num_threads(threads)
    timers = Timers(device)
    imports = time.perf_counter() - t_import
    t0 = time.perf_counter()
    if row in ("txt2img", "img2img"):
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
        from PIL import Image
        cls = StableDiffusionImg2ImgPipeline if row == "img2img" else StableDiffusionPipeline
        with timers.block("load model"):
            pipe = cls.from_pretrained(cache / "sd14", safety_checker=None, requires_safety_checker=False).to(device)
        pipe.set_progress_bar_config(disable=True)
        timers.wrap(pipe.text_encoder, "forward", "text encoder")
        timers.wrap(pipe.unet, "forward", "unet")
        timers.wrap(pipe.scheduler, "step", "scheduler")
        timers.wrap(pipe.vae, "decode", "vae decode")
        timers.wrap(pipe.vae, "encode", "vae encode")
        kw = dict(num_inference_steps=10, guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(0))
        if row == "img2img":
            with timers.block("read image"):
                init = Image.open(cache / "images" / "photo00.png").convert("RGB").resize((size, size))
            image = pipe(bf.PROMPT, image=init, strength=0.75, **kw).images[0]
        else:
            image = pipe(bf.PROMPT, width=size, height=size, **kw).images[0]
        with timers.block("write image"):
            image.save(os.devnull, format="png")
    elif row.startswith("caption"):
        from PIL import Image
        from transformers import BlipForConditionalGeneration, BlipProcessor
        with timers.block("load model"):
            model = BlipForConditionalGeneration.from_pretrained(cache / bf.blip_of(row)).to(device).eval()
            processor = BlipProcessor.from_pretrained(cache / bf.blip_of(row))
        timers.wrap(model.vision_model, "forward", "vision encoder")
        timers.wrap(model.text_decoder, "forward", "text decoder")
        files = sorted((cache / "images").glob("*.png"))
        beams = 3 if row.endswith("beam3") else 1
        for i in range(0, len(files), 8):
            with timers.block("read images"):
                imgs = [Image.open(f).convert("RGB") for f in files[i:i + 8]]
                inputs = processor(images=imgs, return_tensors="pt").to(device)
            with torch.no_grad(), timers.block("captions"):
                out = model.generate(**inputs, max_new_tokens=20, num_beams=beams, do_sample=False)
            processor.batch_decode(out, skip_special_tokens=True)
        s = timers.stages
        calls = s["captions"][0]
        s["search"] = [calls, s["captions"][1] - s["vision encoder"][1] - s["text decoder"][1]]
    elif row == "train":
        train_step(cache, size, device, timers)
    else:
        raise SystemExit(f"unknown row {row}")
    print(json.dumps({"imports_s": imports, "wall_s": time.perf_counter() - t0, "stages": timers.stages}))


def train_step(cache: Path, size, device, timers):
    """bench-train's step (fp32 AdamW on the SD 1.4-shaped UNet), 2 warm-up + 3 steps, timed
    per stage."""
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel
    cfg = UNet2DConditionModel.load_config(cache / "sd14" / "unet")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg).to(device).train()
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    s = size // 8
    latents = torch.randn(1, 4, s, s, device=device)
    context = torch.randn(1, 77, cfg["cross_attention_dim"], device=device)
    for _ in range(5):
        t = torch.randint(0, 1000, (1,), device=device)
        noise = torch.randn_like(latents)
        with timers.block("unet forward"):
            loss = F.mse_loss(unet(latents + noise, t, context).sample.float(), noise)
        with timers.block("backward"):
            loss.backward()
        with timers.block("clip gradients"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        with timers.block("optimizer"):
            opt.step()
            opt.zero_grad()


def studioize_cmd(row, cache, size, binary, device, work, profile_json):
    cmd = bf.studioize_cmd(row, cache, size, binary, device, work)
    return cmd + ["--profile-json", str(profile_json)]


def studioize_stages(path):
    doc = json.loads(Path(path).read_text())
    return {s["path"]: [s["calls"], s["total_s"]] for s in doc["stages"]}, doc["wall_s"]


def stage_of(run, key):
    """[calls, seconds] of `key` in one run: a stage, or `a+b+...` summed; None if absent."""
    parts = [run[k] for k in (key or "").split("+") if k in run]
    if not parts:
        return None
    return [parts[0][0], sum(p[1] for p in parts)]


def median_stage(runs, key):
    """Median calls and total seconds of one stage over runs (None where a side lacks it)."""
    vals = [v for v in (stage_of(r, key) for r in runs) if v is not None]
    if not vals:
        return None
    return [statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)]


def table(row, ours, ref, ours_wall, ref_wall):
    lines = [f"### {row}", "",
             "| stage | studioize calls | ms/call | reference calls | ms/call | ratio | studioize s | reference s |",
             "|---|---|---|---|---|---|---|---|"]
    for label, our_key, ref_key in stages_of(row):
        o, r = median_stage(ours, our_key), median_stage(ref, ref_key)
        cell = lambda v: (f"{v[0]:g}", f"{1e3 * v[1] / max(v[0], 1):.1f}", f"{v[1]:.2f}") if v else ("-", "-", "-")
        oc, rc = cell(o), cell(r)
        if not (o and r and r[1] > 0):
            ratio = "-"
        elif o[0] == r[0]:
            ratio = f"{(o[1] / max(o[0], 1)) / (r[1] / max(r[0], 1)):.2f}x"
        else:  # counted differently (per token vs per batch): compare the totals
            ratio = f"{o[1] / r[1]:.2f}x (totals)"
        lines.append(f"| {label} | {oc[0]} | {oc[1]} | {rc[0]} | {rc[1]} | {ratio} | {oc[2]} | {rc[2]} |")
    lines.append(f"| whole process (reference: after imports) | | | | | | {ours_wall:.2f} | {ref_wall:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmups", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/studioize/bench-full"))
    ap.add_argument("--binary", default=str(bf.ROOT / "target/release/studioize"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None, help="256 on CPU, 512 on CUDA")
    ap.add_argument("--out", default=None)
    ap.add_argument("--tables", metavar="JSON", help="only print the tables of a saved --out file")
    a = ap.parse_args()
    if a.tables:
        saved = json.loads(Path(a.tables).read_text())
        print(f"machine: {saved['machine']}; device {saved['device']}; {saved['size']}x{saved['size']}\n")
        for row, r in saved["rows"].items():
            print(table(row, r["studioize"], r["reference"], statistics.median(r["studioize_wall_s"]),
                        statistics.median(r["reference_wall_s"])) + "\n")
        return
    size = a.size or (512 if a.device.startswith("cuda") else 256)
    if a.child:
        return py_child(a.child, Path(a.cache), size, a.threads, a.device)
    rows = a.rows.split(",")
    subprocess.run([sys.executable, bf.__file__, "--build-cache", "--cache", a.cache, "--scale", "full",
                    "--rows", ",".join(rows)], check=True)
    cache = Path(a.cache) / "full"
    env = bf.child_env(a.threads)
    machine = bf.machine_name(a.threads)
    print(f"machine: {machine}; device {a.device}; {size}x{size}; {a.runs} run(s) a side", flush=True)
    results = {"machine": machine, "device": a.device, "size": size, "rows": {}}
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for row in rows:
            ours, ref = [], []
            ours_wall, ref_wall = [], []
            for i in range(a.warmups + a.runs):
                pj = work / f"{row}-{i}.json"
                r = bf.measure_wait4(studioize_cmd(row, cache, size, a.binary, a.device, work, pj), env, a.device)
                stages, _ = studioize_stages(pj)
                p = bf.measure_wait4([sys.executable, __file__, "--child", row, "--cache", str(cache), "--threads",
                                      str(a.threads), "--device", a.device, "--size", str(size)], env, a.device)
                if i < a.warmups:
                    continue
                ours.append(stages)
                ours_wall.append(r["wall_s"])
                ref.append(p["info"]["stages"])
                ref_wall.append(p["info"]["wall_s"])
                print(f"  {row} run {i}: studioize {r['wall_s']:.1f} s, reference {p['info']['wall_s']:.1f} s "
                      f"(+{p['info']['imports_s']:.1f} s imports)", flush=True)
            results["rows"][row] = {"studioize": ours, "reference": ref, "studioize_wall_s": ours_wall,
                                    "reference_wall_s": ref_wall}
            report.append(table(row, ours, ref, statistics.median(ours_wall), statistics.median(ref_wall)))
            print(report[-1] + "\n", flush=True)
    out = Path(a.out) if a.out else cache / "profile.json"
    out.write_text(json.dumps(results, indent=2))
    print("\n\n".join(report))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
