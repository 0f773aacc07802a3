"""The IACA network: illumination-aware, content-adaptive quality model (Chen et al., TMM 2023).

Data flow for one image batch ``img`` (N, 3, H, W), RGB in [0, 1]:

1. the backbone gives a stride-16 tap ``f6`` and a stride-32 tap ``f7``;
2. the illumination map ``L = max_c(x)`` (N, 1, H, W) is adaptive-max-pooled to each tap's size and
   turned into a non-negative weight map by a tiny conv net (``getw5`` for the stride-16 tap,
   ``getw6`` for the stride-32 tap), which multiplies every channel of the tap.  ``x`` is the image
   itself (the paper) or, for models whose config says so, the low-light input ``ref``;
3. each weighted tap is pooled into its global mean ``m`` and std ``s`` (per channel);
4. content-adaptive attention ``att(m)`` gates the std: ``g = att(m) * s``;
5. ``dr6``/``dr7`` reduce ``g`` to 64-d; ``regr6``/``regr7`` score each stage and ``regression``
   scores the concatenation. ``regression`` is the fused score used for inference.

Submodule names equal the original release's, so its checkpoints load without renaming.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from . import __version__
from .backbones import BACKBONES, build_backbone

__all__ = ["IACAMetric", "IACAOutput", "ILLUMINATION_SOURCES", "RELEASE_MOS_SCALE", "RELEASE_MOS_OFFSET"]

# The release maps raw fused scores onto its 0-1 MOS scale with this least-squares line.
RELEASE_MOS_SCALE = 0.09627324560431309
RELEASE_MOS_OFFSET = 0.5154855778833177

# Where the illumination map comes from:
#  "image"              - max-RGB of the scored image (the paper); ``ref`` is validated then ignored.
#  "reference"          - max-RGB of the low-light input; ``ref`` is required.
#  "reference_or_image" - the low-light input when given, else the image itself (IACA-Lite).
ILLUMINATION_SOURCES = ("image", "reference", "reference_or_image")


def _mlp_dr(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, 1024), nn.BatchNorm1d(1024), nn.Linear(1024, 256),
                         nn.BatchNorm1d(256), nn.Linear(256, 64), nn.BatchNorm1d(64), nn.ReLU())


def _mlp_att(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
                         nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, cin), nn.Sigmoid())


def _illum_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 1, 3, padding=1), nn.ReLU())


@dataclass
class IACAOutput:
    """All outputs of one forward pass. Shapes: ``score``, ``regr6``, ``regr7``: (N,) raw scores
    (higher = better). ``taps`` (only when requested): name -> tensor, see :meth:`IACAMetric.forward_all`."""

    score: torch.Tensor
    regr6: torch.Tensor
    regr7: torch.Tensor
    taps: dict[str, torch.Tensor] = field(default_factory=dict)


class IACAMetric(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="iaca-metric",
    repo_url="https://github.com/iaca-metric/iaca-metric",
    paper_url="https://doi.org/10.1109/TMM.2023.3327587",
    license="mit",
    tags=["image-quality-assessment", "low-light-enhancement"],
):
    """IACA quality model for low-light image enhancement.

    ``IACAMetric()`` with no argument returns the embedded, pretrained default model (IACA-Lite,
    loaded offline from the package). ``IACAMetric(arch=...)`` builds an uninitialised network of that
    architecture (for training or for loading weights); ``IACAMetric.from_pretrained(repo_or_dir)``
    loads published weights (safetensors only, strict keys).

    Args:
        arch: backbone name from :data:`iaca_metric.backbones.BACKBONES`.
        illumination: one of :data:`ILLUMINATION_SOURCES` (where the illumination map comes from).
        mos_scale, mos_offset: linear map from the raw fused score to the model's MOS scale.
        mos_range: the nominal range of that MOS scale (documentation only; values are not clipped).

    BatchNorm layers always use their running statistics (evaluation semantics), even after
    ``.train()``: a quality metric must not change with the batch it is given.
    """

    def __init__(
        self,
        arch: str | None = None,
        illumination: str = "image",
        mos_scale: float = RELEASE_MOS_SCALE,
        mos_offset: float = RELEASE_MOS_OFFSET,
        mos_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        embedded = arch is None
        if embedded:
            # Bare constructor: the embedded default model. Its config.json decides the architecture,
            # its weights are copied in below (offline, from inside the installed package).
            from .hub import default_model_dir, read_config  # local import: hub imports this module

            cfg = read_config(default_model_dir() / "config.json")
            arch, illumination = cfg["arch"], cfg["illumination"]
            mos_scale, mos_offset, mos_range = cfg["mos_scale"], cfg["mos_offset"], tuple(cfg["mos_range"])
        if arch not in BACKBONES:
            raise ValueError(f"unknown arch {arch!r} in the model config; this version of iaca-metric "
                             f"({__version__}) knows {sorted(BACKBONES)}")
        if illumination not in ILLUMINATION_SOURCES:
            raise ValueError(f"unknown illumination source {illumination!r}; expected one of {ILLUMINATION_SOURCES}")
        self.arch = arch
        self.illumination = illumination
        self.mos_scale = float(mos_scale)
        self.mos_offset = float(mos_offset)
        self.mos_range = (float(mos_range[0]), float(mos_range[1]))
        c6, c7 = BACKBONES[arch].channels
        self.features = build_backbone(arch)
        self.dr6, self.dr7 = _mlp_dr(c6), _mlp_dr(c7)
        self.att6, self.att7 = _mlp_att(c6), _mlp_att(c7)
        self.getw5, self.getw6 = _illum_net(), _illum_net()
        self.regr6, self.regr7 = nn.Linear(64, 1), nn.Linear(64, 1)
        self.regression = nn.Linear(128, 1)
        # Provenance, filled by the loaders; shown by `iaca-metric info`.
        self.weights_info: dict[str, Any] = {"source": "uninitialised", "revision": None, "sha256": None}
        self.eval()
        if embedded:
            from .hub import DEFAULT_MODEL_SHA256, load_weights_file

            load_weights_file(self, default_model_dir() / "model.safetensors", source="embedded default model",
                              expected_sha256=DEFAULT_MODEL_SHA256)
            self._hub_mixin_config = self.config_dict()

    # ------------------------------------------------------------------ configuration
    @property
    def uses_ref(self) -> bool:
        """True when the low-light input changes the score (it feeds the illumination map)."""
        return self.illumination != "image"

    @property
    def requires_ref(self) -> bool:
        """True when scoring without the low-light input is an error."""
        return self.illumination == "reference"

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments (what ``config.json`` stores, besides informational fields)."""
        return {"arch": self.arch, "illumination": self.illumination, "mos_scale": self.mos_scale,
                "mos_offset": self.mos_offset, "mos_range": list(self.mos_range)}

    def hub_config(self) -> dict[str, Any]:
        """Everything written to ``config.json``: constructor args plus informational fields."""
        cfg = self.config_dict()
        cfg.update({
            "input": "RGB float in [0, 1], (N, 3, H, W), full resolution, no mean/std normalisation "
                     "by the caller (the backbone applies its own)",
            "uses_ref": self.uses_ref,
            "requires_ref": self.requires_ref,
            "score": "fused head ('regression'); higher is better; mos = mos_scale * score + mos_offset",
            "iaca_metric_version": __version__,
        })
        return cfg

    def train(self, mode: bool = True) -> "IACAMetric":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def to_mos(self, score: torch.Tensor) -> torch.Tensor:
        """Map raw fused scores onto this model's MOS scale (linear; see ``mos_range``)."""
        return score * self.mos_scale + self.mos_offset

    # ------------------------------------------------------------------ forward
    def illumination_map(self, img: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """(N, 1, H, W) max-RGB map of the image or of the low-light input, per the config."""
        if self.illumination == "reference":
            if ref is None:
                raise ValueError("this model requires the low-light input: call it as model(img, ref)")
            src = ref
        elif self.illumination == "reference_or_image" and ref is not None:
            src = ref
        else:
            src = img
        return src.amax(dim=1, keepdim=True)

    def _stage(self, feat: torch.Tensor, illum: torch.Tensor, getw: nn.Module, att: nn.Module,
               dr: nn.Module, taps: dict[str, torch.Tensor] | None, tag: str) -> torch.Tensor:
        w = getw(F.adaptive_max_pool2d(illum, feat.shape[-2:]))
        x = feat * w  # (N,1,h,w) broadcasts over channels, as the release's repeat() does
        # Pooling statistics in at least float32: under fp16/bf16 autocast E[x^2] - E[x]^2 cancels
        # catastrophically (and x^2 can overflow fp16), which would give NaN or zero std.
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        mean = x.mean(dim=(2, 3))
        # std as sqrt(relu(E[x^2] - E[x]^2)): the release's formula; relu guards rounding below 0.
        # The tiny clamp only changes the gradient at exactly zero variance (sqrt'(0) = inf).
        var = F.relu((x * x).mean(dim=(2, 3)) - mean * mean)
        std = torch.sqrt(var.clamp_min(torch.finfo(var.dtype).tiny)) * (var > 0)
        # Back to the heads' dtype (a no-op for float32/64 models and under autocast): a float16 or
        # bfloat16 model (e.g. default_model(dtype=torch.bfloat16)) cannot take float32 statistics.
        head_dtype = att[0].weight.dtype
        mean, std = mean.to(head_dtype), std.to(head_dtype)
        gated = att(mean) * std
        out = dr(gated)
        if taps is not None:
            taps[f"spsp{tag}_mean"], taps[f"gated{tag}"], taps[f"dr{tag}"] = mean, gated, out
        return out

    def features_to_output(self, f16: torch.Tensor, f32: torch.Tensor, illum: torch.Tensor,
                           return_taps: bool = False) -> IACAOutput:
        """Heads only: from the two backbone taps and the illumination map to the three scores."""
        taps: dict[str, torch.Tensor] | None = {} if return_taps else None
        if torch.is_autocast_enabled(f16.device.type):
            # The heads cost ~1% of the backbone; under autocast they run in float32 because a bf16 output
            # layer alone rounds scores of magnitude ~4 to steps of 0.03.
            with torch.autocast(f16.device.type, enabled=False):
                return self.features_to_output(f16.float(), f32.float(), illum.float(), return_taps)
        h6 = self._stage(f16, illum, self.getw5, self.att6, self.dr6, taps, "6")
        h7 = self._stage(f32, illum, self.getw6, self.att7, self.dr7, taps, "7")
        score = self.regression(torch.cat([h6, h7], dim=1)).squeeze(1)
        return IACAOutput(score=score, regr6=self.regr6(h6).squeeze(1), regr7=self.regr7(h7).squeeze(1),
                          taps=taps or {})

    def forward_all(self, img: torch.Tensor, ref: torch.Tensor | None = None,
                    return_taps: bool = False) -> IACAOutput:
        """All three head outputs (and, with ``return_taps``, the intermediate tensors
        ``spsp6_mean``/``spsp7_mean`` (N, C) pooled means, ``gated6``/``gated7`` (N, C) att(mean)*std,
        ``dr6``/``dr7`` (N, 64) reduced features). ``img``/``ref``: (N, 3, H, W) in [0, 1], H, W >= 32.
        No input validation here: use :func:`iaca_metric.score` for checked inputs."""
        illum = self.illumination_map(img, ref)
        f16, f32 = self.features(img)
        return self.features_to_output(f16, f32, illum, return_taps)

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Fused raw score, shape (N,); higher is better. See :meth:`forward_all` for all heads."""
        return self.forward_all(img, ref).score

    # ------------------------------------------------------------------ hub integration
    def _save_pretrained(self, save_directory: Path) -> None:
        self.save_weights(save_directory / "model.safetensors")
        (save_directory / "config.json").write_text(json.dumps(self.hub_config(), indent=2, sort_keys=True) + "\n")

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the state dict (every key, contiguous, on CPU) as one safetensors file."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        # One metadata key only: safetensors writes metadata in hash-map order, so several keys would make
        # the file's sha256 differ between runs for identical weights (arch/version live in config.json).
        save_file(state, str(path), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        force_download: bool = False, token: str | bool | None = None,
                        map_location: str | torch.device = "cpu") -> "IACAMetric":
        """Load weights from a local folder or a Hugging Face Hub repo (``model.safetensors`` +
        ``config.json``). Pickle checkpoints are refused; keys and shapes must match exactly.
        Raises :class:`iaca_metric.hub.WeightsError` with the reason and the offline fix."""
        from .hub import load_pretrained

        return load_pretrained(cls, str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, force_download=force_download, token=token,
                               map_location=map_location)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, illumination={self.illumination!r}"
