"""Memory bounds for very large images: the ``max_pixels`` policy, by downscaling or by tiling.

IACA pools each weighted backbone tap globally (per-channel mean and std over the whole feature map)
before its heads, so activation memory, not the heads, limits the image size. Two policies bound it:

**Downscale** (:func:`fit_max_pixels`, ``score(..., max_pixels=P)``, ``iaca-metric score
--max-pixels P``): an image above ``P`` pixels is resized (antialiased bilinear) to at most ``P``
pixels, keeping its aspect ratio; the low-light input is resized identically so the illumination map
stays aligned. Cheap and bounded, but the network then sees a different image (fine texture and
noise are averaged away), so the score changes; how much depends on the model and the content.

**Tile** (:func:`forward_all_tiled`, :func:`score_tiled`, ``score(..., tile=True)``): the image is
scored at full resolution. It is cut into non-overlapping *core* regions whose borders lie on
multiples of 32 pixels; each core is run through the backbone with ``overlap`` extra pixels of real
image context on every side (clipped at the image border), and only the feature cells of the core
are kept. All backbones here are stride-16/stride-32 networks of padded convolutions, so a tile
whose origin is a multiple of 32, and whose length has the image's length mod 32 (EfficientNet's
TF-"same" padding puts its left pad by the parity of each level's size), yields feature cells on
exactly the whole-image grid: the kept cells partition the whole-image feature maps. The
illumination weight maps (``getw5``/``getw6`` on the max-pooled illumination map) are small
(H/16 x W/16) and are computed once for the whole image, exactly as :meth:`IACAMetric._stage` does.
Per channel, the sums of ``x`` and ``x**2`` of the weighted features are accumulated in float64 over
all tiles, giving the exact global mean and ``E[x^2]``; the std, attention gate and heads then run
as in ``_stage``. The combination is exact: the only difference from the whole-image score comes
from feature cells near a core border whose receptive field reaches past the tile's context (there
the network sees zero padding instead of the neighbouring pixels). An image that fits in one tile is
scored by the ordinary forward pass.

Measured agreement, max |tiled - whole-image| raw score (``benchmarks/tiling_agreement.py``, torch
2.13 CPU; stand-in models because the embedded weights are trained separately: the seeded random
test model, and the same heads on an ImageNet-weight EfficientNet-Lite0 backbone, whose raw scores
vary with std 0.46 across the 1080p photos; full tables in ``docs/scale_out.md``):

* generated 512x768, ``tile=256``: overlap 0 / 64 / 128 -> 0.044 / 0.0031 / 0.00074 (test model),
  0.031 / 0.0021 / 0.00013 (ImageNet backbone);
* real photos (ZeroDCE++ real set), ImageNet backbone, ``tile=1024``: five 1080p photos, overlap
  0 / 64 / 128 / 192 / 256 -> 0.074 / 0.039 / 0.012 / 0.0026 / 0.00044; two 4K photos, overlap
  0 / 128 / 256 -> 0.077 / 0.0076 / 0.00028; downscaling to 1 MP instead (``fit_max_pixels``) ->
  0.14 (1080p), 0.21 (4K);
* exact (< 2e-6) for backbones whose receptive field fits in the overlap (tests).

The documented tolerance for ``overlap >= 128``, used by the tests, is :data:`TILED_ABS_TOL` (raw
score units of these models; re-run the benchmark for a trained model). With the embedded IACA-Lite on
a real 1920x1088 photo, 256 px of context stays within 0.0031 for cores of 128-1024 px, but small cores
with 128 px of context do not (288-px cores: 0.072), so tiles sized from a ``max_pixels`` budget always
keep 256 px of context (:func:`tile_for_max_pixels`; budgets below 409,600 pixels are refused).

Peak memory: the largest activation of EfficientNet-Lite0 is the 96-channel stride-2 map, about
``H*W*96`` bytes in float32; tiling bounds it by the tile input ``(tile + 2*overlap)**2`` instead of
``H*W``. Scoring one 3840x2160 image on CPU peaked at 2.92 GiB RSS whole, 1.27 GiB tiled with the
default ``tile=1024, overlap=256`` and 1.14 GiB with ``overlap=128``, over a 0.34 GiB baseline of
model and image (``ru_maxrss``, one run each). The price is compute: the tile inputs add up to
1.43x (1080p) / 1.50x (4K) the image area with overlap 128, 1.90x / 2.08x with 256.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .inputs import InputError, check_int
from .model import IACAMetric, IACAOutput

__all__ = ["fit_max_pixels", "check_max_pixels", "forward_all_tiled", "score_tiled", "tile_spans",
           "tile_for_max_pixels", "DEFAULT_TILE", "DEFAULT_OVERLAP", "TILED_ABS_TOL", "MIN_BUDGET_TILE"]

#: Core tile side in pixels used by ``score(..., tile=True)`` without ``max_pixels``.
DEFAULT_TILE = 1024
#: Context added on each side of a core tile (pixels, a multiple of 32).
DEFAULT_OVERLAP = 256
#: Documented bound on |tiled - whole-image| raw score for ``overlap >= 128`` and ``tile >= 256`` (see the
#: module docstring: measured max 0.012 at overlap 128 and 0.00044 at 256 on 1080p photos).
TILED_ABS_TOL = 2e-2

_ALIGN = 32  # coarsest backbone stride: tile borders on multiples of it keep the feature grids aligned


def check_max_pixels(max_pixels: object) -> int:
    """Validate a ``max_pixels`` value: an int >= 1024 (a 32x32 image). Returns it; raises
    :class:`~iaca_metric.InputError` (a ValueError)."""
    return check_int("max_pixels", max_pixels, _ALIGN * _ALIGN,
                     f" (a pixel count; {_ALIGN * _ALIGN} is a {_ALIGN}x{_ALIGN} image)")


def fit_max_pixels(img: torch.Tensor, ref: torch.Tensor | None, max_pixels: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Downscale (N, 3, H, W) ``img`` (and ``ref``) so that H*W <= ``max_pixels``, keeping the aspect
    ratio (to within one pixel of rounding); images already small enough are returned unchanged.
    Values stay in [0, 1].

    Sides never go below 32 pixels (the network's minimum): for an extremely elongated image whose
    short side would drop below 32, the short side is kept at 32 and the long side is cut to
    ``max_pixels // 32``, so the pixel bound still holds but the aspect ratio does not.
    Raises ValueError for a ``max_pixels`` below 1024 or not an int."""
    check_max_pixels(max_pixels)
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if h * w <= max_pixels:
        return img, ref
    s = math.sqrt(max_pixels / (h * w))
    nh, nw = int(h * s), int(w * s)  # floor: nh * nw <= h * w * s**2 = max_pixels (up to rounding)
    if nh < _ALIGN:
        nh, nw = min(h, _ALIGN), max_pixels // min(h, _ALIGN)
    elif nw < _ALIGN:
        nw, nh = min(w, _ALIGN), max_pixels // min(w, _ALIGN)
    while nh * nw > max_pixels:  # guard against float rounding up
        if nh >= nw:
            nh -= 1
        else:
            nw -= 1
    size = (nh, nw)

    def rs(x: torch.Tensor) -> torch.Tensor:
        # Antialiased resizing has no float16/bfloat16 kernel: resize in float32, return the input's dtype.
        y = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        return y.clamp_(0, 1).to(x.dtype)

    return rs(img), (rs(ref) if ref is not None else None)


