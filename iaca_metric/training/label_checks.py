"""Validate IACA-Lite 2's labels against the human facts we have, before training on them.

No human ratings of our images exist, so the labels (:mod:`iaca_metric.training.labels`) are a model
of people. These checks confront that model with what people are known to do:

* **Artefacts are always penalised**: every synthetic failure (noise, blocking, halos, colour cast,
  over-smoothing, blur, over- and under-enhancement) must lose to the clean result it was made from
  (``families.BASE_NAME``) in >= 95 % of groups.
* **SQUARE-LOL's observers prefer Zero-DCE to Self_Supervised in 287 of 290 scenes**: our labels must
  put official Zero-DCE above Self_Supervised in >= 95 % of groups.
* **Any enhancement beats the unenhanced dark input** (the reason enhancement exists): reported for
  every clean method family.

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

    sel = [r for r in rows if splits is None or r["split"] in splits]
    groups = _groups(sel)
    fail: dict[str, list[bool]] = defaultdict(list)
    vs_input: dict[str, list[bool]] = defaultdict(list)
    zd: list[bool] = []
    mean: dict[str, list[float]] = defaultdict(list)
    for cands in groups.values():
        base = cands.get(BASE_NAME)
        inp = cands.get("input")
        for name, r in cands.items():
            mean[r["family"]].append(float(r["score"]))
            if r["kind"] == "failure" and base is not None:
                fail[r["family"]].append(base["score"] > r["score"])
            if r["kind"] in ("method", "network") and inp is not None:
                vs_input[r["family"]].append(r["score"] > inp["score"])
        if "zero_dce" in cands and "self_supervised" in cands:
            zd.append(cands["zero_dce"]["score"] > cands["self_supervised"]["score"])

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
        "method_vs_input": {k: share(v) for k, v in sorted(vs_input.items())},
        "mean_score": {k: round(float(np.mean(v)), 4) for k, v in sorted(mean.items(), key=lambda kv: -np.mean(kv[1]))},
    }
    checks = [v["passed"] for v in out["failure_vs_base"].values()]
    if zd:
        checks.append(out["zero_dce_vs_self_supervised"]["passed"])
    out["passed"] = bool(checks) and all(checks)
    return out


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
    a = ap.parse_args(argv)
    rows = [json.loads(ln) for ln in a.index.read_text(encoding="utf-8").splitlines() if ln.strip()]
    rep = check_labels(rows, [s for s in a.splits.split(",") if s] or None)
    print(format_report(rep))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
