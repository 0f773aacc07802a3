"""Tests for iaca_metric.reference_metrics against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from iaca_metric.inputs import InputError
from iaca_metric.reference_metrics import lpips_or_reason, ms_ssim, psnr, ssim


def _images(kind: str, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A pair of HWC float64 images in [0, 1]: reference and distorted."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        a = rng.random((h, w, 3))
    else:  # smooth gradients, different direction per channel
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), (xx + yy) / (h + w - 2)], -1)
    b = np.clip(a + 0.08 * rng.standard_normal(a.shape), 0, 1)
    return a, b


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0)


CASES = [
    (kind, h, w, dr)
    for kind in ("random", "smooth")
    for (h, w) in ((11, 11), (17, 30), (48, 40))
    for dr in (1.0, 255.0)
]


@pytest.mark.parametrize("kind,h,w,dr", CASES)
def test_psnr_and_ssim_match_skimage(kind: str, h: int, w: int, dr: float) -> None:
    a, b = _images(kind, h, w, seed=h * w)
    a, b = a * dr, b * dr
    ref_psnr = peak_signal_noise_ratio(a, b, data_range=dr)
    ref_ssim = structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=dr,
    )
    for dtype in (torch.float64, torch.float32):
        x, y = _t(a).to(dtype), _t(b).to(dtype)
        assert psnr(x, y, data_range=dr).item() == pytest.approx(ref_psnr, abs=1e-4)
        assert ssim(x, y, data_range=dr).item() == pytest.approx(ref_ssim, abs=1e-4)


def test_batch_shapes_and_reductions() -> None:
    x = torch.rand(3, 3, 24, 24)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    for fn in (psnr, ssim):
        v = fn(x, y)
        assert v.shape == (3,)
        assert fn(x, y, reduction="mean").item() == pytest.approx(v.mean().item(), rel=1e-6)
        assert fn(x, y, reduction="sum").item() == pytest.approx(v.sum().item(), rel=1e-6)
        # each image scored on its own
        assert fn(x[1:2], y[1:2]).item() == pytest.approx(v[1].item(), rel=1e-6)
    with pytest.raises(InputError, match="reduction"):
        psnr(x, y, reduction="avg")  # type: ignore[arg-type]


def test_identical_images() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0))
    assert torch.allclose(ssim(x, x), torch.ones(2))


def test_validation_errors() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="NaN"):
        ssim(x, torch.full_like(x, float("nan")))
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        psnr(x * 255, x)
    with pytest.raises(InputError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 20\).*reference"):
        ssim(x, torch.rand(1, 3, 16, 20))
    with pytest.raises(InputError, match=r"10x16.*11x11"):
        ssim(x[:, :, :10], x[:, :, :10])
    with pytest.raises(InputError, match="odd"):
        ssim(x, x, kernel_size=4)


def test_ssim_is_differentiable_and_gradchecks() -> None:
    # 16x16 with an 11x11 window leaves a 6x6 valid map: enough positions for
    # every input pixel to matter. Values kept inside (0, 1) so the finite
    # differences never trip the range check.
    g = torch.Generator().manual_seed(0)
    x = (0.1 + 0.8 * torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)).requires_grad_()
    y = 0.1 + 0.8 * torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    fn = lambda a: ssim(a.expand(1, 3, 16, 16), y.expand(1, 3, 16, 16))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_ms_ssim_sanity() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 176, 192, generator=g)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(x.shape, generator=g)
    scores = [ms_ssim(x, (x + s * noise).clamp(0, 1)).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert all(0 <= s <= 1 for s in scores)


def test_ms_ssim_gradient_exists() -> None:
    x = torch.rand(1, 3, 176, 176, requires_grad=True)
    y = torch.rand(1, 3, 176, 176)
    ms_ssim(x, (0.5 * y + 0.5 * x.detach())).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ms_ssim_too_small() -> None:
    x = torch.rand(1, 3, 175, 200)
    with pytest.raises(InputError, match=r"175x200.*5 scales.*at least 176x176"):
        ms_ssim(x, x)
    # fewer scales need less
    small = x[:, :, :44, :44]
    assert ms_ssim(small, small, weights=(0.5, 0.5, 1.0)).item() == pytest.approx(1.0)


def test_ms_ssim_negative_cs_gives_zero_not_nan() -> None:
    x = torch.rand(1, 3, 176, 176)
    v = ms_ssim(x, 1 - x)  # anti-correlated: negative cs at some scale
    assert torch.isfinite(v).all() and v.item() >= 0


def test_lpips_or_reason() -> None:
    fn, reason = lpips_or_reason()
    try:
        import lpips  # noqa: F401
        available = True
    except ImportError:
        available = False
    if fn is None:
        assert isinstance(reason, str) and "LPIPS unavailable" in reason
        if not available:
            assert "pip install lpips" in reason
    else:
        assert reason is None
        x = torch.rand(1, 3, 64, 64)
        d = fn(x, x.flip(-1))
        assert d.shape == (1,) and torch.isfinite(d).all()
