"""Norm-in-norm loss (Li et al., ACM MM 2020), the loss of the IACA release, and its 3-head weighting.

For predictions ``y_hat`` and targets ``y`` of one batch (or one scene), both are centred and divided by
their q-norm; the loss is ``(||y_hat_n - y_n||_p / c) ** p`` with ``c = 2**max(1, 1/q) * N**max(0, 1/p - 1/q)``
so it lies in [0, 1]. The optional second term replaces ``y_hat_n`` by ``rho * y_hat_n`` (``rho`` = cosine of
the two normalised vectors, i.e. their PLCC), which targets the linear fit instead of the raw scale.
The release trains with p = 1, q = 2 and head weights 0.1 (stride-16 head), 0.1 (stride-32 head) and
1 (fused head).
"""
from __future__ import annotations

import torch

__all__ = ["norm_in_norm", "iaca_training_loss", "HEAD_WEIGHTS"]

HEAD_WEIGHTS = (0.1, 0.1, 1.0)  # regr6, regr7, fused score
_EPS = 1e-8


def norm_in_norm(pred: torch.Tensor, target: torch.Tensor, p: float = 1.0, q: float = 2.0,
                 alpha: tuple[float, float] = (1.0, 0.0)) -> torch.Tensor:
    """Norm-in-norm loss of 1-D ``pred`` and ``target`` (same length N). Returns a scalar in [0, 1];
    0 when ``pred`` is an increasing affine function of ``target``. N < 2 gives 0 (nothing to compare)."""
    pred, target = pred.reshape(-1), target.reshape(-1).to(pred.dtype)
    n = pred.numel()
    if n < 2:
        return pred.sum() * 0.0
    pn = pred - pred.mean()
    pn = pn / (_EPS + torch.linalg.vector_norm(pn, ord=q))
    tn = target - target.mean()
    tn = tn / (_EPS + torch.linalg.vector_norm(tn, ord=q))
    scale = 2.0 ** max(1.0, 1.0 / q) * n ** max(0.0, 1.0 / p - 1.0 / q)
    total = pred.new_zeros(())
    if alpha[0] > 0:
        total = total + alpha[0] * (torch.linalg.vector_norm(pn - tn, ord=p) / scale) ** p
    if alpha[1] > 0:
        rho = (pn * tn).sum() / (_EPS + torch.linalg.vector_norm(pn) * torch.linalg.vector_norm(tn))
        total = total + alpha[1] * (torch.linalg.vector_norm(rho * pn - tn, ord=p) / scale) ** p
    return total / (alpha[0] + alpha[1])


def iaca_training_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], target: torch.Tensor,
                       groups: torch.Tensor | None = None, p: float = 1.0, q: float = 2.0,
                       weights: tuple[float, float, float] = HEAD_WEIGHTS) -> torch.Tensor:
    """Weighted norm-in-norm over the three heads ``(regr6, regr7, score)``, each (N,).

    With ``groups`` (N,) integer scene ids, the loss is computed within each scene and averaged: scores
    are within-scene win rates, so only within-scene differences carry information."""
    if groups is None:
        return sum(w * norm_in_norm(o, target, p, q) for w, o in zip(weights, outputs))
    losses = []
    for g in torch.unique(groups):
        sel = groups == g
        if int(sel.sum()) > 1:
            losses.append(sum(w * norm_in_norm(o[sel], target[sel], p, q) for w, o in zip(weights, outputs)))
    if not losses:
        return outputs[0].sum() * 0.0
    return torch.stack(losses).mean()
