"""Accumulating IACA over a whole evaluation set: :class:`IACAScore` (update / compute / reset).

The torchmetrics pattern without the torchmetrics dependency::

    metric = IACAScore(model)                    # or IACAScore() for the embedded IACA-Lite model
    for low, enhanced in loader:
        metric.update(enhanced, low)             # same inputs as iaca_metric.score
    result = metric.compute()                    # {"mean": ..., "std": ..., "count": ...}
    metric.reset()

State is constant-size: float64 running sum, sum of squares and count of the scores (plus the list
of per-image scores only with ``keep_scores=True``). Under ``torch.distributed`` (DDP, torchrun),
``compute()`` sums the states of all ranks with ``all_reduce`` (and gathers per-image scores with
``all_gather_object``), so every rank gets the result over the whole data set; the local state is
not changed, so ``update`` can go on after ``compute``. ``compute()`` is then a collective call:
every rank must call it, with the same ``keep_scores``.

With torchmetrics installed (``pip install 'iaca-metric[metrics]'``), :func:`to_torchmetrics` /
:class:`IACATorchMetric` give the same metric as a ``torchmetrics.Metric`` (its own state sync,
``MetricCollection`` with ``iaca_``-prefixed keys, Lightning logging; the low-light input by keyword,
``update(enhanced, ref=low)``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch
import torch.distributed as dist

from . import _engine
from .inputs import ImageLike, InputError
from .model import IACAMetric

# IACATorchMetric is importable by name (built on first access) but not in __all__, so that
# ``from iaca_metric.stateful import *`` never needs torchmetrics.
__all__ = ["IACAScore", "summarize_sums", "to_torchmetrics"]

_INSTALL_HINT = "pip install 'iaca-metric[metrics]'"


def summarize_sums(total: float, total_sq: float, count: float) -> dict[str, float | int]:
    """Mean, sample standard deviation (ddof=1, like ``torch.std``) and count from the running sums.
    ``mean`` is NaN for ``count == 0``, ``std`` is NaN for ``count < 2``."""
    n = int(round(count))
    mean = total / count if count > 0 else math.nan
    if n >= 2:
        var = max(total_sq - total * total / count, 0.0) / (count - 1)  # float64; clamped rounding
        std = math.sqrt(var)
    else:
        std = math.nan
    return {"mean": mean, "std": std, "count": n}


def _score_all(model: IACAMetric, img: Any, ref: Any, opts: "_engine.Options") -> torch.Tensor:
    """Scores (float32 (N,), raw or MOS per ``opts``) of every image, through the shared engine; raises
    on the first failed image, before anything is accumulated."""
    items, _ = _engine.prepare(model, img, ref, opts)
    raw, errors = _engine.run(model, items, opts)
    _engine.raise_first(errors)
    return _engine.to_mos(model, raw) if opts.mos else raw


def _comm_device(group: Any) -> torch.device:
    """Where a tensor must live for a collective on ``group``: CUDA for NCCL, else CPU."""
    backend = dist.get_backend(group)
    if str(backend) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _distributed(group: Any) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


class IACAScore:
    """Running IACA statistics over many images (higher is better).

    Args:
        model: any :class:`~iaca_metric.IACAMetric`; default: the embedded IACA-Lite model.
        keep_scores: also keep every image's score (memory grows with the data set); ``compute()``
            then returns them under ``"scores"``.
        mos: accumulate MOS-scale scores (``model.to_mos``) instead of raw scores.
        max_pixels, tile: the large-image policy of :func:`iaca_metric.score` (downscale above
            ``max_pixels``, or score in tiles with ``tile=True``); see :mod:`iaca_metric.large_images`.
        device: where the model runs (default: where it is).
        batch_size, data_range, grayscale: as in :func:`iaca_metric.score`.
        process_group: the ``torch.distributed`` group to synchronise over (default: the world).

    ``update(img, ref=None)`` takes exactly what :func:`iaca_metric.score` takes (files, PIL, numpy,
    tensors, lists of them, mixed) and validates it the same way; it runs under ``torch.no_grad()``.
    Scores are identical to ``iaca_metric.score`` on the same inputs.
    """

    #: Higher scores mean better enhanced images (as :attr:`IACAMetric.higher_is_better`).
    higher_is_better: bool = True

    def __init__(self, model: IACAMetric | None = None, *, keep_scores: bool = False, mos: bool = False,
                 max_pixels: int | None = None, device: str | torch.device | None = None, tile: bool = False,
                 batch_size: int = 16, data_range: float = 1.0, grayscale: str = "error",
                 process_group: Any = None) -> None:
        from .api import resolve_model

        self._opts = _engine.Options.make(batch_size=batch_size, mos=mos, data_range=data_range,
                                          grayscale=grayscale, max_pixels=max_pixels, tile=tile)
        self.keep_scores = _engine._check_bool("keep_scores", keep_scores)
        self.model = resolve_model(model, device)  # a private copy when device differs: yours is not moved
        self.mos = mos
        self.max_pixels = max_pixels
        self.tile = tile
        self.batch_size = batch_size
        self.data_range = data_range
        self.grayscale = grayscale
        self.process_group = process_group
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything accumulated so far (local state only; no communication)."""
        self.total = torch.zeros((), dtype=torch.float64)
        self.total_sq = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.float64)
        self.scores: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, img: ImageLike | Sequence[ImageLike], ref: ImageLike | Sequence[ImageLike] | None = None
               ) -> None:
        """Score ``img`` (one image or a batch/list; ``ref`` the matching low-light inputs) and add the
        scores to the running state. Raises :class:`~iaca_metric.InputError` on bad inputs, leaving the
        state unchanged."""
        s = _score_all(self.model, img, ref, self._opts)
        s64 = s.to(torch.float64)
        self.total += s64.sum()
        self.total_sq += (s64 * s64).sum()
        self.count += s64.numel()
        if self.keep_scores:
            self.scores.append(s.clone())

    def _synced_sums(self) -> tuple[float, float, float]:
        packed = torch.stack([self.total, self.total_sq, self.count])
        if _distributed(self.process_group):
            packed = packed.to(_comm_device(self.process_group))  # a copy: local state stays as it is
            dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.process_group)
        total, total_sq, count = packed.cpu().tolist()
        return total, total_sq, count

    def _synced_scores(self) -> torch.Tensor:
        local = torch.cat(self.scores) if self.scores else torch.zeros(0, dtype=torch.float32)
        if not _distributed(self.process_group):
            return local.clone()
        gathered: list[list[float]] = [None] * dist.get_world_size(self.process_group)  # type: ignore[list-item]
        dist.all_gather_object(gathered, local.tolist(), group=self.process_group)
        return torch.tensor([v for part in gathered for v in part], dtype=torch.float32)

    def compute(self, sync: bool = True) -> dict[str, Any]:
        """``{"mean": float, "std": float, "count": int}`` over everything seen since the last reset,
        on all ranks together when a process group is initialised (``sync=False``: this rank only).
        ``std`` is the sample standard deviation (ddof=1). With ``keep_scores``: ``"scores"``, a float32
        tensor of every score, rank 0's first, then rank 1's, ... (each rank's in update order).
        Does not change the state. Before any update: NaN mean and std, with a warning."""
        if sync:
            total, total_sq, count = self._synced_sums()
        else:
            total, total_sq, count = float(self.total), float(self.total_sq), float(self.count)
        if count == 0:
            warnings.warn("IACAScore.compute() called before any update: mean and std are NaN", UserWarning,
                          stacklevel=2)
        out: dict[str, Any] = summarize_sums(total, total_sq, count)
        if self.keep_scores:
            out["scores"] = self._synced_scores() if sync else (
                torch.cat(self.scores) if self.scores else torch.zeros(0, dtype=torch.float32))
        return out

    def __repr__(self) -> str:
        return (f"IACAScore(arch={self.model.arch!r}, count={int(self.count)}, keep_scores={self.keep_scores}, "
                f"mos={self.mos})")