# ----------------------------------------------------------------------------------------------
# Tiling
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Span:
    """One tile along one axis: the core [c0, c1) it owns and the input [i0, i1) it is run on."""

    c0: int
    c1: int
    i0: int
    i1: int


def _check_tile_args(tile: int, overlap: int) -> None:
    for name, v, lo in (("tile", tile, _ALIGN), ("overlap", overlap, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or v % _ALIGN:
            raise InputError(f"{name} must be an int multiple of {_ALIGN} and >= {lo}, got {v!r} "
                             "(tile borders on multiples of 32 keep the stride-16/32 feature grids aligned)")


def tile_spans(size: int, tile: int, overlap: int) -> list[_Span]:
    """Split one axis of ``size`` pixels into ``ceil(size / tile)`` cores of near-equal length (multiples
    of 32 except the last, which ends at ``size``), each widened by ``overlap`` on both sides (clipped).
    Every input starts on a multiple of 32 and has the same length mod 32 as the whole axis (inputs
    that stop short of the end get ``size % 32`` more pixels of context), so that networks with
    TF-"same" padding sample every tile on the whole image's grid."""
    _check_tile_args(tile, overlap)
    n = -(-size // tile)
    core = -(-size // (n * _ALIGN)) * _ALIGN  # balanced, rounded up to 32
    spans = []
    for c0 in range(0, size, core):
        c1 = min(c0 + core, size)
        i1 = min(size, c1 + overlap)
        if i1 < size:
            # Give every tile input the image's length mod 32: EfficientNet's TF-"same" padding puts
            # its left pad by the parity of each level's length, so a different residue would shift
            # the sampling grid of every feature cell, not just those near the tile border.
            i1 += size % _ALIGN
        spans.append(_Span(c0, c1, max(0, c0 - overlap), i1))
    return spans


#: Smallest core tile used when tiles are sized from a ``max_pixels`` budget: smaller cores multiply the
#: compute (the tile inputs add up to ((core + 2 * overlap) / core) ** 2 times the image area: 25x at 128).
MIN_BUDGET_TILE = 128


def tile_for_max_pixels(max_pixels: int, overlap: int = DEFAULT_OVERLAP) -> tuple[int, int]:
    """The (tile, overlap) whose largest tile input, ``(tile + 2 * overlap) ** 2``, fits in
    ``max_pixels``, keeping the full ``overlap`` of context (default 256 px).

    The context is never reduced to fit a small budget: on a real 1920x1088 photo with the embedded
    model, 288-px cores with 128 px of context drifted 0.072 from the whole-image score (3.6x the
    documented :data:`TILED_ABS_TOL`), while 256 px of context stayed within 0.0031 for cores of 128,
    256, 512 and 1024 px. A budget that cannot hold a :data:`MIN_BUDGET_TILE` core plus that context
    (``max_pixels < (128 + 2 * overlap) ** 2``, 409,600 by default) raises
    :class:`~iaca_metric.InputError`: downscale instead (``tile=False``) or raise the budget."""
    check_max_pixels(max_pixels)
    _check_tile_args(MIN_BUDGET_TILE, overlap)
    side = math.isqrt(max_pixels) // _ALIGN * _ALIGN
    tile = side - 2 * overlap
    if tile < MIN_BUDGET_TILE:
        need = (MIN_BUDGET_TILE + 2 * overlap) ** 2
        raise InputError(f"max_pixels={max_pixels} is too small for tiled scoring: a tile needs {overlap} px of "
                         f"context on each side of a core of at least {MIN_BUDGET_TILE} px to stay within the "
                         f"documented tolerance {TILED_ABS_TOL}, i.e. max_pixels >= {need}. Raise max_pixels, or "
                         "drop tile=True to downscale large images to max_pixels instead")
    return tile, overlap


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@torch.no_grad()
def forward_all_tiled(model: IACAMetric, img: torch.Tensor, ref: torch.Tensor | None = None, *,
                      tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> IACAOutput:
    """All three head outputs of ``model`` for ``img`` (N, 3, H, W) in [0, 1], computed tile by tile
    (see the module docstring). ``tile``: core side in pixels; ``overlap``: context on each side; both
    multiples of 32. Peak activation memory follows ``(tile + 2 * overlap) ** 2`` instead of ``H * W``.
    An image that fits in one tile gets the ordinary :meth:`IACAMetric.forward_all` result. No input
    validation (use :func:`iaca_metric.score` with ``tile=True`` for checked inputs); no taps; runs
    under ``torch.no_grad()``. The illumination nets and heads are the model's own
    (:meth:`IACAMetric.illumination_weights`, :meth:`IACAMetric.heads_from_moments`), under the same
    float32 rule as whole-image scoring (:meth:`IACAMetric.float32_heads`)."""
    _check_tile_args(tile, overlap)
    h, w = int(img.shape[-2]), int(img.shape[-1])
    rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        return model.forward_all(img, ref)

    dev = img.device.type
    # Detail-branch models also pool their stride-4 and stride-8 maps (unweighted); core borders lie on
    # multiples of 32, so those cells partition the whole-image maps as well.
    strides = (4, 8, 16, 32) if model.detail_branch else (16, 32)
    grid = {s: (_ceil_div(h, s), _ceil_div(w, s)) for s in strides}
    # Illumination weights on the whole-image grids, exactly as whole-image scoring computes them.
    with model.float32_heads(dev) as cast:
        illum = model.illumination_map(img, ref)
        w16, w32 = model.illumination_weights(illum.float() if cast else illum, grid[16], grid[32])
    weights = {16: w16, 32: w32}
    del illum
    acc = torch.float64 if img.device.type != "mps" else torch.float32  # MPS has no float64
    sums: dict[int, list[torch.Tensor]] = {}
    for ry in rows:
        for cx in cols:
            taps = model.backbone_taps(img[..., ry.i0:ry.i1, cx.i0:cx.i1])
            for s, feat in taps.items():
                th, tw = _ceil_div(ry.i1 - ry.i0, s), _ceil_div(cx.i1 - cx.i0, s)
                if tuple(feat.shape[-2:]) != (th, tw):
                    raise RuntimeError(
                        f"tiling needs a backbone whose stride-{s} tap is ceil(H/{s}) x ceil(W/{s}); "
                        f"{model.arch} gave {tuple(feat.shape[-2:])} for a {ry.i1 - ry.i0}x{cx.i1 - cx.i0} tile")
                # Feature cells owned by this core, in tile and in whole-image coordinates.
                y0, y1 = ry.c0 // s, _ceil_div(ry.c1, s)
                x0, x1 = cx.c0 // s, _ceil_div(cx.c1, s)
                oy, ox = (ry.c0 - ry.i0) // s, (cx.c0 - cx.i0) // s
                with model.float32_heads(dev) as cast:
                    f = feat[..., oy:oy + y1 - y0, ox:ox + x1 - x0]
                    x = f.float() if cast else f
                    if s in weights:
                        x = x * weights[s][..., y0:y1, x0:x1]
                    x = x.to(torch.promote_types(x.dtype, torch.float32)).to(acc)
                    part = [x.sum(dim=(2, 3)), (x * x).sum(dim=(2, 3))]
                sums[s] = [a + b for a, b in zip(sums[s], part)] if s in sums else part
            del taps
    n = {s: grid[s][0] * grid[s][1] for s in strides}
    detail = None
    if model.detail_branch:
        detail = (torch.cat([sums[4][0] / n[4], sums[8][0] / n[8]], dim=1),
                  torch.cat([sums[4][1] / n[4], sums[8][1] / n[8]], dim=1))
    with model.float32_heads(dev):
        return model.heads_from_moments(sums[16][0] / n[16], sums[16][1] / n[16], sums[32][0] / n[32],
                                        sums[32][1] / n[32], detail=detail)


def score_tiled(model: IACAMetric, img: torch.Tensor, ref: torch.Tensor | None = None, *,
                tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> torch.Tensor:
    """Fused raw score (N,) of ``img`` computed tile by tile, like ``model(img, ref)``; see
    :func:`forward_all_tiled`."""
    return forward_all_tiled(model, img, ref, tile=tile, overlap=overlap).score
