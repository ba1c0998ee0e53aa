"""Writes tests/fixtures/evaluate/: image pairs, a mask, and scikit-image's SSIM / PSNR / CIELAB
/ CIEDE2000 on them, which tests/evaluate.rs compares studioize's evaluate module against.

SSIM is scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1) on uint8 RGB images; the masked
SSIM is the mean of its full map (averaged over channels) where the mask is >= 128.

Run: ~/.cache/studioize/venv/bin/python tools/make_evaluate_fixtures.py
"""
import json
from pathlib import Path

import numpy as np
import PIL
import scipy
import skimage
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

assert skimage.__version__ == "0.26.0", skimage.__version__
assert np.__version__ == "2.4.6", np.__version__
assert PIL.__version__ == "13.0.0", PIL.__version__
assert scipy.__version__ == "1.17.1", scipy.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "evaluate"
rng = np.random.default_rng(20240512)


def smooth(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [
            128 + 90 * np.sin(x / 7.0) * np.cos(y / 9.0),
            128 + 80 * np.cos((x + y) / 11.0),
            60 + 150 * (x / w),
        ],
        axis=-1,
    )
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def degrade(img, noise, shift):
    out = np.roll(img.astype(np.float64), shift, axis=(0, 1))
    out = out * np.array([1.06, 1.0, 0.9]) + rng.normal(0, noise, img.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def studio(h, w):
    """A red box on a soft white sweep, and the box's mask."""
    img = np.full((h, w, 3), 250, np.uint8)
    img[: h // 2] = 244
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 255
    img[mask > 0] = [200, 32, 36]
    return img, mask


pairs = {}
a = smooth(64, 64)
pairs["smooth"] = (a, degrade(a, 6.0, (1, 2)))
t = rng.integers(0, 256, (52, 40, 3), dtype=np.uint8)
pairs["texture"] = (t, degrade(t, 20.0, (0, 1)))
s = smooth(13, 16)
pairs["small"] = (s, degrade(s, 10.0, (1, 0)))
st, mask = studio(64, 64)
casual = degrade(st, 12.0, (0, 0))
casual[: 64 // 4] = [40, 128, 128]
pairs["studio"] = (st, casual)

OUT.mkdir(parents=True, exist_ok=True)
Image.fromarray(mask, "L").save(OUT / "studio-mask.png")
expected = {"versions": {"scikit-image": skimage.__version__, "numpy": np.__version__}, "pairs": {}}
for name, (x, y) in pairs.items():
    Image.fromarray(x, "RGB").save(OUT / f"{name}-a.png")
    Image.fromarray(y, "RGB").save(OUT / f"{name}-b.png")
    mssim, full = structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=-1, full=True,
    )
    smap = full.mean(axis=-1)
    entry = {
        "ssim": float(mssim),
        "psnr": float(peak_signal_noise_ratio(x, y, data_range=255)),
        "ssim_map_corner": float(smap[0, 0]),
        "ssim_map_centre": float(smap[x.shape[0] // 2, x.shape[1] // 2]),
    }
    if name == "studio":
        entry["ssim_masked"] = float(smap[mask >= 128].mean())
    expected["pairs"][name] = entry

# CIELAB of sRGB colours and CIEDE2000 between consecutive ones
colours = rng.integers(0, 256, (24, 3), dtype=np.uint8)
colours[0] = [255, 255, 255]
colours[1] = [0, 0, 0]
colours[2] = [200, 32, 36]
lab = rgb2lab(colours[None, :, :].astype(np.float64) / 255.0, illuminant="D65", observer="2")[0]
de = deltaE_ciede2000(lab[:-1], lab[1:])
expected["colours"] = {
    "rgb": colours.tolist(),
    "lab": lab.tolist(),
    "ciede2000_consecutive": de.tolist(),
}
(OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {OUT}")
