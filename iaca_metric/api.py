"""The public scoring function: :func:`score`.

Scale: IACA returns a raw fused score (higher = better), an interval scale learned with a
norm-in-norm loss, so only differences and rankings between images are meaningful; compare images of
the same scene. ``mos=True`` maps it linearly onto the model's MOS scale (for the release weights, the
0-1 SQUARE-LOL win-rate scale; for IACA-Lite, the 0-1 within-scene win-rate scale of its training data).
"""
from __future__ import annotations

import threading
from typing import Sequence

import torch

from .inputs import MIN_SIDE, ImageLike, InputError, check_min_size, check_pair, to_batch
from .model import IACAMetric

__all__ = ["score", "default_model", "prepare_inputs"]

_DEFAULT: dict[tuple[str, torch.dtype], IACAMetric] = {}
_LOCK = threading.Lock()


def default_model(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> IACAMetric:
    """The embedded IACA-Lite model on ``device`` (loaded once per device and dtype, then shared)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = (str(dev), dtype)
    with _LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = IACAMetric().to(device=dev, dtype=dtype).eval().requires_grad_(False)
        return _DEFAULT[key]


def _as_list(batch: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return list(batch.split(1)) if isinstance(batch, torch.Tensor) else batch


def prepare_inputs(model: IACAMetric, img: ImageLike | Sequence[ImageLike], ref: ImageLike | Sequence[ImageLike] | None,
                   data_range: float = 1.0, grayscale: str = "error"
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, bool]:
    """Convert and validate ``img``/``ref`` for ``model``: lists of (1, 3, H, W) tensors in [0, 1] and
    whether one score (rather than a batch) was asked for. ``ref`` is validated even when the model
    ignores it, and returned as None in that case."""
    imgs, single = to_batch(img, data_range=data_range, grayscale=grayscale, name="img")
    imgs = _as_list(imgs)
    check_min_size(imgs, MIN_SIDE, name="img", purpose="IACA (stride-32 network)")
    refs = None
    if ref is None:
        if model.requires_ref:
            raise InputError("this model requires the low-light input: pass ref=<the image that was enhanced>")
    else:
        refs_b, _ = to_batch(ref, data_range=data_range, grayscale=grayscale, name="ref")
        refs = _as_list(refs_b)
        if len(refs) != len(imgs):
            raise InputError(f"got {len(imgs)} images but {len(refs)} low-light inputs; pass one ref per image "
                             "(the input each one was enhanced from)")
        for i, (a, b) in enumerate(zip(imgs, refs)):
            check_pair(a, b, names=(f"img[{i}]" if len(imgs) > 1 else "img", f"ref[{i}]" if len(imgs) > 1 else "ref"))
        if not model.uses_ref:
            refs = None  # documented: validated, then ignored by models that do not use it
    return imgs, refs, single


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
        device: where to run ("cpu", "cuda", ...); default: the model's device.
        batch_size: images per forward pass (same-size images are batched together).
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
        A Python float for one image; a float32 CPU tensor of shape (N,) for several, in input order.
        A batch's scores do not depend on what else is in the batch (BatchNorm uses running statistics).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model is None:
        model = default_model(device)
    elif not isinstance(model, IACAMetric):
        raise TypeError(f"model must be an IACAMetric, got {type(model).__name__}")
    if device is not None:
        model = model.to(device)
    model.eval()
    if max_pixels is not None:
        from .large_images import check_max_pixels

        check_max_pixels(max_pixels)
    imgs, refs, single = prepare_inputs(model, img, ref, data_range, grayscale)
    param = next(model.parameters())
    out = torch.empty(len(imgs), dtype=torch.float32)
    tiled: dict[int, tuple[int, int]] = {}
    if max_pixels is not None or tile:
        from .large_images import DEFAULT_OVERLAP, DEFAULT_TILE, fit_max_pixels, tile_for_max_pixels

        for i in range(len(imgs)):
            h, w = imgs[i].shape[-2:]
            if tile:
                if max_pixels is None and (h > DEFAULT_TILE or w > DEFAULT_TILE):
                    tiled[i] = (DEFAULT_TILE, DEFAULT_OVERLAP)
                elif max_pixels is not None and h * w > max_pixels:
                    tiled[i] = tile_for_max_pixels(max_pixels)
            else:
                imgs[i], r = fit_max_pixels(imgs[i], refs[i] if refs else None, max_pixels)
                if refs:
                    refs[i] = r
    # Batch same-size images together; keep input order in the output. Tiled images go one at a time.
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(imgs):
        if i not in tiled:
            by_size.setdefault(tuple(t.shape[-2:]), []).append(i)
    for i, (tsize, overlap) in tiled.items():
        from .large_images import forward_all_tiled

        r = refs[i].to(device=param.device, dtype=param.dtype) if refs else None
        res = forward_all_tiled(model, imgs[i].to(device=param.device, dtype=param.dtype), r,
                                tile=tsize, overlap=overlap).score
        out[i] = (model.to_mos(res) if mos else res).float().cpu()
    for idx in by_size.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            x = torch.cat([imgs[i] for i in chunk]).to(device=param.device, dtype=param.dtype)
            r = torch.cat([refs[i] for i in chunk]).to(device=param.device, dtype=param.dtype) if refs else None
            res = model(x, r)
            if mos:
                res = model.to_mos(res)
            out[chunk] = res.float().cpu()
    return float(out[0]) if single else out
