"""Compare enhancement methods on shared low-light inputs: pairing, scoring, statistics, tables.

This is the engine behind ``iaca-metric compare``. The layout it expects is the one papers use::

    low/DICM/01.jpg          methods/ZeroDCE/DICM/01.png      gt/LOL/1.png   (optional)
    low/LIME/1.bmp           methods/ZeroDCE/LIME/1.png
    low/LOL/1.png            methods/LIME/DICM/01.jpg ...

* every method is one folder whose name is the method's name;
* the first sub-folder level is the **dataset** (``DICM``, ``LIME``, ...); images directly inside the
  folder belong to the dataset ``"all"``; deeper levels are part of the image's name;
* an output pairs with the low-light input of the same relative path and stem, whatever the image
  extension (``ZeroDCE/LIME/1.png`` pairs with ``low/LIME/1.bmp``); a ground-truth folder (for PSNR and
  SSIM) uses the same layout.

Nothing is dropped silently: an input without an output, an output without an input, an unreadable
file, a size mismatch and an input without ground truth each become a :class:`Problem` (written to
``problems.csv``, summarised on stderr and in every table's notes).

Statistics (per dataset, over the inputs that **every** method of that dataset has a score for, so all
methods are compared on the same images):

* **mean score** and a **percentile-bootstrap 95% interval**: ``n_boot`` resamples of the images with
  replacement (seeded; the same resampled image sets for every method), the interval is the 2.5th and
  97.5th percentile of the resampled means;
* **mean rank**: within each input the methods are ranked by score, 1 = best, tied scores share the
  average of the ranks they span; the mean over inputs is reported (the mean ranks of k methods sum
  to k(k+1)/2);
* **win rates**: ``win[i, j]`` is the share of inputs where method i scores strictly higher than
  method j, ``tie[i, j]`` the share of exactly equal scores, so ``win[i, j] + win[j, i] + tie[i, j] = 1``.

Next to the IACA score the tables report NIQE (lower is better; when
``iaca_metric.no_reference_metrics.niqe`` is installed) and, with ground truth, PSNR and SSIM.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .inputs import InputError, load_image

__all__ = [
    "IMAGE_SUFFIXES",
    "FLAT_DATASET",
    "Problem",
    "ImageScore",
    "MethodSummary",
    "DatasetSummary",
    "CompareResult",
    "Pairing",
    "pair_methods",
    "compare_methods",
    "bootstrap_ci",
    "mean_ranks",
    "rank_matrix",
    "win_rates",
    "summarize_scores",
    "tables_markdown",
    "tables_latex",
    "write_scores",
    "read_scores",
    "add_compare_arguments",
    "run_compare_cli",
]

#: File suffixes treated as images when folders are scanned (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Dataset name of images that lie directly in a method / input folder (no dataset sub-folder).
FLAT_DATASET = "all"

# Column definitions shared by the Markdown / LaTeX / CSV / HTML writers:
# (attribute of MethodSummary, header, higher is better, decimals).
_METRIC_COLUMNS = (
    ("niqe_mean", "NIQE", False, 2),
    ("psnr_mean", "PSNR (dB)", True, 2),
    ("ssim_mean", "SSIM", True, 3),
)


# ------------------------------------------------------------------------------------------ records
@dataclass
class Problem:
    """Something that kept one image out of the comparison (or out of one metric).

    ``kind`` is one of ``missing_output`` (an input has no output of ``method``), ``extra_output``
    (an output has no input), ``unreadable`` (decoding failed), ``size_mismatch`` (output and input
    differ in size), ``score_failed`` (the scorer refused the pair), ``niqe_failed`` (NIQE refused the
    output, e.g. smaller than its 96x96 patch; the IACA score is kept), ``missing_gt`` (no ground truth
    for PSNR/SSIM), ``gt_size_mismatch``, ``ambiguous`` (two files with one stem in one folder).
    """

    kind: str
    method: str
    dataset: str
    image: str
    path: str
    detail: str


@dataclass
class ImageScore:
    """Scores of one method's output for one input.

    ``iaca``: raw IACA score (higher is better; ``mos=True`` maps it to the model's MOS scale).
    ``rank``: rank of this output among the dataset's methods for this input (1 = best, ties averaged);
    None when the input is not scored by every method of the dataset. ``niqe`` (lower is better),
    ``psnr`` (dB) and ``ssim`` ([-1, 1]) are None when not computed. ``error`` says why ``iaca`` is None.
    """

    dataset: str
    image: str
    method: str
    output: str
    input: str
    gt: str | None = None
    iaca: float | None = None
    rank: float | None = None
    niqe: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    error: str | None = None


@dataclass
class MethodSummary:
    """One method's row of a dataset table. Means are over the dataset's common images (``n``)."""

    method: str
    n: int
    iaca_mean: float
    iaca_ci_low: float
    iaca_ci_high: float
    mean_rank: float
    niqe_mean: float | None = None
    psnr_mean: float | None = None
    ssim_mean: float | None = None


@dataclass
class DatasetSummary:
    """Statistics of one dataset.

    ``images``: the common images (scored by every method in ``methods``), in table order.
    ``scores``: (n, k) IACA scores, row = image, column = method. ``win``/``tie``: (k, k) shares of
    images where the row method beats / ties the column method. ``n_inputs``: low-light inputs of the
    dataset; ``notes``: why images or methods are missing from the table.
    """

    dataset: str
    methods: list[str]
    images: list[str]
    n_inputs: int
    scores: np.ndarray
    rows: list[MethodSummary]
    win: np.ndarray
    tie: np.ndarray
    notes: list[str] = field(default_factory=list)

    def best(self, attr: str, higher: bool) -> set[str]:
        """Methods holding the best value of ``attr`` (several when tied); empty if not computed."""
        vals = [(getattr(r, attr), r.method) for r in self.rows if getattr(r, attr) is not None]
        vals = [(v, m) for v, m in vals if not math.isnan(v)]
        if not vals:
            return set()
        target = max(v for v, _ in vals) if higher else min(v for v, _ in vals)
        return {m for v, m in vals if v == target}


# -------------------------------------------------------------------------------------- statistics
def _as_matrix(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise InputError(f"scores must be a 2-D (images, methods) array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise InputError("scores contain NaN or Inf; drop the images that failed before summarising")
    return s


def bootstrap_ci(values: np.ndarray | Sequence[float], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (1-D, any units).

    Draws ``n_boot`` resamples of the values with replacement from ``np.random.default_rng(seed)``
    and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means.
    A 2-D (n, k) array is resampled by rows (the same images for every column) and gives an array of
    k lows and k highs. One value gives the degenerate interval (value, value).
    """
    if n_boot < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[0] == 0:
        raise InputError(f"bootstrap_ci needs a non-empty 1-D or 2-D array, got shape {v.shape}")
    n = v.shape[0]
    rng = np.random.default_rng(seed)
    # Draw in chunks so memory stays bounded for large data sets (n_boot x n indices at once otherwise).
    chunk = max(1, min(n_boot, 2_000_000 // n))
    means = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        means.append(v[idx].mean(axis=1))
    m = np.concatenate(means, axis=0)
    lo, hi = np.quantile(m, [(1 - level) / 2, (1 + level) / 2], axis=0)
    if v.ndim == 1:
        return float(lo), float(hi)
    return lo, hi


def rank_matrix(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Ranks of the methods within each image: (n, k) scores (higher = better) -> (n, k) ranks,
    1 = best; methods with equal scores share the average of the ranks they span (1, 2.5, 2.5, 4)."""
    s = _as_matrix(scores)
    greater = (s[:, None, :] > s[:, :, None]).sum(axis=2)  # [i, j]: methods scoring above method j
    equal = (s[:, None, :] == s[:, :, None]).sum(axis=2)   # includes j itself
    return 1.0 + greater + (equal - 1) / 2.0


def mean_ranks(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Mean over images of :func:`rank_matrix`: (k,), summing to k(k+1)/2."""
    return rank_matrix(scores).mean(axis=0)


def win_rates(scores: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise win and tie shares from (n, k) scores (higher = better).

    Returns ``(win, tie)``, both (k, k): ``win[i, j]`` = share of images where method i scores
    strictly above method j, ``tie[i, j]`` = share where they are exactly equal (1 on the diagonal),
    so ``win + win.T + tie == 1``."""
    s = _as_matrix(scores)
    if s.shape[0] == 0:
        k = s.shape[1]
        return np.zeros((k, k)), np.eye(k)
    win = (s[:, :, None] > s[:, None, :]).mean(axis=0)
    tie = (s[:, :, None] == s[:, None, :]).mean(axis=0)
    return win, tie


def summarize_scores(scores: np.ndarray | Sequence[Sequence[float]], methods: Sequence[str], *,
                     n_boot: int = 2000, seed: int = 0,
                     extra: dict[str, np.ndarray] | None = None) -> list[MethodSummary]:
    """Table rows from an (n, k) IACA score matrix (row = image, column = method).

    ``extra`` maps ``"niqe"``/``"psnr"``/``"ssim"`` to (n, k) arrays (NaN where not computed); their
    means ignore NaN and are None when a method has no value at all."""
    s = _as_matrix(scores)
    if s.shape[1] != len(methods):
        raise InputError(f"scores have {s.shape[1]} columns but {len(methods)} method names were given")
    n, k = s.shape
    if n == 0:
        raise InputError("no image is scored by every method; nothing to summarise")
    lo, hi = bootstrap_ci(s, n_boot=n_boot, seed=seed)
    ranks = mean_ranks(s)
    rows = []
    for j, m in enumerate(methods):
        r = MethodSummary(method=m, n=n, iaca_mean=float(s[:, j].mean()), iaca_ci_low=float(lo[j]),
                          iaca_ci_high=float(hi[j]), mean_rank=float(ranks[j]))
        for name, arr in (extra or {}).items():
            col = np.asarray(arr, dtype=np.float64)[:, j]
            col = col[np.isfinite(col)]
            setattr(r, f"{name}_mean", float(col.mean()) if col.size else None)
        rows.append(r)
    return rows


# ------------------------------------------------------------------------------------------ pairing
def _natural_key(s: str) -> list:
    """Sort '2' before '10' (file names are usually numbered)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", s) if t]


def _index_folder(root: Path, what: str, problems: list[Problem], method: str = "") -> dict[tuple[str, str], Path]:
    """(dataset, image) -> file for every image under ``root``. ``image`` is the path below the dataset
    folder without its suffix, '/'-separated. Two files with one stem in one folder are ambiguous: both
    are left out (a missing output for a method folder) and reported."""
    if not root.is_dir():
        raise InputError(f"{what} {str(root)!r} is not a folder; pass a folder of images "
                         "(datasets as sub-folders, e.g. DICM/01.png)")
    found: dict[tuple[str, str], Path] = {}
    ambiguous: dict[tuple[str, str], Path] = {}
    seen_dirs: set[str] = set()
    # Symlinked dataset folders are followed (a comparison folder of links to the real data is a normal
    # way to pick datasets); a link back up the tree is visited once, not forever.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if fn.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            parts = p.relative_to(root).with_suffix("").parts
            ds, image = (FLAT_DATASET, parts[0]) if len(parts) == 1 else (parts[0], "/".join(parts[1:]))
            key = (ds, image)
            if key in found or key in ambiguous:
                first = found.pop(key, None) or ambiguous[key]
                ambiguous[key] = first
                # Scoring either file could silently compare the wrong image: neither is used.
                problems.append(Problem("ambiguous", method, ds, image, str(p),
                                        f"{first.name} and {p.name} in one folder share the stem, so neither "
                                        "is used; remove or rename one"))
                continue
            found[key] = p
    return found


@dataclass
class Pairing:
    """Which files are compared: ``inputs[(dataset, image)]`` the low-light input, ``outputs[method]
    [(dataset, image)]`` each method's output, ``gts[(dataset, image)]`` the ground truth (if any)."""

    methods: list[str]
    datasets: list[str]
    inputs: dict[tuple[str, str], Path]
    outputs: dict[str, dict[tuple[str, str], Path]]
    gts: dict[tuple[str, str], Path] | None
    problems: list[Problem]

    def images(self, dataset: str) -> list[str]:
        """The dataset's input images, in natural order."""
        return sorted((im for ds, im in self.inputs if ds == dataset), key=_natural_key)


def pair_methods(method_dirs: Sequence[str | os.PathLike], ref_dir: str | os.PathLike,
                 gt_dir: str | os.PathLike | None = None, names: Sequence[str] | None = None) -> Pairing:
    """Pair every method's outputs with the low-light inputs (and ground truth) by relative path and
    stem. Missing and extra outputs become :class:`Problem` rows, never silent drops.

    Raises :class:`InputError` for a folder that does not exist, no inputs, duplicate method names,
    or a method folder without a single image that pairs with an input (wrong folder level)."""
    if not method_dirs:
        raise InputError("give at least one method folder (each a folder of enhanced outputs)")
    dirs = [Path(d) for d in method_dirs]
    if names is None:
        names = [d.resolve().name for d in dirs]
    names = list(names)
    if len(names) != len(dirs):
        raise InputError(f"{len(dirs)} method folders but {len(names)} names; give one name per folder")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"method names must be unique, {dup} appear more than once (method name = folder "
                         "name); rename the folders or pass names=/--names")
    problems: list[Problem] = []
    inputs = _index_folder(Path(ref_dir), "ref_dir (the low-light inputs)", problems, method="(input)")
    if not inputs:
        raise InputError(f"no images found under ref_dir {str(ref_dir)!r} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    datasets = sorted({ds for ds, _ in inputs}, key=_natural_key)
    outputs: dict[str, dict[tuple[str, str], Path]] = {}
    for name, d in zip(names, dirs):
        found = _index_folder(d, f"method folder {name!r}", problems, method=name)
        matched = {k: p for k, p in found.items() if k in inputs}
        if not matched:
            sample = ", ".join(sorted(f"{ds}/{im}" for ds, im in found)[:3]) or "no images"
            want = ", ".join(f"{ds}/{im}" for ds, im in sorted(inputs)[:3])
            raise InputError(f"method folder {str(d)!r} has no output matching a low-light input (it has "
                             f"{sample}; inputs are e.g. {want}); the method folder must mirror --ref-dir: "
                             "same dataset sub-folders, same file stems")
        for (ds, im), p in sorted(found.items()):
            if (ds, im) not in inputs:
                problems.append(Problem("extra_output", name, ds, im, str(p),
                                        "no low-light input with this relative path and stem"))
        for (ds, im), p in sorted(inputs.items()):
            if (ds, im) not in matched:
                problems.append(Problem("missing_output", name, ds, im, str(p),
                                        f"no output for this input in {str(d)!r}"))
        outputs[name] = matched
    gts = None
    if gt_dir is not None:
        gts_all = _index_folder(Path(gt_dir), "gt_dir (ground truth)", problems, method="(ground truth)")
        gts = {k: p for k, p in gts_all.items() if k in inputs}
        if not gts:
            raise InputError(f"no ground-truth image under {str(gt_dir)!r} matches a low-light input; "
                             "gt_dir must mirror --ref-dir (same dataset sub-folders and stems)")
        for (ds, im), p in sorted(inputs.items()):
            if (ds, im) not in gts and any(d == ds for d, _ in gts):
                problems.append(Problem("missing_gt", "(ground truth)", ds, im, str(p),
                                        "no ground truth: PSNR/SSIM not computed for this input"))
    return Pairing(methods=names, datasets=datasets, inputs=inputs, outputs=outputs, gts=gts, problems=problems)


# ------------------------------------------------------------------------------------------ helpers
def _Progress(total: int, enabled: bool):  # noqa: N802 - the folder scorer's progress line, labelled
    """tqdm on stderr when installed, else a counter line; silent when disabled."""
    from .folder_scoring import _Progress as _FolderProgress

    return _FolderProgress(total, enabled, desc="compare", what="outputs")


def _thumbnail(t: torch.Tensor, size: int, quality: int = 82) -> str:
    """(3, H, W) [0, 1] tensor -> base64 JPEG whose longer side is ``size`` px."""
    from PIL import Image

    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    im = Image.fromarray(arr)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _niqe_function() -> tuple[Callable | None, str | None]:
    """The package's NIQE, imported lazily (an optional module); (None, reason) when unavailable."""
    try:
        from .evaluation.no_reference_metrics import niqe  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, (f"NIQE column left out: iaca_metric.no_reference_metrics.niqe is not available "
                      f"in this install ({exc})")
    return niqe, None


def _scalar(v) -> float:
    return float(torch.as_tensor(v, dtype=torch.float64).reshape(-1)[0])


# ------------------------------------------------------------------------------------------- result
@dataclass
class CompareResult:
    """Everything :func:`compare_methods` measured.

    ``rows``: one :class:`ImageScore` per (method, input) pair, including failed and missing ones
    (``iaca`` None, ``error`` set). ``summaries``: dataset -> :class:`DatasetSummary`. ``problems``:
    every missing / extra / unreadable file. ``thumbnails``: (dataset, image, method or ``"(input)"``)
    -> base64 JPEG for the HTML report. ``notes``: run-level remarks (e.g. NIQE unavailable).
    ``metadata``: package and model versions and the settings, written to ``compare.json``."""

    methods: list[str]
    datasets: list[str]
    rows: list[ImageScore]
    summaries: dict[str, DatasetSummary]
    problems: list[Problem]
    notes: list[str]
    metadata: dict
    thumbnails: dict[tuple[str, str, str], str] = field(default_factory=dict)
    has_niqe: bool = False
    has_gt: bool = False

    def metric_columns(self) -> list[tuple[str, str, bool, int]]:
        """The classical-metric columns present in this result: (attribute, header, higher better, decimals)."""
        cols = []
        for attr, header, higher, dec in _METRIC_COLUMNS:
            if attr == "niqe_mean" and not self.has_niqe:
                continue
            if attr in ("psnr_mean", "ssim_mean") and not self.has_gt:
                continue
            cols.append((attr, header, higher, dec))
        return cols

    def rows_for(self, dataset: str) -> list[ImageScore]:
        return [r for r in self.rows if r.dataset == dataset]

    # writers (implemented below as module functions so they can be used on their own)
    def to_markdown(self) -> str:
        return tables_markdown(self)

    def to_latex(self) -> str:
        return tables_latex(self)

    def to_html(self, title: str = "Method comparison") -> str:
        from ._report_html import render_report

        return render_report(self, title=title)

    def write(self, out_dir: str | os.PathLike, html: bool = True) -> dict[str, Path]:
        """Write every output file into ``out_dir`` (created); returns name -> path. Files:
        ``tables.md``, ``tables.tex``, ``summary.csv``, ``winrates.csv``, ``scores.csv``,
        ``scores.jsonl``, ``problems.csv``, ``compare.json`` and (``html``) ``report.html``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "tables.md": out / "tables.md", "tables.tex": out / "tables.tex", "summary.csv": out / "summary.csv",
            "winrates.csv": out / "winrates.csv", "scores.csv": out / "scores.csv",
            "scores.jsonl": out / "scores.jsonl", "problems.csv": out / "problems.csv",
            "compare.json": out / "compare.json",
        }
        paths["tables.md"].write_text(self.to_markdown(), encoding="utf-8")
        paths["tables.tex"].write_text(self.to_latex(), encoding="utf-8")
        write_summary_csv(self, paths["summary.csv"])
        write_winrates_csv(self, paths["winrates.csv"])
        write_scores(self, paths["scores.csv"])
        write_scores(self, paths["scores.jsonl"])
        write_problems_csv(self, paths["problems.csv"])
        paths["compare.json"].write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        if html:
            paths["report.html"] = out / "report.html"
            paths["report.html"].write_text(self.to_html(), encoding="utf-8")
        return paths

    def to_json(self) -> dict:
        """Metadata, notes, per-dataset statistics and problems as plain JSON types."""
        sums = {}
        for ds, s in self.summaries.items():
            sums[ds] = {"methods": s.methods, "n_images": len(s.images), "n_inputs": s.n_inputs,
                        "rows": [asdict(r) for r in s.rows], "win": s.win.tolist(), "tie": s.tie.tolist(),
                        "notes": s.notes}
        return {"metadata": self.metadata, "notes": self.notes, "methods": self.methods,
                "datasets": self.datasets, "summaries": sums, "problems": [asdict(p) for p in self.problems]}

    def problem_summary(self) -> list[str]:
        """Short human-readable lines, one per (kind, method, dataset), with the first few images."""
        groups: dict[tuple[str, str, str], list[str]] = {}
        for p in self.problems:
            groups.setdefault((p.kind, p.method, p.dataset), []).append(p.image)
        lines = []
        for (kind, method, ds), ims in groups.items():
            n_in = sum(1 for r in self.rows if r.method == method and r.dataset == ds)  # one row per input
            whole = f" (all {len(ims)})" if kind == "missing_output" and len(ims) == n_in else ""
            shown = ", ".join(ims[:8]) + (f", ... ({len(ims) - 8} more)" if len(ims) > 8 else "")
            lines.append(f"{kind.replace('_', ' ')}: {method} / {ds}{whole}: {len(ims)} image(s): {shown}")
        return lines


# ---------------------------------------------------------------------------------------- scoring
def compare_methods(method_dirs: Sequence[str | os.PathLike], ref_dir: str | os.PathLike,
                    gt_dir: str | os.PathLike | None = None, *, names: Sequence[str] | None = None,
                    model=None, device: str | torch.device | None = None, batch_size: int = 8,
                    mos: bool = False, grayscale: str = "error", n_boot: int = 2000, seed: int = 0,
                    niqe: bool = True, thumb_size: int = 160, progress: bool = True) -> CompareResult:
    """Score every method's outputs against their low-light inputs and summarise per dataset.

    Args:
        method_dirs: one folder per method (name = folder name unless ``names``), laid out like
            ``ref_dir`` (datasets as sub-folders, same stems; any image extension).
        ref_dir: the low-light inputs.
        gt_dir: optional ground truth in the same layout, for PSNR/SSIM (computed against the output).
        names: method names in the order of ``method_dirs`` (default: the folder names).
        model: an :class:`~iaca_metric.IACAMetric` (default: the embedded IACA-Lite).
        device: where the model runs.
        batch_size: outputs per forward pass (same-size outputs are batched together).
        mos: report the model's MOS-scale score instead of the raw score.
        grayscale: "error" or "replicate" for single-channel files.
        n_boot, seed: bootstrap resamples and seed for the 95% intervals.
        niqe: compute NIQE when the package provides it (``iaca_metric.no_reference_metrics``).
        thumb_size: longer side of the report's thumbnails in pixels; 0 = no thumbnails.
        progress: progress bar on stderr.

    Returns:
        A :class:`CompareResult`; ``result.write(out_dir)`` writes the tables, CSV/JSONL and HTML.
    """
    from . import __version__
    from .api import default_model, score
    from .evaluation.reference_metrics import psnr, ssim

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if thumb_size < 0:
        raise InputError(f"thumb_size must be >= 0 (0 = no thumbnails), got {thumb_size}")
    pairing = pair_methods(method_dirs, ref_dir, gt_dir, names)
    if model is None:
        model = default_model(device)
    elif device is not None:
        model = model.to(device)
    notes: list[str] = []
    niqe_fn = None
    if niqe:
        niqe_fn, why = _niqe_function()
        if why:
            notes.append(why)
    problems = list(pairing.problems)
    rows: list[ImageScore] = []
    thumbs: dict[tuple[str, str, str], str] = {}
    total = sum(len(o) for o in pairing.outputs.values())
    bar = _Progress(total, progress)
    pending: list[tuple[ImageScore, torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        imgs, refs = [p[1] for p in pending], [p[2] for p in pending]
        try:
            s = score(imgs, refs, model=model, batch_size=batch_size, mos=mos)
            for (row, _, _), v in zip(pending, s.tolist()):
                row.iaca = float(v)
        except InputError:
            for row, img, ref in pending:  # find the offending pair(s); score the rest
                try:
                    row.iaca = float(score(img, ref, model=model, mos=mos))
                except InputError as exc:
                    row.error = str(exc)
                    problems.append(Problem("score_failed", row.method, row.dataset, row.image, row.output, str(exc)))
        bar.update(len(pending))
        pending.clear()

    try:
        for ds in pairing.datasets:
            for im in pairing.images(ds):
                key = (ds, im)
                in_path = pairing.inputs[key]
                have = [m for m in pairing.methods if key in pairing.outputs[m]]
                for m in pairing.methods:
                    if key not in pairing.outputs[m]:
                        rows.append(ImageScore(ds, im, m, "", str(in_path), error="missing output"))
                if not have:
                    continue
                try:
                    ref = load_image(in_path, grayscale=grayscale)
                except InputError as exc:
                    for m in have:
                        rows.append(ImageScore(ds, im, m, str(pairing.outputs[m][key]), str(in_path),
                                               error=f"input unreadable: {exc}"))
                    problems.append(Problem("unreadable", "(input)", ds, im, str(in_path), str(exc)))
                    bar.update(len(have))
                    continue
                gt = gt_path = None
                if pairing.gts is not None and key in pairing.gts:
                    gt_path = pairing.gts[key]
                    try:
                        gt = load_image(gt_path, grayscale=grayscale)
                    except InputError as exc:
                        problems.append(Problem("unreadable", "(ground truth)", ds, im, str(gt_path), str(exc)))
                    if gt is not None and gt.shape != ref.shape:
                        problems.append(Problem("gt_size_mismatch", "(ground truth)", ds, im, str(gt_path),
                                                f"ground truth is {tuple(gt.shape[1:])}, input {tuple(ref.shape[1:])}"
                                                "; PSNR/SSIM not computed"))
                        gt = None
                if thumb_size:
                    thumbs[(ds, im, "(input)")] = _thumbnail(ref, thumb_size)
                for m in have:
                    out_path = pairing.outputs[m][key]
                    row = ImageScore(ds, im, m, str(out_path), str(in_path), gt=str(gt_path) if gt_path else None)
                    rows.append(row)
                    try:
                        out = load_image(out_path, grayscale=grayscale)
                    except InputError as exc:
                        row.error = f"unreadable: {exc}"
                        problems.append(Problem("unreadable", m, ds, im, str(out_path), str(exc)))
                        bar.update(1)
                        continue
                    if out.shape != ref.shape:
                        row.error = (f"output is {out.shape[2]}x{out.shape[1]} but the input is "
                                     f"{ref.shape[2]}x{ref.shape[1]} (W x H)")
                        problems.append(Problem("size_mismatch", m, ds, im, str(out_path),
                                                row.error + "; save outputs at the input's size"))
                        bar.update(1)
                        continue
                    if thumb_size:
                        thumbs[(ds, im, m)] = _thumbnail(out, thumb_size)
                    if niqe_fn is not None:
                        try:
                            row.niqe = _scalar(niqe_fn(out))
                        except InputError as exc:  # e.g. smaller than NIQE's 96x96 patch, or flat
                            problems.append(Problem("niqe_failed", m, ds, im, str(out_path), str(exc)))
                        except Exception as exc:  # its pristine model cannot be loaded: drop the column
                            notes.append(f"NIQE column left out: {type(exc).__name__}: {exc}")
                            niqe_fn = None
                    if gt is not None:
                        row.psnr = _scalar(psnr(out[None], gt[None]))
                        row.ssim = _scalar(ssim(out[None], gt[None]))
                    pending.append((row, out, ref))
                    if len(pending) >= batch_size:
                        flush()
        flush()
    finally:
        bar.close()

    has_gt = any(r.psnr is not None for r in rows)
    has_niqe = niqe_fn is not None and any(r.niqe is not None for r in rows)
    if niqe_fn is not None and not has_niqe:
        notes.append("NIQE column left out: it failed on every output (see problems.csv)")
    if gt_dir is not None and not has_gt:
        notes.append("PSNR/SSIM left out: no output has a readable ground truth of the same size")
    summaries = {ds: _summarize_dataset(ds, rows, pairing, n_boot, seed, has_niqe, has_gt)
                 for ds in pairing.datasets}
    info = getattr(model, "weights_info", {}) or {}
    metadata = {
        "package": "iaca-metric", "version": __version__, "torch": torch.__version__,
        "model_arch": getattr(model, "arch", None), "model_source": info.get("source"),
        "model_sha256": info.get("sha256"), "score": "mos" if mos else "raw",
        "ref_dir": str(ref_dir), "gt_dir": str(gt_dir) if gt_dir is not None else None,
        "method_dirs": {m: str(d) for m, d in zip(pairing.methods, method_dirs)},
        "n_boot": n_boot, "seed": seed, "ci_level": 0.95, "batch_size": batch_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return CompareResult(methods=pairing.methods, datasets=pairing.datasets, rows=rows, summaries=summaries,
                         problems=problems, notes=notes, metadata=metadata, thumbnails=thumbs,
                         has_niqe=has_niqe, has_gt=has_gt)


def _summarize_dataset(ds: str, rows: list[ImageScore], pairing: Pairing, n_boot: int, seed: int,
                       has_niqe: bool, has_gt: bool) -> DatasetSummary:
    """Common-image statistics of one dataset; fills each row's ``rank``."""
    images = pairing.images(ds)
    mine = [r for r in rows if r.dataset == ds]
    by = {(r.image, r.method): r for r in mine}
    notes = []
    methods = [m for m in pairing.methods if any(by.get((im, m)) and by[(im, m)].iaca is not None for im in images)]
    for m in pairing.methods:
        if m not in methods:
            notes.append(f"{m} left out: no scored output for this dataset")
    common = [im for im in images if all(by.get((im, m)) and by[(im, m)].iaca is not None for m in methods)]
    if len(common) < len(images):
        dropped = [im for im in images if im not in common]
        shown = ", ".join(dropped[:10]) + (", ..." if len(dropped) > 10 else "")
        notes.append(f"{len(dropped)} of {len(images)} inputs left out because a method has no score for "
                     f"them (missing or failed output): {shown}")
    k = len(methods)
    if not common or not methods:
        if methods:
            notes.append("no input is scored by every method: no statistics for this dataset")
        return DatasetSummary(ds, methods, [], len(images), np.zeros((0, k)), [], np.zeros((k, k)), np.eye(k), notes)
    S = np.array([[by[(im, m)].iaca for m in methods] for im in common], dtype=np.float64)
    extra = {}
    if has_niqe:
        extra["niqe"] = np.array([[np.nan if by[(im, m)].niqe is None else by[(im, m)].niqe for m in methods]
                                  for im in common])
        for j, m in enumerate(methods):
            n_ok = int(np.isfinite(extra["niqe"][:, j]).sum())
            if n_ok < len(common):
                notes.append(f"NIQE of {m} over {n_ok} of {len(common)} inputs (it failed on the others, "
                             "see problems.csv)")
    if has_gt:
        for name in ("psnr", "ssim"):
            extra[name] = np.array([[np.nan if getattr(by[(im, m)], name) is None else getattr(by[(im, m)], name)
                                     for m in methods] for im in common])
        n_gt = int(np.isfinite(extra["psnr"][:, 0]).sum())
        if n_gt < len(common):
            notes.append(f"PSNR/SSIM over the {n_gt} of {len(common)} inputs that have ground truth")
    summary_rows = summarize_scores(S, methods, n_boot=n_boot, seed=seed, extra=extra)
    R = rank_matrix(S)
    for i, im in enumerate(common):
        for j, m in enumerate(methods):
            by[(im, m)].rank = float(R[i, j])
    win, tie = win_rates(S)
    return DatasetSummary(ds, methods, common, len(images), S, summary_rows, win, tie, notes)


# ---------------------------------------------------------------------------------------- writers
def _fmt(v: float | None, dec: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{dec}f}"


def _score_name(result: CompareResult) -> str:
    return "IACA (MOS)" if result.metadata.get("score") == "mos" else "IACA"


def _caption(result: CompareResult, s: DatasetSummary) -> str:
    return (f"{s.dataset}: {len(s.images)} of {s.n_inputs} inputs, {len(s.methods)} methods. "
            f"{_score_name(result)} score (higher is better) with a {result.metadata.get('n_boot', 2000)}-resample "
            f"bootstrap 95% interval over images; mean rank (1 = best)")


def tables_markdown(result: CompareResult) -> str:
    """All dataset tables (summary + win-rate matrix) as GitHub-flavoured Markdown; best in bold."""
    cols = result.metric_columns()
    md = result.metadata
    sha = md.get("model_sha256")
    out = [f"# Method comparison: {_score_name(result)} score", "",
           f"iaca-metric {md.get('version', '')}, model {md.get('model_arch')}"
           + (f" (sha256 {sha[:12]}...)" if sha else "") + f", {md.get('n_boot')} bootstrap resamples, "
           f"seed {md.get('seed')}.", ""]
    for note in result.notes:
        out.append(f"> {note}")
    if result.notes:
        out.append("")
    for ds in result.datasets:
        s = result.summaries[ds]
        out += [f"## {ds}", "", f"*{_caption(result, s)}.*", ""]
        for note in s.notes:
            out.append(f"> {note}")
        if s.notes:
            out.append("")
        if not s.rows:
            continue
        head = ["Method", f"{_score_name(result)} ↑ [95% CI]", "Mean rank ↓"] + [
            f"{h} {'↑' if hi else '↓'}" for _, h, hi, _ in cols]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|")
        best_iaca, best_rank = s.best("iaca_mean", True), s.best("mean_rank", False)
        best_cols = {a: s.best(a, hi) for a, _, hi, _ in cols}
        for r in s.rows:
            def b(txt: str, on: bool) -> str:
                return f"**{txt}**" if on else txt
            cells = [r.method, b(f"{r.iaca_mean:.3f}", r.method in best_iaca) + f" [{r.iaca_ci_low:.3f}, {r.iaca_ci_high:.3f}]",
                     b(f"{r.mean_rank:.2f}", r.method in best_rank)]
            cells += [b(_fmt(getattr(r, a), d), r.method in best_cols[a]) for a, _, _, d in cols]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"Win rates on {ds} (share of inputs where the row method scores higher than the column "
                    "method; ties count for neither):", ""]
        out.append("| Method | " + " | ".join(s.methods) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * len(s.methods)) + "|")
        for i, m in enumerate(s.methods):
            cells = ["–" if i == j else f"{100 * s.win[i, j]:.0f}%" for j in range(len(s.methods))]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in s)


def _texnum(txt: str) -> str:
    """A formatted number for LaTeX text mode: a real minus sign instead of a hyphen."""
    return txt.replace("-", "$-$") if txt != "-" else "--"


def tables_latex(result: CompareResult) -> str:
    """All dataset tables as LaTeX (booktabs: ``\\usepackage{booktabs}``), best value per column in bold.
    Each dataset gives a summary ``table`` (one row per method) and a win-rate ``table``."""
    cols = result.metric_columns()
    out = [f"% iaca-metric {result.metadata.get('version', '')} compare; needs \\usepackage{{booktabs}}",
           f"% model sha256 {result.metadata.get('model_sha256')}; {result.metadata.get('n_boot')} bootstrap "
           f"resamples, seed {result.metadata.get('seed')}"]
    for note in result.notes:
        out.append(f"% {note}")
    for ds in result.datasets:
        s = result.summaries[ds]
        out.append("")
        for note in s.notes:
            out.append(f"% {ds}: {note}")
        if not s.rows:
            continue
        label = re.sub(r"[^A-Za-z0-9]+", "-", ds).strip("-").lower() or "all"
        up, down = "$\\uparrow$", "$\\downarrow$"
        head = ["Method", f"{_score_name(result)} {up}", "95\\% CI", f"Mean rank {down}"] + [
            f"{_tex(h)} {up if hi else down}" for _, h, hi, _ in cols]
        best_iaca, best_rank = s.best("iaca_mean", True), s.best("mean_rank", False)
        best_cols = {a: s.best(a, hi) for a, _, hi, _ in cols}

        def b(txt: str, on: bool) -> str:
            return f"\\textbf{{{txt}}}" if on else txt
        out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(_caption(result, s))}.}}",
                f"\\label{{tab:compare-{label}}}", "\\begin{tabular}{l" + "r" * (len(head) - 1) + "}", "\\toprule",
                " & ".join(head) + " \\\\", "\\midrule"]
        for r in s.rows:
            cells = [_tex(r.method), b(_texnum(f"{r.iaca_mean:.3f}"), r.method in best_iaca),
                     _texnum(f"[{r.iaca_ci_low:.3f}, {r.iaca_ci_high:.3f}]"),
                     b(f"{r.mean_rank:.2f}", r.method in best_rank)]
            cells += [b(_texnum(_fmt(getattr(r, a), d)), r.method in best_cols[a]) for a, _, _, d in cols]
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        out += ["\\begin{table}[t]", "\\centering",
                f"\\caption{{{_tex(ds)}: win rates (\\%), share of inputs where the row method scores higher "
                f"than the column method.}}", f"\\label{{tab:winrate-{label}}}",
                "\\begin{tabular}{l" + "r" * len(s.methods) + "}", "\\toprule",
                " & ".join(["Method"] + [_tex(m) for m in s.methods]) + " \\\\", "\\midrule"]
        for i, m in enumerate(s.methods):
            cells = ["--" if i == j else f"{100 * s.win[i, j]:.0f}" for j in range(len(s.methods))]
            out.append(" & ".join([_tex(m)] + cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"


SUMMARY_FIELDS = ("dataset", "method", "n", "n_inputs", "iaca_mean", "iaca_ci_low", "iaca_ci_high", "mean_rank",
                  "niqe_mean", "psnr_mean", "ssim_mean")
SCORE_FIELDS = ("dataset", "image", "method", "iaca", "rank", "niqe", "psnr", "ssim", "output", "input", "gt", "error")


def _csv_value(v) -> str | float | int:
    return "" if v is None else v


def write_summary_csv(result: CompareResult, path: str | os.PathLike) -> None:
    """One row per (dataset, method) with full-precision statistics; empty cells = not computed."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for ds in result.datasets:
            s = result.summaries[ds]
            for r in s.rows:
                d = asdict(r)
                d.update(dataset=ds, n_inputs=s.n_inputs)
                w.writerow({k: _csv_value(d.get(k)) for k in SUMMARY_FIELDS})


def write_winrates_csv(result: CompareResult, path: str | os.PathLike) -> None:
    """One row per (dataset, method, opponent): win, tie and loss shares over ``n`` common inputs."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "method", "opponent", "win", "tie", "loss", "n"])
        for ds in result.datasets:
            s = result.summaries[ds]
            for i, a in enumerate(s.methods):
                for j, b in enumerate(s.methods):
                    if i != j:
                        w.writerow([ds, a, b, s.win[i, j], s.tie[i, j], s.win[j, i], len(s.images)])


def write_scores(result: CompareResult, path: str | os.PathLike) -> None:
    """Per-image rows: ``.jsonl`` (one JSON object a line, null = not computed) or ``.csv``."""
    p = Path(path)
    rows = [asdict(r) for r in result.rows]
    if p.suffix.lower() == ".jsonl":
        with open(p, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({k: r[k] for k in SCORE_FIELDS}) + "\n")
    elif p.suffix.lower() == ".csv":
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=SCORE_FIELDS)
            w.writeheader()
            w.writerows({k: _csv_value(r[k]) for k in SCORE_FIELDS} for r in rows)
    else:
        raise InputError(f"scores file must end in .csv or .jsonl, got {str(p)!r}")


def write_problems_csv(result: CompareResult, path: str | os.PathLike) -> None:
    """Every :class:`Problem` (header only when there are none)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["kind", "method", "dataset", "image", "path", "detail"])
        w.writeheader()
        w.writerows(asdict(p) for p in result.problems)


def read_scores(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``scores.jsonl`` written by :func:`write_scores` (None for values not computed)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -------------------------------------------------------------------------------------------- CLI
def add_compare_arguments(p) -> None:
    """Arguments of ``iaca-metric compare`` on an argparse (sub)parser."""
    p.add_argument("methods", nargs="+", metavar="METHOD_DIR",
                   help="one folder of outputs per method (name = folder name), datasets as sub-folders")
    p.add_argument("--ref-dir", required=True, help="folder of the low-light inputs, same layout")
    p.add_argument("--gt-dir", default=None, help="ground truth in the same layout: adds PSNR and SSIM")
    p.add_argument("--out", required=True, help="output folder (tables, CSV/JSONL, report.html)")
    p.add_argument("--names", default=None, help="comma-separated method names (default: the folder names)")
    p.add_argument("--model", default=None, help="weights folder or hub repo id (default: embedded IACA-Lite)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    p.add_argument("--mos", action="store_true", help="report MOS-scale scores instead of raw scores")
    p.add_argument("--grayscale", action="store_true", help="replicate single-channel images to RGB")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-niqe", action="store_true", help="do not compute NIQE")
    p.add_argument("--thumb-size", type=int, default=160, help="report thumbnail size in px (0 = none)")
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when any output is missing, extra, unreadable or failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_compare_cli(args, load_model: Callable) -> int:
    """Run ``iaca-metric compare`` from parsed ``args``; ``load_model(spec, revision)`` builds the model.
    Prints the Markdown tables on stdout and the problems on stderr. Returns the exit status."""
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    model = load_model(args.model, args.revision)
    result = compare_methods(args.methods, args.ref_dir, args.gt_dir, names=names, model=model, device=args.device,
                             batch_size=args.batch_size, mos=args.mos,
                             grayscale="replicate" if args.grayscale else "error", n_boot=args.n_boot,
                             seed=args.seed, niqe=not args.no_niqe, thumb_size=args.thumb_size,
                             progress=not args.quiet)
    paths = result.write(args.out, html=not args.no_html)
    print(result.to_markdown())
    for line in result.problem_summary():
        print(f"warning: {line}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {args.out}", file=sys.stderr)
    return 1 if (args.strict and result.problems) else 0
