"""Numeric checks of the no-reference baselines on constructed images."""

from __future__ import annotations

import math

import pytest
import torch

from iaca_metric.baselines import (
    BASELINES,
    brightness_score,
    colourfulness_score,
    contrast_score,
    entropy_score,
    loe_score,
)
from iaca_metric.inputs import InputError


def _grey(v: float, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.full((1, 3, h, w), v)


def _ramp256() -> torch.Tensor:
    """A grey image holding each 8-bit level k/255 exactly 4 times."""
    levels = torch.arange(256, dtype=torch.float32).repeat(4) / 255.0
    return levels.view(1, 1, 32, 32).repeat(1, 3, 1, 1)


def test_brightness() -> None:
    assert brightness_score(_grey(0.5)).item() == pytest.approx(0.0, abs=1e-7)
    assert brightness_score(_grey(0.1)).item() == pytest.approx(-0.4, abs=1e-6)
    assert brightness_score(_grey(1.0)).item() == pytest.approx(-0.5, abs=1e-6)
    # pure blue has luma 0.114
    blue = torch.zeros(1, 3, 4, 4)
    blue[:, 2] = 1
    assert brightness_score(blue).item() == pytest.approx(-(0.5 - 0.114), abs=1e-6)


def test_entropy() -> None:
    assert entropy_score(_grey(0.3)).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_score(_ramp256()).item() == pytest.approx(8.0, abs=1e-5)
    half = torch.zeros(1, 3, 8, 8)
    half[..., 4:] = 1.0  # two equally likely levels -> 1 bit
    assert entropy_score(half).item() == pytest.approx(1.0, abs=1e-6)


def test_colourfulness() -> None:
    assert colourfulness_score(_grey(0.7)).item() == 0.0
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    # rg = 255, yb = 127.5, no spread: M = 0.3 * sqrt(255^2 + 127.5^2)
    assert colourfulness_score(red).item() == pytest.approx(0.3 * math.hypot(255, 127.5), rel=1e-5)
    # half red, half green: rg = +-255 (std 255, mean 0), yb = 127.5 constant
    rg = torch.zeros(1, 3, 4, 4)
    rg[:, 0, :, :2] = 1.0
    rg[:, 1, :, 2:] = 1.0
    assert colourfulness_score(rg).item() == pytest.approx(255 + 0.3 * 127.5, rel=1e-5)


def test_colourfulness_gradient_finite_on_grey() -> None:
    x = _grey(0.4).requires_grad_()
    colourfulness_score(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_contrast() -> None:
    assert contrast_score(_grey(0.2)).item() == pytest.approx(0.0, abs=1e-7)
    half = torch.zeros(1, 3, 8, 8)
    half[..., 4:] = 1.0
    assert contrast_score(half).item() == pytest.approx(0.5, abs=1e-6)


def _low_light(h: int = 64, w: int = 80, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 64, (1, 3, h, w), generator=g).float() / 255.0
    return levels  # dark image, values <= 63/255


def test_loe_zero_for_monotone_brightening() -> None:
    low = _low_light()
    for curve in (lambda x: x.sqrt(), lambda x: (3 * x).clamp(max=1), lambda x: 1 - (1 - x) ** 4):
        assert loe_score(curve(low), low).item() == 0.0
    assert loe_score(low, low).item() == 0.0


def test_loe_positive_error_for_order_inversion() -> None:
    low = _low_light(40, 40)
    inverted = 1 - low  # reverses every strict order
    v = loe_score(inverted, low)
    assert v.item() < 0
    # exact count on a tiny image: lightness [0, 1] vs [1, 0]
    a = torch.zeros(1, 3, 1, 2)
    a[..., 1] = 1.0
    # pairs (p, q) with [L(p) >= L(q)] different: (0,1) and (1,0) -> 2 flips / 2 pixels
    assert loe_score(1 - a, a).item() == pytest.approx(-1.0)


def test_loe_batch_and_pair_check() -> None:
    low = torch.cat([_low_light(seed=1), _low_light(seed=2)])
    out = loe_score(torch.stack([low[0].sqrt(), 1 - low[1]]), low)
    assert out.shape == (2,) and out[0] == 0 and out[1] < 0
    with pytest.raises(InputError, match="low-light input"):
        loe_score(low[:, :, :32], low)


def test_registry_uniform_signature() -> None:
    img = _low_light().sqrt()
    low = _low_light()
    assert set(BASELINES) == {"brightness", "entropy", "colourfulness", "contrast", "loe"}
    for name, fn in BASELINES.items():
        v = fn(torch.cat([img, img]), torch.cat([low, low]))
        assert v.shape == (2,), name
        assert torch.isfinite(v).all(), name
