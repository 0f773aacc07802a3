"""Small generated datasets for tests (never real data): textured scenes, their dark captures and
candidates of increasing quality, written in the SICE-index and SQUARE-LOL layouts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def scene_images(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, list[np.ndarray]]:
    """A textured scene's dark capture and 5 candidates of increasing quality (index = quality)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.5 + 0.4 * np.sin(6 * xx + rng.uniform(0, 3)), 0.5 + 0.4 * np.cos(5 * yy),
                     0.5 + 0.3 * np.sin(4 * (xx + yy))], -1)
    low = base * 0.08
    cands = [np.clip(base * k + rng.normal(0, 0.25 * (1 - k), base.shape), 0, 1) for k in (0.1, 0.3, 0.5, 0.7, 0.9)]
    return low, cands


def save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)


def write_sice_like(root: Path, scenes: int = 6, val_from: int = 4, size: int = 64, seed: int = 0) -> Path:
    """index.jsonl layout of the SICE build; scenes >= val_from are 'val'."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(scenes):
        split = "train" if s < val_from else "val"
        low, cands = scene_images(rng, size)
        save_png(low, root / f"s{s}" / "low.png")
        for k, c in enumerate(cands):
            save_png(c, root / f"s{s}" / f"c{k}.png")
            rows.append({"split": split, "scene": f"s{s}", "group": f"s{s}/low", "candidate": f"c{k}",
                         "path": f"s{s}/c{k}.png", "low": f"s{s}/low.png", "ref": None, "score": k / 4})
    (root / "index.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def write_squarelol_like(root: Path, scenes: int = 4, size: int = 64, seed: int = 1) -> Path:
    """SQUARE-LOL layout: name_mos.txt, enhanced/, normal/ (references), low/ (inputs)."""
    rng = np.random.default_rng(seed)
    lines = []
    for s in range(1, scenes + 1):
        low, cands = scene_images(rng, size)
        save_png(low, root / "low" / f"low{s:05d}.png")
        save_png(cands[-1], root / "normal" / f"normal{s:05d}.png")
        for k, c in enumerate(cands):
            name = f"low{s:05d}_M{k}_0.png"
            save_png(c, root / "enhanced" / name)
            lines.append(f"{name}\t{k / 4:.9f}")
    (root / "name_mos.txt").write_text("\n".join(lines) + "\n")
    return root
