"""The training targets of benchmarks/fidelity_truth.py and labels v11 (iaca_metric.training.target_blend):
the PSNR+SSIM rank and the rule-bound blend of it with the labels (pure numpy on fabricated index rows; no
data, no training)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from iaca_metric.evaluation.correlation import psnr_ssim_rank, spearman
from iaca_metric.training import target_blend as tb
from iaca_metric.training.families import BASE_NAME

ROOT = Path(__file__).resolve().parents[1]


def _group(gid: str = "s001/2") -> list[dict]:
    """A scene where the rank and the labels disagree on purpose: the PSNR+SSIM rank prefers the failures
    to their base and Self_Supervised to Zero-DCE, the labels the other way round."""
    #        candidate          kind       label  psnr  ssim
    spec = [(BASE_NAME, "method", 0.70, 15.0, 0.60),
            ("gamma_0", "method", 0.80, 17.0, 0.70),
            ("log_0", "method", 0.50, 14.0, 0.55),
            ("fail_noise_0", "failure", 0.40, 16.0, 0.65),
            ("fail_cast_0", "failure", 0.30, 18.0, 0.75),
            ("zero_dce", "network", 0.90, 13.0, 0.50),
            ("self_supervised", "network", 0.20, 19.0, 0.80),
            ("input", "input", 0.00, 20.0, 0.85)]  # absurd fidelity for the input: the rule must still hold
    return [{"split": "train", "group": gid, "candidate": c, "kind": k, "score": s, "m_psnr": p, "m_ssim_rgb": q,
             "path": f"{gid}/{c}.png", "low": f"{gid}/low.png", "ref": f"{gid}/ref.png"} for c, k, s, p, q in spec]


def test_blend_endpoints_follow_each_truth():
    g = _group()
    labels = [r["score"] for r in g]
    rank = psnr_ssim_rank([r["m_psnr"] for r in g], [r["m_ssim_rgb"] for r in g])
    # weight 0 on these labels: the rules already hold, so the target orders exactly like the labels
    assert spearman(tb.blended_target(g, 0.0), labels) == pytest.approx(1.0)
    t1 = tb.blended_target(g, 1.0)
    # weight 1: the rank, except where the rules override it; the methods keep the rank's order
    methods = [i for i, r in enumerate(g) if r["kind"] == "method"]
    assert spearman(t1[methods], rank[methods]) == pytest.approx(1.0)
    assert spearman(t1, rank) < 0.5  # the rules moved the failures, Self_Supervised and the input down


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_blend_rules_hold_with_their_gaps(weight):
    g = _group()
    names = [r["candidate"] for r in g]
    t = tb.blended_target(g, weight, gap=0.2, self_supervised_gap=0.7)
    base = t[names.index(BASE_NAME)]
    for i, r in enumerate(g):
        if r["kind"] == "failure":
            assert t[i] <= base - 0.2 + 1e-12, r["candidate"]
    assert t[names.index("self_supervised")] <= t[names.index("zero_dce")] - 0.7 + 1e-12
    enhanced = [t[i] for i, r in enumerate(g) if r["kind"] in ("method", "network")]
    assert t[names.index("input")] <= min(enhanced) - 0.2 + 1e-12
    # candidates no rule touches keep the blend's value: (1 - w) z(labels) + w z(rank)
    z = lambda x: (np.asarray(x, float) - np.mean(x)) / np.std(x)  # noqa: E731
    raw = (1 - weight) * z([r["score"] for r in g]) + weight * z(
        psnr_ssim_rank([r["m_psnr"] for r in g], [r["m_ssim_rgb"] for r in g]))
    for c in ("gamma_0", "log_0", "zero_dce", BASE_NAME):
        assert t[names.index(c)] == pytest.approx(raw[names.index(c)])


def test_blend_rejects_a_weight_outside_0_1():
    with pytest.raises(ValueError, match="rank_weight"):
        tb.blended_target(_group(), 1.5)


def test_write_target_index_rank_and_blend(tmp_path):
    rows = _group("s001/2") + _group("s002/3")
    index = tmp_path / "sice" / "index.jsonl"
    index.parent.mkdir()
    index.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for weight in (1.0, 0.5):
        out = tmp_path / f"w{weight}" / "index.jsonl"
        assert tb.write_target_index(index, out, rank_weight=weight) == 2
        got = [json.loads(ln) for ln in out.read_text().splitlines()]
        assert [r["candidate"] for r in got] == [r["candidate"] for r in rows]
        assert all(Path(r["path"]).is_absolute() and r["path"].endswith(o["path"]) for r, o in zip(got, rows))
        first = np.array([r["score"] for r in got[:8]])
        if weight == 1.0:  # the plain rank in [0, 1], rules not applied
            np.testing.assert_allclose(first, psnr_ssim_rank([r["m_psnr"] for r in rows[:8]],
                                                             [r["m_ssim_rgb"] for r in rows[:8]]))
        else:
            np.testing.assert_allclose(first, tb.blended_target(rows[:8], 0.5))


def test_labels_v11_command_writes_the_shipped_blend(tmp_path):
    """`python -m iaca_metric.training.target_blend` (step 2 of reproduce) writes labels v11 with the
    shipped constants: the blend at W = 0.8 with the Self_Supervised gap of 2, the rules holding."""
    assert (tb.RANK_WEIGHT, tb.GAP, tb.SELF_SUPERVISED_GAP) == (0.8, 0.1, 2.0)
    rows = _group("s001/2")
    index = tmp_path / "sice" / "index.jsonl"
    index.parent.mkdir()
    index.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels_v11" / "index.jsonl"
    assert tb.main([str(index), str(out)]) == 0
    got = np.array([json.loads(ln)["score"] for ln in out.read_text().splitlines()])
    np.testing.assert_allclose(got, tb.blended_target(rows, 0.8, 0.1, 2.0))
    names = [r["candidate"] for r in rows]
    assert got[names.index("self_supervised")] <= got[names.index("zero_dce")] - 2.0 + 1e-12


def test_benchmark_writes_the_same_targets_as_the_recipe():
    """benchmarks/fidelity_truth.py trains on the targets the shipped recipe writes (one implementation)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fidelity_truth as ft

    assert ft.write_target_index is tb.write_target_index and ft.read_groups is tb.read_groups
