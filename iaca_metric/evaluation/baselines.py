"""Simple no-reference quality baselines to compare IACA against.

Each function scores every image of a batch and returns a tensor of shape
``(N,)`` where **higher means better** (scores that are naturally "errors" are
negated). Images are float RGB in ``[0, 1]``; any input accepted by
:func:`iaca_metric.inputs.to_tensor` works (tensors CHW/NCHW, numpy, PIL,
paths), and is validated the same way.

Luminance, where used, is Rec. 601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``
computed on the stored (gamma-encoded) values, the common convention for
these classic statistics (e.g. MATLAB's ``rgb2gray``).

:data:`BASELINES` maps a name to a function with the uniform signature
``fn(img, low) -> Tensor (N,)`` so that benchmark code can loop over them;
``low`` (the low-light input) is ignored by all but ``"loe"``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..inputs import ImageLike, check_pair, to_tensor

__all__ = [
    "brightness_score",
    "entropy_score",
    "colourfulness_score",
    "contrast_score",
    "loe_score",
    "BASELINES",
    "LOE_GRID",
]

#: Side of the lightness grid used by :func:`loe_score` (pixels per side).
LOE_GRID = 50

_LUMA = (0.299, 0.587, 0.114)


def _rgb(img: ImageLike, name: str = "img") -> torch.Tensor:
    return to_tensor(img, name=name)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, H, W) Rec. 601 luma."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1)


def brightness_score(img: ImageLike) -> torch.Tensor:
    """Closeness of the mean luminance to mid-grey: ``-|mean(Y) - 0.5|``.

    Args:
        img: images, NCHW float in ``[0, 1]``.

    Returns:
        ``(N,)`` in ``[-0.5, 0]``; 0 for a mean luminance of exactly 0.5.
        Differentiable.
    """
    x = _rgb(img)
    return -(_luma(x).mean(dim=(1, 2)) - 0.5).abs()


def entropy_score(img: ImageLike) -> torch.Tensor:
    """Shannon entropy of the 256-bin luminance histogram, in bits.

    Luminance is quantised to 8 bits with ``round(255 * Y)`` (bin ``k`` holds
    the values nearest to ``k / 255``), so an 8-bit image's grey levels land
    in their own bins.

    Args:
        img: images, NCHW float in ``[0, 1]``.

    Returns:
        ``(N,)`` float32 in ``[0, 8]``: 0 for a constant image, 8 when all
        256 levels are equally frequent. Not differentiable (histogram).
    """
    x = _rgb(img)
    n = x.shape[0]
    y = _luma(x.detach().float())
    bins = (y * 255.0).round().clamp(0, 255).long().reshape(n, -1)
    # one bincount for the whole batch: offset each image into its own 256 bins
    offsets = torch.arange(n, device=bins.device).view(n, 1) * 256
    counts = torch.bincount((bins + offsets).reshape(-1), minlength=n * 256)
    p = counts.view(n, 256).float() / bins.shape[1]
    # 0 * log 0 is taken as 0
    plogp = torch.where(p > 0, p * torch.log2(p.clamp_min(1e-30)), torch.zeros_like(p))
    return -plogp.sum(dim=1)


def colourfulness_score(img: ImageLike) -> torch.Tensor:
    """Colourfulness of Hasler & Suesstrunk (2003), on the 0-255 scale.

    With ``rg = R - G`` and ``yb = (R + G) / 2 - B`` (channels scaled to
    0-255)::

        M = sqrt(std(rg)**2 + std(yb)**2) + 0.3 * sqrt(mean(rg)**2 + mean(yb)**2)

    using population standard deviations over the pixels.

    Args:
        img: images, NCHW float in ``[0, 1]``.

    Returns:
        ``(N,)``, >= 0; 0 for any grey image. Differentiable (the gradient of
        a square root at exactly 0 is taken as 0).
    """
    x = _rgb(img) * 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    var = rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)
    mean_sq = rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2
    return _safe_sqrt(var) + 0.3 * _safe_sqrt(mean_sq)


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) gradient at 0, e.g. for grey images."""
    pos = v > 0
    # the inner where keeps sqrt away from 0 so its gradient there is not inf * 0
    root = torch.sqrt(torch.where(pos, v, torch.ones_like(v)))
    return torch.where(pos, root, torch.zeros_like(v))


