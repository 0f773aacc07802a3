"""The pyiqa-style recipe (examples/pyiqa_style.py) gives the package's own scores and loss."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import iaca_metric
from iaca_test_models import make_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.pyiqa_style import create_metric  # noqa: E402


def test_scores_loss_and_attributes() -> None:
    model = make_model(illumination="reference_or_image", seed=4)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 48, 48, generator=g)
    low = img * 0.2
    iqa = create_metric("iaca", model=model)
    assert iqa.lower_better is False and iqa.score_range == "-inf, inf"
    s = iqa(img, low)
    assert s.shape == (2,)
    torch.testing.assert_close(s, torch.as_tensor(iaca_metric.score(img, low, model=model)).reshape(-1))
    loss_fn = create_metric("IACA", model=model, as_loss=True, loss_weight=0.5)
    x = img.clone().requires_grad_(True)
    loss = loss_fn(x, low)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    torch.testing.assert_close(loss.detach(), -0.5 * s.mean(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="only wraps"):
        create_metric("niqe")
