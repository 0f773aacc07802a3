"""Build IACA-Lite's training data from real SICE multi-exposure brackets.

Each SICE scene is one view shot at several exposures (``scenes.csv``: scene, file,
exposure_rank with 0 = darkest, scene_size, mean_luma_0_255). From every scene we
take up to two real low-light captures as inputs and one well-exposed capture as
the reference, enhance every input with all :data:`~iaca_metric.training.enhancers.ENHANCERS`,
add the scene's other real captures and the unenhanced input as further
candidates, and label every candidate by its round-robin win rate under the
full-reference panel (:mod:`iaca_metric.training.panel`), i.e. with scores of the
same form as SQUARE-LOL's.

Rules (all constants below; justified in ``docs/training_data.md``):

* **Low-light inputs**: the two darkest exposures (rank 0 and 1) whose mean luma
  is below :data:`INPUT_MAX_LUMA` (50/255 ~ 0.2, i.e. clearly under-exposed; LOL's
  low-light inputs are far darker still). At most :data:`MAX_INPUTS_PER_SCENE`.
* **Reference**: among the remaining exposures with mean luma in
  [:data:`REF_MIN_LUMA`, :data:`REF_MAX_LUMA`] and at most :data:`REF_MAX_CLIP`
  of pixels clipped (max channel >= 250), the one minimising
  ``|mean_luma - REF_TARGET_LUMA| + REF_CLIP_WEIGHT * clipped_fraction``: a
  mid-grey exposure, but one that blows out fewer highlights is preferred. A
  scene with no admissible reference (or no input) contributes no group.
* **Candidates** of a group (scene, input): every enhancer output (15 methods +
  8 failures), the input itself (``input``: darkness must score low), and up to
  :data:`MAX_REAL_CAPTURES` of the scene's other real exposures (neither this
  input nor the reference; evenly spread over the ranks, always including the
  darkest and brightest; brighter-than-reference ones act as natural
  over-enhancement). The reference is *not* a candidate (it would trivially win
  every pair). 26-30 candidates per group (mean 29).

Output layout (paths in the index are relative to ``out_dir``)::

    out_dir/index.jsonl                       one JSON row per candidate (see build_dataset)
    out_dir/meta.json                         rules, panel and enhancer list used
    out_dir/<scene>/<input_stem>/low.png      the low-light input
    out_dir/<scene>/<input_stem>/ref.png      the reference
    out_dir/<scene>/<input_stem>/<candidate>.png
    out_dir/<scene>/<input_stem>/rows.jsonl   the group's index rows
    out_dir/<scene>/<input_stem>/DONE         written last: the group is complete

CLI::

    python -m iaca_metric.training.sice --data ../shared/data --out /work/cache/sice_iqa --workers 2
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------- rules
INPUT_MAX_LUMA = 50.0  # on the 0-255 scale of scenes.csv
MAX_INPUTS_PER_SCENE: int | None = None  # every usable dark exposure (the first build: 2)
REF_TARGET_LUMA = 0.45  # in [0, 1]
REF_MIN_LUMA = 0.30
REF_MAX_LUMA = 0.70
REF_MAX_CLIP = 0.25
REF_CLIP_WEIGHT = 2.0
CLIP_LEVEL = 250  # 8-bit max-channel value counted as clipped
MAX_REAL_CAPTURES = 6
SPLITS = ("train", "val", "test")
SPLIT_DIR = Path(__file__).resolve().parent / "splits"
FORMAT_VERSION = 2  # 2: parametric families, measured-artefact labels (labels.py)
#: Two exposures show the same view when the normalised cross-correlation of their 32x32 log-luma
#: thumbnails is at least this (single linkage within a scene). A few of SICE's "scenes" interleave two
#: brackets of different views (s208, s212: a dark input of one view and a reference of the other);
#: every full-reference measure of such a pair is meaningless. Adjacent exposures of one view score
#: 0.86-1.00, different views 0.51-0.79 (docs/training_data.md).
SAME_VIEW_NCC = 0.85
VIEW_THUMB = 32

Exposure = tuple[str, int, float]  # (file relative to the sice folder, exposure rank, mean luma 0-255)


# ----------------------------------------------------------------------------- reading and splits
def read_scenes(root: str | os.PathLike) -> dict[str, list[Exposure]]:
    """Read ``scenes.csv``.

    Args:
        root: the SICE folder holding ``scenes.csv`` and ``images/``, or the data
            root whose ``sice/`` subfolder does.
    Returns:
        ``{scene: [(file, rank, mean_luma_0_255), ...]}`` sorted by rank; ``file``
        is relative to the SICE folder.
    """
    sice = _sice_dir(root)
    scenes: dict[str, list[Exposure]] = {}
    with open(sice / "scenes.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            scenes.setdefault(row["scene"], []).append(
                (row["file"], int(row["exposure_rank"]), float(row["mean_luma_0_255"]))
            )
    return {s: sorted(v, key=lambda e: e[1]) for s, v in sorted(scenes.items())}


def _sice_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    if (root / "scenes.csv").is_file():
        return root
    if (root / "sice" / "scenes.csv").is_file():
        return root / "sice"
    raise FileNotFoundError(f"no scenes.csv in {root} or {root / 'sice'}")


def split_scenes(
    scenes: Iterable[str], seed: int = 0, fractions: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, list[str]]:
    """Deterministic scene-level train/val/test split.

    Scene ids are sorted, permuted with ``numpy.random.default_rng(seed)`` and cut
    by ``fractions`` (rounded; test takes the remainder). Images of one scene never
    straddle splits, and the result does not depend on the input order.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    ids = sorted(set(scenes))
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(fractions[0] * len(ids)))
    n_val = int(round(fractions[1] * len(ids)))
    order = [ids[i] for i in perm]
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return {name: sorted(p) for name, p in zip(SPLITS, parts)}