def contrast_score(img: ImageLike) -> torch.Tensor:
    """RMS contrast: population standard deviation of the luminance.

    Args:
        img: images, NCHW float in ``[0, 1]``.

    Returns:
        ``(N,)`` in ``[0, 0.5]``; 0 for a constant image. Differentiable.
    """
    x = _rgb(img)
    return _luma(x).flatten(1).std(dim=1, unbiased=False)


def _grid_sample_nearest(lightness: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, H, W) -> (N, h, w), picking the pixel nearest each grid cell centre.

    ``h = min(grid, H)``, ``w = min(grid, W)``. Subsampling (rather than
    averaging/bicubic resizing) commutes with any pointwise tone curve, so a
    global monotone brightening keeps exactly the lightness order of the input
    and scores an LOE of 0, which is what the measure is meant to express.
    """
    _, h, w = lightness.shape
    gh, gw = min(grid, h), min(grid, w)
    rows = ((torch.arange(gh, dtype=torch.float64) + 0.5) * h / gh).floor().long()
    cols = ((torch.arange(gw, dtype=torch.float64) + 0.5) * w / gw).floor().long()
    rows = rows.clamp_max(h - 1).to(lightness.device)
    cols = cols.clamp_max(w - 1).to(lightness.device)
    return lightness[:, rows][:, :, cols]


def loe_score(img: ImageLike, low: ImageLike) -> torch.Tensor:
    """Minus the lightness-order error (LOE) against the low-light input.

    LOE (Wang, Zheng, Hu & Li 2013, "Naturalness preserved enhancement ...")
    counts, for every pixel ``p``, the pixels ``q`` whose lightness order
    relative to ``p`` differs between the input and the enhanced image::

        RD(p) = sum_q  [L(p) >= L(q)]  XOR  [Le(p) >= Le(q)]
        LOE   = mean_p RD(p)

    with lightness ``L = max(R, G, B)``. As in the original, the comparison is
    done on a reduced grid because it is quadratic in the pixel count: here
    the max-RGB lightness maps are subsampled to at most
    ``LOE_GRID x LOE_GRID`` (50 x 50) pixels at the cell centres of a regular
    grid (see :func:`_grid_sample_nearest` for why subsampling rather than
    averaging). The original code resizes so that the shorter side is 50 with
    the aspect ratio kept; values are therefore comparable in spirit but not
    identical to published tables.

    Args:
        img: enhanced images, NCHW float in ``[0, 1]``.
        low: the low-light inputs they were enhanced from, same shape.

    Returns:
        ``(N,)`` float32 ``-LOE``; 0 is best (order fully preserved), the
        minimum is ``-(h * w)`` on the grid. Not differentiable.
    """
    x = _rgb(img, "img")
    lo = _rgb(low, "low")
    check_pair(x, lo, names=("img", "low"))
    le = _grid_sample_nearest(x.detach().amax(dim=1), LOE_GRID).flatten(1)
    li = _grid_sample_nearest(lo.detach().amax(dim=1), LOE_GRID).flatten(1)
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    # one image at a time: the (P, P) comparison matrices are P = 2500 squared
    for i in range(x.shape[0]):
        order_in = li[i].unsqueeze(1) >= li[i].unsqueeze(0)
        order_en = le[i].unsqueeze(1) >= le[i].unsqueeze(0)
        flips = (order_in ^ order_en).sum()
        out[i] = -(flips.float() / li.shape[1])
    return out


def _ignore_low(
    fn: Callable[[ImageLike], torch.Tensor],
) -> Callable[[ImageLike, ImageLike], torch.Tensor]:
    """Adapt a one-argument score to the registry signature ``fn(img, low)``."""
    def wrapped(img: ImageLike, low: ImageLike | None = None) -> torch.Tensor:
        return fn(img)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


#: Name -> ``fn(img, low) -> Tensor (N,)``, higher is better.
BASELINES: dict[str, Callable[[ImageLike, ImageLike], torch.Tensor]] = {
    "brightness": _ignore_low(brightness_score),
    "entropy": _ignore_low(entropy_score),
    "colourfulness": _ignore_low(colourfulness_score),
    "contrast": _ignore_low(contrast_score),
    "loe": loe_score,
}
