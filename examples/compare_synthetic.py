"""A complete ``iaca-metric compare`` run on generated images only (no data needed).

Draws simple night scenes (sky gradient, buildings with lit windows, street lamps, textured ground),
simulates dark captures with the demo's sensor model (:func:`iaca_metric.demo.simulate_low_light`),
enhances them with five of the package's enhancers (three clean ones and two deliberate failures),
lays the results out as a paper would (``low/<dataset>/<name>.png``, ``methods/<method>/<dataset>/...``)
and runs the comparison with the embedded model. With ``--screenshot PNG`` it also renders the report in
headless Chromium (Debian's ``chromium`` package) and saves a screenshot: that is how
``docs/compare_report.png`` was made.

    python examples/compare_synthetic.py --out /tmp/compare_synthetic --screenshot docs/compare_report.png
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

METHODS = {"CLAHE": "clahe", "LIME_denoised": "lime_denoised", "ExposureFusion": "exposure_fusion",
           "fail_noise_amplified": "fail_noise_amplified", "fail_over_enhance": "fail_over_enhance"}
DATASETS = {"Street": 6, "Alley": 4}


def night_scene(rng: np.random.Generator, h: int = 240, w: int = 320) -> np.ndarray:
    """A well-exposed synthetic night scene, (h, w, 3) float in [0, 1] (sRGB)."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    top, bottom = rng.uniform([0.05, 0.1, 0.3], [0.2, 0.25, 0.6]), rng.uniform([0.4, 0.3, 0.3], [0.7, 0.5, 0.5])
    img = top * (1 - yy[..., None]) + bottom * yy[..., None]
    horizon = int(h * rng.uniform(0.6, 0.75))
    x = 0
    while x < w:  # buildings with lit windows
        bw, bh = int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 4, int(h * 0.55)))
        colour = rng.uniform(0.15, 0.45, 3)
        img[horizon - bh:horizon, x:x + bw] = colour
        for wy in range(horizon - bh + 6, horizon - 8, 12):
            for wx in range(x + 4, x + bw - 6, 10):
                if rng.random() < 0.45:
                    img[wy:wy + 6, wx:wx + 5] = rng.uniform([0.85, 0.7, 0.3], [1.0, 0.95, 0.6])
        x += bw + int(rng.integers(0, 8))
    ground = rng.uniform(0.25, 0.45, 3)
    tex = rng.normal(0, 0.05, (h - horizon, w, 1))
    img[horizon:] = np.clip(ground + tex, 0, 1)
    for _ in range(int(rng.integers(2, 5))):  # street lamps: a pole and a soft glow
        cx, cy = int(rng.integers(10, w - 10)), int(rng.integers(horizon - h // 3, horizon - 10))
        img[cy:horizon, cx - 1:cx + 2] = 0.2
        glow = np.exp(-(((xx * w - cx) ** 2 + (yy * h - cy) ** 2) / (2 * (h / 14) ** 2)))[..., None]
        img = img + glow * np.array([1.0, 0.85, 0.55]) * 0.8
    return np.clip(img, 0, 1)


def build_layout(root: Path, seed: int = 0, size: tuple[int, int] = (240, 320)) -> Path:
    """Write ``low/<dataset>/<i>.png`` and ``methods/<method>/<dataset>/<i>.png`` under ``root``."""
    from iaca_metric.demo import simulate_low_light
    from iaca_metric.training.enhancers import ENHANCERS

    rng = np.random.default_rng(seed)
    for ds, n in DATASETS.items():
        for i in range(1, n + 1):
            low8 = simulate_low_light(night_scene(rng, *size), rng, exposure=float(rng.uniform(0.04, 0.12)))
            (root / "low" / ds).mkdir(parents=True, exist_ok=True)
            Image.fromarray(low8).save(root / "low" / ds / f"{i}.png")
            low = low8.astype(np.float32) / 255
            for m, key in METHODS.items():
                out = np.clip(ENHANCERS[key](low, np.random.default_rng(seed + i)), 0, 1)
                (root / "methods" / m / ds).mkdir(parents=True, exist_ok=True)
                Image.fromarray((out * 255).round().astype(np.uint8)).save(root / "methods" / m / ds / f"{i}.png")
    return root


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1500, 1500)) -> None:
    """Render ``page`` in headless Chromium and save a ``size`` screenshot (the top of the page)."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                        f"--screenshot={png.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    # 256 colours, no dithering: a quarter of the size, and text and tables stay crisp
    with Image.open(png) as im:
        shot = im.convert("RGB")
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(png, optimize=True)
    print(f"wrote {png}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="compare_synthetic", help="work folder (images, tables, report)")
    ap.add_argument("--screenshot", default=None, help="also save a screenshot of report.html here (PNG)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from iaca_metric.compare import compare_methods

    torch.set_num_threads(args.threads)
    root = build_layout(Path(args.out))
    result = compare_methods([root / "methods" / m for m in METHODS], root / "low", n_boot=2000)
    paths = result.write(root / "report")
    print(result.to_markdown())
    if args.screenshot:
        screenshot(paths["report.html"], Path(args.screenshot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
