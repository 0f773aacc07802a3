"""Every registered enhancer: shape, range, finiteness, determinism and that it brightens a dark scene."""

from __future__ import annotations

import numpy as np
import pytest

from iaca_metric.training.enhancers import ENHANCERS, WEAK_BRIGHTENING, luma


def dark_scene(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Synthetic dark capture: smooth shading, a few coloured blocks, an edge and mild noise.

    Returns (h, w, 3) float32 in [0, 0.16] (mean luma ~0.05, like SICE's darkest exposures).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 0.3 + 0.7 * (xx / w)
    img = np.stack([shade * 0.8, shade * 0.7, shade * 0.6], axis=-1)
    img[h // 4 : h // 2, w // 8 : w // 3] = [0.9, 0.2, 0.1]
    img[h // 2 :, w // 2 : 3 * w // 4] = [0.1, 0.6, 0.9]
    img[:, 7 * w // 8 :] *= 0.3
    img = img * 0.15 + rng.normal(0, 0.004, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def low() -> np.ndarray:
    return dark_scene()


def test_registry_size_and_names() -> None:
    methods = [k for k in ENHANCERS if not k.startswith("fail_")]
    assert len(methods) >= 12
    assert len(ENHANCERS) >= 20
    assert len(set(ENHANCERS)) == len(ENHANCERS)


@pytest.mark.parametrize("name", sorted(ENHANCERS))
def test_enhancer_contract(name: str, low: np.ndarray) -> None:
    fn = ENHANCERS[name]
    out = fn(low.copy(), np.random.default_rng(123))
    assert out.shape == low.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    again = fn(low.copy(), np.random.default_rng(123))
    np.testing.assert_array_equal(out, again)
    m_in, m_out = float(luma(low).mean()), float(luma(out).mean())
    if name in WEAK_BRIGHTENING:
        assert m_in < m_out < 0.5 * 0.45 + m_in  # brighter, but clearly short of a good exposure
    else:
        assert m_out > 1.8 * m_in, f"{name} did not brighten: {m_in:.3f} -> {m_out:.3f}"


def test_enhancer_does_not_modify_input(low: np.ndarray) -> None:
    ref = low.copy()
    for name, fn in ENHANCERS.items():
        fn(low, np.random.default_rng(0))
        np.testing.assert_array_equal(low, ref, err_msg=name)


def test_random_failures_depend_on_rng(low: np.ndarray) -> None:
    a = ENHANCERS["fail_noise_amplified"](low, np.random.default_rng(1))
    b = ENHANCERS["fail_noise_amplified"](low, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_non_square_odd_size() -> None:
    img = dark_scene(67, 45, seed=3)
    for name, fn in ENHANCERS.items():
        out = fn(img, np.random.default_rng(0))
        assert out.shape == img.shape, name
        assert np.isfinite(out).all(), name
