"""Convert an original IACA release checkpoint into a hub-ready folder.

The release saves ``torch.save({"model": state_dict, "optimizer": ...}, "checkpoints/<arch>_last")``,
sometimes from ``nn.DataParallel`` (keys prefixed ``module.``). We read it with
``torch.load(weights_only=True)`` (no code execution), check every key and shape against our layout,
and write ``model.safetensors``, ``config.json`` and a ``README.md`` model card.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ._config import RELEASE_MOS_OFFSET, RELEASE_MOS_SCALE
from .hub import WeightsError, check_state_dict, sha256_file
from .model import IACAMetric

__all__ = ["read_original_checkpoint", "convert_checkpoint", "infer_arch"]

_MODEL_CARD = """---
library_name: iaca-metric
license: mit
tags:
- image-quality-assessment
- low-light-enhancement
---
# IACA ({arch}) converted from an original release checkpoint

Illumination-aware, content-adaptive quality model for low-light image enhancement
(Chen et al., "Gap-closing Matters: Perceptual Quality Evaluation and Optimization of Low-Light Image
Enhancement", IEEE TMM 2023).

- source checkpoint: `{src_name}` (sha256 `{src_sha}`)
- architecture: `{arch}`, {n_params:,} parameters; illumination map from the scored image
- input: RGB in [0, 1], full resolution, no normalisation
- output: raw fused score (higher is better); MOS scale of the release:
  `mos = {scale!r} * score + {offset!r}`
- weights: `model.safetensors` (sha256 `{dst_sha}`), converted by iaca-metric {version}

```python
from iaca_metric import IACAMetric, score
model = IACAMetric.from_pretrained("THIS_FOLDER_OR_REPO")
print(score("enhanced.png", model=model, mos=True))
```
"""


def read_original_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of an original checkpoint: ``{"model": sd, ...}`` or a bare ``sd``; strips ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a usable checkpoint"
        raise WeightsError(f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True "
                           f"({type(exc).__name__}: {exc}). Is it truncated, or not a torch.save file?") from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict (or {{'model': state_dict}}) of tensors, "
                           f"got {type(obj).__name__}.")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


# Keys that tell the release's trunks apart: ResNeXt-101 has 23 blocks in layer3 (``features.6``),
# ResNet-50 has 6; the 32x8d grouped conv2 of the first block is (256, 8, 3, 3), ResNet-50's (64, 64, 3, 3).
_ARCH_SIGNATURES = (
    ("resnext101_32x8d", "features.6.22.conv1.weight", ("features.4.0.conv2.weight", (256, 8, 3, 3))),
    ("resnet50", "features.6.5.conv1.weight", ("features.4.0.conv2.weight", (64, 64, 3, 3))),
)


def infer_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """The release architecture a state dict was saved from (``resnext101_32x8d``, ``resnet50``;
    ``efficientnet_lite0`` for IACA-Lite exports), or None when its keys match none of them."""
    if any(k.startswith("features.blocks.") for k in state):
        return "efficientnet_lite0"
    for arch, depth_key, (shape_key, shape) in _ARCH_SIGNATURES:
        if depth_key in state and shape_key in state and tuple(state[shape_key].shape) == shape:
            if arch == "resnet50" and "features.6.6.conv1.weight" in state:
                continue  # deeper than ResNet-50: not this arch
            return arch
    return None


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, arch: str | None = None,
                       mos_scale: float = RELEASE_MOS_SCALE, mos_offset: float = RELEASE_MOS_OFFSET
                       ) -> IACAMetric:
    """Convert ``src`` (original checkpoint) to a hub-ready folder ``dst``; returns the loaded model.

    ``arch``: the backbone; default None infers it from the checkpoint's keys (:func:`infer_arch`).
    Raises :class:`WeightsError` naming every missing, unexpected or mis-shaped key."""
    from . import __version__

    state = read_original_checkpoint(src)
    inferred = infer_arch(state)
    if arch is None:
        if inferred is None:
            raise WeightsError(f"{src}: cannot tell the architecture from the checkpoint's keys (it is neither "
                               "the release's ResNeXt-101 32x8d nor its ResNet-50); pass it explicitly with "
                               "--arch resnext101_32x8d or --arch resnet50 (arch=... in Python).")
        arch = inferred
    model = IACAMetric(arch=arch, illumination="image", mos_scale=mos_scale, mos_offset=mos_offset)
    try:
        check_state_dict(model, state, str(src))
    except WeightsError as exc:
        hint = (f" The checkpoint looks like {inferred}: pass --arch {inferred} (or omit --arch to infer it)."
                if inferred is not None and inferred != arch else
                " If it is another release architecture, pass --arch resnext101_32x8d or --arch resnet50.")
        raise WeightsError(str(exc) + hint) from None
    # Keep the model's float32 storage: the release trains in float32 and so do its checkpoints.
    model.load_state_dict(state, strict=True)
    dst = Path(dst)
    model.save_pretrained(dst)
    model.weights_info = {"source": f"converted from {Path(src).name}", "revision": None,
                          "sha256": sha256_file(dst / "model.safetensors"), "path": str(dst / "model.safetensors")}
    card: dict[str, Any] = dict(arch=arch, src_name=Path(src).name, src_sha=sha256_file(src),
                                n_params=model.num_parameters(), scale=mos_scale, offset=mos_offset,
                                dst_sha=model.weights_info["sha256"], version=__version__)
    (dst / "README.md").write_text(_MODEL_CARD.format(**card), encoding="utf-8")
    return model
