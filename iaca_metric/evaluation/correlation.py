"""Agreement statistics between predicted and subjective scores (numpy only; logistic fit uses scipy).

SRCC (Spearman), KRCC (Kendall tau-b), PLCC (Pearson) and RMSE, overall and within scene ("group"):
the within-scene numbers are what matters for enhancement benchmarks, where scores are only
comparable between the outputs of one input.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["spearman", "psnr_ssim_rank", "kendall", "pearson", "rmse", "fit_linear", "fit_logistic4", "logistic4",
           "within_group", "within_group_srcc", "summarize", "per_family_srcc"]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return pearson(_ranks(np.asarray(a, float)), _ranks(np.asarray(b, float)))


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (tie-corrected), O(n^2): fine for scene-sized groups and a few thousand images."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), 1)
    s = float((da * db)[iu].sum())
    na, nb = float((da[iu] != 0).sum()), float((db[iu] != 0).sum())
    return s / math.sqrt(na * nb) if na > 0 and nb > 0 else 0.0


def rmse(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def fit_linear(pred: Sequence[float], target: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """Least-squares line from predictions to targets."""
    k, c = np.polyfit(np.asarray(pred, float), np.asarray(target, float), 1)
    return lambda x: k * np.asarray(x, float) + c


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """4-parameter logistic (VQEG): (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    with np.errstate(over="ignore"):  # exp overflow -> inf -> the correct 0 asymptote
        return (b1 - b2) / (1 + np.exp(-(x - b3) / (abs(b4) + 1e-12))) + b2


def fit_logistic4(pred: Sequence[float], target: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """Monotone 4-parameter logistic fit (scipy); falls back to the linear fit if it does not converge."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(pred, float), np.asarray(target, float)
    sd = x.std() or 1.0
    p0 = [y.max(), y.min(), float(np.median(x)), sd]
    try:
        params, _ = curve_fit(logistic4, x, y, p0=p0, maxfev=20000)
        return lambda v: logistic4(np.asarray(v, float), *params)
    except (RuntimeError, ValueError):
        return fit_linear(x, y)


def within_group(stat: Callable[[np.ndarray, np.ndarray], float], pred: Sequence[float],
                 target: Sequence[float], groups: Sequence[str]) -> list[float]:
    """``stat`` within each group of at least 3 items."""
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    p, t = np.asarray(pred, float), np.asarray(target, float)
    return [stat(p[idx], t[idx]) for idx in by.values() if len(idx) > 2]


def within_group_srcc(pred: Sequence[float], target: Sequence[float], groups: Sequence[str]) -> float:
    """Median over groups of Spearman's rho within the group."""
    vals = within_group(spearman, pred, target, groups)
    return float(np.median(vals)) if vals else float("nan")


def summarize(pred: Sequence[float], target: Sequence[float], groups: Sequence[str] | None = None,
              linear_map: tuple[float, float] | None = None) -> dict[str, float]:
    """All statistics for one metric. ``linear_map`` = (scale, offset), e.g. the release's MOS mapping:
    reports PLCC/RMSE after that fixed map too. Within-group statistics are medians over groups
    (PLCC within a group after a per-group linear fit is just the within-group Pearson)."""
    p, t = np.asarray(pred, float), np.asarray(target, float)
    out = {"n": int(len(p)), "srcc": spearman(p, t), "krcc": kendall(p, t), "plcc": pearson(p, t)}
    lin = fit_linear(p, t)
    out["rmse_linear_fit"] = rmse(lin(p), t)
    if linear_map is not None:
        mapped = linear_map[0] * p + linear_map[1]
        out["plcc_release_map"] = pearson(mapped, t)
        out["rmse_release_map"] = rmse(mapped, t)
    try:
        log = fit_logistic4(p, t)
        out["plcc_logistic"] = pearson(log(p), t)
        out["rmse_logistic"] = rmse(log(p), t)
    except ImportError:  # scipy is in the bench extra
        pass
    if groups is not None:
        for name, fn in (("srcc", spearman), ("krcc", kendall), ("plcc", pearson)):
            vals = within_group(fn, p, t, groups)
            out[f"within_{name}_median"] = float(np.median(vals)) if vals else float("nan")
            out[f"within_{name}_mean"] = float(np.mean(vals)) if vals else float("nan")
        out["groups"] = len(set(groups))
    return out


def per_family_srcc(pred: Sequence[float], target: Sequence[float], groups: Sequence[str],
                    families: Sequence[str]) -> dict:
    """For each candidate family: median over groups of the within-group SRCC computed on the
    family's own candidates (groups where it has >= 2), and the share of (family candidate, other
    candidate) pairs of a group that ``pred`` orders like ``target`` (the family placed among the rest)."""
    out: dict[str, dict] = {}
    by: dict[tuple[str, str], list[int]] = {}
    grp: dict[str, list[int]] = {}
    for i, (g, f) in enumerate(zip(groups, families)):
        by.setdefault((f, g), []).append(i)
        grp.setdefault(g, []).append(i)
    p, t = np.asarray(pred, float), np.asarray(target, float)
    for f in sorted(set(families)):
        within, agree, n_pairs = [], 0, 0
        for g, idx in grp.items():
            mine = by.get((f, g), [])
            if len(mine) >= 2 and np.ptp(t[mine]) > 0:
                within.append(spearman(p[mine], t[mine]))
            others = [j for j in idx if families[j] != f]
            for i in mine:
                for j in others:
                    if t[i] != t[j]:
                        n_pairs += 1
                        agree += (p[i] - p[j]) * (t[i] - t[j]) > 0
        out[f] = {"within_family_srcc_median": float(np.median(within)) if within else None,
                  "n_groups": len(within), "pairwise_agreement_vs_others": agree / n_pairs if n_pairs else None,
                  "n_pairs": n_pairs}
    return out


def psnr_ssim_rank(psnr: Sequence[float], ssim: Sequence[float]) -> np.ndarray:
    """The label-free fidelity truth of one group: the mean of each candidate's PSNR rank and SSIM rank
    against the scene's reference, scaled to [0, 1] (0 = worst, 1 = best; ties share their rank).

    Args:
        psnr, ssim: (n,) values of the group's n >= 2 candidates.
    """
    p, q = np.asarray(psnr, dtype=np.float64), np.asarray(ssim, dtype=np.float64)
    return (_ranks(p) + _ranks(q)) / (2.0 * (len(p) - 1))
