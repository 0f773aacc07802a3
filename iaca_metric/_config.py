"""The one model configuration: :class:`ModelConfig`, its defaults, and the strict ``config.json`` reader.

Every way of building an :class:`~iaca_metric.IACAMetric` (``IACAMetric(arch=...)``, the embedded
default model, ``from_pretrained``, ``convert``) goes through :class:`ModelConfig`, so there is one set
of defaults and one set of checks. The module imports nothing from the rest of the package except the
backbone registry, so it cannot take part in an import cycle.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelConfig", "ILLUMINATION_SOURCES", "RELEASE_MOS_SCALE", "RELEASE_MOS_OFFSET", "ConfigError",
           "parse_config", "read_config_file"]

# The release maps raw fused scores onto its 0-1 MOS scale with this least-squares line. It is the one
# default MOS map: a model built with IACAMetric(arch=...) and no mapping gets it, and nothing else does
# (a config.json must state its mapping; see parse_config).
RELEASE_MOS_SCALE = 0.09627324560431309
RELEASE_MOS_OFFSET = 0.5154855778833177

# Where the illumination map comes from:
#  "image"              - max-RGB of the scored image (the paper); ``ref`` is validated then ignored.
#  "reference"          - max-RGB of the low-light input; ``ref`` is required.
#  "reference_or_image" - the low-light input when given, else the image itself (IACA-Lite).
ILLUMINATION_SOURCES = ("image", "reference", "reference_or_image")

# config.json fields that must be present and typed; everything else in the file is informational.
_REQUIRED = ("arch", "illumination", "mos_scale", "mos_offset")


class ConfigError(ValueError):
    """A model configuration value of the wrong type, non-finite, or unknown. Raised as
    :class:`~iaca_metric.InputError` for constructor arguments and :class:`~iaca_metric.WeightsError`
    for ``config.json`` files (both callers re-raise it with the file or argument named)."""


def _finite_number(name: str, value: Any) -> float:
    # bool is an int subclass: True as a MOS scale is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return v


@dataclass(frozen=True)
class ModelConfig:
    """What defines an IACA model besides its weights (what ``config.json`` stores).

    Attributes:
        arch: backbone name from :data:`iaca_metric.backbones.BACKBONES`.
        illumination: one of :data:`ILLUMINATION_SOURCES`.
        mos_scale, mos_offset: ``mos = mos_scale * raw + mos_offset`` (finite floats; the default is the
            release's least-squares map).
        mos_range: nominal range of that MOS scale (documentation only; values are never clipped).
        detail_branch: add the detail head: per-channel mean and std of the backbone's stride-4 and
            stride-8 maps (fine texture, noise, blocking; taps the trunk computes anyway) feed a small
            layer whose output joins the fused regression. False for the paper's model.

    Construction validates every field (types, finiteness, known names) and raises
    :class:`ConfigError` naming the field.
    """

    arch: str
    illumination: str = "image"
    mos_scale: float = RELEASE_MOS_SCALE
    mos_offset: float = RELEASE_MOS_OFFSET
    mos_range: tuple[float, float] = (0.0, 1.0)
    detail_branch: bool = False

    def __post_init__(self) -> None:
        from .backbones import BACKBONES
        from . import __version__

        if not isinstance(self.arch, str) or self.arch not in BACKBONES:
            raise ConfigError(f"unknown arch {self.arch!r}; this version of iaca-metric ({__version__}) "
                              f"supports {sorted(BACKBONES)}")
        if not isinstance(self.illumination, str) or self.illumination not in ILLUMINATION_SOURCES:
            raise ConfigError(f"unknown illumination {self.illumination!r}; expected one of {ILLUMINATION_SOURCES}")
        object.__setattr__(self, "mos_scale", _finite_number("mos_scale", self.mos_scale))
        object.__setattr__(self, "mos_offset", _finite_number("mos_offset", self.mos_offset))
        rng = self.mos_range
        if isinstance(rng, (str, bytes)) or not hasattr(rng, "__len__") or len(rng) != 2:
            raise ConfigError(f"mos_range must be a pair [low, high], got {rng!r}")
        lo, hi = _finite_number("mos_range[0]", rng[0]), _finite_number("mos_range[1]", rng[1])
        if not lo < hi:
            raise ConfigError(f"mos_range must have low < high, got {rng!r}")
        object.__setattr__(self, "mos_range", (lo, hi))
        if not isinstance(self.detail_branch, bool):
            raise ConfigError(f"detail_branch must be true or false, got {self.detail_branch!r}")

    @property
    def uses_ref(self) -> bool:
        return self.illumination != "image"

    @property
    def requires_ref(self) -> bool:
        return self.illumination == "reference"

    def to_dict(self) -> dict[str, Any]:
        """The constructor fields as JSON types (``mos_range`` as a list)."""
        return {"arch": self.arch, "illumination": self.illumination, "mos_scale": self.mos_scale,
                "mos_offset": self.mos_offset, "mos_range": list(self.mos_range),
                "detail_branch": self.detail_branch}


def parse_config(cfg: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a decoded ``config.json`` object. ``arch``, ``illumination``,
    ``mos_scale`` and ``mos_offset`` are required (a missing field is never replaced by a default: a
    missing ``illumination`` would silently ignore ``ref``, a missing MOS map would silently rescale);
    ``mos_range`` defaults to [0, 1] and ``detail_branch`` to false (folders written before it existed have
    no detail head; strict key matching still refuses weights that do not fit). Raises :class:`ConfigError`."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json must hold a JSON object, got {type(cfg).__name__}")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        from .backbones import BACKBONES

        extra = f" (arch is one of {sorted(BACKBONES)})" if "arch" in missing else ""
        raise ConfigError(f"config.json has no {', '.join(repr(k) for k in missing)} field{extra}; "
                          "every weight folder states its arch, illumination and MOS map "
                          "(`iaca-metric convert` and save_pretrained write them)")
    return ModelConfig(arch=cfg["arch"], illumination=cfg["illumination"], mos_scale=cfg["mos_scale"],
                       mos_offset=cfg["mos_offset"], mos_range=tuple(cfg.get("mos_range", (0.0, 1.0)))
                       if isinstance(cfg.get("mos_range", (0.0, 1.0)), (list, tuple)) else cfg["mos_range"],
                       detail_branch=cfg.get("detail_branch", False))


def read_config_file(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """Read ``config.json`` at ``path``: (validated config, the raw object). Raises :class:`ConfigError`
    for bad content and FileNotFoundError when it is missing."""
    text = Path(path).read_bytes()
    try:
        raw = json.loads(text.decode("utf-8"), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config.json is not valid JSON ({exc})") from None
    return parse_config(raw), raw


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN/Infinity/-Infinity by default; a config value must be finite.
    raise ConfigError(f"config.json contains {name}, which is not a finite number")
