"""Differentiable full-reference metrics (PSNR, SSIM, MS-SSIM) in plain torch.

These compare an image ``x`` with a ground-truth reference ``y`` of the same
size. They exist so that IACA can be reported next to the usual paired metrics
(and used as training losses) without extra dependencies. SSIM is written to
agree with :func:`skimage.metrics.structural_similarity` (Gaussian weights,
population covariance) to about 1e-4.

Inputs go through :func:`iaca_metric.inputs.to_tensor`, so they may be tensors
(CHW/NCHW, float in ``[0, data_range]``), numpy arrays, PIL images or paths,
and NaN/Inf/out-of-range values raise :class:`~iaca_metric.inputs.InputError`.
Grayscale inputs are accepted (replicated to RGB, which leaves all three
metrics unchanged since every channel is scored identically).

All functions return a tensor of shape ``(N,)`` (or a scalar with
``reduction="mean"``/``"sum"``) that is differentiable with respect to float
tensor inputs. float16/bfloat16 inputs are computed in float32 because the
variance terms (E[x^2] - E[x]^2) cancel badly in half precision; float64 stays
float64.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F

from ..inputs import ImageLike, InputError, check_min_size, check_pair, to_tensor

__all__ = ["psnr", "ssim", "ms_ssim", "lpips_or_reason", "MS_SSIM_WEIGHTS"]

Reduction = Literal["none", "mean", "sum"]

#: Scale weights of Wang, Simoncelli & Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# PSNR floor for the MSE, in units of data_range**2: identical images give
# 10*log10(1/1e-10) = 100 dB instead of +inf, so averages over a data set
# stay finite.
_MSE_EPS = 1e-10

_PAIR_HINT = (
    "y must be the reference (ground-truth) image for x, at the same size"
)


def _reduce(v: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return v
    if reduction == "mean":
        return v.mean()
    if reduction == "sum":
        return v.sum()
    raise InputError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _prepare(
    x: ImageLike, y: ImageLike, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair and return both as NCHW in [0, 1], same dtype/device.

    Scaling by data_range here (instead of passing it to the formulas) gives
    identical PSNR/SSIM: the SSIM constants scale with data_range**2 exactly
    like the variances do.
    """
    X = to_tensor(x, data_range=data_range, grayscale="replicate", name="x")
    Y = to_tensor(y, data_range=data_range, grayscale="replicate", name="y")
    check_pair(X, Y, names=("x", "y"), hint=_PAIR_HINT)
    if X.device != Y.device:
        raise InputError(
            f"x is on {X.device} but y is on {Y.device}; move both to the same device"
        )
    dtype = torch.promote_types(X.dtype, Y.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return X.to(dtype), Y.to(dtype)


def psnr(
    x: ImageLike,
    y: ImageLike,
    data_range: float = 1.0,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image, over all channels.

    ``PSNR = 10 * log10(data_range**2 / MSE)`` with the MSE taken over all
    pixels and the three RGB channels of each image. The MSE is clamped at
    ``1e-10 * data_range**2``, so identical images give 100 dB rather than
    ``+inf`` (the gradient is zero there).

    Args:
        x, y: images, NCHW/CHW float in ``[0, data_range]`` (or any input
            :func:`~iaca_metric.inputs.to_tensor` accepts), same size.
        data_range: value of full white (1.0 or 255, say).
        reduction: ``"none"`` -> shape ``(N,)``; ``"mean"``/``"sum"`` -> scalar.

    Returns:
        PSNR in dB; higher is better.
    """
    X, Y = _prepare(x, y, data_range)
    mse = (X - Y).pow(2).mean(dim=(1, 2, 3)).clamp_min(_MSE_EPS)
    return _reduce(-10.0 * torch.log10(mse), reduction)


def _gaussian_1d(
    kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    # Same taps as scipy.ndimage.gaussian_filter (what skimage uses): sampled,
    # then normalised to sum 1. Built in float64 and cast, for exact symmetry.
    r = (kernel_size - 1) / 2.0
    coords = torch.arange(kernel_size, dtype=torch.float64) - r
    g = torch.exp(-0.5 * (coords / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _check_window(kernel_size: int, sigma: float) -> None:
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise InputError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if not sigma > 0:
        raise InputError(f"sigma must be positive, got {sigma!r}")


def _ssim_maps(
    X: torch.Tensor, Y: torch.Tensor, win: torch.Tensor, c1: float, c2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps, 'valid' region only.

    Args:
        X, Y: (N, C, H, W) in [0, 1].
        win: 1-D Gaussian taps of length k.
        c1, c2: stabilising constants for data_range 1.

    Returns:
        ``(ssim_map, cs_map)``, each (N, C, H-k+1, W-k+1).
    """
    n, c, h, w = X.shape
    k = win.numel()
    # Filter the five moment images in one grouped, separable convolution.
    stack = torch.cat([X, Y, X * X, Y * Y, X * Y], dim=1)  # (N, 5C, H, W)
    ch = stack.shape[1]
    wv = win.view(1, 1, k, 1).expand(ch, 1, k, 1)
    wh = win.view(1, 1, 1, k).expand(ch, 1, 1, k)
    filt = F.conv2d(F.conv2d(stack, wv, groups=ch), wh, groups=ch)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.split(c, dim=1)
    # population (biased) moments, as in Wang et al. 2004 and skimage's
    # use_sample_covariance=False
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return lum * cs_map, cs_map


def ssim(
    x: ImageLike,
    y: ImageLike,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, per image.

    The local statistics use a ``kernel_size`` x ``kernel_size`` Gaussian
    window (default 11x11, sigma 1.5) and a 'valid' convolution: only window
    positions that lie entirely inside the image are scored, then the SSIM map
    is averaged over positions and over the three channels.

    This matches ``skimage.metrics.structural_similarity(a, b,
    channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)``: skimage filters with
    reflect padding and then crops ``(win_size - 1) // 2`` pixels from every
    border before averaging, which leaves exactly the window positions a valid
    convolution keeps (its 11-tap window comes from ``truncate=3.5``, i.e.
    radius ``int(3.5 * sigma + 0.5)``; use the matching odd ``kernel_size``
    for other sigmas).

    Args:
        x, y: images, NCHW/CHW float in ``[0, data_range]`` (or any input
            :func:`~iaca_metric.inputs.to_tensor` accepts), same size, each side
            at least ``kernel_size`` pixels.
        data_range: value of full white; ``C1 = (k1 * data_range)**2``,
            ``C2 = (k2 * data_range)**2``.
        kernel_size: odd window side in pixels.
        sigma: Gaussian standard deviation in pixels.
        k1, k2: the usual stabilising constants.
        reduction: ``"none"`` -> ``(N,)``; ``"mean"``/``"sum"`` -> scalar.

    Returns:
        SSIM in ``[-1, 1]`` (1 for identical images); higher is better.
    """
    _check_window(kernel_size, sigma)
    X, Y = _prepare(x, y, data_range)
    check_min_size(
        X, kernel_size, name="x", purpose=f"SSIM with a {kernel_size}x{kernel_size} window"
    )
    win = _gaussian_1d(kernel_size, sigma, X.dtype, X.device)
    ssim_map, _ = _ssim_maps(X, Y, win, k1**2, k2**2)
    return _reduce(ssim_map.mean(dim=(1, 2, 3)), reduction)


def ms_ssim(
    x: ImageLike,
    y: ImageLike,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    reduction: Reduction = "none",
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), per image.

    At scales ``j = 1 .. M-1`` (``M = len(weights)``, 5 by default) the mean
    contrast-structure term ``cs_j`` is computed, then both images are
    downsampled by 2x2 average pooling (odd last rows/columns are dropped); at
    the coarsest scale the full SSIM is used. Per channel::

        MS-SSIM = prod_j relu(cs_j) ** w_j  *  relu(ssim_M) ** w_M

    and the result is averaged over the three channels. The ``relu`` keeps a
    negative mean ``cs`` (possible for anti-correlated images) from producing
    NaN under a fractional power; such a scale then makes the score 0.

    Windows are Gaussian and 'valid' exactly as in :func:`ssim`, so the
    coarsest scale must still hold one window: each side needs at least
    ``kernel_size * 2**(M - 1)`` pixels (176 for the defaults).

    Args:
        x, y: images as for :func:`ssim`.
        data_range: value of full white.
        weights: per-scale exponents, finest scale first.
        reduction: ``"none"`` -> ``(N,)``; ``"mean"``/``"sum"`` -> scalar.
        kernel_size, sigma, k1, k2: as for :func:`ssim`.

    Returns:
        MS-SSIM in ``[0, 1]`` (1 for identical images); higher is better.
    """
    _check_window(kernel_size, sigma)
    if len(weights) < 1:
        raise InputError("weights must hold at least one scale weight")
    X, Y = _prepare(x, y, data_range)
    levels = len(weights)
    min_side = kernel_size * 2 ** (levels - 1)
    check_min_size(
        X,
        min_side,
        name="x",
        purpose=(
            f"MS-SSIM with {levels} scales and a {kernel_size}x{kernel_size} window "
            f"(the coarsest scale is 1/{2 ** (levels - 1)} of the size)"
        ),
    )
    win = _gaussian_1d(kernel_size, sigma, X.dtype, X.device)
    w = torch.as_tensor(list(weights), dtype=X.dtype, device=X.device)
    terms = []
    for level in range(levels):
        ssim_map, cs_map = _ssim_maps(X, Y, win, k1**2, k2**2)
        if level < levels - 1:
            terms.append(F.relu(cs_map.mean(dim=(2, 3))))  # (N, C)
            X = F.avg_pool2d(X, kernel_size=2)
            Y = F.avg_pool2d(Y, kernel_size=2)
        else:
            terms.append(F.relu(ssim_map.mean(dim=(2, 3))))
    vals = torch.stack(terms, dim=0)  # (M, N, C)
    per_channel = torch.prod(vals ** w.view(-1, 1, 1), dim=0)  # (N, C)
    return _reduce(per_channel.mean(dim=1), reduction)


def lpips_or_reason(
    net: str = "alex",
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, str | None]:
    """Build an LPIPS distance if the optional ``lpips`` package can provide one.

    LPIPS is never re-implemented or approximated here: either the real
    ``lpips.LPIPS(net=net)`` model is built, or the reason it cannot be is
    returned so callers can report it (e.g. "LPIPS: n/a, <reason>").

    Note that the ``lpips`` package itself imports torchvision and downloads
    the backbone weights on first use; iaca_metric does neither unless this
    function is called.

    Args:
        net: LPIPS backbone, ``"alex"``, ``"vgg"`` or ``"squeeze"``.

    Returns:
        ``(fn, None)`` where ``fn(x, y)`` takes NCHW float images in ``[0, 1]``
        and returns the LPIPS distance per image, shape ``(N,)``, lower is
        better; or ``(None, reason)`` with a human-readable reason.
    """
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, (
            f"LPIPS unavailable: the 'lpips' package cannot be imported ({exc}); "
            "install it with `pip install lpips` (it also needs torchvision)"
        )
    try:
        model = lpips.LPIPS(net=net, verbose=False)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not hidden
        return None, (
            f"LPIPS unavailable: lpips.LPIPS(net={net!r}) could not be built "
            f"({type(exc).__name__}: {exc}); it needs torchvision and the "
            "pretrained backbone weights (downloaded on first use, so internet "
            "access or a populated torch hub cache)"
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, (N,); x, y NCHW float in [0, 1]."""
        X = to_tensor(x, name="x")
        Y = to_tensor(y, name="y")
        check_pair(X, Y, names=("x", "y"), hint=_PAIR_HINT)
        model.to(X.device)
        # normalize=True maps [0, 1] to the [-1, 1] range LPIPS expects
        return model(X, Y, normalize=True).reshape(-1)

    return lpips_distance, None