# ----------------------------------------------------------------------------------------------
# Optional torchmetrics adapter
# ----------------------------------------------------------------------------------------------
_TORCHMETRICS_CLASS: type | None = None


def _require_torchmetrics():
    try:
        import torchmetrics
    except ImportError as exc:
        raise ImportError("the torchmetrics adapter needs torchmetrics, an optional extra: "
                          f"{_INSTALL_HINT} (or use iaca_metric.stateful.IACAScore, which needs nothing "
                          "beyond torch)") from exc
    return torchmetrics


def _build_torchmetrics_class() -> type:
    global _TORCHMETRICS_CLASS
    if _TORCHMETRICS_CLASS is not None:
        return _TORCHMETRICS_CLASS
    torchmetrics = _require_torchmetrics()

    class IACATorchMetric(torchmetrics.Metric):
        """IACA as a ``torchmetrics.Metric``: ``update(img, ref=low_light)``, ``compute() -> dict`` of
        tensors ``iaca_mean``, ``iaca_std`` (ddof=1), ``iaca_count`` (and ``iaca_scores`` with
        ``keep_scores``); the ``key_prefix`` ("iaca_") keeps the keys distinct inside a
        ``MetricCollection`` next to other metrics. States are float64 sums with ``dist_reduce_fx="sum"``
        (``"cat"`` for the scores), synchronised by torchmetrics. The quality model is kept out of the
        metric's ``parameters()`` and ``state_dict()`` and follows the metric's device
        (``metric.to("cuda")``) without moving your model (a private copy runs there).

        The low-light input must be passed by keyword, ``ref=``. A second positional argument is what
        torchmetrics calls the ground-truth ``target``; IACA does not use ground truth, and treating it
        as the low-light input would silently give wrong scores, so it raises InputError, unless the
        metric was built with ``ignore_target=True`` (for a ``MetricCollection`` that also holds
        full-reference metrics: ``collection.update(preds, target, ref=low)``)."""

        is_differentiable = False
        higher_is_better = True
        full_state_update = False
        #: raw scores are unbounded (see IACAMetric.score_range); used by torchmetrics' plots
        plot_lower_bound = None
        plot_upper_bound = None

        def __init__(self, model: IACAMetric | None = None, *, keep_scores: bool = False, mos: bool = False,
                     max_pixels: int | None = None, tile: bool = False, batch_size: int = 16,
                     data_range: float = 1.0, grayscale: str = "error", key_prefix: str = "iaca_",
                     ignore_target: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            from .api import resolve_model

            self._opts = _engine.Options.make(batch_size=batch_size, mos=mos, data_range=data_range,
                                              grayscale=grayscale, max_pixels=max_pixels, tile=tile)
            if not isinstance(key_prefix, str):
                raise InputError(f"key_prefix must be a str, got {key_prefix!r}")
            self._holder = [resolve_model(model, None)]  # a list hides it from nn.Module registration
            self.keep_scores = _engine._check_bool("keep_scores", keep_scores)
            self.ignore_target = _engine._check_bool("ignore_target", ignore_target)
            self.key_prefix = key_prefix
            zero = torch.zeros((), dtype=torch.float64)
            self.add_state("total", default=zero.clone(), dist_reduce_fx="sum")
            self.add_state("total_sq", default=zero.clone(), dist_reduce_fx="sum")
            self.add_state("count", default=zero.clone(), dist_reduce_fx="sum")
            if self.keep_scores:
                self.add_state("scores", default=[], dist_reduce_fx="cat")

        @property
        def model(self) -> IACAMetric:
            return self._holder[0]

        def update(self, img: Any, target: Any = None, *, ref: Any = None) -> None:
            if target is not None and not self.ignore_target:
                raise InputError(
                    "IACATorchMetric.update got a second positional argument: in torchmetrics that is the "
                    "ground-truth target, which IACA does not use. Pass the low-light input by keyword, "
                    "update(enhanced, ref=low_light); in a MetricCollection with full-reference metrics build "
                    "it with to_torchmetrics(..., ignore_target=True) and call collection.update(preds, "
                    "target, ref=low_light)")
            model = _engine.place(self._holder[0], self.device)
            s = _score_all(model, img, ref, self._opts)
            s64 = s.to(device=self.device, dtype=torch.float64)
            self.total += s64.sum()
            self.total_sq += (s64 * s64).sum()
            self.count += s64.numel()
            if self.keep_scores:
                self.scores.append(s.to(self.device))

        def compute(self) -> dict[str, torch.Tensor]:
            res = summarize_sums(float(self.total), float(self.total_sq), float(self.count))
            out = {self.key_prefix + k: torch.tensor(v, dtype=torch.float64 if k != "count" else torch.int64)
                   for k, v in res.items()}
            if self.keep_scores:
                scores = self.scores
                if isinstance(scores, list):
                    scores = torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float32)
                out[self.key_prefix + "scores"] = scores
            return out

    IACATorchMetric.__module__ = __name__
    _TORCHMETRICS_CLASS = IACATorchMetric
    return IACATorchMetric


def to_torchmetrics(model: IACAMetric | None = None, **kwargs: Any):
    """An :class:`IACATorchMetric` (a ``torchmetrics.Metric``); keyword arguments as :class:`IACAScore`
    (without ``device``/``process_group``: use ``.to(device)`` and torchmetrics' own ``process_group``),
    plus ``key_prefix`` (default "iaca_": compute() gives ``iaca_mean``/``iaca_std``/``iaca_count``) and
    ``ignore_target`` (accept and drop a positional ground-truth target; see :class:`IACATorchMetric`).
    Raises ImportError naming ``pip install 'iaca-metric[metrics]'`` when torchmetrics is missing."""
    return _build_torchmetrics_class()(model, **kwargs)


def __getattr__(name: str):
    # ``from iaca_metric.stateful import IACATorchMetric`` builds the class on first use, so importing
    # this module never needs torchmetrics.
    if name == "IACATorchMetric":
        return _build_torchmetrics_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