def write_splits(splits: dict[str, list[str]], directory: str | os.PathLike = SPLIT_DIR) -> None:
    """Write ``sice_{split}.txt`` (one scene id per line) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (d / f"sice_{name}.txt").write_text("".join(f"{s}\n" for s in ids), encoding="utf-8")


def load_splits(directory: str | os.PathLike = SPLIT_DIR) -> dict[str, list[str]]:
    """Read the committed split lists (the test scenes must never be used for training or selection)."""
    d = Path(directory)
    return {
        name: [ln.strip() for ln in (d / f"sice_{name}.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
        for name in SPLITS
    }


# ----------------------------------------------------------------------------- selection rules
def select_inputs(exposures: Sequence[Exposure], max_inputs: int | None = MAX_INPUTS_PER_SCENE) -> list[Exposure]:
    """Low-light inputs of a scene: every exposure with mean luma < :data:`INPUT_MAX_LUMA`, darkest first.

    ``max_inputs`` caps how many (None, the default: every usable dark exposure; the first build
    used 2)."""
    ordered = sorted(exposures, key=lambda e: e[1])
    dark = [e for e in ordered if e[2] < INPUT_MAX_LUMA]
    return dark if max_inputs is None else dark[:max_inputs]


def view_thumbnail(path: str | os.PathLike) -> np.ndarray:
    """Exposure-independent signature of an image's view: its :data:`VIEW_THUMB`-px (box-filtered)
    log-luma thumbnail, standardised to zero mean and unit variance, flattened (float64)."""
    x = np.asarray(Image.open(path).convert("L").resize((VIEW_THUMB, VIEW_THUMB), Image.BOX), dtype=np.float64)
    y = np.log(x / 255.0 + 0.02)
    return ((y - y.mean()) / (y.std() + 1e-6)).ravel()


def same_view_components(paths: Sequence[str | os.PathLike], threshold: float = SAME_VIEW_NCC) -> list[int]:
    """Label each image with its view: single-linkage components of the graph joining images whose
    :func:`view_thumbnail` correlation is >= ``threshold``. Returns one component id per path."""
    from scipy.sparse.csgraph import connected_components

    t = np.stack([view_thumbnail(p) for p in paths])
    _, labels = connected_components(t @ t.T / t.shape[1] >= threshold, directed=False)
    return labels.tolist()


def clipped_fraction(img_u8: np.ndarray) -> float:
    """Fraction of pixels whose max channel is >= :data:`CLIP_LEVEL` in an (H, W, 3) uint8 image."""
    return float((img_u8.max(axis=2) >= CLIP_LEVEL).mean())


def select_reference(
    exposures: Sequence[Exposure], clip: dict[str, float], exclude: Iterable[str] = ()
) -> Exposure | None:
    """Well-exposed reference of a scene (see module docstring), or None if none is admissible.

    Args:
        exposures: the scene's exposures.
        clip: ``{file: clipped fraction}`` for (at least) the admissible exposures.
        exclude: files that may not be the reference (the inputs).
    """
    excl = set(exclude)
    ok = [
        e
        for e in exposures
        if e[0] not in excl
        and REF_MIN_LUMA <= e[2] / 255.0 <= REF_MAX_LUMA
        and clip[e[0]] <= REF_MAX_CLIP
    ]
    if not ok:
        return None
    return min(ok, key=lambda e: (abs(e[2] / 255.0 - REF_TARGET_LUMA) + REF_CLIP_WEIGHT * clip[e[0]], e[1]))


def select_real_captures(others: Sequence[Exposure], k: int = MAX_REAL_CAPTURES) -> list[Exposure]:
    """At most ``k`` exposures spread evenly over the rank order (darkest and brightest always kept)."""
    ordered = sorted(others, key=lambda e: e[1])
    if len(ordered) <= k:
        return ordered
    idx = sorted(set(np.round(np.linspace(0, len(ordered) - 1, k)).astype(int).tolist()))
    return [ordered[i] for i in idx]


@dataclass(frozen=True)
class Group:
    """One (scene, low-light input) group: everything a worker needs, picklable."""

    split: str
    scene: str
    stem: str
    low: Exposure
    ref: Exposure
    real: tuple[Exposure, ...]
    #: Simulated night capture made from ``low`` (:mod:`~iaca_metric.training.night`): its parameters
    #: as sorted (key, value) pairs, or None for a real input.
    night: tuple[tuple[str, float | int], ...] | None = None

    @property
    def gid(self) -> str:
        return f"{self.scene}/{self.stem}"


def plan_groups(
    data_root: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    split_map: dict[str, list[str]] | None = None,
    max_inputs: int | None = MAX_INPUTS_PER_SCENE,
    night: bool = True,
) -> list[Group]:
    """Apply the input/reference/candidate rules to every scene of the requested splits.

    Reads each candidate reference image once to measure its clipped fraction.
    ``split_map`` defaults to :func:`split_scenes` of all scenes with ``seed``. With ``night``, every
    scene of :data:`~iaca_metric.training.night.NIGHT_SPLITS` also gets one simulated night input made
    from its brightest exposure darker than the reference (stem ``<stem>_night``, parameters from the
    group seed).
    """
    from iaca_metric.training import night as N

    sice = _sice_dir(data_root)
    scenes = read_scenes(sice)
    split_map = split_map if split_map is not None else split_scenes(scenes, seed=seed)
    scene_split = {s: name for name, ids in split_map.items() for s in ids}
    groups: list[Group] = []
    for scene, exps in scenes.items():
        split = scene_split.get(scene)
        if split not in splits:
            continue
        inputs = select_inputs(exps, max_inputs)
        if not inputs:
            continue
        in_files = {e[0] for e in inputs}
        clip = {
            e[0]: clipped_fraction(np.asarray(Image.open(sice / e[0]).convert("RGB")))
            for e in exps
            if e[0] not in in_files and REF_MIN_LUMA <= e[2] / 255.0 <= REF_MAX_LUMA
        }
        ref = select_reference(exps, clip, exclude=in_files)
        if ref is None:
            continue
        # only exposures of the reference's view: inputs, real captures and the night source
        view = dict(zip((e[0] for e in exps), same_view_components([sice / e[0] for e in exps])))
        exps = [e for e in exps if view[e[0]] == view[ref[0]]]
        inputs = [e for e in inputs if view[e[0]] == view[ref[0]]]
        if not inputs:
            continue
        for low in inputs:
            others = [e for e in exps if e[0] not in (low[0], ref[0])]
            groups.append(
                Group(split, scene, Path(low[0]).stem, low, ref, tuple(select_real_captures(others)))
            )
        if night and split in N.NIGHT_SPLITS:
            # the brightest capture darker than the reference (see night.py); the darkest input if none
            src = max((e for e in exps if e[2] < ref[2]), key=lambda e: e[2], default=inputs[0])
            stem = Path(src[0]).stem + N.NIGHT_SUFFIX
            params = N.sample_params(np.random.default_rng(group_seed(seed, f"{scene}/{stem}")))
            others = [e for e in exps if e[0] != ref[0]]  # the source exposure is a real capture here
            groups.append(Group(split, scene, stem, src, ref, tuple(select_real_captures(others)),
                                night=tuple(sorted(params.items()))))
    return groups


# ----------------------------------------------------------------------------- one group
def _load(path: Path, size: int | None) -> np.ndarray:
    """Read an image as (H, W, 3) uint8, optionally resized so that its longer side is ``size``."""
    im = Image.open(path).convert("RGB")
    if size is not None and max(im.size) != size:
        s = size / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _save_png(path: Path, img_u8: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(img_u8).save(tmp, format="PNG", compress_level=3)
    os.replace(tmp, path)  # never leave a truncated PNG behind


def group_seed(seed: int, gid: str) -> int:
    """Stable per-group seed (independent of process, order and Python hash randomisation)."""
    return zlib.crc32(f"{seed}:{gid}".encode())


def candidate_kind(name: str) -> str:
    """'input', 'real_capture', 'failure' or 'method' for a candidate name."""
    if name == "input":
        return "input"
    if name.startswith("real_rank"):
        return "real_capture"
    return "failure" if name.startswith("fail_") else "method"


def process_group(
    group: Group, data_root: str | os.PathLike, out_dir: str | os.PathLike, size: int | None = None, seed: int = 0,
    skip_families: Sequence[str] = (),
) -> list[dict]:
    """Make and measure one group's candidates; resumable per candidate.

    Each candidate is written as ``<name>.png`` and one line of ``measures.jsonl`` (its family,
    parameters and :data:`~iaca_metric.training.labels.MEASURES`); a rerun makes only the missing
    ones, so families can be added to an existing build (e.g. the networks, once their weights are
    there). ``rows.jsonl`` and ``DONE`` are rewritten when the group's candidate set is complete.
    Scores are not stored here: :func:`label_rows` computes them from the measures for the whole
    index, so relabelling never needs a rebuild.

    Returns:
        The group's rows (without ``score``).
    """
    from iaca_metric.training.enhancers import luma
    from iaca_metric.training.families import FAMILIES, make_candidates
    from iaca_metric.training.labels import MEASURES_VERSION, measure

    from iaca_metric.training import night as N

    # Night groups carry no failure families: their base is itself noisy, so "a failure loses to the
    # clean result it came from" would not be defined there (and JPEG would act as a denoiser).
    families = tuple(f for f in FAMILIES if f.name not in set(skip_families)
                     and not (group.night is not None and f.kind == "failure"))
    out = Path(out_dir)
    gdir = out / group.scene / group.stem
    gdir.mkdir(parents=True, exist_ok=True)
    sice = _sice_dir(data_root)
    meas_path = gdir / "measures.jsonl"
    have = {r["candidate"]: r for r in _read_jsonl(meas_path)} if meas_path.is_file() else {}
    have = {k: r for k, r in have.items() if (gdir / f"{k}.png").is_file()}

    fam_names = [f.name if f.draws == 1 else f"{f.name}_{d}" for f in families for d in range(f.draws)]
    real_names = [f"real_rank{e[1]:02d}" for e in group.real]
    wanted = fam_names + ["input"] + real_names
    missing = [n for n in wanted if n not in have]
    stale = [n for n in wanted if n in have and have[n].get("mv") != MEASURES_VERSION]
    if stale:  # measured by older definitions: re-measure the saved 8-bit images
        ref = _load(gdir / "ref.png", None).astype(np.float32) / 255.0
        imgs = np.stack([_load(gdir / f"{n}.png", None) for n in stale]).astype(np.float32) / 255.0
        values = measure(imgs, ref)
        for i, n in enumerate(stale):
            have[n] = {**{k: v for k, v in have[n].items() if not k.startswith("m_")}, "mv": MEASURES_VERSION,
                       **{f"m_{k}": round(float(v[i]), 6) for k, v in values.items()}}
        tmp = meas_path.with_name("measures.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in have.values()), encoding="utf-8")
        os.replace(tmp, meas_path)
    if missing:
        low_u8 = _load(sice / group.low[0], size)
        if group.night is not None:
            low_u8 = N.simulate(low_u8, dict(group.night))
        ref_u8 = _load(sice / group.ref[0], size)
        low = low_u8.astype(np.float32) / 255.0
        ref = ref_u8.astype(np.float32) / 255.0
        if not (gdir / "low.png").is_file():
            _save_png(gdir / "low.png", low_u8)
        if not (gdir / "ref.png").is_file():
            _save_png(gdir / "ref.png", ref_u8)
        made = make_candidates(low, group_seed(seed, group.gid), names=set(missing), families=families,
                               reference=ref)
        new: list[tuple[str, np.ndarray, dict, str]] = [
            (n, _to_u8(made[n][0]), made[n][1], made[n][2]) for n in fam_names if n in made]
        if "input" in missing:
            new.append(("input", low_u8, {}, "input"))
        for e, n in zip(group.real, real_names):
            if n in missing:
                new.append((n, _load(sice / e[0], size), {"file": e[0]}, "real_capture"))
        # Measured on the 8-bit pixels that are saved: the labels judge exactly what the model sees.
        values = measure(np.stack([x[1] for x in new]).astype(np.float32) / 255.0, ref)
        with open(meas_path, "a", encoding="utf-8") as fh:
            for i, (n, img, params, kind) in enumerate(new):
                _save_png(gdir / f"{n}.png", img)
                rec = {"candidate": n, "kind": kind, "family": _family(n), "params": params, "mv": MEASURES_VERSION,
                       "mean_luma": round(float(luma(img.astype(np.float32) / 255.0).mean()), 5),
                       **{f"m_{k}": round(float(v[i]), 6) for k, v in values.items()}}
                fh.write(json.dumps(rec) + "\n")  # after the PNG: a line always has its image
                have[n] = rec
    rel = f"{group.scene}/{group.stem}"
    low_luma = group.low[2] / 255.0 if group.night is None else have["input"]["mean_luma"]
    rows = []
    for n in wanted:
        rec = have[n]
        rows.append({
            "split": group.split, "scene": group.scene, "group": group.gid, "candidate": n,
            "kind": rec["kind"], "family": rec["family"], "path": f"{rel}/{n}.png", "low": f"{rel}/low.png",
            "ref": f"{rel}/ref.png", "n_candidates": len(wanted), "low_file": group.low[0],
            "ref_file": group.ref[0], "low_mean_luma": round(low_luma, 5),
            "input_kind": "real" if group.night is None else "night",
            **{k: v for k, v in rec.items() if k not in ("candidate", "kind", "family")},
        })
    text = "".join(json.dumps(r) + "\n" for r in rows)
    rows_path, done = gdir / "rows.jsonl", gdir / "DONE"
    if not (done.is_file() and rows_path.is_file() and rows_path.read_text(encoding="utf-8") == text):
        tmp = gdir / "rows.jsonl.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, rows_path)
        done.write_text(f"{len(rows)}\n", encoding="utf-8")  # last: the group is complete
    return rows


def _family(name: str) -> str:
    from iaca_metric.training.families import family_of

    return family_of(name)


#: Candidate kinds that are clean enhancements of the input (the labels rank the input below all of them).
ENHANCED_KINDS = ("method", "network")


def label_rows(rows: list[dict], weights: dict[str, float] | None = None) -> list[dict]:
    """Add ``score`` (the measured-artefact utility's expected round-robin win rate within each group,
    :func:`iaca_metric.training.labels.win_rates`, with ``weights`` or the shipped
    :data:`~iaca_metric.training.labels.WEIGHTS`) to every row; returns the same list. A failure whose
    ``params["base"]`` names a candidate of its group is labelled with that base's colour penalties as a
    floor (:data:`~iaca_metric.training.labels.BASE_FLOORED`). The unenhanced input ranks below every
    clean enhancement (:data:`ENHANCED_KINDS`) by at least
    :data:`~iaca_metric.training.labels.INPUT_MARGIN` of utility."""
    from iaca_metric.training.labels import MEASURES, WEIGHTS, win_rates

    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    for g in by_group.values():
        values = {k: np.array([r[f"m_{k}"] for r in g]) for k in MEASURES}
        where = {r["candidate"]: i for i, r in enumerate(g)}
        # a synthetic failure names the candidate it damaged (families.make_candidates); -1: none here
        derived = [where.get((r.get("params") or {}).get("base"), -1) if r["kind"] == "failure" else -1
                   for r in g]
        kinds = [r["kind"] for r in g]
        for r, s in zip(g, win_rates(values, weights if weights is not None else WEIGHTS,
                                     derived_from=derived, unenhanced=[k == "input" for k in kinds],
                                     enhanced=[k in ENHANCED_KINDS for k in kinds])):
            r["score"] = round(float(s), 6)
    return rows


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(ln) for ln in fh if ln.strip()]


# ----------------------------------------------------------------------------- the whole build
def _init_worker() -> None:
    # Workers share 2 cores: one intra-op thread each, or they fight over them.
    import torch

    torch.set_num_threads(1)


def _run(args: tuple) -> list[dict]:
    return process_group(*args)


def build_dataset(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    workers: int = 2,
    size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    split_map: dict[str, list[str]] | None = None,
    progress: bool = True,
    skip_families: Sequence[str] = (),
) -> Path:
    """Build (or resume) the dataset and write ``out_dir/index.jsonl``.

    Args:
        data_root: the shared data folder (containing ``sice/``) or the SICE folder itself.
        out_dir: output folder (created).
        splits: which splits to build.
        workers: processes; 1 runs in-process.
        size: resize every image so its longer side is ``size`` (None: keep 512).
        seed: split seed and base of the per-group seeds.
        limit: only the first ``limit`` groups (in plan order) - for timing/tests.
        split_map: explicit ``{split: [scenes]}`` (default: :func:`split_scenes` with ``seed``).
        progress: show a tqdm bar on stderr.

    Index rows (``index.jsonl``, one per candidate, sorted by group then candidate order):
        split, scene, group ("<scene>/<input stem>"), candidate, kind
        (method/failure/real_capture/input), path, low, ref (relative to
        ``out_dir``), score (round-robin win rate in [0, 1]; a group's scores sum
        to n/2), n_candidates, mean_luma, ref_mean_luma, low_file, ref_file,
        real_file (real captures only) and ``panel_<member>`` raw values.

    Returns:
        Path of ``index.jsonl``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = plan_groups(data_root, splits=splits, seed=seed, split_map=split_map)
    if limit is not None:
        groups = groups[:limit]
    _write_meta(out, size, seed)
    tasks = [(g, str(data_root), str(out), size, seed, tuple(skip_families)) for g in groups]
    results: dict[str, list[dict]] = {}
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="SICE groups", unit="group", file=sys.stderr)
    if workers <= 1:
        _init_worker()
        for t in tasks:
            results[t[0].gid] = _run(t)
            if bar is not None:
                bar.update()
    else:
        ctx = mp.get_context("spawn")  # no fork after torch has started its thread pools
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for g, rows in zip(tasks, pool.imap(_run, tasks)):
                results[g[0].gid] = rows
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    index = write_index(out, [r for g in groups for r in results[g.gid]])
    print(f"{len(groups)} groups written to {index} in {time.time() - t0:.1f} s", file=sys.stderr)
    return index


