"""Self-supervised Retinex decomposition network of Zhang et al. (2020), inference only, in PyTorch.

"Self-supervised Image Enhancement Network: Training With Low Light Images Only" (Zhang, Di, Zhang,
Li, Luo; arXiv 2002.11300) is SQUARE-LOL's ``Self_Supervised`` method. Its TensorFlow 1 code
(GitHub hitzhangyu/Self-supervised-Image-Enhancement-Network-Training-With-Low-Light-Images-Only,
``model.py``: ``DecomNet``; ``main.py --phase test``; ``utils.py``) enhances an image as follows,
and this module re-implements exactly that:

* input: the RGB image as float32 ``uint8 / 255`` at full size (``load_images`` computes a crop to a
  multiple of 4 but returns the uncropped array);
* the per-pixel channel maximum is concatenated **in front of** the RGB channels: 4 channels
  ``(max, R, G, B)``;
* layers (TF ``'same'`` padding everywhere; stride 1 unless noted; no leaky ReLU anywhere, and no
  batch norm: those lines are commented out in the original)::

    first_layer                 3x3, 4 -> 32,  ReLU      (conv_0, from the 4-channel input)
    shallow_feature_extraction  9x9, 4 -> 64,  linear    (conv,   from the 4-channel input)
    activated_layer_1           3x3, 64 -> 64, ReLU      (conv1)
    activated_layer_2           3x3, 64 -> 128, stride 2, ReLU          (conv2, half resolution)
    activated_layer_3           3x3, 128 -> 128, ReLU    (conv3)
    activated_layer_4           3x3 transposed, 128 -> 64, stride 2, ReLU  (conv4, full resolution)
    activated_layer_5           3x3, cat(conv4, conv1) = 128 -> 64, ReLU
    activated_layer_7           3x3, cat(conv5, conv_0) = 96 -> 64, linear
    recon_layer                 3x3, 64 -> 4, linear
    R = sigmoid(recon[:, 0:3]),  L = sigmoid(recon[:, 3:4])

* the enhanced image is the reflectance ``R`` (the test phase saves it as ``*_R_low``, via
  ``uint8(clip(R * 255, 0, 255))``, i.e. truncated, not rounded); ``L`` is the illumination.

TensorFlow's ``'SAME'`` padding is not PyTorch's symmetric ``padding=``: for a k-tap filter with
stride s on n samples TF pads ``max((ceil(n/s) - 1) * s + k - n, 0)`` in total, the smaller half
before and the larger half after, so a stride-2 3x3 conv on an even size pads (0, 1). A
``tf.layers.conv2d_transpose`` with ``'same'`` produces ``n * s`` samples and crops the full
transposed output the same way. :func:`conv2d_same` and :func:`conv_transpose2d_same` implement both
(tested against a direct numpy computation). On an odd size the original graph cannot run: the
transposed conv returns ``H + 1`` rows, which cannot be concatenated with ``conv1``'s ``H``. We then
ask the transposed conv for ``conv1``'s size, which is what ``tf.nn.conv2d_transpose`` computes when
given that ``output_shape`` (TF allows it because ``ceil(H / 2)`` is the half-resolution size); for
even sizes, including LOL's 600x400, this is the original computation.

Weights: the authors' checkpoint ``checkpoint/Decom/RetinexNet-Decom-6000`` converted to npz
(``DecomNet__<layer>__kernel`` in TF layout HWIO, conv2d_transpose kernels (h, w, out, in), and
``DecomNet__<layer>__bias``), looked up via ``$IACA_SELFSUP_WEIGHTS`` or
``../shared/data/weights/selfsup_retinex_decom_6000.npz`` next to the repository.

Verification status: the authors' output images are not available here, so this implementation is
checked layer by layer against the TF semantics (padding helpers vs numpy, strict weight
shapes) and for plausible outputs on LOL eval15, not pixel by pixel against their results. The data
notes (``shared/data/SOURCES.md``) state that a faithful re-implementation reproduces the authors'
eval15 results within 1 level on at most 12 sub-pixels per image.

Cost: 485,604 parameters, about 69 GMAC per 512x512 image (most of it at full resolution); about
2.8 s per 512x512 image on one core of an AVX-512 Xeon (torch 2.13 CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iaca_metric.inputs import InputError

WEIGHTS_ENV = "IACA_SELFSUP_WEIGHTS"
_WEIGHTS_NAME = "selfsup_retinex_decom_6000.npz"
_WEIGHTS_HINT = (
    "The weights are the authors' TF checkpoint checkpoint/Decom/RetinexNet-Decom-6000 (GitHub "
    "hitzhangyu/Self-supervised-Image-Enhancement-Network-Training-With-Low-Light-Images-Only) converted "
    f"to npz; put it at ../shared/data/weights/{_WEIGHTS_NAME} next to the repository, set "
    f"${WEIGHTS_ENV} to its path, or pass path=..."
)

# (name, kind, in_channels, out_channels, kernel, stride); kind "conv" or "deconv". Names are the TF
# layer names inside the DecomNet scope, so npz key DecomNet__<name>__kernel maps to self.<name>.
LAYERS: tuple[tuple[str, str, int, int, int, int], ...] = (
    ("first_layer", "conv", 4, 32, 3, 1),
    ("shallow_feature_extraction", "conv", 4, 64, 9, 1),
    ("activated_layer_1", "conv", 64, 64, 3, 1),
    ("activated_layer_2", "conv", 64, 128, 3, 2),
    ("activated_layer_3", "conv", 128, 128, 3, 1),
    ("activated_layer_4", "deconv", 128, 64, 3, 2),
    ("activated_layer_5", "conv", 128, 64, 3, 1),
    ("activated_layer_7", "conv", 96, 64, 3, 1),
    ("recon_layer", "conv", 64, 4, 3, 1),
)


# ----------------------------------------------------------------------------- TF 'SAME' helpers
def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``'SAME'`` padding (before, after) along one axis of ``size`` samples.

    The output has ``ceil(size / stride)`` samples; the total padding is
    ``max((out - 1) * stride + kernel - size, 0)``, with the extra sample (if odd) after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1) -> torch.Tensor:
    """``tf.nn.conv2d(..., padding='SAME')`` in PyTorch layout.

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in, kh, kw) (PyTorch layout; TF HWIO is ``permute(3, 2, 0, 1)``).
        bias: (C_out,) or None.
        stride: the same stride on both axes.
    Returns:
        (N, C_out, ceil(H / stride), ceil(W / stride)).
    """
    kh, kw = weight.shape[-2:]
    top, bottom = same_pads(x.shape[-2], kh, stride)
    left, right = same_pads(x.shape[-1], kw, stride)
    # Zero padding, asymmetric when the total is odd (PyTorch's padding= is symmetric only).
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, weight, bias, stride=stride)


def conv_transpose2d_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int = 2,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``tf.nn.conv2d_transpose(..., padding='SAME')`` in PyTorch layout.

    The transpose (gradient) of :func:`conv2d_same` on an ``out_size`` image: the full transposed
    output (``(n - 1) * stride + k`` samples per axis) is cropped starting at the ``before`` padding
    that :func:`same_pads` gives for ``out_size``.

    Args:
        x: (N, C_in, h, w).
        weight: (C_in, C_out, kh, kw) (PyTorch ConvTranspose2d layout; a TF conv2d_transpose kernel
            (kh, kw, C_out, C_in) is ``permute(3, 2, 0, 1)``).
        bias: (C_out,) or None.
        stride: the same stride on both axes.
        out_size: (H, W); default ``(h * stride, w * stride)`` as ``tf.layers.conv2d_transpose``.
            Any size with ``ceil(H / stride) == h`` (and likewise W) is valid.
    Returns:
        (N, C_out, H, W).
    Raises:
        InputError: ``out_size`` is not one that a stride-``stride`` SAME conv maps to ``(h, w)``.
    """
    h, w = x.shape[-2:]
    kh, kw = weight.shape[-2:]
    H, W = (h * stride, w * stride) if out_size is None else (int(out_size[0]), int(out_size[1]))
    if -(-H // stride) != h or -(-W // stride) != w:
        raise InputError(
            f"conv_transpose2d_same: output size {(H, W)} is not mapped to the input size {(h, w)} by a "
            f"stride-{stride} SAME conv (need ceil(H/{stride}) == h and ceil(W/{stride}) == w)."
        )
    full = F.conv_transpose2d(x, weight, None, stride=stride)  # (h-1)*s + k per axis
    top, _ = same_pads(H, kh, stride)
    left, _ = same_pads(W, kw, stride)
    # When (out-1)*s + k < H the full output is shorter than the crop window: TF's padding is then
    # clamped at 0 and the missing samples receive no input (zeros before the bias).
    pad_h = max(top + H - full.shape[-2], 0)
    pad_w = max(left + W - full.shape[-1], 0)
    if pad_h or pad_w:
        full = F.pad(full, (0, pad_w, 0, pad_h))
    y = full[..., top:top + H, left:left + W]
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# ----------------------------------------------------------------------------- network
class SelfSupervisedDecom(nn.Module):
    """The DecomNet of Zhang et al. (2020); :meth:`enhance` gives the enhanced image (reflectance).

    Parameters are ``nn.Conv2d`` / ``nn.ConvTranspose2d`` modules named after the TF layers, used
    only as weight holders: the forward applies them with TF ``'SAME'`` padding.
    """

    def __init__(self) -> None:
        super().__init__()
        for name, kind, cin, cout, k, s in LAYERS:
            cls = nn.Conv2d if kind == "conv" else nn.ConvTranspose2d
            self.add_module(name, cls(cin, cout, k, stride=s, padding=0))

    def _conv(self, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        m = getattr(self, name)
        return conv2d_same(x, m.weight, m.bias, stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decompose ``x`` (N, 3, H, W) float in [0, 1] (RGB, ``uint8 / 255``).

        Returns:
            ``(R, L)``: reflectance (N, 3, H, W) and illumination (N, 1, H, W), both in (0, 1).
        Raises:
            InputError: ``x`` is not a 4-D float tensor with 3 channels and values in [0, 1].
        """
        _check_input(x)
        inp = torch.cat([x.amax(dim=1, keepdim=True), x], dim=1)  # (max, R, G, B), as the original
        conv_0 = F.relu(self._conv("first_layer", inp))
        conv = self._conv("shallow_feature_extraction", inp)
        conv1 = F.relu(self._conv("activated_layer_1", conv))
        conv2 = F.relu(self._conv("activated_layer_2", conv1, stride=2))
        conv3 = F.relu(self._conv("activated_layer_3", conv2))
        d = self.activated_layer_4
        conv4 = F.relu(conv_transpose2d_same(conv3, d.weight, d.bias, 2, out_size=tuple(conv1.shape[-2:])))
        conv5 = F.relu(self._conv("activated_layer_5", torch.cat([conv4, conv1], 1)))
        conv7 = self._conv("activated_layer_7", torch.cat([conv5, conv_0], 1))
        conv8 = self._conv("recon_layer", conv7)
        return torch.sigmoid(conv8[:, 0:3]), torch.sigmoid(conv8[:, 3:4])

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """The enhanced image: the reflectance ``R`` of (N, 3, H, W) ``x`` in [0, 1]; same shape, in (0, 1).

        The original writes ``uint8(clip(R * 255))`` (truncation); quantise the same way to compare
        with its files.
        """
        return self.forward(x)[0]


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        desc = f"{type(x).__name__} {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"SelfSupervisedDecom expects a float (N, 3, H, W) RGB tensor in [0, 1]; got {desc}.")
    if x.numel() and (float(x.amin()) < 0.0 or float(x.amax()) > 1.0 or not bool(torch.isfinite(x).all())):
        raise InputError(
            "SelfSupervisedDecom expects values in [0, 1] (uint8 / 255); got range "
            f"[{float(x.amin()):.4g}, {float(x.amax()):.4g}] or non-finite values. Divide uint8 images by 255."
        )


# ----------------------------------------------------------------------------- weights
def default_weights_path() -> Path:
    """``$IACA_SELFSUP_WEIGHTS`` if set, else ``../shared/data/weights/selfsup_retinex_decom_6000.npz``
    relative to the repository root (the file may be absent)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "weights" / _WEIGHTS_NAME


def tf_arrays_to_state_dict(arrays: dict[str, np.ndarray], source: str = "arrays") -> dict[str, torch.Tensor]:
    """Convert ``DecomNet__<layer>__kernel/bias`` TF arrays to this module's state dict.

    Conv kernels are TF HWIO ``(kh, kw, in, out)``; the conv2d_transpose kernel is
    ``(kh, kw, out, in)``; both become PyTorch layouts by ``transpose(3, 2, 0, 1)``. Every expected key
    must be present with exactly the TF shape implied by :data:`LAYERS`, and no other key may be.

    Raises:
        RuntimeError: naming the missing, unexpected and mis-shaped keys.
    """
    expected: dict[str, tuple[int, ...]] = {}
    for name, kind, cin, cout, k, _ in LAYERS:
        expected[f"DecomNet__{name}__kernel"] = (k, k, cin, cout) if kind == "conv" else (k, k, cout, cin)
        expected[f"DecomNet__{name}__bias"] = (cout,)
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    bad = sorted(
        f"{key}: file {tuple(np.shape(arrays[key]))} vs expected {expected[key]}"
        for key in set(expected) & set(arrays)
        if tuple(np.shape(arrays[key])) != expected[key]
    )
    if missing or unexpected or bad:
        raise RuntimeError(
            f"{source} is not the Self-supervised DecomNet checkpoint: missing keys {missing}, unexpected "
            f"keys {unexpected}, shape mismatches {bad}. " + _WEIGHTS_HINT
        )
    state: dict[str, torch.Tensor] = {}
    for name, *_ in LAYERS:
        kernel = np.asarray(arrays[f"DecomNet__{name}__kernel"], dtype=np.float32)
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"{name}.bias"] = torch.from_numpy(np.asarray(arrays[f"DecomNet__{name}__bias"], dtype=np.float32).copy())
    return state


def load_self_supervised(path: str | os.PathLike | None = None) -> SelfSupervisedDecom:
    """The Self-supervised DecomNet with the authors' weights (``RetinexNet-Decom-6000``), in eval mode.

    Args:
        path: the ``.npz`` file; default :func:`default_weights_path`.
    Raises:
        FileNotFoundError: the file does not exist (the message says where to get it).
        RuntimeError: keys or shapes differ from the DecomNet checkpoint.
    """
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        raise FileNotFoundError(f"Self-supervised DecomNet weights not found at {p}. " + _WEIGHTS_HINT)
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    model = SelfSupervisedDecom()
    model.load_state_dict(tf_arrays_to_state_dict(arrays, source=str(p)), strict=True)
    return model.eval()
