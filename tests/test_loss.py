"""Tests for iaca_metric.IACALoss: gradients (incl. gradcheck), sign, frozen and unregistered model,
eval-mode BatchNorm, autocast, reductions, input validation, no graph kept between calls.

Models are small seeded EfficientNet-Lite0 IACA networks (tests/iaca_test_models.py).
"""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from iaca_metric import IACALoss, InputError, score

from iaca_test_models import low_light, make_image, make_model

torch.set_num_threads(1)


def _batch(n: int = 3, h: int = 64, w: int = 64, seed0: int = 0, dark: float = 1.0) -> torch.Tensor:
    return torch.stack([torch.from_numpy(make_image(h, w, seed=seed0 + i, dark=dark)).permute(2, 0, 1).float() / 255
                        for i in range(n)])


@pytest.fixture(scope="module")
def roi_model():
    return make_model("reference_or_image")


# ------------------------------------------------------------------------------------------- gradients
def test_differentiable_wrt_image_and_ref(roi_model) -> None:
    crit = IACALoss(model=roi_model)
    x = _batch(2).requires_grad_(True)
    ref = (_batch(2) * 0.15).requires_grad_(True)
    loss = crit(x, ref)
    assert loss.ndim == 0 and loss.requires_grad
    loss.backward()
    for t in (x, ref):  # ref feeds the illumination map of this model, so it gets a gradient too
        assert t.grad is not None and torch.isfinite(t.grad).all()
        assert float(t.grad.abs().max()) > 1e-4
    # both images of the batch get their own non-zero gradient
    assert all(float(x.grad[i].abs().sum()) > 0 for i in range(2))
    # the gradient points uphill for the loss: a small step against it lowers the loss
    with torch.no_grad():
        stepped = (x - 1e-3 * x.grad / x.grad.abs().max()).clamp(0, 1)
        assert float(crit(stepped, ref)) < float(loss)


GRADCHECK_SEED = 0


def test_gradcheck_float64() -> None:
    """torch.autograd.gradcheck on a 1x3x32x32 float64 image (fast_mode, eps 1e-6, atol 1e-4).

    The network is piecewise smooth (ReLU/ReLU6 kinks, max-pool / channel-max argmax switches), so a
    finite difference is only wrong where an activation lies within ~eps of a kink. Weights
    (make_model seed), image (generator seed) and fast mode's random projection vectors
    (torch.manual_seed before the call) are all fixed, so the check is deterministic; seed 0 is not
    near a kink (seeds 0-5 all pass, even at atol 1e-7, rtol 1e-5). Pixel values are kept in
    [0.1, 0.9] so the eps perturbation never leaves [0, 1] (the loss validates its range).

    fast_mode compares one projection v^T J u and scales atol by sum(u) * sum(v) (u >= 0, |u| = 1,
    so about sqrt(3072) ~ 50 here): on its own it lets a gradient that is 3% off pass (measured),
    and a failing fast check falls back to the slow 3072-column Jacobian for its message (minutes).
    So a strict directional-derivative check follows: central differences along random signed
    directions must match grad . u to 1e-6 relative, and the same check rejects a 1% wrong gradient.
    """
    m = make_model("image", seed=GRADCHECK_SEED).double()
    crit = IACALoss(model=m, reduction="sum")
    g = torch.Generator().manual_seed(GRADCHECK_SEED)
    x = (0.1 + 0.8 * torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)).requires_grad_(True)
    torch.manual_seed(GRADCHECK_SEED)
    assert torch.autograd.gradcheck(crit, (x,), eps=1e-6, atol=1e-4, fast_mode=True)

    (grad,) = torch.autograd.grad(crit(x), x)
    assert float(grad.norm()) > 1.0 and float(grad.abs().max()) > 0.1  # far above atol=1e-4
    wrong = grad * 1.01
    for k in range(4):
        u = torch.randn(x.shape, generator=g, dtype=torch.float64)
        u /= u.norm()
        with torch.no_grad():
            numerical = float(crit(x + 1e-6 * u) - crit(x - 1e-6 * u)) / 2e-6
        analytical = float((grad * u).sum())
        assert abs(analytical) > 1e-3, k  # a real, non-vanishing directional derivative
        assert abs(numerical - analytical) <= 1e-6 * abs(analytical), (k, numerical, analytical)
        assert abs(numerical - float((wrong * u).sum())) > 1e-3 * abs(analytical)  # discriminative


