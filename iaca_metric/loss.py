"""IACALoss: the IACA quality model as a differentiable training loss for enhancement networks."""
from __future__ import annotations

import torch
from torch import nn

import math

from . import _engine
from .inputs import InputError
from .model import IACAMetric

__all__ = ["IACALoss"]


class IACALoss(nn.Module):
    """Negative IACA score: lower is better, differentiable with respect to the images.

    Usage in a training loop::

        criterion = IACALoss()                       # embedded IACA-Lite, frozen
        loss = criterion(enhancer(low), low) + 0.1 * l1(enhancer(low), low)

    Args:
        model: any :class:`IACAMetric`; default: the embedded IACA-Lite model.
        reduction: "mean" | "sum" | "none" over the batch ("none" gives shape (N,)).
        data_range: value of full white of the inputs (1.0 for [0, 1] tensors).
        grayscale: "error" (default) or "replicate": single-channel (N, 1, H, W) images have their grey
            channel copied into R, G and B (differentiably) instead of being refused.

    Inputs: ``img`` (N, 3, H, W) float in [0, data_range], H, W >= 32; ``ref`` (optional) the low-light
    inputs, same shape. Both are validated on every call (NaN/Inf, range, shape), so an enhancer that
    drifts out of range fails loudly instead of being rewarded for it. A non-finite loss (damaged
    weights, or an overflow in half precision outside autocast) raises :class:`ScoreError` instead of
    being returned, so it cannot silently poison the enhancer's weights.

    The quality model is frozen (``requires_grad=False``) and always in eval mode: its BatchNorm uses
    running statistics even when the surrounding module is put in ``train()`` mode. It is deliberately
    not registered as a submodule, so it stays out of your ``parameters()`` and ``state_dict()``; it
    follows the device and dtype of the images at call time. Works under ``torch.autocast`` (bf16/fp16):
    the pooling statistics are computed in float32 inside the model.
    """

    #: A loss: lower is better (it is ``-score``).
    higher_is_better: bool = False
    #: Unbounded, like the raw score it negates (see :attr:`IACAMetric.score_range`).
    score_range: tuple[float, float] = (-math.inf, math.inf)

    def __init__(self, model: IACAMetric | None = None, reduction: str = "mean", data_range: float = 1.0,
                 grayscale: str = "error") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise InputError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        # Validated here, once, the same way as every other entry point (InputError).
        self._opts = _engine.Options.make(data_range=data_range, grayscale=grayscale)
        self.data_range = self._opts.data_range
        if model is None:
            from .api import default_model

            m = default_model()
        else:
            m = _engine.check_model(model)
            m.requires_grad_(False)  # documented: the quality model is frozen
        self._holder = [m]  # a list hides it from nn.Module registration (see class docstring)

    @property
    def model(self) -> IACAMetric:
        return self._holder[0]

    def _model_for(self, x: torch.Tensor) -> IACAMetric:
        m = self._holder[0]
        p = next(m.parameters())
        # Under autocast keep float32 weights (autocast casts per op); otherwise match the input dtype.
        dtype = p.dtype if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        # Never move or cast the held model itself (it may be the process-wide default model, or yours):
        # a private copy on the images' device and dtype is cached while the original is unchanged.
        return _engine.place(m, x.device, dtype)

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(img, torch.Tensor) or (ref is not None and not isinstance(ref, torch.Tensor)):
            raise InputError("IACALoss takes torch tensors (N, 3, H, W); use iaca_metric.score for files/arrays")
        if not img.is_floating_point():
            raise InputError(f"IACALoss needs a float tensor to differentiate, got {img.dtype}")
        model = self._model_for(img)
        items, _ = _engine.prepare(model, img, ref, self._opts)
        # Half-precision images outside autocast: run in the model's (float32) dtype; .to() is
        # differentiable, and under autocast the ops cast back to half anyway.
        dtype = next(model.parameters()).dtype
        # Cast each part before joining: img and ref may arrive in different float dtypes.
        x = torch.cat([it.img.to(dtype) for it in items])
        r = torch.cat([it.ref.to(dtype) for it in items]) if items[0].ref is not None else None
        loss = -model(x, r)
        finite = torch.isfinite(loss.detach())
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            raise _engine.ScoreError(
                f"IACALoss: the quality model gave a non-finite score for image(s) {bad[:8]} of the batch; "
                f"{_engine.NON_FINITE_CAUSE}")
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
