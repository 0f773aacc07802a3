"""Large images: the downscale policy (fit_max_pixels) and tiled scoring (forward_all_tiled / score(tile=True)).

Models are seeded random IACA-Lite-architecture models (tests/iaca_test_models.py); the "local"
variant swaps in a backbone whose receptive field is one 16/32-pixel cell, for which tiling must be
exact (it isolates the bookkeeping: grid alignment, cropping, weight maps, sum accumulation).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import iaca_metric
from iaca_metric.inputs import InputError, load_image, to_tensor
from iaca_metric.large_images import (DEFAULT_OVERLAP, TILED_ABS_TOL, check_max_pixels, fit_max_pixels,
                                      forward_all_tiled, score_tiled, tile_for_max_pixels, tile_spans)

try:
    from iaca_test_models import make_image, make_model
except ImportError:  # e.g. --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from iaca_test_models import make_image, make_model

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lowlight" / "ZeroDCEpp_real"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread is fastest


class _LocalBackbone(nn.Module):
    """Stride-16/32 taps with no spatial context: each cell sees only its own 16x16 / 32x32 block."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 112, 1), nn.Conv2d(3, 320, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.relu(self.a(F.avg_pool2d(x, 16, ceil_mode=True))),
                F.relu(self.b(F.avg_pool2d(x, 32, ceil_mode=True))))


@pytest.fixture(scope="module")
def model():
    return make_model(illumination="reference_or_image", seed=0)


@pytest.fixture(scope="module")
def local_model():
    m = make_model(illumination="reference_or_image", seed=1)
    torch.manual_seed(1)
    m.features = _LocalBackbone()
    return m.eval()


def _t(h: int, w: int, seed: int, dark: float = 1.0) -> torch.Tensor:
    return to_tensor(make_image(h, w, seed=seed, dark=dark))


# ------------------------------------------------------------------ tiling
def test_tile_spans_partition_and_alignment() -> None:
    for size, tile, overlap in [(2160, 1024, 128), (3840, 1024, 128), (100, 64, 32), (1000, 256, 0), (64, 64, 64),
                                (1080, 256, 128), (1079, 512, 0)]:
        spans = tile_spans(size, tile, overlap)
        assert spans[0].c0 == 0 and spans[-1].c1 == size
        assert all(a.c1 == b.c0 for a, b in zip(spans, spans[1:]))  # cores partition the axis
        assert all(s.c0 % 32 == 0 and (s.c1 % 32 == 0 or s.c1 == size) for s in spans)
        assert all(s.i0 == max(0, s.c0 - overlap) and s.i0 % 32 == 0 for s in spans)
        assert all(s.i1 == size or s.i1 == s.c1 + overlap + size % 32 for s in spans)
        assert all((s.i1 - s.i0) % 32 == size % 32 for s in spans)  # same residue as the whole axis
        assert all(s.c1 - s.c0 <= max(tile, 32) for s in spans)
        assert len(spans) == math.ceil(size / tile)


@pytest.mark.parametrize("bad", [dict(tile=100), dict(tile=0), dict(overlap=-32), dict(overlap=48),
                                 dict(tile=256.0), dict(overlap=True)])
def test_tile_arguments_validated(local_model, bad) -> None:
    kw = {"tile": 256, "overlap": 64}
    kw.update(bad)
    with pytest.raises(ValueError, match="multiple of 32"):
        forward_all_tiled(local_model, torch.rand(1, 3, 64, 64), **kw)


@pytest.mark.parametrize("hw,tile", [((256, 384), 64), ((300, 457), 128), ((100, 70), 32), ((33, 200), 64)])
def test_tiling_is_exact_for_a_local_backbone(local_model, hw, tile) -> None:
    """No context lost at tile borders -> tiled == whole up to float64-vs-float32 rounding, for sizes
    that are and are not multiples of 32."""
    h, w = hw
    img, ref = _t(h, w, 3), _t(h, w, 4, dark=0.2)
    with torch.no_grad():
        whole = local_model.forward_all(img, ref)
    tiled = forward_all_tiled(local_model, img, ref, tile=tile, overlap=0)
    for name in ("score", "regr6", "regr7"):
        torch.testing.assert_close(getattr(tiled, name), getattr(whole, name), atol=2e-6, rtol=0)


