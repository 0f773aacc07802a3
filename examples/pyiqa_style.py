"""Recipe: IACA behind the interface pyiqa users know (``create_metric``, ``metric(dist, ref)``,
``lower_better``, ``score_range``, ``as_loss``), without depending on pyiqa.

    from examples.pyiqa_style import create_metric
    iqa = create_metric("iaca")                  # embedded default model, eval mode, frozen
    s = iqa(enhanced, low_light_input)           # (N,) scores, higher is better
    loss_fn = create_metric("iaca", as_loss=True, loss_weight=0.5)
    loss = loss_fn(enhanced, low_light_input)    # scalar, lower is better: 0.5 * -mean(score)

In pyiqa's terms IACA is neither full-reference nor no-reference: its second argument is the
*low-light input* the image was enhanced from (optional), never a ground-truth image. ``ref=None``
scores from the image alone (the default model builds its illumination map from the image then).
"""
from __future__ import annotations

import torch

from iaca_metric import IACALoss, IACAMetric, score


class IACAInferenceModel(torch.nn.Module):
    """pyiqa-``InferenceModel``-like wrapper.

    Args:
        model: an :class:`IACAMetric` (default: the embedded model).
        as_loss: return ``loss_weight * -mean(score)`` (differentiable) instead of per-image scores.
        loss_weight: the loss's weight.
        mos: report the model's MOS scale instead of the raw score (inference only).
    Attributes:
        lower_better: False for the metric (higher score = better), as pyiqa's attribute.
        score_range: the metric's range as pyiqa writes it.
    """

    metric_name = "iaca"

    def __init__(self, model: IACAMetric | None = None, as_loss: bool = False, loss_weight: float = 1.0,
                 mos: bool = False) -> None:
        super().__init__()
        self.net = model if model is not None else IACAMetric()
        self.as_loss, self.loss_weight, self.mos = as_loss, float(loss_weight), mos
        self.lower_better = not self.net.higher_is_better
        lo, hi = self.net.score_range if not mos else self.net.mos_range
        self.score_range = f"{lo}, {hi}"
        self._loss = IACALoss(model=self.net) if as_loss else None

    def forward(self, dist: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """``dist`` (N, 3, H, W) float in [0, 1]; ``ref`` the low-light inputs, same shape, or None.
        Returns (N,) scores, or the weighted scalar loss when ``as_loss``."""
        if self._loss is not None:
            return self.loss_weight * self._loss(dist, ref)
        with torch.no_grad():
            out = score(dist, ref, model=self.net, mos=self.mos)
        return torch.as_tensor(out).reshape(-1)


def create_metric(name: str = "iaca", **kw) -> IACAInferenceModel:
    """pyiqa-style factory; only ``"iaca"`` is known here."""
    if name.lower() != "iaca":
        raise ValueError(f"unknown metric {name!r}; this recipe only wraps 'iaca' (use pyiqa for the others)")
    return IACAInferenceModel(**kw)
