"""The public scoring function: :func:`score`.

Scale: IACA returns a raw fused score (higher = better), an interval scale learned with a
norm-in-norm loss, so only differences and rankings between images are meaningful; compare images of
the same scene. ``mos=True`` maps it linearly onto the model's MOS scale (for the release weights, the
0-1 SQUARE-LOL win-rate scale; for IACA-Lite, the 0-1 within-scene win-rate scale of its training data).

The work is done by the shared engine (:mod:`iaca_metric._engine`), as for every other entry point.
"""
from __future__ import annotations

import threading
from typing import Sequence

import torch

from . import _engine
from .inputs import ImageLike
from .model import IACAMetric

__all__ = ["score", "default_model", "prepare_inputs"]

_DEFAULT: dict[tuple[str, torch.dtype], IACAMetric] = {}
_LOCK = threading.Lock()


@torch.inference_mode(False)  # ordinary tensors even when first called under torch.inference_mode()
def default_model(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> IACAMetric:
    """The embedded IACA-Lite model on ``device`` (loaded once per device and dtype, then shared; do not
    modify it in place: every default-model caller in the process sees it)."""
    dev = _engine.check_device(device) or torch.device("cpu")
    key = (str(dev), dtype)
    with _LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = IACAMetric().to(device=dev, dtype=dtype).eval().requires_grad_(False)
        return _DEFAULT[key]


def prepare_inputs(model: IACAMetric, img: ImageLike | Sequence[ImageLike], ref: ImageLike | Sequence[ImageLike] | None,
                   data_range: float = 1.0, grayscale: str = "error"
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, bool]:
    """Convert and validate ``img``/``ref`` for ``model``: lists of (1, 3, H, W) tensors in [0, 1] and
    whether one score (rather than a batch) was asked for. ``ref`` is validated even when the model
    ignores it, and returned as None in that case."""
    opts = _engine.Options.make(data_range=data_range, grayscale=grayscale)
    items, single = _engine.prepare(model, img, ref, opts)
    refs = [it.ref for it in items] if items[0].ref is not None else None
    return [it.img for it in items], refs, single


def resolve_model(model: IACAMetric | None, device: str | torch.device | None) -> IACAMetric:
    """The model to run: the shared embedded one on ``device``, or ``model`` there (a private copy
    when it lives elsewhere: the caller's model is never moved). Validates both arguments."""
    dev = _engine.check_device(device)
    if model is None:
        return default_model(dev)
    return _engine.place(_engine.check_model(model), dev)


@torch.no_grad()
def score(img: ImageLike | Sequence[ImageLike], ref: ImageLike | Sequence[ImageLike] | None = None, *,
          model: IACAMetric | None = None, device: str | torch.device | None = None, batch_size: int = 16,
          mos: bool = False, data_range: float = 1.0, grayscale: str = "error", max_pixels: int | None = None,
          tile: bool = False) -> float | torch.Tensor:
    """Perceptual quality of enhanced low-light images (higher is better).

    Args:
        img: the enhanced image(s): a file path, PIL image, numpy HWC array (uint8, uint16, or float in
            [0, 1]), torch CHW/NCHW float tensor in [0, data_range], or a list of these (sizes may differ).
        ref: the low-light input(s) each image was enhanced from, same size(s); optional. Models whose
            config uses it (IACA-Lite) take the illumination map from it; models that do not (the
            paper's release weights) validate it and ignore it.
        model: any :class:`IACAMetric`; default: the embedded IACA-Lite model.
        device: where to run ("cpu", "cuda", ...); default: the model's device. A model that lives
            elsewhere is not moved: a private copy runs on ``device`` (cached while the model is unchanged).
        batch_size: images per forward pass (same-size images are batched together; a batch also holds
            at most ``iaca_metric._engine.DEFAULT_BATCH_PIXELS`` pixels). Never changes the scores.
        mos: map raw scores to the model's MOS scale (``mos_scale * s + mos_offset``).
        data_range: value of full white for float inputs (1.0 or 255).
        grayscale: "error" (default) or "replicate" for single-channel inputs.
        max_pixels: memory bound for large images, in pixels per forward pass (default: none). Without
            ``tile``, an image above it is downscaled (aspect ratio kept, ``ref`` resized identically)
            before scoring, which changes its score; see :func:`iaca_metric.large_images.fit_max_pixels`.
        tile: score large images at full resolution in tiles instead (exact global pooling statistics,
            overlapping context; see :mod:`iaca_metric.large_images` for the measured tolerance). Tiles
            are 1024 px plus 256 px context per side, or sized so each tile's input fits ``max_pixels``;
            images within one tile (or within ``max_pixels``) are scored whole, as without ``tile``.

    Returns:
        A Python float for one image (a path, PIL image, HWC array or CHW tensor); a float32 CPU tensor
        of shape (N,), in input order, for a list or an NCHW tensor, even when N is 1.
        A batch's scores do not depend on what else is in the batch (BatchNorm uses running statistics).

    Raises:
        InputError: any bad input or argument (checked before any image is scored).
        ScoreError: the model gave a non-finite score (damaged weights, half-precision overflow) or an
            image alone ran out of memory.
    """
    opts = _engine.Options.make(batch_size=batch_size, mos=mos, data_range=data_range, grayscale=grayscale,
                                max_pixels=max_pixels, tile=tile)
    model = resolve_model(model, device)
    items, single = _engine.prepare(model, img, ref, opts)
    raw, errors = _engine.run(model, items, opts)
    _engine.raise_first(errors)
    out = _engine.to_mos(model, raw) if mos else raw
    return float(out[0]) if single else out