def test_lower_is_better_loss_is_negative_score(roi_model) -> None:
    x = _batch(4)
    ref = _batch(4) * 0.15
    scores = score(list(x), list(ref), model=roi_model)
    per_image = IACALoss(model=roi_model, reduction="none")(x, ref)
    torch.testing.assert_close(per_image, -scores, atol=1e-5, rtol=0)
    # the best-scored image has the lowest loss
    assert int(per_image.argmin()) == int(scores.argmax())


def test_reductions(roi_model) -> None:
    x = _batch(3)
    none = IACALoss(model=roi_model, reduction="none")(x)
    mean = IACALoss(model=roi_model, reduction="mean")(x)
    total = IACALoss(model=roi_model, reduction="sum")(x)
    assert none.shape == (3,) and mean.shape == () and total.shape == ()
    assert float(none.max() - none.min()) > 0.1  # values differ, so mean != any element
    torch.testing.assert_close(mean, none.mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(total, none.sum(), atol=1e-5, rtol=0)
    one = IACALoss(model=roi_model, reduction="none")(x[:1])
    assert one.shape == (1,)
    torch.testing.assert_close(one[0], none[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="reduction"):
        IACALoss(model=roi_model, reduction="max")


def test_data_range_255(roi_model) -> None:
    x = _batch(2)
    a = IACALoss(model=roi_model, reduction="none")(x)
    b = IACALoss(model=roi_model, reduction="none", data_range=255)(x * 255)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ frozen, not registered
class _Trainer(nn.Module):
    def __init__(self, crit: IACALoss) -> None:
        super().__init__()
        self.enhancer = nn.Conv2d(3, 3, 1)
        self.criterion = crit

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(self.enhancer(low))
        return self.criterion(out, low)


def test_model_frozen_and_not_in_parent_parameters_or_state_dict() -> None:
    m = make_model("reference_or_image")
    crit = IACALoss(model=m)
    parent = _Trainer(crit)
    assert crit.model is m
    assert all(not p.requires_grad for p in m.parameters())
    assert list(crit.parameters()) == [] and crit.state_dict() == {}
    params = list(parent.parameters())
    assert len(params) == 2 and all(p.shape[0] == 3 for p in params)  # the 1x1 conv's weight and bias
    assert set(parent.state_dict()) == {"enhancer.weight", "enhancer.bias"}
    assert not any(isinstance(mod, type(m)) for mod in parent.modules())
    # training the parent: the enhancer gets gradients, the quality model none
    low = _batch(2, dark=0.15)
    parent(low).backward()
    assert parent.enhancer.weight.grad is not None and float(parent.enhancer.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in m.parameters())


def test_stays_in_eval_mode_under_parent_train() -> None:
    m = make_model("reference_or_image")
    crit = IACALoss(model=m, reduction="none")
    parent = _Trainer(crit)
    x = _batch(3)
    ref = x * 0.15
    parent.eval()
    expected = crit(x, ref)
    buffers = {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}
    assert len(buffers) > 50
    parent.train()
    m.train()  # even a direct train() keeps BatchNorm on running statistics
    assert parent.training
    out = crit(x, ref)
    assert torch.equal(out, expected)
    for k, v in m.state_dict().items():
        if k in buffers:
            assert torch.equal(v, buffers[k]), f"{k} changed by a forward in train mode"
    bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(bn.training for bn in bns)
    # a batch of one image in train mode would crash BatchNorm1d if it used batch statistics
    assert torch.isfinite(crit(x[:1], ref[:1])).all()


# -------------------------------------------------------------------------------------------- autocast
def test_autocast_bf16_close_to_fp32(roi_model) -> None:
    x = _batch(3)
    ref = x * 0.15
    crit = IACALoss(model=roi_model, reduction="none")
    fp32 = crit(x, ref)
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = crit(xg, ref)
    assert torch.isfinite(bf16).all()
    bf16.float().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and float(xg.grad.abs().max()) > 0
    assert next(roi_model.parameters()).dtype == torch.float32  # weights stay fp32 under autocast
    diff = float((bf16.detach().float() - fp32).abs().max())
    spread = float(fp32.max() - fp32.min())
    print(f"\nbf16 autocast vs fp32: max |diff| = {diff:.4f} (scores {fp32.tolist()}, spread {spread:.3f})")
    assert diff < 0.1
    assert torch.equal(bf16.float().argsort(), fp32.argsort())  # same ranking


def test_half_precision_input_without_autocast(roi_model) -> None:
    # bf16 images outside autocast: the loss must still work (and be close to fp32), not crash on a
    # dtype mismatch between the images and the fp32 quality model.
    x = _batch(2)
    crit = IACALoss(model=roi_model, reduction="none")
    fp32 = crit(x)
    xb = x.bfloat16().requires_grad_(True)
    out = crit(xb)
    out.sum().backward()
    assert xb.grad is not None and xb.grad.dtype == torch.bfloat16 and torch.isfinite(xb.grad.float()).all()
    diff = float((out.detach().float() - fp32).abs().max())
    print(f"\nbf16 images (no autocast) vs fp32 images: max |diff| = {diff:.4f}")
    assert out.dtype == torch.float32 and diff < 0.1  # computed by the fp32 model on the rounded images


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make_bad, pattern", [
    (lambda x: x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill_(3, torch.tensor([5]), True),
                             float("nan")), r"img contains NaN at 384 values"),
    (lambda x: x * 1.5, r"values in \[.*\] but must lie in \[0, 1\]"),
    (lambda x: (x * 255).to(torch.uint8), r"float tensor.*torch\.uint8"),
    (lambda x: (x * 255).long(), r"float tensor.*torch\.int64"),
    (lambda x: x[:, :, :16, :16], r"16x16 pixels.*32x32"),
    (lambda x: x.permute(0, 2, 3, 1), r"looks like NHWC"),
])
def test_bad_inputs_raise_input_error(roi_model, make_bad, pattern) -> None:
    crit = IACALoss(model=roi_model)
    with pytest.raises(InputError, match=pattern):
        crit(make_bad(_batch(2)))


