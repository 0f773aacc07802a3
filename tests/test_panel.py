"""The full-reference labelling panel: pairwise votes and round-robin win rates."""

from __future__ import annotations

import numpy as np
import pytest

from iaca_metric.training.panel import PANEL, member_values, preference, round_robin, vote_matrix, win_rates


def scene(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """Well-exposed synthetic reference: gradients, blocks, texture; (h, w, 3) float32 in [0.05, 0.95]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], axis=-1)
    img[h // 4 : h // 2, w // 4 : 3 * w // 4] = [0.8, 0.3, 0.2]
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(0.05 + 0.9 * img, 0, 1).astype(np.float32)


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return np.clip(img + np.random.default_rng(seed).normal(0, sigma, img.shape), 0, 1).astype(np.float32)


def test_panel_is_odd_and_named() -> None:
    assert len(PANEL) == 5
    assert len({m.name for m in PANEL}) == 5


def test_reference_itself_wins_every_pair() -> None:
    ref = scene()
    cands = [ref.copy(), noisy(ref, 0.05, 1), ref * 0.6, np.clip(ref * 1.3, 0, 1), ref[..., ::-1].copy()]
    w = round_robin(cands, ref)
    assert w[0] == 1.0
    for j in range(1, len(cands)):
        assert preference(ref, cands[j], ref) == 1.0
        assert preference(cands[j], ref, ref) == 0.0


def test_noisy_copy_loses_to_clean_copy() -> None:
    ref = scene()
    clean = noisy(ref, 0.01, 5)
    dirty = noisy(ref, 0.12, 6)
    assert preference(clean, dirty, ref) == 1.0
    assert preference(dirty, clean, ref) == 0.0


def test_darker_copy_loses() -> None:
    ref = scene()
    slightly = (ref * 0.9).astype(np.float32)
    darker = (ref * 0.4).astype(np.float32)
    assert preference(slightly, darker, ref) == 1.0
    assert preference(darker, slightly, ref) == 0.0


def test_identical_candidates_tie() -> None:
    ref = scene()
    a = (ref * 0.7).astype(np.float32)
    assert preference(a, a.copy(), ref) == 0.5


@pytest.mark.parametrize("n", [2, 5, 9])
def test_win_rates_sum_and_granularity(n: int) -> None:
    ref = scene(seed=1)
    # Distinct degradations (no exact ties): scores are multiples of 1/(n-1).
    cands = [np.clip(ref * (0.35 + 0.08 * i), 0, 1).astype(np.float32) for i in range(n)]
    w = round_robin(cands, ref)
    assert w.shape == (n,)
    assert np.isclose(w.sum(), n / 2)
    k = w * (n - 1)
    assert np.allclose(k, np.round(k))
    assert np.all((w >= 0) & (w <= 1))


def test_win_rates_with_ties_are_half_multiples() -> None:
    ref = scene(seed=2)
    a = (ref * 0.5).astype(np.float32)
    cands = [a, a.copy(), noisy(ref, 0.05, 3), (ref * 0.8).astype(np.float32)]
    n = len(cands)
    w = round_robin(cands, ref)
    assert np.isclose(w.sum(), n / 2)
    k = w * 2 * (n - 1)
    assert np.allclose(k, np.round(k))
    assert w[0] == w[1]


def test_vote_matrix_is_antisymmetric() -> None:
    ref = scene(seed=4)
    cands = np.stack([noisy(ref * s, 0.02, i) for i, s in enumerate([0.5, 0.7, 0.9, 1.0, 1.2])])
    p = vote_matrix(member_values(cands, ref))
    off = ~np.eye(len(cands), dtype=bool)
    assert np.allclose((p + p.T)[off], 1.0)
    assert np.all(np.isin(p, [0.0, 0.5, 1.0]))
    assert np.allclose(win_rates(member_values(cands, ref)), p.sum(1) / (len(cands) - 1))


def test_member_values_direction() -> None:
    ref = scene(seed=5)
    v = member_values([ref, noisy(ref * 0.8, 0.1, 1)], ref)
    for m in PANEL:
        good, bad = v[m.name]
        assert (good > bad) if m.higher_is_better else (good < bad), m.name


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        member_values([scene(32, 32)], scene(64, 64))
