#!/usr/bin/env python3
"""Image files and Pillow's decoding of them, for studioize's decoder tests (tests/decode.rs).

Writes tests/fixtures/decode/:
  files/             the inputs. JPEGs written by Pillow's libjpeg-turbo that look like camera
                     photos (smooth gradients, sensor noise, hard edges, saturated colour) at
                     4:2:0 / 4:2:2 / 4:4:4, progressive, grayscale, CMYK (Adobe), restart markers,
                     odd sizes; EXIF orientations 1-8 (and one in XMP only); a truncated JPEG and
                     JPEGs without their EOI marker. PNGs written byte by byte (every colour type
                     and bit depth: 1/2/4/8/16-bit gray, 16-bit RGB(A), gray+alpha 8/16, palettes
                     with tRNS, gray/RGB tRNS, Adam7 interlacing, an eXIf orientation) and a
                     decompression bomb (a ~1 KB file whose header claims 100000x100000).
                     WebP lossless, lossy, lossy with alpha, with an EXIF orientation.
  refs.safetensors   per file NAME (uint8): "NAME:rgb" = Image.open(p).convert("RGB");
                     "NAME:alpha" = the A channel of Image.open(p).convert("RGBA") when it is not
                     all 255; "NAME:upright" = ImageOps.exif_transpose(Image.open(p))
                     .convert("RGB") when the orientation changes the image; and for the BLIP
                     cases (float32) "blip:NAME" = pixel_values of BlipProcessor (Pillow backend,
                     the tiny fixture's processor_config.json) of exif_transpose(Image.open(p)).
  manifest.json      per file: Pillow's mode, stored size, EXIF orientation, upright size, or the
                     error Pillow raises ("error" and "kind": truncated / bomb); the BLIP cases.

Pinned: pillow 13.0.0, transformers 5.24.0, numpy, safetensors (asserted). Usage:
    ~/.cache/studioize/venv/bin/python tools/make_decode_fixtures.py
"""
import json
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from transformers import BlipProcessor  # noqa: E402

assert PIL.__version__ == "13.0.0", PIL.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__
assert torch.__version__.startswith("2.11.0"), torch.__version__

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "decode"
FILES = OUT / "files"
BLIP_TINY = ROOT / "tests" / "fixtures" / "blip" / "tiny"
RNG = np.random.default_rng(20240611)


# ----------------------------------------------------------------------------------------------
# Content that looks like a photo: what stresses a JPEG decoder's IDCT and chroma upsampling.
# ----------------------------------------------------------------------------------------------

