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
6. (models whose config has ``detail_branch``) the per-channel mean and std of the backbone's stride-4
   and stride-8 maps, standardised by fixed buffers (``detail_shift``/``detail_scale``, set from the
   training data), go through ``detail`` (linear + ReLU, 64-d), which joins the concatenation that
   ``regression`` scores. Fine-scale statistics are where noise, blocking, halos and lost texture show;
   the stride-16/32 taps see them only through many layers of ImageNet features.

Submodule names equal the original release's, so its checkpoints load without renaming.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from . import __version__
from . import hub as _hub
from ._config import ILLUMINATION_SOURCES, RELEASE_MOS_OFFSET, RELEASE_MOS_SCALE, ConfigError, ModelConfig
from .backbones import BACKBONES, build_backbone
from .inputs import InputError

__all__ = ["IACAMetric", "IACAOutput", "ModelConfig", "ILLUMINATION_SOURCES", "RELEASE_MOS_SCALE",
           "RELEASE_MOS_OFFSET"]


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
    loaded offline from the package, its ``config.json`` and weights both sha256-pinned).
    ``IACAMetric(arch=...)`` builds an uninitialised network of that architecture (for training or for
    loading weights); ``IACAMetric.from_config(ModelConfig(...))`` does the same from a config object;
    ``IACAMetric.from_pretrained(repo_or_dir)`` loads published weights (safetensors only, strict keys).

    Args:
        arch: backbone name from :data:`iaca_metric.backbones.BACKBONES`.
        illumination: one of :data:`ILLUMINATION_SOURCES` (default ``"image"``).
        mos_scale, mos_offset: linear map from the raw fused score to the model's MOS scale (default:
            the release's map, :data:`RELEASE_MOS_SCALE`, :data:`RELEASE_MOS_OFFSET`).
        mos_range: the nominal range of that MOS scale (default (0, 1); documentation only, values
            are not clipped).

    The other arguments configure a *new* network, so they need ``arch``: ``IACAMetric(illumination=...)``
    raises :class:`~iaca_metric.InputError` instead of returning the embedded model unchanged. Bad
    values (unknown names, non-finite numbers) raise :class:`~iaca_metric.InputError` naming the field.

    Conventions: ``higher_is_better = True``; the raw score is an interval scale with no bounds
    (``score_range = (-inf, inf)``); ``mos=True`` scores are on ``mos_range`` nominally.

    BatchNorm layers always use their running statistics (evaluation semantics), even after
    ``.train()``: a quality metric must not change with the batch it is given.
    """

    #: Higher scores mean better enhanced images.
    higher_is_better: bool = True
    #: The raw score is unbounded (an interval scale learned with a norm-in-norm loss); see ``mos_range``.
    score_range: tuple[float, float] = (-math.inf, math.inf)

    # Built with inference mode off even inside ``torch.inference_mode()``: weights created as inference
    # tensors could never be loaded into afterwards, tracked for changes, or used by IACALoss's backward.
    @torch.inference_mode(False)
    def __init__(
        self,
        arch: str | None = None,
        illumination: str | None = None,
        mos_scale: float | None = None,
        mos_offset: float | None = None,
        mos_range: tuple[float, float] | None = None,
        detail_branch: bool | None = None,
    ) -> None:
        super().__init__()
        embedded = arch is None
        if embedded:
            given = {k: v for k, v in (("illumination", illumination), ("mos_scale", mos_scale),
                                       ("mos_offset", mos_offset), ("mos_range", mos_range),
                                       ("detail_branch", detail_branch)) if v is not None}
            if given:
                raise InputError(
                    f"IACAMetric({', '.join(f'{k}={v!r}' for k, v in given.items())}) without arch: the bare "
                    "constructor is the embedded pretrained model, whose config is fixed. Pass arch=... to "
                    "build a new (untrained) network, or load the embedded model and change the attribute "
                    "explicitly (e.g. model.mos_scale = ...)")
            # The embedded default model goes through the same two checked steps as any weight folder
            # (read_config, load_weights_file), with both files sha256-pinned.
            folder = _hub.default_model_dir()
            cfg = _hub.read_model_config(folder / _hub.CONFIG_FILE, expected_sha256=_hub.DEFAULT_CONFIG_SHA256)
        else:
            defaults = ModelConfig(arch="efficientnet_lite0")  # the one set of defaults
            try:
                cfg = ModelConfig(arch=arch,
                                  illumination=defaults.illumination if illumination is None else illumination,
                                  mos_scale=defaults.mos_scale if mos_scale is None else mos_scale,
                                  mos_offset=defaults.mos_offset if mos_offset is None else mos_offset,
                                  mos_range=defaults.mos_range if mos_range is None else mos_range,
                                  detail_branch=defaults.detail_branch if detail_branch is None else detail_branch)
            except ConfigError as exc:
                raise InputError(f"IACAMetric: {exc}") from None
        self.arch = cfg.arch
        self.illumination = cfg.illumination
        self.mos_scale = cfg.mos_scale
        self.mos_offset = cfg.mos_offset
        self.mos_range = cfg.mos_range
        self.detail_branch = cfg.detail_branch
        c6, c7 = BACKBONES[cfg.arch].channels
        self.features = build_backbone(cfg.arch)
        self.dr6, self.dr7 = _mlp_dr(c6), _mlp_dr(c7)
        self.att6, self.att7 = _mlp_att(c6), _mlp_att(c7)
        self.getw5, self.getw6 = _illum_net(), _illum_net()
        self.regr6, self.regr7 = nn.Linear(64, 1), nn.Linear(64, 1)
        if self.detail_branch:
            cd = sum(BACKBONES[cfg.arch].detail_channels)
            # Fixed standardisation of [means, stds] (2 * cd values): the heads keep BatchNorm in eval
            # mode, so these play the role of its running statistics; train.py sets them from the data.
            self.register_buffer("detail_shift", torch.zeros(2 * cd))
            self.register_buffer("detail_scale", torch.ones(2 * cd))
            self.detail = nn.Sequential(nn.Linear(2 * cd, 64), nn.ReLU())
        self.regression = nn.Linear(192 if self.detail_branch else 128, 1)
        # Provenance, filled by the loaders; shown by `iaca-metric info`.
        self.weights_info: dict[str, Any] = {"source": "uninitialised", "revision": None, "sha256": None}
        self.eval()
        if embedded:
            _hub.load_weights_file(self, folder / _hub.WEIGHTS_FILE, source="embedded default model",
                                   expected_sha256=_hub.DEFAULT_MODEL_SHA256)
            self.weights_info["config_sha256"] = _hub.DEFAULT_CONFIG_SHA256
            self.weights_info["model_card"] = str(folder / "README.md")
        self._hub_mixin_config = self.config_dict()

    @classmethod
    def from_config(cls, config: ModelConfig) -> "IACAMetric":
        """An uninitialised network for ``config`` (a :class:`ModelConfig`)."""
        if not isinstance(config, ModelConfig):
            raise InputError(f"config must be an iaca_metric.ModelConfig, got {type(config).__name__}")
        return cls(arch=config.arch, illumination=config.illumination, mos_scale=config.mos_scale,
                   mos_offset=config.mos_offset, mos_range=config.mos_range, detail_branch=config.detail_branch)

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> ModelConfig:
        """The model's configuration, validated (attributes such as ``mos_scale`` may have been edited)."""
        try:
            return ModelConfig(arch=self.arch, illumination=self.illumination, mos_scale=self.mos_scale,
                               mos_offset=self.mos_offset, mos_range=self.mos_range,
                               detail_branch=self.detail_branch)
        except ConfigError as exc:
            raise InputError(f"this model's configuration is invalid: {exc}") from None

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
        return self.config.to_dict()

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

    @contextlib.contextmanager
    def float32_heads(self, device_type: str) -> Iterator[bool]:
        """Context in which the illumination nets, pooling statistics and heads run: autocast off when it
        is on (yields True; callers then feed float32 tensors). The heads cost ~1% of the backbone; under
        autocast they run in float32 because a bf16 output layer alone rounds scores of magnitude ~4 to
        steps of 0.03. Whole-image and tiled scoring both use it, so they follow the same rule."""
        if torch.is_autocast_enabled(device_type):
            with torch.autocast(device_type, enabled=False):
                yield True
        else:
            yield False

    def illumination_weights(self, illum: torch.Tensor, size16: tuple[int, int], size32: tuple[int, int]
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-negative weight maps (N, 1, h, w) for the stride-16 and stride-32 taps (``getw5`` /
        ``getw6`` on the adaptively max-pooled illumination map). Call inside :meth:`float32_heads`."""
        return (self.getw5(F.adaptive_max_pool2d(illum, size16)),
                self.getw6(F.adaptive_max_pool2d(illum, size32)))

    def heads_from_moments(self, mean6: torch.Tensor, sq6: torch.Tensor, mean7: torch.Tensor, sq7: torch.Tensor,
                           taps: dict[str, torch.Tensor] | None = None,
                           detail: tuple[torch.Tensor, torch.Tensor] | None = None) -> IACAOutput:
        """The heads, from the per-channel moments of the weighted taps: ``mean`` = E[x] and ``sq`` =
        E[x^2], shape (N, C), in at least float32 (whole-image scoring passes float32, tiling float64
        sums divided by the cell count). ``detail``: (E[x], E[x^2]) of the unweighted stride-4 and
        stride-8 maps, channels concatenated, (N, cd) each (:meth:`detail_moments`); required exactly
        when the model has a detail branch. The one implementation of std, attention gate, reductions and
        the regressions. Call inside :meth:`float32_heads`."""
        head_dtype = self.att6[0].weight.dtype
        if (detail is not None) != self.detail_branch:
            raise ValueError("detail moments must be given exactly when the model has a detail branch "
                             f"(detail_branch={self.detail_branch})")

        def stage(mean: torch.Tensor, sq: torch.Tensor, att: nn.Module, dr: nn.Module, tag: str) -> torch.Tensor:
            # std as sqrt(relu(E[x^2] - E[x]^2)): the release's formula; relu guards rounding below 0.
            # The tiny clamp only changes the gradient at exactly zero variance (sqrt'(0) = inf).
            var = F.relu(sq - mean * mean)
            stat_dtype = torch.promote_types(mean.dtype, torch.float32)
            if stat_dtype == torch.float64 and head_dtype != torch.float64:
                stat_dtype = torch.float32  # tiling's float64 sums: differences taken, now back to float32
            mean, var = mean.to(stat_dtype), var.to(stat_dtype)
            std = torch.sqrt(var.clamp_min(torch.finfo(var.dtype).tiny)) * (var > 0)
            # Back to the heads' dtype (a no-op for float32/64 models and under autocast): a float16 or
            # bfloat16 model (e.g. default_model(dtype=torch.bfloat16)) cannot take float32 statistics.
            mean, std = mean.to(head_dtype), std.to(head_dtype)
            gated = att(mean) * std
            out = dr(gated)
            if taps is not None:
                taps[f"spsp{tag}_mean"], taps[f"gated{tag}"], taps[f"dr{tag}"] = mean, gated, out
            return out

        h6 = stage(mean6, sq6, self.att6, self.dr6, "6")
        h7 = stage(mean7, sq7, self.att7, self.dr7, "7")
        fused = [h6, h7]
        if detail is not None:
            dmean = detail[0].to(torch.promote_types(detail[0].dtype, torch.float32))
            z = (self.detail_features(dmean, detail[1].to(dmean.dtype)).to(self.detail_shift.dtype)
                 - self.detail_shift) / self.detail_scale
            hd = self.detail(z.to(head_dtype))
            if taps is not None:
                taps["detail"] = hd
            fused.append(hd)
        score = self.regression(torch.cat(fused, dim=1)).squeeze(1)
        return IACAOutput(score=score, regr6=self.regr6(h6).squeeze(1), regr7=self.regr7(h7).squeeze(1),
                          taps=taps if taps is not None else {})

    @staticmethod
    def _moments(feat: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feat * w  # (N,1,h,w) broadcasts over channels, as the release's repeat() does
        # Pooling statistics in at least float32: under fp16/bf16 E[x^2] - E[x]^2 cancels catastrophically
        # (and x^2 can overflow fp16), which would give NaN or zero std.
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        return x.mean(dim=(2, 3)), (x * x).mean(dim=(2, 3))

    @staticmethod
    def detail_features(mean: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
        """The detail branch's input before standardisation: [E[x], std] per channel, (N, 2 * cd), from the
        moments of :meth:`detail_moments` (std as sqrt(relu(E[x^2] - E[x]^2)), like the IACA stages)."""
        return torch.cat([mean, torch.sqrt(F.relu(sq - mean * mean))], dim=1)

    @staticmethod
    def detail_moments(taps: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[x], E[x^2]) per channel of the stride-4 and stride-8 maps in ``taps`` (as returned by the
        backbone's ``forward_taps(x, detail=True)``), channels concatenated in stride order: two (N, cd)
        float32 (or float64) tensors."""
        means, sqs = [], []
        for s in (4, 8):
            x = taps[s].to(torch.promote_types(taps[s].dtype, torch.float32))
            means.append(x.mean(dim=(2, 3)))
            sqs.append((x * x).mean(dim=(2, 3)))
        return torch.cat(means, dim=1), torch.cat(sqs, dim=1)

    def backbone_taps(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        """The backbone's taps by stride: 16 and 32, plus 4 and 8 when the model has a detail branch."""
        if self.detail_branch:
            return self.features.forward_taps(img, detail=True)
        f16, f32 = self.features(img)
        return {16: f16, 32: f32}

    def features_to_output(self, f16: torch.Tensor, f32: torch.Tensor, illum: torch.Tensor,
                           return_taps: bool = False,
                           detail: tuple[torch.Tensor, torch.Tensor] | None = None) -> IACAOutput:
        """Heads only: from the two backbone taps, the illumination map and (detail-branch models) the
        detail moments (:meth:`detail_moments`) to the three scores."""
        taps: dict[str, torch.Tensor] | None = {} if return_taps else None
        with self.float32_heads(f16.device.type) as cast:
            if cast:
                f16, f32, illum = f16.float(), f32.float(), illum.float()
                if detail is not None:
                    detail = (detail[0].float(), detail[1].float())
            w16, w32 = self.illumination_weights(illum, f16.shape[-2:], f32.shape[-2:])
            m6, q6 = self._moments(f16, w16)
            m7, q7 = self._moments(f32, w32)
            return self.heads_from_moments(m6, q6, m7, q7, taps, detail)

    def forward_all(self, img: torch.Tensor, ref: torch.Tensor | None = None,
                    return_taps: bool = False) -> IACAOutput:
        """All three head outputs (and, with ``return_taps``, the intermediate tensors
        ``spsp6_mean``/``spsp7_mean`` (N, C) pooled means, ``gated6``/``gated7`` (N, C) att(mean)*std,
        ``dr6``/``dr7`` (N, 64) reduced features). ``img``/``ref``: (N, 3, H, W) in [0, 1], H, W >= 32.
        No input validation here: use :func:`iaca_metric.score` for checked inputs."""
        illum = self.illumination_map(img, ref)
        t = self.backbone_taps(img)
        detail = self.detail_moments(t) if self.detail_branch else None
        return self.features_to_output(t[16], t[32], illum, return_taps, detail)

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Fused raw score, shape (N,); higher is better. See :meth:`forward_all` for all heads."""
        return self.forward_all(img, ref).score

    # ------------------------------------------------------------------ hub integration
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors``, ``config.json``, the model card ``README.md`` and ``LICENSE`` (all
        mode 0644). The card is the source's own card when the weights are unchanged (the embedded
        model's card, a loaded folder's card), else one generated from the config and the sha256."""
        from .hub import sha256_file

        save_directory = Path(save_directory)
        weights = save_directory / "model.safetensors"
        self.save_weights(weights)
        (save_directory / "config.json").write_text(json.dumps(self.hub_config(), indent=2, sort_keys=True) + "\n",
                                                    encoding="utf-8")
        sha = sha256_file(weights)
        card_src = self.weights_info.get("model_card")
        same_weights = sha == self.weights_info.get("sha256")
        if card_src and same_weights and Path(card_src).is_file():
            card = Path(card_src).read_text(encoding="utf-8")
        else:
            card = _generated_card(self, sha)
        (save_directory / "README.md").write_text(card, encoding="utf-8")
        (save_directory / "LICENSE").write_text(_licence_text(card), encoding="utf-8")
        for name in ("model.safetensors", "config.json", "README.md", "LICENSE"):
            # Files a hub upload or another user must read: not the 0600 a private umask or temp dir gives.
            os.chmod(save_directory / name, 0o644)

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
        return f"arch={self.arch!r}, illumination={self.illumination!r}, detail_branch={self.detail_branch}"


_CARD = """---
library_name: iaca-metric
license: mit
tags:
- image-quality-assessment
- low-light-enhancement
- iaca
---
# IACA ({arch})

An IACA quality model for low-light image enhancement (illumination-aware, content-adaptive; Chen et al.,
"Gap-closing Matters: Perceptual Quality Evaluation and Optimization of Low-Light Image Enhancement",
IEEE TMM 2023), saved by iaca-metric {version}.

- architecture: `{arch}`, {n_params:,} parameters; illumination map: `{illumination}`
- weights: `model.safetensors`, sha256 `{sha}`; provenance: {source}
- input: RGB in [0, 1], (N, 3, H, W), full resolution, no normalisation by the caller
- output: raw fused score, higher is better, unbounded; `mos = {mos_scale!r} * score + {mos_offset!r}`
  (nominal range {mos_range})

```python
from iaca_metric import IACAMetric, score
model = IACAMetric.from_pretrained("THIS_FOLDER_OR_REPO")
print(score("enhanced.png", "low_light_input.png", model=model))
```

## Licence

Code: MIT (iaca-metric). The weights' terms are those of the data and checkpoint they were trained or
converted from ({source}); state them here before publishing.
"""


def _generated_card(model: "IACAMetric", sha: str) -> str:
    return _CARD.format(arch=model.arch, version=__version__, n_params=model.num_parameters(),
                        illumination=model.illumination, sha=sha,
                        source=model.weights_info.get("source") or "unknown", mos_scale=model.mos_scale,
                        mos_offset=model.mos_offset, mos_range=list(model.mos_range))


def _licence_text(card: str) -> str:
    """LICENSE for a saved folder: the card's own licence section when it has one, plus the code's MIT."""
    section = ""
    lines = card.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## ") and "licen" in line.lower():
            body = []
            for nxt in lines[i + 1:]:
                if nxt.startswith("## "):
                    break
                body.append(nxt)
            section = "\n".join(body).strip()
            break
    return ("Terms of these weights\n======================\n\n" + (section or "See README.md.") + "\n\n"
            "The iaca-metric code that loads them is under the MIT licence "
            "(https://opensource.org/license/mit).\n")

