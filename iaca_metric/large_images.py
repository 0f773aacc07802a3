"""Memory bounds for very large images: the ``max_pixels`` policy.

IACA pools features globally, so a downscaled image keeps its global statistics; we downscale (area-
preserving antialiased bilinear) any image above ``max_pixels`` so that activation memory is bounded.
The low-light input is resized identically so the illumination map stays aligned.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["fit_max_pixels"]


def fit_max_pixels(img: torch.Tensor, ref: torch.Tensor | None, max_pixels: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Downscale (N, 3, H, W) ``img`` (and ``ref``) so that H*W <= ``max_pixels``, keeping the aspect
    ratio; images already small enough are returned unchanged. Values stay in [0, 1]."""
    if max_pixels < 32 * 32:
        raise ValueError(f"max_pixels must be at least {32 * 32} (a 32x32 image), got {max_pixels}")
    h, w = img.shape[-2:]
    if h * w <= max_pixels:
        return img, ref
    s = math.sqrt(max_pixels / (h * w))
    size = (max(32, int(h * s)), max(32, int(w * s)))

    def rs(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)

    return rs(img), (rs(ref) if ref is not None else None)
