"""Per-family agreement (leave-one-family-out reporting) and the PSNR+SSIM-rank second truth."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from iaca_metric.correlation import per_family_srcc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from accuracy import psnr_ssim_rank_truth  # noqa: E402


def test_per_family_srcc_within_and_against_others() -> None:
    groups = ["g1"] * 4 + ["g2"] * 4
    fams = ["a", "a", "b", "b"] * 2
    target = [0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.7, 0.3]
    perfect = per_family_srcc(target, target, groups, fams)
    assert perfect["a"]["within_family_srcc_median"] == pytest.approx(1.0)
    assert perfect["a"]["pairwise_agreement_vs_others"] == 1.0 and perfect["a"]["n_pairs"] == 8
    # reverse family a's internal order only: its within-family SRCC flips, b is untouched
    pred = [0.1, 0.9, 0.6, 0.4, 0.2, 0.8, 0.7, 0.3]
    r = per_family_srcc(pred, target, groups, fams)
    assert r["a"]["within_family_srcc_median"] == pytest.approx(-1.0)
    assert r["b"]["within_family_srcc_median"] == pytest.approx(1.0)
    assert r["a"]["pairwise_agreement_vs_others"] == 0.0  # every a-vs-b pair is now ordered wrongly
    # a family with one candidate per group has no within-family SRCC but still a pairwise share
    r1 = per_family_srcc(target, target, ["g"] * 3, ["x", "y", "y"])
    assert r1["x"]["within_family_srcc_median"] is None and r1["x"]["pairwise_agreement_vs_others"] == 1.0


def test_psnr_ssim_rank_truth() -> None:
    t = psnr_ssim_rank_truth([30.0, 20.0, 25.0, 1.0, 2.0], [0.9, 0.5, 0.95, 0.1, 0.2], ["a", "a", "a", "b", "b"])
    np.testing.assert_allclose(t, [0.75, 0.0, 0.75, 0.0, 1.0])
    nan = psnr_ssim_rank_truth([float("nan"), 1.0], [0.1, 0.2], ["a", "a"])
    assert np.isnan(nan).all()
