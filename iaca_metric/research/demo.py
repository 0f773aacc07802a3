"""``iaca-metric demo``: the whole job offline, on the embedded default model.

1. Takes real photos shipped by scikit-image (the ``demo`` extra).
2. Makes low-light versions with a physical sensor simulation: sRGB -> linear light, exposure cut to a
   few percent, photon shot noise (Poisson, from a full-well capacity), Gaussian read noise, back to
   sRGB and quantised to 8 bits, as a real dark capture would be.
3. Enhances each a few ways (classical curves, histogram methods, an illumination-map method, and two
   typical failures).
4. Scores each enhanced image against its low-light input, prints a ranked table per photo, writes
   ``scores.csv`` and a contact sheet ``contact_sheet.png`` with the scores drawn under each tile.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

__all__ = ["simulate_low_light", "run_demo", "DEMO_METHODS"]

DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
DEMO_METHODS = ("gamma_3", "clahe", "hist_eq", "lime_denoised", "exposure_fusion",
                "fail_over_enhance", "fail_noise_amplified", "fail_colour_cast")


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.clip(x, 0, None), 1 / 2.4) - 0.055)


def simulate_low_light(img: np.ndarray, rng: np.random.Generator, exposure: float = 0.06,
                       full_well: float = 4000.0, read_noise: float = 3.0) -> np.ndarray:
    """Dark capture of ``img`` (H, W, 3) float in [0, 1] (sRGB). ``exposure``: fraction of the light of
    the original; ``full_well``: electrons at white (shot noise ~ sqrt(electrons)); ``read_noise``: std in
    electrons. Returns uint8 (H, W, 3)."""
    electrons = _srgb_to_linear(img) * exposure * full_well
    noisy = rng.poisson(np.clip(electrons, 0, None)).astype(np.float64) + rng.normal(0, read_noise, img.shape)
    lin = np.clip(noisy / full_well, 0, 1)
    return np.round(_linear_to_srgb(lin) * 255).astype(np.uint8)


def _photo(name: str, size: int) -> np.ndarray:
    import skimage.data
    from PIL import Image

    arr = getattr(skimage.data, name)()
    im = Image.fromarray(arr).convert("RGB")
    s = size / min(im.size)
    im = im.resize((max(32, round(im.width * s)), max(32, round(im.height * s))), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def run_demo(out_dir: str | Path = "iaca_demo", size: int = 256, seed: int = 0) -> list[dict]:
    """Run the demo; returns the result rows (photo, method, score, rank)."""
    try:
        import skimage  # noqa: F401
    except ImportError:
        raise SystemExit("the demo needs scikit-image: pip install 'iaca-metric[demo]'") from None
    from PIL import Image, ImageDraw

    from ..api import score
    from ..model import IACAMetric
    from ..training.enhancers import ENHANCERS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = IACAMetric()
    print(f"model: {model.arch}, {model.num_parameters():,} parameters ({model.weights_info['source']})")
    rows, sheet_rows = [], []
    for p_i, name in enumerate(DEMO_PHOTOS):
        rng = np.random.default_rng(seed + p_i)
        clean = _photo(name, size)
        low8 = simulate_low_light(clean, rng)
        low = low8.astype(np.float32) / 255.0
        cands = {"low-light input": low}
        for m in DEMO_METHODS:
            cands[m] = np.clip(ENHANCERS[m](low, np.random.default_rng(seed)), 0, 1).astype(np.float32)
        names = list(cands)
        s = score([cands[n] for n in names], [low] * len(names), model=model)
        order = np.argsort(-s.numpy())
        print(f"\n{name} ({clean.shape[1]}x{clean.shape[0]}, simulated low light):")
        print(f"  {'rank':>4}  {'method':<22} {'IACA score':>10}")
        for rank, k in enumerate(order, 1):
            print(f"  {rank:>4}  {names[k]:<22} {float(s[k]):>10.4f}")
            rows.append({"photo": name, "method": names[k], "score": round(float(s[k]), 6), "rank": rank})
        sheet_rows.append([(names[k], float(s[k]), cands[names[k]]) for k in order])
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["photo", "method", "score", "rank"])
        w.writeheader()
        w.writerows(rows)
    # contact sheet: one row per photo, tiles in rank order, score and method under each tile
    th = 160
    tiles = []
    for row in sheet_rows:
        ims = []
        for label, sc, arr in row:
            im = Image.fromarray((arr * 255).round().astype(np.uint8))
            im = im.resize((round(im.width * th / im.height), th), Image.Resampling.BILINEAR)
            canvas = Image.new("RGB", (im.width, th + 30), "white")
            canvas.paste(im, (0, 0))
            ImageDraw.Draw(canvas).text((4, th + 2), f"{label}\n{sc:+.3f}", fill="black")
            ims.append(canvas)
        tiles.append(ims)
    width = max(sum(t.width + 4 for t in r) for r in tiles)
    sheet = Image.new("RGB", (width, len(tiles) * (th + 34)), "white")
    for r_i, r in enumerate(tiles):
        x = 0
        for t in r:
            sheet.paste(t, (x, r_i * (th + 34)))
            x += t.width + 4
    sheet.save(out / "contact_sheet.png")
    print(f"\nwrote {out / 'scores.csv'} and {out / 'contact_sheet.png'} (tiles in rank order, best first)")
    return rows