def test_bad_ref_raises_input_error(roi_model) -> None:
    crit = IACALoss(model=roi_model)
    x = _batch(2)
    with pytest.raises(InputError, match=r"ref has values in .* must lie in \[0, 1\]"):
        crit(x, x * 0.15 + 1.0)
    with pytest.raises(InputError, match="2 images but 1 low-light inputs"):
        crit(x, x[:1] * 0.15)
    with pytest.raises(InputError, match=r"img\[0\] has shape .* but ref\[0\] has shape .*48"):
        crit(x, x[:, :, :, :48] * 0.15)
    with pytest.raises(InputError, match="torch tensors"):
        crit(x, low_light(make_image()))
    with pytest.raises(InputError, match="torch tensors"):
        crit(make_image())


def test_required_ref_missing(roi_model) -> None:
    crit = IACALoss(model=make_model("reference"))
    with pytest.raises(InputError, match="requires the low-light input"):
        crit(_batch(1))


# ------------------------------------------------------------------------------------- no graph kept
def test_no_graph_kept_between_calls(roi_model) -> None:
    """Every tensor saved for backward is boxed by a saved_tensors_hooks pack hook; the boxes are only
    alive while some graph is (a box holds a detached alias: boxing the tensor itself would make a
    tensor -> grad_fn -> box -> tensor cycle through C++ that Python's gc cannot free). After each call's loss is dropped (with or without backward), no box may
    survive: the loss module keeps no reference to its output or graph."""

    class Box:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    boxes: list[weakref.ref] = []

    def pack(t: torch.Tensor) -> Box:
        b = Box(t.detach())
        boxes.append(weakref.ref(b))
        return b

    crit = IACALoss(model=roi_model)
    x = _batch(2)
    ref = x * 0.15
    grads = []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda b: b.t):
        for i in range(20):
            xi = x.clone().requires_grad_(True)
            loss = crit(xi, ref)
            assert len(boxes) > 0
            if i % 2 == 0:
                loss.backward()  # backward on every other call works: each call has its own graph
                grads.append(xi.grad)
            del loss, xi
            gc.collect()
            alive = sum(b() is not None for b in boxes)
            assert alive == 0, f"call {i}: {alive} saved tensors still referenced"
    assert len(grads) == 10 and all(torch.equal(g, grads[0]) for g in grads)
    assert all(p.grad is None for p in roi_model.parameters())