class _SameBackbone(nn.Module):
    """Stride-2 TF-"same" convolutions like EfficientNet's (left padding depends on the parity of each
    level's size) but a receptive field of 63 pixels, so tiles with 64 pixels of context are exact
    only if every tile samples on the whole image's grid."""

    def __init__(self) -> None:
        super().__init__()
        from iaca_metric.backbones import SameConv2d

        chans = [3, 16, 32, 64, 112]
        self.down16 = nn.ModuleList(SameConv2d(a, b, 3, stride=2) for a, b in zip(chans, chans[1:]))
        self.down32 = SameConv2d(112, 320, 3, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.down16:
            x = F.relu(conv(x))
        return x, F.relu(self.down32(x))


@pytest.mark.parametrize("hw", [(160, 224), (150, 231), (97, 200)])
def test_tiling_is_exact_with_same_padding(hw) -> None:
    m = make_model(seed=2)
    torch.manual_seed(2)
    m.features = _SameBackbone()
    img = _t(*hw, 13)
    with torch.no_grad():
        whole = m(img)
    torch.testing.assert_close(score_tiled(m, img, tile=64, overlap=64), whole, atol=2e-6, rtol=0)


def test_single_tile_is_the_ordinary_forward(model) -> None:
    img = _t(96, 128, 5)
    with torch.no_grad():
        expected = model(img)
    assert torch.equal(score_tiled(model, img, tile=128, overlap=64), expected)


def test_tiled_agrees_with_whole_image_generated(model) -> None:
    """The documented tolerance: generated 512x768 image, 256-pixel tiles (6 tiles), overlap 128 (the
    smallest overlap the tolerance is documented for; the default, 256, would give every tile most of
    this small image)."""
    img, ref = _t(512, 768, 11), _t(512, 768, 12, dark=0.15)
    with torch.no_grad():
        whole = model.forward_all(img, ref)
    tiled = forward_all_tiled(model, img, ref, tile=256, overlap=128)
    diff = (tiled.score - whole.score).abs().max().item()
    assert diff <= TILED_ABS_TOL, f"tiled - whole = {diff:.3g} > documented tolerance {TILED_ABS_TOL}"
    for name in ("regr6", "regr7"):
        torch.testing.assert_close(getattr(tiled, name), getattr(whole, name), atol=TILED_ABS_TOL, rtol=0)


@pytest.mark.data
def test_tiled_agrees_with_whole_image_real_photo(model) -> None:
    if not REAL.is_dir():
        pytest.skip(f"real photos not found at {REAL} (expected ../shared/data/lowlight/ZeroDCEpp_real)")
    from PIL import Image

    photos = []
    for f in sorted(REAL.glob("*.png")):
        with Image.open(f) as im:
            if im.size == (512, 512):
                photos.append(f)
    if not photos:
        pytest.skip(f"no 512x512 photo in {REAL}")
    img = load_image(photos[0])[None]
    with torch.no_grad():
        whole = model(img)
    tiled = score_tiled(model, img, tile=256, overlap=128)
    assert (tiled - whole).abs().max().item() <= TILED_ABS_TOL


# ------------------------------------------------------------------ score() policy plumbing
def test_score_tile_true_uses_tiles_within_max_pixels(local_model) -> None:
    img, ref = _t(704, 672, 6), _t(704, 672, 7, dark=0.2)
    budget = 640 * 640  # the smallest budget that keeps 256 px of context around a 128-px core
    tsize, overlap = tile_for_max_pixels(budget)
    assert (tsize, overlap) == (128, DEFAULT_OVERLAP) and (tsize + 2 * overlap) ** 2 <= budget
    got = iaca_metric.score(img, ref, model=local_model, max_pixels=budget, tile=True)
    expected = float(score_tiled(local_model, img, ref, tile=tsize, overlap=overlap))
    assert got == pytest.approx(expected, abs=1e-6)
    # a local backbone makes tiling exact, so this is also the whole-image score
    assert got == pytest.approx(iaca_metric.score(img, ref, model=local_model), abs=2e-6)


def test_tile_budget_keeps_full_context_or_refuses(local_model) -> None:
    """Regression: tile=True, max_pixels=300_000 used to shrink the context to 128 px around 288-px cores,
    which drifted 0.072 from the whole-image score on a real 1080p photo (3.6x TILED_ABS_TOL). The
    context is now never reduced; a budget too small for it is refused before any work."""
    assert tile_for_max_pixels(1_000_000) == (992 - 2 * DEFAULT_OVERLAP, DEFAULT_OVERLAP)
    for small in (300_000, 128 * 128, 640 * 640 - 1):
        with pytest.raises(InputError, match=r"too small for tiled scoring.*max_pixels >= 409600"):
            tile_for_max_pixels(small)
        with pytest.raises(InputError, match="too small for tiled scoring"):
            iaca_metric.score(_t(64, 64, 0), model=local_model, max_pixels=small, tile=True)
    # downscaling with the same budget stays allowed
    assert iaca_metric.score(_t(64, 64, 0), model=local_model, max_pixels=300_000).shape == (1,)


def test_score_max_pixels_downscales_like_fit_max_pixels(local_model) -> None:
    imgs = [_t(200, 300, 8), _t(64, 64, 9), _t(200, 300, 10)]
    got = iaca_metric.score(imgs, model=local_model, max_pixels=100 * 150, mos=True)
    with torch.no_grad():
        exp = [float(local_model.to_mos(local_model(fit_max_pixels(x, None, 100 * 150)[0]))) for x in imgs]
    torch.testing.assert_close(got, torch.tensor(exp), atol=1e-6, rtol=0)
    # small images are untouched; the default (no max_pixels) is unchanged behaviour
    assert got[1].item() == pytest.approx(float(iaca_metric.score(imgs[1], model=local_model, mos=True)), abs=1e-7)


def test_score_rejects_invalid_max_pixels(local_model) -> None:
    for bad in (0, 1023, 1.5e6, True, "100000"):
        with pytest.raises(ValueError, match="max_pixels"):
            iaca_metric.score(_t(64, 64, 0), model=local_model, max_pixels=bad)


# ------------------------------------------------------------------ fit_max_pixels
@pytest.mark.parametrize("hw,budget", [((1000, 1500), 250_000), ((2160, 3840), 1_000_000), ((777, 333), 50_000),
                                       ((64, 4000), 40_000), ((3000, 40), 20_000), ((100, 100), 10_000)])
def test_fit_max_pixels_bound_and_aspect(hw, budget) -> None:
    h, w = hw
    img = torch.rand(1, 3, h, w)
    ref = img * 0.2
    out, out_ref = fit_max_pixels(img, ref, budget)
    nh, nw = out.shape[-2:]
    assert nh * nw <= budget and min(nh, nw) >= 32
    assert out_ref.shape == out.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    if h * w <= budget:
        assert out is img and out_ref is ref
        return
    if min(h, w) * math.sqrt(budget / (h * w)) >= 33:  # no 32-pixel floor involved: aspect kept
        assert abs(nw / nh - w / h) <= (w / h) * (1.0 / nh + 1.0 / nw) + 1e-9
        assert nh * nw >= budget * (1 - 2 * (1 / nh + 1 / nw))  # and not needlessly small
    else:  # the short side stops at 32, the long side takes the rest of the budget
        assert min(nh, nw) == 32 and max(nh, nw) == budget // 32


@pytest.mark.parametrize("bad", [0, -5, 1023, 2.5e5, None, True, "250000"])
def test_fit_max_pixels_rejects_invalid(bad) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        fit_max_pixels(torch.rand(1, 3, 64, 64), None, bad)
    with pytest.raises(ValueError, match="max_pixels"):
        check_max_pixels(bad)


# ------------------------------------------------------------------ peak memory (slow)
_RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    sys.path.insert(0, {tests!r})
    from iaca_test_models import make_model
    from iaca_metric.large_images import score_tiled
    torch.manual_seed(0)
    model = make_model()
    img = torch.rand(1, 3, 2160, 3840)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    with torch.no_grad():
        s = score_tiled(model, img, tile=1024, overlap={overlap!r}) if {tiled!r} else model(img)
    print(json.dumps({{"tiled": {tiled!r}, "score": float(s), "seconds": time.time() - t0,
                      "maxrss_before_kib": before,
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
""")


@pytest.mark.slow
def test_peak_memory_4k_tiled_vs_whole() -> None:
    """Peak RSS of scoring one 3840x2160 image, whole vs tiled (1024-px tiles with 128 and with the
    default 256 px of context), each in a fresh subprocess. Numbers are printed (run with -s)."""
    res = {}
    for tiled, overlap in ((False, 0), (True, 128), (True, DEFAULT_OVERLAP)):
        code = _RSS_SCRIPT.format(tests=str(Path(__file__).resolve().parent), tiled=tiled, overlap=overlap)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert p.returncode == 0, p.stderr[-3000:]
        res["whole" if not tiled else f"tiled_1024_{overlap}"] = json.loads(p.stdout.strip().splitlines()[-1])
    print(json.dumps(res, indent=1))
    whole = res["whole"]
    for key in ("tiled_1024_128", f"tiled_1024_{DEFAULT_OVERLAP}"):
        tiled = res[key]
        assert abs(whole["score"] - tiled["score"]) <= TILED_ABS_TOL
        # tiling must at least halve the activation memory on top of the model + image baseline
        assert (tiled["maxrss_kib"] - tiled["maxrss_before_kib"]
                < 0.5 * (whole["maxrss_kib"] - whole["maxrss_before_kib"]))
