"""Parametric candidate families (IACA-Lite 2's training data): contract, determinism, failures on the base."""
from __future__ import annotations

import numpy as np
import pytest

from iaca_metric.training import families as FA
from iaca_metric.training.enhancers import luma
from iaca_metric.training.night import srgb_to_linear

NETS = {"zero_dce", "self_supervised"}
NAMES = [n for n in FA.candidate_names() if n not in NETS]
CLEAN = tuple(f for f in FA.FAMILIES if f.name not in NETS)


@pytest.fixture(scope="module")
def low() -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:72, 0:88].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(xx / 7), 0.5 + 0.4 * np.cos(yy / 5), 0.5 + 0.3 * np.sin((xx + yy) / 9)], -1)
    img[20:40, 30:60] = [0.9, 0.6, 0.2]
    return np.clip(img * 0.12 + rng.normal(0, 0.004, img.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def made(low: np.ndarray) -> dict:
    return FA.make_candidates(low, seed=11, families=CLEAN)


def test_every_family_draws_and_kinds(made: dict) -> None:
    assert list(made) == NAMES
    kinds = {f.name: f.kind for f in FA.FAMILIES}
    assert {kinds[FA.family_of(n)] for n in made} == {"method", "failure"}
    assert sum(f.kind == "failure" for f in FA.FAMILIES) == 8
    assert {f.name for f in FA.FAMILIES if f.kind == "network"} == NETS


def test_contract_shape_range_dtype(low: np.ndarray, made: dict) -> None:
    for name, (img, params, kind) in made.items():
        assert img.shape == low.shape and img.dtype == np.float32, name
        assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1, name
        if kind == "failure":
            assert params["base"] == FA.BASE_NAME
    # every clean method brightens the dark input; under-enhancement brightens least
    m_low = float(luma(low).mean())
    for name, (img, _, kind) in made.items():
        if kind == "method":
            assert luma(img).mean() > 1.5 * m_low, name
    assert luma(made["fail_under_1"][0]).mean() < luma(made[FA.BASE_NAME][0]).mean()


def test_deterministic_and_subset_independent(low: np.ndarray, made: dict) -> None:
    again = FA.make_candidates(low, seed=11, families=CLEAN)
    part = FA.make_candidates(low, seed=11, names={"retinex_1", "fail_noise_0"}, families=CLEAN)
    assert set(part) == {"retinex_1", "fail_noise_0"}
    for n in made:
        np.testing.assert_array_equal(made[n][0], again[n][0])
        assert made[n][1] == again[n][1]
    for n in part:  # a candidate's parameters do not depend on which others are made
        np.testing.assert_array_equal(part[n][0], made[n][0])
    other = FA.make_candidates(low, seed=12, names={"gamma_0"}, families=CLEAN)
    assert other["gamma_0"][1] != made["gamma_0"][1]  # parameters are drawn per group


def test_failure_severities_are_ordered(made: dict) -> None:
    p = {n: v[1] for n, v in made.items()}
    assert p["fail_noise_0"]["k"] < p["fail_noise_1"]["k"]
    assert p["fail_jpeg_0"]["quality"] >= p["fail_jpeg_1"]["quality"]
    assert p["fail_blur_0"]["sigma"] < p["fail_blur_1"]["sigma"]
    assert p["fail_cast_0"]["strength"] < p["fail_cast_1"]["strength"]
    assert p["fail_over_0"]["target"] < p["fail_over_1"]["target"]
    assert p["fail_under_0"]["stops"] < p["fail_under_1"]["stops"]


def test_failures_differ_from_base_in_their_artefact(made: dict) -> None:
    base = made[FA.BASE_NAME][0]
    hf = lambda x: float(np.abs(np.diff(luma(x), axis=1)).mean())  # noqa: E731
    assert hf(made["fail_noise_1"][0]) > 1.3 * hf(base)
    assert hf(made["fail_blur_1"][0]) < 0.8 * hf(base)
    cast = made["fail_cast_1"][0]
    assert abs(float(luma(cast).mean()) - float(luma(base).mean())) < 0.03  # colour only, not brightness
    assert np.abs(cast - base).mean() > 0.01
    assert luma(made["fail_over_1"][0]).mean() > luma(base).mean() + 0.1


def test_family_of() -> None:
    assert FA.family_of("gamma_1") == "gamma"
    assert FA.family_of("fail_noise_0") == "fail_noise"
    assert FA.family_of("zero_dce") == "zero_dce"
    assert FA.family_of("input") == "input" and FA.family_of("real_rank03") == "real_capture"
    with pytest.raises(KeyError):
        FA.family_of("nonsense_0")


def _balance(x: np.ndarray) -> np.ndarray:
    m = x.reshape(-1, 3).mean(axis=0).astype(np.float64) + 1e-4
    return m / float(m @ np.array([0.299, 0.587, 0.114]))


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_failures_move_away_from_the_reference(low: np.ndarray, seed: int) -> None:
    # A reference with a warm balance: a cast towards it would be a correction of the base's balance.
    base = FA.make_candidates(low, seed=seed, names={FA.BASE_NAME}, families=CLEAN)[FA.BASE_NAME][0]
    ref = np.clip(base * np.array([1.25, 1.0, 0.7], np.float32) * 1.1, 0, 1)
    made = FA.make_candidates(low, seed=seed, names={"fail_cast_0", "fail_cast_1", "fail_under_0", "fail_under_1"},
                              families=CLEAN, reference=ref)
    err_base = np.linalg.norm(_balance(base) - _balance(ref))
    for d in (0, 1):
        assert np.linalg.norm(_balance(made[f"fail_cast_{d}"][0]) - _balance(ref)) > err_base + 0.02
        # at least ``stops`` darker than the darker of base and reference, in linear light
        stops = made[f"fail_under_{d}"][1]["stops"]
        lin = lambda x: float(np.mean(srgb_to_linear(x)))  # noqa: E731
        floor = min(lin(base), lin(ref))
        assert lin(made[f"fail_under_{d}"][0]) < floor * 2.0 ** -stops * 1.05
    # a reference darker than the base: the under-enhancement starts from the reference's exposure
    dark_ref = np.clip(base * 0.5, 0, 1)
    under = FA.make_candidates(low, seed=seed, names={"fail_under_0"}, families=CLEAN, reference=dark_ref)
    no_ref = FA.make_candidates(low, seed=seed, names={"fail_under_0"}, families=CLEAN)
    assert luma(under["fail_under_0"][0]).mean() < 0.8 * luma(no_ref["fail_under_0"][0]).mean()
