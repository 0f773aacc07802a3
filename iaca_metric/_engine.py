"""The one scoring engine: validated options, one input representation, one runner.

Every entry point goes through this module: :func:`iaca_metric.score`, :class:`iaca_metric.IACAScore`,
the torchmetrics adapter, the folder scorer (``iaca-metric score``, :func:`iaca_metric.score_folder`)
and, for tensors, :class:`iaca_metric.IACALoss`. So the same input is validated, resized or tiled,
batched and scored the same way everywhere, and a bad argument gives the same :class:`InputError`.

Pipeline::

    Options.make(...)            every argument checked once, up front (InputError)
    prepare(model, img, ref, o)  user inputs -> Item list: (1, 3, H, W) tensors in [0, 1] + ref or None
    place(model, device)         the model on the device, never moving or mutating the caller's model
    run(model, items, o)         size policy (downscale / tile), batches of one size bounded in pixels,
                                 forward, finiteness check -> float32 raw scores + per-item errors

Memory: a batch never holds more than ``Options.batch_pixels`` pixels (so the default batch size cannot
allocate gigabytes for 4K photos); an out-of-memory batch is retried image by image, and an image that
alone runs out of memory is that item's error (a folder row), not the end of the run.
"""
from __future__ import annotations

import copy
import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .inputs import MIN_SIDE, ImageLike, InputError, check_int, check_min_size, check_pair, to_batch
from .model import IACAMetric

__all__ = ["Options", "Item", "ScoreError", "InputTypeError", "prepare", "place", "run", "check_model",
           "check_device", "DEFAULT_BATCH_PIXELS"]

#: Largest number of pixels scored in one forward pass when batching (about 3 GB of activations for
#: IACA-Lite on CPU; a 4096x2048 image). Batching never changes scores, so this bound is always on.
DEFAULT_BATCH_PIXELS = 4096 * 2048


class ScoreError(RuntimeError):
    """The model produced a non-finite score (NaN/Inf) or ran out of memory for an input. A non-finite
    score is never returned or written: it means damaged weights or an overflow (e.g. float16)."""


