"""Simulated night captures (training/night.py) and the night groups of the SICE build."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iaca_metric.training import night, sice
from iaca_metric.training.families import FAMILIES
from tests.test_sice import NETS, fake_sice  # noqa: F401  (fixture)


def _scene(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.5 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(8 * xx)], -1)
    return (np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1) * 255).astype(np.uint8)


def test_srgb_transfer_round_trip() -> None:
    x = np.linspace(0, 1, 1001)
    assert np.abs(night.linear_to_srgb(night.srgb_to_linear(x)) - x).max() < 1e-9
    # the curve's two published anchors: the linear segment and mid grey
    assert night.srgb_to_linear(0.04045) == pytest.approx(0.04045 / 12.92)
    assert night.srgb_to_linear(0.5) == pytest.approx(0.21404, abs=1e-4)


@pytest.mark.parametrize("target", [0.02, 0.05, 0.09])
def test_simulated_capture_hits_the_target_luma(target: float) -> None:
    src = _scene()
    out = night.simulate(src, {"target_luma": target, "shot": 1e-4, "read": 1e-4, "seed": 3})
    assert out.dtype == np.uint8 and out.shape == src.shape
    luma = (out / 255.0) @ np.array([0.299, 0.587, 0.114])
    assert abs(luma.mean() - target) < 0.2 * target + 0.004


def test_noise_grows_with_shot_and_read_noise_and_is_seeded() -> None:
    src = _scene()
    clean = night.simulate(src, {"target_luma": 0.05, "shot": 0.0, "read": 0.0, "seed": 1}).astype(float)
    stds = []
    for shot, read in ((3e-5, 5e-5), (2.5e-4, 3e-4), (1e-3, 1e-3)):
        p = {"target_luma": 0.05, "shot": shot, "read": read, "seed": 1}
        a, b = night.simulate(src, p), night.simulate(src, p)
        assert np.array_equal(a, b)  # same seed, same capture
        stds.append((a.astype(float) - clean).std())
    assert stds[0] < stds[1] < stds[2] and stds[0] > 0.1
    other = night.simulate(src, {"target_luma": 0.05, "shot": 2.5e-4, "read": 3e-4, "seed": 2})
    assert not np.array_equal(other, night.simulate(src, {"target_luma": 0.05, "shot": 2.5e-4, "read": 3e-4,
                                                          "seed": 1}))


def test_sampled_parameters_stay_in_their_ranges() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = night.sample_params(rng)
        assert night.LUMA_RANGE[0] <= p["target_luma"] <= night.LUMA_RANGE[1]
        assert night.SHOT_RANGE[0] <= p["shot"] <= night.SHOT_RANGE[1]
        assert night.READ_RANGE[0] <= p["read"] <= night.READ_RANGE[1]


def test_night_group_is_built_without_failures(fake_sice: Path, tmp_path: Path) -> None:  # noqa: F811
    split_map = {"train": ["a"], "val": [], "test": []}
    groups = [g for g in sice.plan_groups(fake_sice, split_map=split_map) if g.night is not None]
    assert [g.gid for g in groups] == ["a/2_night"]
    rows = sice.process_group(groups[0], fake_sice, tmp_path, skip_families=NETS)
    kinds = {r["kind"] for r in rows}
    assert "failure" not in kinds and {"method", "input", "real_capture"} <= kinds
    methods = [r["candidate"] for r in rows if r["kind"] == "method"]
    assert methods == [f"{f.name}_{d}" for f in FAMILIES if f.kind == "method" for d in range(f.draws)]
    inp = next(r for r in rows if r["kind"] == "input")
    assert all(r["input_kind"] == "night" for r in rows)
    p = dict(groups[0].night)
    assert abs(inp["low_mean_luma"] - p["target_luma"]) < 0.2 * p["target_luma"] + 0.004
    assert inp["low_mean_luma"] < groups[0].low[2] / 255.0  # darker than its real source
    stored = [json.loads(ln) for ln in (tmp_path / "a" / "2_night" / "rows.jsonl").read_text().splitlines()]
    assert stored == rows
