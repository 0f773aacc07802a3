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

from .hub import WeightsError, check_state_dict, sha256_file
from .model import IACAMetric, RELEASE_MOS_OFFSET, RELEASE_MOS_SCALE

__all__ = ["read_original_checkpoint", "convert_checkpoint"]

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


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, arch: str = "resnext101_32x8d",
                       mos_scale: float = RELEASE_MOS_SCALE, mos_offset: float = RELEASE_MOS_OFFSET
                       ) -> IACAMetric:
    """Convert ``src`` (original checkpoint) to a hub-ready folder ``dst``; returns the loaded model.

    Raises :class:`WeightsError` naming every missing, unexpected or mis-shaped key."""
    from . import __version__

    state = read_original_checkpoint(src)
    model = IACAMetric(arch=arch, illumination="image", mos_scale=mos_scale, mos_offset=mos_offset)
    check_state_dict(model, state, str(src))
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
