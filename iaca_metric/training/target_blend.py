"""Labels v11: the rule-bound blend of the labels (v10) and each group's PSNR+SSIM rank.

Issue 12 scores the default model against two truths, our labels (a model of people, checked against
the human facts) and the label-free PSNR+SSIM rank of each candidate against the scene's well-exposed
capture. Labels v11 are a blend of both, within each group ``(1 - W) z(labels) + W z(rank)`` (``z``:
standardised within the group), with the human facts imposed as rules afterwards (every synthetic failure
below its clean base, the unenhanced input below every clean enhancement, Self_Supervised below official
Zero-DCE). The shipped recipe (``reproduce``) trains on :data:`RANK_WEIGHT`, :data:`GAP` and
:data:`SELF_SUPERVISED_GAP`; ``docs/training_data.md`` ("What the two truths ask") has why and the numbers.

    python -m iaca_metric.training.target_blend WORK/sice/index.jsonl WORK/labels_v11/index.jsonl

The output is a copy of the index with every ``score`` replaced by the target and paths made absolute,
so ``iaca-metric train --data WORK/labels_v11`` trains on it with the build's images.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from iaca_metric.evaluation.correlation import psnr_ssim_rank
from iaca_metric.training.families import BASE_NAME

__all__ = ["RANK_WEIGHT", "GAP", "SELF_SUPERVISED_GAP", "read_groups", "group_rank", "blended_target",
           "write_target_index"]

#: Labels v11 (IACA-Lite 2.5): weight of the PSNR+SSIM rank in the blend (the labels get 1 - W).
RANK_WEIGHT = 0.8
#: Margin of each rule, in within-group standard deviations of the blend.
GAP = 0.1
#: Margin of Self_Supervised below official Zero-DCE: a larger one keeps SQUARE-LOL's preference (287 of
#: 290 scenes) on real photos, which the rank alone contradicts (docs/training_data.md).
SELF_SUPERVISED_GAP = 2.0


def read_groups(index: Path, split: str | None = None) -> dict[str, list[dict]]:
    """``index.jsonl`` rows grouped by scene group, in file order (only ``split`` when given)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for ln in index.read_text(encoding="utf-8").splitlines():
        if ln.strip():
            r = json.loads(ln)
            if split is None or r["split"] == split:
                by[r["group"]].append(r)
    return by


def group_rank(group: list[dict]) -> np.ndarray:
    """PSNR+SSIM rank (0 worst, 1 best) of one group's rows (``m_psnr``, ``m_ssim_rgb``)."""
    return psnr_ssim_rank([r["m_psnr"] for r in group], [r["m_ssim_rgb"] for r in group])


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / (x.std() + 1e-12)


def blended_target(group: list[dict], rank_weight: float, gap: float = GAP,
                   self_supervised_gap: float | None = None) -> np.ndarray:
    """Training target (n,) of one group's ``index.jsonl`` rows (``score``, ``m_psnr``, ``m_ssim_rgb``,
    ``candidate``, ``kind``): ``(1 - rank_weight) * z(labels) + rank_weight * z(PSNR+SSIM rank)``, then the
    human-fact rules, in units of the within-group standard deviation: each synthetic failure at most its
    clean base (``families.BASE_NAME``) minus ``gap``; Self_Supervised at most official Zero-DCE minus
    ``self_supervised_gap`` (default ``gap``); the unenhanced input at most the lowest clean enhancement
    (methods and networks) minus ``gap``. A rule whose anchor is missing from the group does not apply."""
    if not 0.0 <= rank_weight <= 1.0:
        raise ValueError(f"rank_weight must be in [0, 1], got {rank_weight}")
    ss_gap = gap if self_supervised_gap is None else self_supervised_gap
    labels = np.array([r["score"] for r in group], dtype=np.float64)
    t = (1.0 - rank_weight) * _z(labels) + rank_weight * _z(group_rank(group))
    names = [r["candidate"] for r in group]
    if BASE_NAME in names:  # rules applied in this order: failures, then networks, then the input
        base = t[names.index(BASE_NAME)]
        for i, r in enumerate(group):
            if r["kind"] == "failure":
                t[i] = min(t[i], base - gap)
    if "zero_dce" in names and "self_supervised" in names:
        i, j = names.index("self_supervised"), names.index("zero_dce")
        t[i] = min(t[i], t[j] - ss_gap)
    enhanced = [i for i, r in enumerate(group) if r["kind"] in ("method", "network")]
    if enhanced:
        for i, r in enumerate(group):
            if r["kind"] == "input":
                t[i] = min(t[i], t[enhanced].min() - gap)
    return t


def write_target_index(index: Path, out: Path, rank_weight: float = 1.0, gap: float = GAP,
                       self_supervised_gap: float | None = None) -> int:
    """Copy ``index`` to ``out`` with every score replaced by its group's PSNR+SSIM rank (0 worst, 1 best;
    ``rank_weight`` 1) or by :func:`blended_target` (``rank_weight`` below 1), and paths made absolute.
    Returns the number of groups."""
    by = read_groups(index)
    base = index.parent.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for group in by.values():
            if rank_weight >= 1.0:
                target = group_rank(group)
            else:
                target = blended_target(group, rank_weight, gap, self_supervised_gap)
            for r, v in zip(group, target):
                r = {**r, "score": float(v)}
                for k in ("path", "low", "ref"):
                    if r.get(k):
                        r[k] = str(base / r[k])
                fh.write(json.dumps(r) + "\n")
    return len(by)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path, help="index.jsonl of the SICE build (labels v10)")
    ap.add_argument("out", type=Path, help="where to write the relabelled index.jsonl")
    ap.add_argument("--rank-weight", type=float, default=RANK_WEIGHT, help="1: the PSNR+SSIM rank alone")
    ap.add_argument("--gap", type=float, default=GAP)
    ap.add_argument("--self-supervised-gap", type=float, default=SELF_SUPERVISED_GAP)
    a = ap.parse_args(argv)
    n = write_target_index(a.index, a.out, a.rank_weight, a.gap, a.self_supervised_gap)
    print(f"wrote {a.out}: {n} groups (rank weight {a.rank_weight}, gap {a.gap}, "
          f"Self_Supervised gap {a.self_supervised_gap})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