def write_index(out: Path, rows: list[dict]) -> Path:
    """Label ``rows`` (:func:`label_rows`) and write ``out/index.jsonl`` atomically."""
    index = Path(out) / "index.jsonl"
    tmp = index.with_name("index.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in label_rows(rows):
            fh.write(json.dumps(r) + "\n")
    os.replace(tmp, index)
    return index


def relabel(out_dir: str | os.PathLike) -> Path:
    """Recompute every score of an existing build from its stored measures (no image is read).

    ``meta.json`` is rewritten with the weights and SIGMA the scores now come from (its size and seed
    are kept), so a build's record never names weights its labels were not made with."""
    out = Path(out_dir)
    rows = [r for p in sorted(out.glob("*/*/rows.jsonl")) for r in _read_jsonl(p)]
    # Only the groups of the current index: a folder may hold groups an older build planned and a
    # newer rule dropped (e.g. an input of another view than the reference); they must not come back.
    if (out / "index.jsonl").is_file():
        current = {r["group"] for r in _read_jsonl(out / "index.jsonl")}
        rows = [r for r in rows if r["group"] in current]
    index = write_index(out, rows)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    _write_meta(out, meta.get("size"), meta.get("seed", 0))
    return index


def _write_meta(out: Path, size: int | None, seed: int) -> None:
    from iaca_metric.training.families import FAMILIES
    from iaca_metric.training.labels import BASE_FLOORED, INPUT_MARGIN, MEASURES, SIGMA, WEIGHTS

    meta = {
        "format_version": FORMAT_VERSION,
        "size": size,
        "seed": seed,
        "rules": {
            "INPUT_MAX_LUMA": INPUT_MAX_LUMA,
            "MAX_INPUTS_PER_SCENE": MAX_INPUTS_PER_SCENE,
            "REF_TARGET_LUMA": REF_TARGET_LUMA,
            "REF_MIN_LUMA": REF_MIN_LUMA,
            "REF_MAX_LUMA": REF_MAX_LUMA,
            "REF_MAX_CLIP": REF_MAX_CLIP,
            "REF_CLIP_WEIGHT": REF_CLIP_WEIGHT,
            "CLIP_LEVEL": CLIP_LEVEL,
            "MAX_REAL_CAPTURES": MAX_REAL_CAPTURES,
        },
        "families": [{"name": f.name, "kind": f.kind, "draws": f.draws} for f in FAMILIES],
        "measures": list(MEASURES),
        "label_weights": WEIGHTS,
        "label_sigma": SIGMA,
        "label_base_floored": list(BASE_FLOORED),
        # the unenhanced input ranks below every candidate of these kinds by at least this utility
        "label_input_below": {"kinds": list(ENHANCED_KINDS), "margin": INPUT_MARGIN},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: build the SICE-derived IQA dataset (see module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data", help="data root containing sice/ (default ../shared/data)")
    p.add_argument("--out", default="/work/cache/sice_iqa", help="output folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=None, help="resize longer side to this (default: keep 512)")
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits to build")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N groups (timing)")
    p.add_argument("--write-splits", action="store_true", help="(re)write the committed split lists and exit")
    p.add_argument("--skip-families", default="", help="comma-separated families not to make (e.g. networks "
                   "whose weights are missing); a later run without it adds them")
    p.add_argument("--relabel", action="store_true", help="only recompute index.jsonl's scores from stored measures")
    a = p.parse_args(argv)
    if a.write_splits:
        write_splits(split_scenes(read_scenes(a.data), seed=a.seed))
        print(f"wrote split lists to {SPLIT_DIR}")
        return
    if a.relabel:
        print(relabel(a.out))
        return
    splits = tuple(s for s in a.splits.split(",") if s)
    build_dataset(a.data, a.out, splits=splits, workers=a.workers, size=a.size, seed=a.seed, limit=a.limit,
                  skip_families=[f for f in a.skip_families.split(",") if f])


if __name__ == "__main__":
    main()
