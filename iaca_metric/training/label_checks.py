"""Validate IACA-Lite 2's labels against the human facts we have, before training on them.

No human ratings of our images exist, so the labels (:mod:`iaca_metric.training.labels`) are a model
of people. These checks confront that model with what people are known to do:

* **Artefacts are always penalised**: every synthetic failure (noise, blocking, halos, colour cast,
  over-smoothing, blur, over- and under-enhancement) must lose to the clean result it was made from
  (``families.BASE_NAME``) in >= 95 % of groups.
* **SQUARE-LOL's observers prefer Zero-DCE to Self_Supervised in 287 of 290 scenes**: our labels must
  put official Zero-DCE above Self_Supervised in >= 95 % of groups.
* **Any enhancement beats the unenhanced dark input** (the reason enhancement exists): since labels v10
  a rule of the labels (``labels.INPUT_MARGIN``), so this report for every clean method family shows
  the rule applied (100 %) rather than testing it.

Reported beside them: the Zero-DCE check split by real and simulated night inputs, and how the labels
agree (median within-group SRCC) with the label-free PSNR+SSIM-rank truth of ``benchmarks/accuracy.py``
and how often that truth itself puts Zero-DCE above Self_Supervised and a failure below its base.

CLI (reads ``index.jsonl``; ``--weights`` tries other label weights without rebuilding)::

    python -m iaca_metric.training.label_checks /work/cache/sice2/index.jsonl --out docs/results/label_checks.json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from iaca_metric.correlation import psnr_ssim_rank, spearman

__all__ = ["check_labels", "TARGET"]

#: The share every check must reach.
TARGET = 0.95


def _groups(rows: Sequence[Mapping]) -> dict[str, dict[str, Mapping]]:
    g: dict[str, dict[str, Mapping]] = defaultdict(dict)
    for r in rows:
        g[r["group"]][r["candidate"]] = r
    return g


def check_labels(rows: Sequence[Mapping], splits: Sequence[str] | None = None) -> dict:
    """Run every check on labelled index rows (``score`` present).

    Args:
        rows: ``index.jsonl`` rows.
        splits: only these splits (None: all).
    Returns:
        ``{"n_groups", "failure_vs_base": {family: {"n", "base_wins", "share", "passed"}},
        "zero_dce_vs_self_supervised": {...}, "method_vs_input": {...}, "mean_score": {family: float},
        "passed": bool}``.
    """
    from iaca_metric.training.families import BASE_NAME
    from iaca_metric.training.sice import ENHANCED_KINDS

    sel = [r for r in rows if splits is None or r["split"] in splits]
    groups = _groups(sel)
    fail: dict[str, list[bool]] = defaultdict(list)
    vs_input: dict[str, list[bool]] = defaultdict(list)
    zd: list[bool] = []
    zd_kind: dict[str, list[bool]] = defaultdict(list)
    fid_zd: list[bool] = []
    fid_fail: dict[str, list[bool]] = defaultdict(list)
    fid_srcc: list[float] = []
    mean: dict[str, list[float]] = defaultdict(list)
    for cands in groups.values():
        fid = _fidelity_rank(cands)
        base = cands.get(BASE_NAME)
        inp = cands.get("input")
        for name, r in cands.items():
            mean[r["family"]].append(float(r["score"]))
            if r["kind"] == "failure" and base is not None:
                fail[r["family"]].append(base["score"] > r["score"])
                if fid:
                    fid_fail[r["family"]].append(fid[BASE_NAME] > fid[name])
            if r["kind"] in ENHANCED_KINDS and inp is not None:
                vs_input[r["family"]].append(r["score"] > inp["score"])
        if "zero_dce" in cands and "self_supervised" in cands:
            zd.append(cands["zero_dce"]["score"] > cands["self_supervised"]["score"])
            zd_kind[next(iter(cands.values())).get("input_kind", "real")].append(zd[-1])
            if fid:
                fid_zd.append(fid["zero_dce"] > fid["self_supervised"])
        if fid:
            names = list(cands)
            fid_srcc.append(spearman([cands[n]["score"] for n in names], [fid[n] for n in names]))

    def share(v: list[bool]) -> dict:
        n = len(v)
        s = sum(v) / n if n else None
        return {"n": n, "wins": int(sum(v)), "share": None if s is None else round(s, 4),
                "passed": bool(s is not None and s >= TARGET)}

    out = {
        "n_groups": len(groups),
        "splits": list(splits) if splits else "all",
        "failure_vs_base": {k: share(v) for k, v in sorted(fail.items())},
        "zero_dce_vs_self_supervised": share(zd),
        "zero_dce_vs_self_supervised_by_input": {k: share(v) for k, v in sorted(zd_kind.items())},
        "psnr_ssim_rank_truth": {
            "labels_within_srcc_median": round(float(np.median(fid_srcc)), 4) if fid_srcc else None,
            "zero_dce_above_self_supervised": share(fid_zd),
            "base_above_failure": {k: share(v) for k, v in sorted(fid_fail.items())},
        },
        "method_vs_input": {k: share(v) for k, v in sorted(vs_input.items())},
        "mean_score": {k: round(float(np.mean(v)), 4) for k, v in sorted(mean.items(), key=lambda kv: -np.mean(kv[1]))},
    }
    checks = [v["passed"] for v in out["failure_vs_base"].values()]
    if zd:
        checks.append(out["zero_dce_vs_self_supervised"]["passed"])
    out["passed"] = bool(checks) and all(checks)
    return out


def _fidelity_rank(cands: Mapping[str, Mapping]) -> dict[str, float] | None:
    """The PSNR+SSIM-rank truth of ``benchmarks/accuracy.py`` for one group, from the stored measures
    (None when the build predates them)."""
    names = list(cands)
    if len(names) < 2 or any("m_psnr" not in cands[n] or "m_ssim_rgb" not in cands[n] for n in names):
        return None
    r = psnr_ssim_rank([cands[n]["m_psnr"] for n in names], [cands[n]["m_ssim_rgb"] for n in names])
    return dict(zip(names, r.tolist()))


def format_report(rep: dict) -> str:
    """Markdown tables of :func:`check_labels`'s result."""
    lines = [f"{rep['n_groups']} groups ({rep['splits']})", "", "| failure | clean base wins | share | >= 95 % |",
             "|---|---|---|---|"]
    for k, v in rep["failure_vs_base"].items():
        lines.append(f"| {k} | {v['wins']}/{v['n']} | {v['share']:.1%} | {'yes' if v['passed'] else 'NO'} |")
    z = rep["zero_dce_vs_self_supervised"]
    if z["n"]:
        lines += ["", f"Zero-DCE above Self_Supervised: {z['wins']}/{z['n']} = {z['share']:.1%} "
                      f"({'passed' if z['passed'] else 'FAILED'})"]
        for k, v in rep.get("zero_dce_vs_self_supervised_by_input", {}).items():
            lines.append(f"- {k} inputs: {v['wins']}/{v['n']} = {v['share']:.1%}")
    f = rep.get("psnr_ssim_rank_truth") or {}
    if f.get("labels_within_srcc_median") is not None:
        z2 = f["zero_dce_above_self_supervised"]
        lines += ["", f"PSNR+SSIM-rank truth: labels agree at median within-group SRCC "
                      f"{f['labels_within_srcc_median']:.3f}; it puts Zero-DCE above Self_Supervised in "
                      f"{z2['wins']}/{z2['n']} groups" + (f" = {z2['share']:.1%}" if z2["n"] else ""),
                  "", "| failure | base above it by PSNR+SSIM rank |", "|---|---|"]
        lines += [f"| {k} | {v['wins']}/{v['n']} = {v['share']:.1%} |" for k, v in f["base_above_failure"].items()]
    lines += ["", "| method family | above the input | mean score |", "|---|---|---|"]
    for k, v in rep["method_vs_input"].items():
        lines.append(f"| {k} | {v['wins']}/{v['n']} = {v['share']:.1%} | {rep['mean_score'].get(k, float('nan')):.3f} |")
    lines += ["", "| family | mean score |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in rep["mean_score"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("--splits", default="", help="comma-separated splits (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    ap.add_argument("--weights", default="", help='JSON object of label weights to change before checking, '
                    'e.g. \'{"cast": 0.5}\' (relabels in memory from the stored measures; the index is not written)')
    a = ap.parse_args(argv)
    rows = [json.loads(ln) for ln in a.index.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if a.weights:
        from iaca_metric.training.labels import WEIGHTS
        from iaca_metric.training.sice import label_rows

        change = json.loads(a.weights)
        unknown = sorted(set(change) - set(WEIGHTS))
        if unknown:
            ap.error(f"unknown label weight(s) {unknown}; known: {sorted(WEIGHTS)}")
        label_rows(rows, {**WEIGHTS, **{k: float(v) for k, v in change.items()}})
    rep = check_labels(rows, [s for s in a.splits.split(",") if s] or None)
    print(format_report(rep))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
