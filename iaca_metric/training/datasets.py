"""Training/evaluation records for IACA: the SICE-built dataset and the SQUARE-LOL layout.

A :class:`Record` is one scored image: the enhanced image, the low-light input it came from (the
model's ``ref``), an optional normal-light reference (only the full-reference baselines use it), its
scene ("group": scores are comparable only within a group) and its score (higher = better).

SQUARE-LOL layout (as in the IACA release)::

    ROOT/name_mos.txt                 "<name> <score>" per line, e.g. "low00001_CRM_0.png 0.8111"
    ROOT/enhanced/<name>              the enhanced images (folder name configurable)
    ROOT/normal/normal00001.png       normal-light references: scene id with "low" -> "normal"
    ROOT/low/low00001.png             optional: the low-light inputs (else the model uses its own map)

The release's protocol: the first 2470 rows train (the last 200 of them validate), rows 2470 onward
test (scenes low00690-low00787).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Record", "read_sice_index", "read_squarelol", "SQUARELOL_TRAIN_ROWS", "group_indices"]

SQUARELOL_TRAIN_ROWS = 2470
SQUARELOL_VAL_ROWS = 200


@dataclass(frozen=True)
class Record:
    image: Path
    low: Path | None
    ref: Path | None
    group: str
    score: float
    split: str
    name: str = ""


def _resolve(base: Path, p: str | None) -> Path | None:
    if p in (None, ""):
        return None
    path = Path(p)
    return path if path.is_absolute() else base / path


def read_sice_index(index_path: str | os.PathLike, split: str | None = None) -> list[Record]:
    """Records of the dataset written by ``python -m iaca_metric.training.sice`` (``index.jsonl``)."""
    index_path = Path(index_path)
    base = index_path.parent
    out = []
    with open(index_path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if split is not None and row["split"] != split:
                continue
            out.append(Record(image=_resolve(base, row["path"]), low=_resolve(base, row.get("low")),
                              ref=_resolve(base, row.get("ref")), group=str(row["group"]),
                              score=float(row["score"]), split=row["split"], name=row.get("candidate", "")))
    if not out:
        raise ValueError(f"{index_path}: no records" + (f" for split {split!r}" if split else ""))
    return out


def read_squarelol(root: str | os.PathLike, split: str = "train", enhanced_dir: str = "enhanced",
                   normal_dir: str = "normal", low_dir: str = "low",
                   train_rows: int = SQUARELOL_TRAIN_ROWS, val_rows: int = SQUARELOL_VAL_ROWS) -> list[Record]:
    """Records of a dataset in the SQUARE-LOL layout (see module docstring).

    ``split``: "train" (rows [0, train_rows - val_rows)), "val" (the last ``val_rows`` training rows),
    "trainval" (rows [0, train_rows)), "test" (rows [train_rows, end)) or "all"."""
    root = Path(root)
    lines = (root / "name_mos.txt").read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{root / 'name_mos.txt'}:{i + 1}: expected '<name> <score>', got {line!r}")
        rows.append((parts[0], float(parts[1])))
    ranges = {"train": (0, train_rows - val_rows), "val": (train_rows - val_rows, train_rows),
              "trainval": (0, train_rows), "test": (train_rows, len(rows)), "all": (0, len(rows))}
    if split not in ranges:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(ranges)}")
    lo, hi = ranges[split]
    out = []
    for name, score in rows[lo:hi]:
        scene = name.split("_")[0]
        image = root / enhanced_dir / name
        if not image.is_file():
            raise FileNotFoundError(f"{image}: listed in name_mos.txt but missing")
        low = root / low_dir / f"{scene}.png"
        ref = root / normal_dir / f"{scene.replace('low', 'normal')}.png"
        out.append(Record(image=image, low=low if low.is_file() else None, ref=ref if ref.is_file() else None,
                          group=scene, score=score, split=split, name=name))
    return out


def group_indices(records: list[Record]) -> dict[str, list[int]]:
    """Map group -> indices of its records, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.group, []).append(i)
    return groups
