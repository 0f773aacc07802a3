"""Small, seeded IACA models and generated images shared by the API / loss / CLI / demo tests.

The embedded default model may not exist (it is trained separately), so tests build their own
``efficientnet_lite0`` IACA model from a fixed seed. PyTorch's default init makes that model
useless as a test subject: the backbone's activations shrink by ~3x per layer (kaiming-uniform with
a=sqrt(5) and identity BatchNorm running stats), so the stride-32 tap is ~1e-10, and the
illumination nets ``getw5``/``getw6`` end in a ReLU that outputs exactly 0 for every input, so every
image gets the same score. :func:`make_model` therefore

* re-initialises the backbone convolutions with variance-preserving kaiming-normal (fan_in, ReLU),
* gives the illumination nets a positive bias and random weights, so the weight map is positive and
  depends on the illumination map (needed to see ``ref`` change a ``reference_or_image`` score),
* scales the three output heads by ``head_scale`` so scores differ between images by O(0.1-1).

Everything is drawn from ``torch.manual_seed(seed)``: the same seed gives bit-identical weights.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from iaca_metric import IACAMetric

__all__ = ["make_model", "make_image", "low_light"]


def make_model(illumination: str = "image", seed: int = 0, head_scale: float = 30.0,
               mos_scale: float = 0.25, mos_offset: float = 0.5, **config) -> IACAMetric:
    """An input-dependent IACA-Lite-architecture model with seeded random weights (eval mode).

    ``config`` goes to :class:`IACAMetric` unchanged (e.g. ``mos_range``)."""
    torch.manual_seed(seed)
    m = IACAMetric(arch="efficientnet_lite0", illumination=illumination, mos_scale=mos_scale,
                   mos_offset=mos_offset, **config)
    with torch.no_grad():
        for mod in m.features.modules():
            if isinstance(mod, nn.Conv2d):
                # Drawn in a contiguous buffer: the backbone keeps its weights channels-last, and init
                # functions fill storage order, so drawing in place would change which model a seed gives.
                w = torch.empty(mod.weight.shape)
                nn.init.kaiming_normal_(w, nonlinearity="relu")
                mod.weight.copy_(w)
        for getw in (m.getw5, m.getw6):
            nn.init.normal_(getw[0].weight, 0.0, 0.5)
            getw[0].bias.fill_(0.1)
            nn.init.normal_(getw[2].weight, 0.0, 0.1)
            getw[2].bias.fill_(0.5)
        for head in (m.regression, m.regr6, m.regr7):
            head.weight.mul_(head_scale)
    return m.eval()


def make_image(h: int = 64, w: int = 64, seed: int = 0, dark: float = 1.0) -> np.ndarray:
    """A structured (H, W, 3) uint8 test picture: smooth colour gradients, a few blocks and noise.
    ``dark`` scales the brightness (e.g. 0.15 for a low-light input)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
        img[..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx / w + fy * yy / h) + ph)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y0:y0 + rng.integers(4, h // 3), x0:x0 + rng.integers(4, w // 3)] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.04, img.shape)
    img = np.clip(img * dark, 0, 1)
    return np.round(img * 255).astype(np.uint8)


def low_light(img: np.ndarray, factor: float = 0.15) -> np.ndarray:
    """A darkened uint8 copy of ``img`` (same size), usable as its low-light input."""
    return np.round(img.astype(np.float64) * factor).astype(np.uint8)