#: Why a score can be non-finite and what to do, shared by every message that reports one.
NON_FINITE_CAUSE = ("its weights are damaged (check `iaca-metric info` against the published sha256) or the "
                    "computation overflowed (half precision: run under torch.autocast, or in float32)")


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type: both an :class:`InputError` and a ``TypeError``."""


# ---------------------------------------------------------------------------------------------- options
def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class Options:
    """How to score; built (and validated) only by :meth:`make`.

    Attributes:
        batch_size: images per forward pass (same-size images are batched together), >= 1.
        mos: report MOS-scale scores (``model.to_mos``) instead of raw ones.
        data_range: value of full white for float inputs, > 0.
        grayscale: "error" or "replicate".
        max_pixels: None, or an int >= 1024: the downscale bound, or with ``tile`` the tile budget.
        tile: score images above the bound in tiles at full resolution.
        tile_above: None, or a pixel count: images above it are tiled even without ``tile`` (the folder
            scorer's memory bound); never below ``max_pixels`` semantics: downscaling happens first.
        batch_pixels: most pixels in one forward pass when batching (never changes scores).
    """

    batch_size: int = 16
    mos: bool = False
    data_range: float = 1.0
    grayscale: str = "error"
    max_pixels: int | None = None
    tile: bool = False
    tile_above: int | None = None
    batch_pixels: int = DEFAULT_BATCH_PIXELS
    _validated: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def make(cls, *, batch_size: Any = 16, mos: Any = False, data_range: Any = 1.0, grayscale: Any = "error",
             max_pixels: Any = None, tile: Any = False, tile_above: Any = None,
             batch_pixels: Any = DEFAULT_BATCH_PIXELS) -> "Options":
        """Validate every argument (InputError naming it) and return the options."""
        from .inputs import _check_data_range, _check_grayscale_option
        from .large_images import check_max_pixels

        batch_size = check_int("batch_size", batch_size, 1)
        _check_bool("mos", mos)
        _check_bool("tile", tile)
        dr = _check_data_range(data_range)
        _check_grayscale_option(grayscale)
        if max_pixels is not None:
            max_pixels = check_max_pixels(max_pixels)
            if tile:
                from .large_images import tile_for_max_pixels

                tile_for_max_pixels(max_pixels)  # refuses budgets too small for the documented tolerance
        if tile_above is not None:
            tile_above = check_max_pixels(tile_above)
            from .large_images import tile_for_max_pixels

            tile_for_max_pixels(tile_above)
        batch_pixels = check_int("batch_pixels", batch_pixels, MIN_SIDE * MIN_SIDE)
        return cls(batch_size=batch_size, mos=mos, data_range=dr, grayscale=grayscale, max_pixels=max_pixels,
                   tile=tile, tile_above=tile_above, batch_pixels=batch_pixels, _validated=True)

    def settings(self) -> dict[str, Any]:
        """The options that change a score (for provenance and resume checks)."""
        return {"max_pixels": self.max_pixels, "tile": self.tile, "tile_above": self.tile_above,
                "grayscale": self.grayscale}


def check_model(model: Any) -> IACAMetric:
    if not isinstance(model, IACAMetric):
        raise InputTypeError(f"model must be an IACAMetric, got {type(model).__name__}; load one with "
                             "IACAMetric() (embedded) or IACAMetric.from_pretrained(...)")
    return model


def check_device(device: Any) -> torch.device | None:
    """None, or a torch.device that exists on this machine (InputError otherwise, naming what is there)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"device {device!r} is not a torch device ({exc}); use e.g. 'cpu', 'cuda', 'cuda:1'"
                         ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}, built with CUDA: {torch.version.cuda or 'no'}); use "
                             "device='cpu' or install a CUDA build of torch")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise InputError(f"device {device!r}: only {n} CUDA device(s) here (cuda:0 .. cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"device {device!r}: MPS is not available on this machine; use device='cpu'")
    elif dev.type not in ("cpu", "xpu", "meta") and not hasattr(torch, dev.type):
        raise InputError(f"device {device!r} is not supported here; use 'cpu' or 'cuda'")
    return dev


# ---------------------------------------------------------------------------------------------- model
_COPIES: "weakref.WeakKeyDictionary[IACAMetric, dict]" = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def _signature(model: IACAMetric) -> tuple:
    # In-place updates bump a tensor's version counter; config attributes may be edited too. A cached
    # copy is reused only while both are unchanged, so it can never score with stale weights.
    from .hub import tensor_signature

    return (*tensor_signature(model), model.arch, model.illumination, model.mos_scale, model.mos_offset, tuple(model.mos_range))


# Inference mode off: a copy first made under torch.inference_mode() would otherwise hold inference
# tensors, and IACALoss's backward through the cached copy would fail later.
@torch.inference_mode(False)
def place(model: IACAMetric, device: torch.device | None = None, dtype: torch.dtype | None = None) -> IACAMetric:
    """``model`` itself when it already lives on ``device`` with ``dtype`` (None: as it is), else a
    private copy there (cached while the original is unchanged). The caller's model is never moved,
    cast, or switched between train and eval mode (its BatchNorm always uses running statistics)."""
    p = next(model.parameters())
    dev = p.device if device is None else device
    dt = p.dtype if dtype is None else dtype
    if p.device == dev or (dev.index is None and p.device.type == dev.type):
        if p.dtype == dt:
            return model
    key = (str(dev), dt)
    sig = _signature(model)
    with _COPIES_LOCK:
        per = _COPIES.setdefault(model, {})
        hit = per.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        twin = copy.deepcopy(model).to(device=dev, dtype=dt).requires_grad_(False)
        per[key] = (sig, twin)
        return twin


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class Item:
    """One image to score: ``img`` (1, 3, H, W) in [0, 1]; ``ref`` the same size or None (None also when
    the model ignores ref); ``name`` for messages; ``tiling`` (tile, overlap) once the policy chose it."""

    img: torch.Tensor
    ref: torch.Tensor | None
    name: str
    tiling: tuple[int, int] | None = None


def _as_list(batch: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return list(batch.split(1)) if isinstance(batch, torch.Tensor) else batch


def prepare(model: IACAMetric, img: ImageLike | Sequence[ImageLike], ref: ImageLike | Sequence[ImageLike] | None,
            opts: Options) -> tuple[list[Item], bool]:
    """Convert and validate ``img``/``ref`` for ``model``: one :class:`Item` per image, and whether one
    score (rather than a batch) was asked for. ``ref`` is validated even when the model ignores it,
    and dropped in that case."""
    imgs, single = to_batch(img, data_range=opts.data_range, grayscale=opts.grayscale, name="img")
    imgs = _as_list(imgs)
    many = len(imgs) > 1
    names = [f"img[{i}]" if many else "img" for i in range(len(imgs))]
    check_min_size(imgs, MIN_SIDE, name="img", purpose="IACA (stride-32 network)")
    refs: list[torch.Tensor | None] = [None] * len(imgs)
    if ref is None:
        if model.requires_ref:
            raise InputError("this model requires the low-light input: pass ref=<the image that was enhanced>")
    else:
        refs_b, _ = to_batch(ref, data_range=opts.data_range, grayscale=opts.grayscale, name="ref")
        rl = _as_list(refs_b)
        if len(rl) != len(imgs):
            raise InputError(f"got {len(imgs)} images but {len(rl)} low-light inputs; pass one ref per image "
                             "(the input each one was enhanced from)")
        for i, (a, b) in enumerate(zip(imgs, rl)):
            check_pair(a, b, names=(names[i], f"ref[{i}]" if many else "ref"))
        if model.uses_ref:  # documented: validated, then ignored by models that do not use it
            refs = list(rl)
    return [Item(a, b, n) for a, b, n in zip(imgs, refs, names)], single


def apply_size_policy(item: Item, opts: Options) -> Item:
    """Downscale (``max_pixels`` without ``tile``) or choose a tiling (``tile``, ``tile_above``)."""
    from .large_images import DEFAULT_OVERLAP, DEFAULT_TILE, fit_max_pixels, tile_for_max_pixels

    h, w = item.img.shape[-2:]
    if opts.tile:
        if opts.max_pixels is None:
            if h > DEFAULT_TILE or w > DEFAULT_TILE:
                item.tiling = (DEFAULT_TILE, DEFAULT_OVERLAP)
        elif h * w > opts.max_pixels:
            item.tiling = tile_for_max_pixels(opts.max_pixels)
    elif opts.max_pixels is not None:
        item.img, item.ref = fit_max_pixels(item.img, item.ref, opts.max_pixels)
        h, w = item.img.shape[-2:]
    if item.tiling is None and opts.tile_above is not None and h * w > opts.tile_above:
        # Default 1024-px tiles (as tile=True), smaller only when the bound itself is smaller than one.
        item.tiling = ((DEFAULT_TILE, DEFAULT_OVERLAP) if opts.tile_above >= (DEFAULT_TILE + 2 * DEFAULT_OVERLAP) ** 2
                       else tile_for_max_pixels(opts.tile_above))
    return item


# ---------------------------------------------------------------------------------------------- runner
def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "not enough memory" in msg)


def _forward(model: IACAMetric, items: list[Item]) -> torch.Tensor:
    p = next(model.parameters())
    if len(items) == 1 and items[0].tiling is not None:
        from .large_images import forward_all_tiled

        it = items[0]
        tile, overlap = it.tiling
        r = it.ref.to(device=p.device, dtype=p.dtype) if it.ref is not None else None
        return forward_all_tiled(model, it.img.to(device=p.device, dtype=p.dtype), r, tile=tile,
                                 overlap=overlap).score
    x = torch.cat([it.img for it in items]).to(device=p.device, dtype=p.dtype)
    r = None
    if items[0].ref is not None:
        r = torch.cat([it.ref for it in items]).to(device=p.device, dtype=p.dtype)
    return model(x, r)


def _batches(items: list[Item], opts: Options) -> list[list[int]]:
    """Indices grouped by (size, has ref), in input order within a group; tiled images alone; each batch
    at most ``batch_size`` images and ``batch_pixels`` pixels (at least one image)."""
    groups: dict[tuple, list[int]] = {}
    out: list[list[int]] = []
    for i, it in enumerate(items):
        if it.tiling is not None:
            out.append([i])
        else:
            groups.setdefault((tuple(it.img.shape[-2:]), it.ref is not None), []).append(i)
    for (hw, _), idx in groups.items():
        per = max(1, min(opts.batch_size, opts.batch_pixels // (hw[0] * hw[1])))
        out += [idx[s:s + per] for s in range(0, len(idx), per)]
    return out


@torch.no_grad()
def run(model: IACAMetric, items: list[Item], opts: Options) -> tuple[torch.Tensor, dict[int, BaseException]]:
    """Raw scores (float32 CPU tensor (N,), NaN where an item failed) and the failures by index
    (:class:`ScoreError` for a non-finite score or an image that alone ran out of memory). ``items``
    must come from :func:`prepare` (or be validated the same way); the size policy is applied here."""
    for it in items:
        if it.tiling is None:
            apply_size_policy(it, opts)
    out = torch.full((len(items),), math.nan, dtype=torch.float32)
    errors: dict[int, BaseException] = {}

    def score_batch(idx: list[int]) -> None:
        try:
            s = _forward(model, [items[i] for i in idx]).float().cpu()
        except Exception as exc:  # noqa: BLE001 - only memory errors are handled, the rest re-raised
            if not _is_oom(exc):
                raise
            if len(idx) > 1:  # a smaller batch may fit: retry image by image
                for i in idx:
                    score_batch([i])
                return
            h, w = items[idx[0]].img.shape[-2:]
            errors[idx[0]] = ScoreError(
                f"{items[idx[0]].name}: out of memory scoring a {h}x{w} image ({type(exc).__name__}); score it "
                "with max_pixels=... (downscale) or tile=True (--max-pixels / --tile)")
            return
        for k, i in enumerate(idx):
            v = float(s[k])
            if not math.isfinite(v):
                errors[i] = ScoreError(
                    f"{items[i].name}: the model gave a non-finite score ({v}); {NON_FINITE_CAUSE}")
            else:
                out[i] = s[k]

    for idx in _batches(items, opts):
        score_batch(idx)
    return out, errors


def raise_first(errors: dict[int, BaseException]) -> None:
    if errors:
        raise errors[min(errors)]


def to_mos(model: IACAMetric, raw: torch.Tensor) -> torch.Tensor:
    return model.to_mos(raw.to(torch.float64)).to(torch.float32)
