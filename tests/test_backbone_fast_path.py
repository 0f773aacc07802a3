"""The EfficientNet-Lite fast path (BatchNorm folded into convolutions, channels-last weights, SAME
padding applied before the expand conv at stride 2) computes exactly what the plain layer-by-layer
definition computes, keeps gradients flowing to every parameter, and is bypassed in half precision."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iaca_metric.backbones import EfficientNetLiteFeatures, MBConv, _conv_bn, _same_pad


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics far from the identity, some running variances tiny (as in trained nets)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + torch.where(
                    torch.rand(n, generator=g) < 0.2, 1e-4, 0.5))
    module.eval()


def _reference_mbconv(blk: MBConv, x: torch.Tensor) -> torch.Tensor:
    """The block as defined: conv -> BN -> ReLU6 with TF-SAME padding on the depthwise input."""
    y = F.relu6(blk.bn0(F.conv2d(x, blk.expand_conv.weight))) if blk.has_expand else x
    dw = blk.depthwise_conv
    y = F.conv2d(_same_pad(y, dw.kernel_size[0], dw.stride[0]), dw.weight, None, dw.stride, 0, 1, dw.groups)
    y = F.relu6(blk.bn1(y))
    y = blk.bn2(F.conv2d(y, blk.project_conv.weight))
    return x + y if blk.residual else y


def test_mbconv_fast_path_matches_definition_float64() -> None:
    torch.manual_seed(0)
    # stride 1 with residual, stride 2 with k3 and k5, no-expand block; even and odd sizes
    cases = [(24, 24, 3, 1, 6), (16, 24, 3, 2, 6), (24, 40, 5, 2, 6), (32, 16, 3, 1, 1)]
    for cin, cout, k, s, e in cases:
        blk = MBConv(cin, cout, k, s, e).double()
        _randomise_bn(blk, seed=k + s)
        for h, w in [(20, 30), (21, 33), (17, 16)]:
            x = torch.randn(2, cin, h, w, dtype=torch.float64)
            with torch.no_grad():
                got, want = blk(x), _reference_mbconv(blk, x)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-11)


def test_same_pad_zero_border_and_layout() -> None:
    x = torch.rand(1, 5, 7, 10).contiguous(memory_format=torch.channels_last)
    p = _same_pad(x, 5, 2)
    assert p.is_contiguous(memory_format=torch.channels_last)
    # k=5, s=2: height 7 needs 4 rows (2 + 2), width 10 needs 3 columns (1 left, 2 right)
    torch.testing.assert_close(p, F.pad(x, (1, 2, 2, 2)), atol=0, rtol=0)
    assert _same_pad(x, 1, 1) is x  # nothing to pad: no copy


def test_trunk_float32_agrees_with_float64_and_keeps_channels_last_weights() -> None:
    torch.manual_seed(1)
    net = EfficientNetLiteFeatures()
    _randomise_bn(net, seed=3)
    w = net.blocks[3].depthwise_conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    # load_state_dict copies into the existing (channels-last) parameters
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert net.blocks[3].depthwise_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 70, 101)
    with torch.no_grad():
        f16, f32 = net(x)
        d16, d32 = net.double()(x.double())
    assert f16.shape == (2, 112, 5, 7) and f32.shape == (2, 320, 3, 4)
    scale = float(d32.abs().max())
    assert float((f32.double() - d32).abs().max()) <= 1e-4 * max(scale, 1.0)
    assert float((f16.double() - d16).abs().max()) <= 1e-4 * max(float(d16.abs().max()), 1.0)


def test_gradients_reach_conv_and_batchnorm_parameters() -> None:
    torch.manual_seed(2)
    blk = MBConv(16, 24, 3, 2, 6)
    _randomise_bn(blk)
    x = torch.rand(1, 16, 12, 13, requires_grad=True)
    blk(x).square().sum().backward()
    for name in ("expand_conv.weight", "depthwise_conv.weight", "project_conv.weight",
                 "bn0.weight", "bn0.bias", "bn1.weight", "bn2.bias"):
        g = dict(blk.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # the folded gradients are those of the definition
    blk.zero_grad()
    x2 = x.detach().double().requires_grad_(True)
    blk_d = blk.double()
    blk_d(x2).square().sum().backward()
    g_fast = blk_d.bn1.weight.grad.clone()
    blk_d.zero_grad()
    _reference_mbconv(blk_d, x2).square().sum().backward()
    torch.testing.assert_close(g_fast, blk_d.bn1.weight.grad, atol=1e-9, rtol=1e-9)


def test_half_precision_is_not_folded() -> None:
    """Under autocast the conv and BatchNorm run separately (folding costs bf16 up to 0.3 in score)."""
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(8, 8, 3, groups=8, bias=False), nn.BatchNorm2d(8, eps=1e-3)
    _randomise_bn(bn)
    x = torch.rand(1, 8, 9, 9)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = _conv_bn(x, conv, bn, same=True)
        want = bn(F.conv2d(x, conv.weight, None, 1, 1, 1, 8))
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_autocast_precision_policy() -> None:
    """Under autocast the stem and blocks[:fp32_blocks[dtype]] run in float32 and later blocks in the
    autocast dtype (default: the whole trunk in float32 under bf16, fp16 from block 3); 0: all-half."""
    torch.manual_seed(0)
    trunk = EfficientNetLiteFeatures().eval()
    assert trunk.fp32_blocks == {torch.bfloat16: len(trunk.blocks), torch.float16: 3}
    seen: dict[int, torch.dtype] = {}
    hooks = [blk.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, out.dtype))
             for i, blk in enumerate(trunk.blocks)]
    x = torch.rand(1, 3, 64, 64)
    n = len(trunk.blocks)

    def dtypes(dtype: torch.dtype | None) -> list[torch.dtype]:
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            f16, f32 = trunk(x)
        return [seen[i] for i in range(n)]

    bf, hf = torch.bfloat16, torch.float16
    assert dtypes(bf) == [torch.float32] * n
    assert dtypes(hf) == [torch.float32] * 3 + [hf] * (n - 3)
    trunk.fp32_blocks[bf] = 15  # reaching into the stride-32 stage (block 15 starts the last stage)
    assert dtypes(bf) == [torch.float32] * 15 + [bf] * (n - 15)
    trunk.fp32_blocks[bf] = 0
    assert dtypes(bf) == [bf] * n
    trunk.fp32_blocks[bf] = 11  # up to the stride-16 tap: f16 float32, f32 bf16
    assert dtypes(bf) == [torch.float32] * 11 + [bf] * (n - 11)
    assert dtypes(None) == [torch.float32] * n  # no autocast: float32 whatever the policy says
    for h in hooks:
        h.remove()