def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth lighting gradient, a saturated product on a backdrop, hard edges, fine texture and
    sensor noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([
        180 + 50 * np.sin(x / w * 2.1 + seed),
        150 + 60 * np.cos(y / h * 1.7 - seed),
        120 + 70 * (x + y) / (w + h),
    ], -1)
    # A saturated disc (the product) with a hard edge, and a darker shadow under it.
    cy, cx, r = h * 0.45, w * 0.55, min(h, w) * 0.3
    disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    shadow = ((y - cy - r * 0.9) / (r * 0.35)) ** 2 + ((x - cx) / (r * 1.2)) ** 2 < 1
    base[shadow] *= 0.55
    base[disc] = [210, 30 + seed * 7 % 60, 40]
    # Thin stripes (a label), single-pixel lines, and a checker patch: high frequencies.
    stripes = (np.abs(y - h * 0.3) < h * 0.08) & (np.abs(x - w * 0.25) < w * 0.15)
    base[stripes & ((x.astype(int) // 2) % 2 == 0)] = [20, 20, 30]
    base[:, int(w * 0.8)] = [250, 250, 250]
    base[int(h * 0.85), :] = [10, 90, 200]
    check = (y < h * 0.2) & (x > w * 0.75)
    base[check & (((x.astype(int) + y.astype(int)) % 2) == 0)] = [0, 255, 0]
    noisy = base + rng.normal(0, 6, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def marker(h: int, w: int) -> np.ndarray:
    """An asymmetric picture (distinct corners, a gradient), so that every one of the eight EXIF
    orientations gives a different result."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], -1)
    img[: h // 3, : w // 4] = [250, 20, 20]
    img[-h // 4:, -w // 3:] = [20, 20, 250]
    return img.astype(np.uint8)


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# ----------------------------------------------------------------------------------------------
# PNG written byte by byte (Pillow cannot write 16-bit RGB, low bit depths with tRNS, Adam7).
# ----------------------------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_rows(samples: np.ndarray, bit_depth: int) -> list[bytes]:
    """Rows of samples [h, w * channels] (ints) as PNG scanline bytes (without filter bytes)."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            padded = np.zeros(-(-len(row) // per) * per, dtype=np.uint8)
            padded[: len(row)] = row
            groups = padded.reshape(-1, per)
            shifts = np.arange(per - 1, -1, -1) * bit_depth
            rows.append((groups << shifts).sum(1).astype(np.uint8).tobytes())
    return rows


def png(samples: np.ndarray, color_type: int, bit_depth: int, extra: list[bytes] = (),
        plte: bytes | None = None, interlace: bool = False) -> bytes:
    """A PNG of `samples` ([h, w, channels] ints). Rows are filtered with Paeth / Sub / Up / None
    in turn so that every unfilter path is used."""
    h, w = samples.shape[:2]
    flat = samples.reshape(h, -1) if samples.ndim == 3 else samples
    channels = flat.shape[1] // w
    bpp = max(1, channels * bit_depth // 8)

    def filtered(rows: list[bytes]) -> bytes:
        out = bytearray()
        prev = bytes(len(rows[0])) if rows else b""
        for i, row in enumerate(rows):
            kind = [4, 1, 2, 0][i % 4]
            out.append(kind)
            for j, v in enumerate(row):
                a = row[j - bpp] if j >= bpp else 0
                b = prev[j]
                c = prev[j - bpp] if j >= bpp else 0
                if kind == 0:
                    pred = 0
                elif kind == 1:
                    pred = a
                elif kind == 2:
                    pred = b
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                out.append((v - pred) & 0xFF)
            prev = row
        return bytes(out)

    if interlace:
        raw = b""
        # Adam7: (x start, y start, x step, y step) of the seven passes.
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                  (0, 1, 1, 2)]
        for xs, ys, dx, dy in passes:
            sub = samples[ys::dy, xs::dx]
            if sub.size:
                raw += filtered(pack_rows(sub.reshape(sub.shape[0], -1), bit_depth))
    else:
        raw = filtered(pack_rows(flat, bit_depth))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace))
    body = chunk(b"IHDR", ihdr)
    if plte is not None:
        body += chunk(b"PLTE", plte)
    for c in extra:
        body += c
    body += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def bomb_png() -> bytes:
    """A decompression bomb: IHDR claims 100000 x 100000 8-bit gray; the IDAT holds a few rows."""
    rows = b"".join(b"\0" + bytes(100000) for _ in range(8))
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------------------------

def write_files() -> None:
    FILES.mkdir(parents=True)
    big = Image.fromarray(photo(97, 161, 1))
    small = Image.fromarray(photo(45, 67, 2))
    big.save(FILES / "photo_420.jpg", quality=92, subsampling="4:2:0")
    small.save(FILES / "photo_420_odd.jpg", quality=85, subsampling="4:2:0")
    small.save(FILES / "photo_422.jpg", quality=90, subsampling="4:2:2")
    small.save(FILES / "photo_444.jpg", quality=95, subsampling="4:4:4")
    Image.fromarray(photo(64, 48, 3)).save(FILES / "photo_q100.jpg", quality=100, subsampling="4:2:0")
    big.save(FILES / "progressive.jpg", quality=88, progressive=True, subsampling="4:2:0")
    small.save(FILES / "progressive_444.jpg", quality=90, progressive=True, subsampling="4:4:4")
    small.convert("L").save(FILES / "gray.jpg", quality=90)
    small.save(FILES / "restart.jpg", quality=90, restart_marker_blocks=3)
    small.save(FILES / "restart_rows.jpg", quality=90, restart_marker_rows=1, subsampling="4:2:2")
    Image.fromarray(photo(32, 48, 4)).convert("CMYK").save(FILES / "cmyk.jpg", quality=90)
    mark = Image.fromarray(marker(24, 40))
    for o in range(1, 9):
        mark.save(FILES / f"orient_{o}.jpg", quality=90, exif=exif_bytes(o))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    mark.save(FILES / "orient_xmp6.jpg", quality=90, xmp=xmp)
    # Truncated in the middle of the entropy-coded data, and cut just before / inside EOI.
    data = (FILES / "photo_420.jpg").read_bytes()
    (FILES / "truncated.jpg").write_bytes(data[: len(data) * 3 // 5])
    assert data.endswith(b"\xff\xd9")
    (FILES / "no_eoi.jpg").write_bytes(data[:-2])
    pdata = (FILES / "progressive.jpg").read_bytes()
    (FILES / "progressive_no_eoi.jpg").write_bytes(pdata[:-2])

    # PNGs in every colour type and bit depth.
    h, w = 21, 35
    y, x = np.mgrid[0:h, 0:w]
    g16 = (x * 1900 + y * 97) % 65536
    g16[0, :12] = [0, 1, 2, 100, 254, 255, 256, 257, 300, 1000, 40000, 65535]
    (FILES / "gray16.png").write_bytes(png(g16[..., None], 0, 16))
    (FILES / "gray16_trns.png").write_bytes(
        png(g16[..., None], 0, 16, [chunk(b"tRNS", struct.pack(">H", 254))]))
    rgb16 = np.stack([(x * 1871) % 65536, (y * 3001) % 65536, (x * y * 97) % 65536], -1)
    rgb16[0, :4] = [[0, 255, 256], [65535, 32768, 32767], [511, 512, 513], [1, 2, 3]]
    (FILES / "rgb16.png").write_bytes(png(rgb16, 2, 16))
    (FILES / "rgb16_trns.png").write_bytes(
        png(rgb16, 2, 16, [chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3))]))
    a16 = (x * 1500 + y * 40000) % 65536
    rgba16 = np.concatenate([rgb16, a16[..., None]], -1)
    (FILES / "rgba16.png").write_bytes(png(rgba16, 6, 16))
    ga16 = np.stack([g16, a16], -1)
    (FILES / "gray_alpha16.png").write_bytes(png(ga16, 4, 16))
    g8 = (x * 7 + y * 11) % 256
    a8 = (x * 13 + y * 5) % 256
    a8[0, :3] = [0, 255, 128]
    (FILES / "gray_alpha8.png").write_bytes(png(np.stack([g8, a8], -1), 4, 8))
    (FILES / "gray8.png").write_bytes(png(g8[..., None], 0, 8))
    (FILES / "gray8_trns.png").write_bytes(
        png(g8[..., None], 0, 8, [chunk(b"tRNS", struct.pack(">H", int(g8[3, 3])))]))
    for depth in (1, 2, 4):
        gl = (x + 3 * y) % (1 << depth)
        (FILES / f"gray{depth}.png").write_bytes(png(gl[..., None], 0, depth))
    g2 = (x + 3 * y) % 4
    (FILES / "gray2_trns.png").write_bytes(png(g2[..., None], 0, 2, [chunk(b"tRNS", b"\0\x02")]))
    g1 = (x + y) % 2
    (FILES / "gray1_trns.png").write_bytes(png(g1[..., None], 0, 1, [chunk(b"tRNS", b"\0\x01")]))
    rgb8 = photo(h, w, 5).astype(np.int64)
    (FILES / "rgb8.png").write_bytes(png(rgb8, 2, 8))
    t = rgb8[4, 4]
    (FILES / "rgb8_trns.png").write_bytes(
        png(rgb8, 2, 8, [chunk(b"tRNS", struct.pack(">HHH", *map(int, t)))]))
    (FILES / "rgba8.png").write_bytes(png(np.concatenate([rgb8, a8[..., None]], -1), 6, 8))
    (FILES / "interlaced.png").write_bytes(png(rgb8, 2, 8, interlace=True))
    (FILES / "interlaced16.png").write_bytes(png(rgba16, 6, 16, interlace=True))
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = (x * 5 + y * 9) % 200
    trns = bytes(RNG.integers(0, 256, 150, dtype=np.uint8))
    (FILES / "palette_trns.png").write_bytes(
        png(idx[..., None], 3, 8, [chunk(b"tRNS", trns)], plte=palette[:200].tobytes()))
    (FILES / "palette_simple_trns.png").write_bytes(
        png(idx[..., None], 3, 8, [chunk(b"tRNS", b"\xff" * 7 + b"\0")], plte=palette[:200].tobytes()))
    idx4 = (x + y) % 16
    (FILES / "palette4.png").write_bytes(png(idx4[..., None], 3, 4, plte=palette[:16].tobytes()))
    (FILES / "palette1_trns.png").write_bytes(
        png(((x + y) % 2)[..., None], 3, 1, [chunk(b"tRNS", b"\x40")], plte=palette[:2].tobytes()))
    mark8 = marker(24, 40).astype(np.int64)
    (FILES / "exif_orient6.png").write_bytes(png(mark8, 2, 8, [chunk(b"eXIf", exif_bytes(6))]))
    # ImageMagick's hex "Raw profile type exif" (zTXt) and an XMP packet (iTXt), which Pillow's
    # getexif also reads.
    hexed = (b"Exif\0\0" + exif_bytes(3)).hex()
    raw = f"\nexif\n{len(hexed) // 2:8}\n" + "\n".join(
        hexed[i:i + 72] for i in range(0, len(hexed), 72)) + "\n"
    ztxt = b"Raw profile type exif\0\0" + zlib.compress(raw.encode())
    (FILES / "raw_profile_orient3.png").write_bytes(png(mark8, 2, 8, [chunk(b"zTXt", ztxt)]))
    xmp8 = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>8</tiff:Orientation></x:xmpmeta>'
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0" + xmp8
    (FILES / "xmp_orient8.png").write_bytes(png(mark8, 2, 8, [chunk(b"iTXt", itxt)]))
    (FILES / "bomb.png").write_bytes(bomb_png())

    # WebP.
    Image.fromarray(photo(45, 67, 6)).save(FILES / "lossless.webp", lossless=True)
    Image.fromarray(photo(45, 67, 6)).save(FILES / "lossy.webp", quality=80)
    yy, xx = np.mgrid[0:45, 0:67]
    alpha = np.clip(xx * 6 - yy * 2, 0, 255).astype(np.uint8)
    rgba = np.concatenate([photo(45, 67, 7), alpha[..., None]], -1)
    Image.fromarray(rgba).save(FILES / "lossy_alpha.webp", quality=80)
    mark.save(FILES / "orient_8.webp", quality=90, exif=exif_bytes(8))


def pillow_refs(refs: dict, manifest: dict) -> None:
    # Pillow warns that palette + tRNS bytes "should be converted to RGBA": that is the point.
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    for path in sorted(FILES.iterdir()):
        name = path.name
        entry: dict = {}
        try:
            with Image.open(path) as im:
                entry["mode"] = im.mode
                entry["size"] = list(im.size)
                orientation = im.getexif().get(0x0112, 1)
                rgb = np.asarray(im.convert("RGB"))
                rgba = np.asarray(im.convert("RGBA"))
            with Image.open(path) as im:
                upright = ImageOps.exif_transpose(im).convert("RGB")
        except (OSError, Image.DecompressionBombError) as e:
            entry["error"] = str(e)
            entry["kind"] = "bomb" if isinstance(e, Image.DecompressionBombError) else (
                "truncated" if "truncated" in str(e) else "other")
            manifest[name] = entry
            continue
        entry["orientation"] = orientation
        entry["upright_size"] = list(upright.size)
        refs[f"{name}:rgb"] = np.ascontiguousarray(rgb)
        assert (rgba[..., :3] == rgb).all(), name
        if (rgba[..., 3] != 255).any():
            refs[f"{name}:alpha"] = np.ascontiguousarray(rgba[..., 3])
        up = np.asarray(upright)
        if up.shape != rgb.shape or (up != rgb).any():
            refs[f"{name}:upright"] = np.ascontiguousarray(up)
        manifest[name] = entry


BLIP_CASES = ["photo_420.jpg", "photo_422.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg",
              "orient_6.jpg", "orient_5.jpg"]


def blip_refs(refs: dict) -> None:
    processor = BlipProcessor.from_pretrained(BLIP_TINY)
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil"
    for name in BLIP_CASES:
        path = FILES / name
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im)
            pv = processor(images=[upright], return_tensors="pt").pixel_values[0]
        # A file path goes through transformers' own load_image (exif_transpose, then RGB):
        # for these opaque JPEGs it gives the same pixel values.
        by_path = processor(images=[str(path)], return_tensors="pt").pixel_values[0]
        assert torch.equal(pv, by_path), name
        refs[f"blip:{name}"] = pv.numpy().astype(np.float32)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    write_files()
    refs: dict = {}
    manifest: dict = {}
    pillow_refs(refs, manifest)
    blip_refs(refs)
    expected_errors = {"truncated.jpg": "truncated", "bomb.png": "bomb"}
    for name, kind in expected_errors.items():
        assert manifest[name].get("kind") == kind, (name, manifest[name])
    save_file(refs, str(OUT / "refs.safetensors"))
    (OUT / "manifest.json").write_text(
        json.dumps({"files": manifest, "blip": BLIP_CASES}, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(manifest)} files and {len(refs)} references to {OUT} ({total} bytes)")
    for name, entry in sorted(manifest.items()):
        print(f"  {name:26} {entry.get('mode', '-'):5} {entry.get('error', '')}")
    assert total < 1_000_000, total


if __name__ == "__main__":
    main()
