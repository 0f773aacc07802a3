"""The detail branch (``ModelConfig.detail_branch``): fine-scale statistics of the trunk's stride-4 and
stride-8 maps joining the fused regression. Checks that the taps are the trunk's own (no extra pass,
bit-identical stride-16/32 features), that the branch is additive to the IACA heads, that every scoring
path (whole image, tiles, cached training features) computes the same detail moments, and that folders
round-trip with strict keys."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iaca_metric import IACAMetric
from iaca_metric._config import ConfigError, ModelConfig, parse_config
from iaca_metric.hub import WeightsError
from iaca_metric.inputs import to_tensor
from iaca_metric.large_images import TILED_ABS_TOL, forward_all_tiled

try:
    from iaca_test_models import make_image, make_model
except ImportError:  # e.g. --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from iaca_test_models import make_image, make_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def detail_model() -> IACAMetric:
    # The trunk and IACA heads of the seed-0 test model (the one test_large_images documents its tiling
    # tolerance for), plus a seeded random detail branch.
    base = make_model(illumination="reference_or_image", seed=0)
    m = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image", mos_scale=base.mos_scale,
                   mos_offset=base.mos_offset, detail_branch=True)
    state = m.state_dict()
    for k, v in base.state_dict().items():
        if k == "regression.weight":
            state[k][:, :128] = v
        else:
            state[k] = v
    m.load_state_dict(state, strict=True)
    with torch.no_grad():
        # a non-trivial standardisation, so a path that skipped it would score differently
        m.detail_shift.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        m.detail_scale.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
        m.detail[0].weight.mul_(5.0)
    return m.eval()


def _img(h: int, w: int, seed: int, dark: float = 1.0) -> torch.Tensor:
    return to_tensor(make_image(h, w, seed=seed, dark=dark))


def test_detail_taps_come_from_the_same_trunk_pass() -> None:
    m = make_model(seed=0)
    x = _img(150, 231, 1)
    with torch.no_grad():
        f16, f32 = m.features(x)
        taps = m.features.forward_taps(x, detail=True)
    assert torch.equal(taps[16], f16) and torch.equal(taps[32], f32)
    assert tuple(taps[4].shape) == (1, 24, 38, 58) and tuple(taps[8].shape) == (1, 40, 19, 29)
    mean, sq = m.detail_moments(taps)
    assert mean.shape == sq.shape == (1, 64)
    assert torch.all(sq >= mean * mean - 1e-5)


def test_detail_branch_is_additive_to_the_iaca_heads(detail_model) -> None:
    """With the detail part of ``regression`` zeroed, a detail model scores exactly like the same heads
    without the branch; with it, the score moves."""
    plain = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image")
    state = {k: v for k, v in detail_model.state_dict().items() if not k.startswith("detail")}
    state["regression.weight"] = state["regression.weight"][:, :128]
    plain.load_state_dict(state, strict=True)
    cut = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image", detail_branch=True)
    cut.load_state_dict(detail_model.state_dict(), strict=True)
    with torch.no_grad():
        cut.regression.weight[:, 128:] = 0
    x, low = _img(96, 128, 2), _img(96, 128, 3, dark=0.2)
    with torch.no_grad():
        a, b, full = plain.forward_all(x, low), cut.forward_all(x, low), detail_model.forward_all(x, low)
    torch.testing.assert_close(b.score, a.score, atol=1e-6, rtol=0)
    assert torch.equal(b.regr6, a.regr6) and torch.equal(b.regr7, a.regr7)
    assert (full.score - a.score).abs().item() > 1e-3


def test_detail_branch_sees_fine_noise_the_plain_path_hardly_does(detail_model) -> None:
    """Pixel noise changes the stride-4 statistics: the detail features of a clean and a noisy copy differ."""
    x = _img(128, 128, 5)
    noisy = (x + 0.08 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        t = detail_model.forward_all(torch.cat([x, noisy]), return_taps=True).taps
    assert t["detail"].shape == (2, 64)
    assert (t["detail"][0] - t["detail"][1]).abs().max().item() > 1e-2


def test_detail_heads_need_detail_moments(detail_model) -> None:
    f16, f32 = torch.rand(1, 112, 4, 4), torch.rand(1, 320, 2, 2)
    with pytest.raises(ValueError, match="detail moments"):
        detail_model.features_to_output(f16, f32, torch.rand(1, 1, 64, 64))
    plain = make_model(seed=0)
    with pytest.raises(ValueError, match="detail moments"):
        plain.features_to_output(f16, f32, torch.rand(1, 1, 64, 64), detail=(torch.rand(1, 64), torch.rand(1, 64)))


class _LocalTaps(nn.Module):
    """Taps at strides 4/8/16/32 with no spatial context, so tiling must reproduce them exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.ModuleDict({str(s): nn.Conv2d(3, c, 1) for s, c in ((4, 24), (8, 40), (16, 112), (32, 320))})

    def forward_taps(self, x: torch.Tensor, detail: bool = False) -> dict[int, torch.Tensor]:
        strides = (4, 8, 16, 32) if detail else (16, 32)
        return {s: F.relu(self.c[str(s)](F.avg_pool2d(x, s, ceil_mode=True))) for s in strides}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.forward_taps(x)
        return t[16], t[32]


@pytest.mark.parametrize("hw", [(160, 224), (150, 231)])
def test_tiling_sums_the_detail_moments_exactly(detail_model, hw) -> None:
    m = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image", detail_branch=True)
    m.load_state_dict(detail_model.state_dict())
    torch.manual_seed(3)
    m.features = _LocalTaps()
    m.eval()
    img, ref = _img(*hw, 7), _img(*hw, 8, dark=0.2)
    with torch.no_grad():
        whole = m.forward_all(img, ref)
    tiled = forward_all_tiled(m, img, ref, tile=64, overlap=0)
    torch.testing.assert_close(tiled.score, whole.score, atol=2e-6, rtol=0)


def test_tiled_detail_model_agrees_with_whole_image(detail_model) -> None:
    """The setting of test_large_images' documented tolerance, with the detail branch on."""
    img, ref = _img(512, 768, 11), _img(512, 768, 12, dark=0.15)
    with torch.no_grad():
        whole = detail_model.forward_all(img, ref)
    tiled = forward_all_tiled(detail_model, img, ref, tile=256, overlap=128)
    assert (tiled.score - whole.score).abs().item() <= TILED_ABS_TOL


def test_detail_folder_round_trip_and_strict_keys(detail_model, tmp_path) -> None:
    detail_model.save_pretrained(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["detail_branch"] is True
    back = IACAMetric.from_pretrained(tmp_path / "d")
    assert back.detail_branch and torch.equal(back.detail_shift, detail_model.detail_shift)
    x = _img(64, 96, 9)
    with torch.no_grad():
        assert torch.equal(back(x), detail_model(x))
    # the same weights under a config without the branch: refused, naming the unexpected keys
    cfg["detail_branch"] = False
    (tmp_path / "d" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="detail"):
        IACAMetric.from_pretrained(tmp_path / "d")


def test_detail_branch_config_field() -> None:
    base = {"arch": "efficientnet_lite0", "illumination": "image", "mos_scale": 1.0, "mos_offset": 0.0}
    assert parse_config(base).detail_branch is False  # folders written before the field existed
    assert parse_config({**base, "detail_branch": True}).detail_branch is True
    with pytest.raises(ConfigError, match="detail_branch"):
        parse_config({**base, "detail_branch": "yes"})
    assert ModelConfig(arch="resnet50", detail_branch=True).to_dict()["detail_branch"] is True
