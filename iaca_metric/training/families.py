"""Parametric candidate families for IACA-Lite 2's training data.

The first training set used one fixed list of 23 enhancers, so a model could learn *which* method it
was looking at instead of *how good* the result is, and it did not generalise to methods outside the
list. Here every candidate comes from a **family** whose parameters are drawn afresh for every group
(one scene and one low-light input): a family is a space of results, not one result, and a model that
orders results within a family it never saw has learned quality, not identity. The leave-one-family-out
evaluation (``benchmarks/accuracy.py --lofo``) measures exactly that.

Family kinds:

* ``method``: clean enhancements (tone curves, gains, histogram methods, Retinex variants,
  illumination-map division, exposure fusion, enhancement with denoising). Each draws
  :data:`DRAWS_PER_FAMILY` parameter sets per group.
* ``network``: the two SQUARE-LOL methods we can run with their authors' weights, official Zero-DCE
  and Self_Supervised (one result each; their human ordering is known, see ``docs/training_data.md``).
* ``failure``: an artefact people always penalise (amplified noise, JPEG blocking, halos, colour
  cast, over-smoothing, blur, over- and under-enhancement), applied to the group's **base** (the
  first ``adaptive`` draw, a clean auto-exposure curve), at :data:`DRAWS_PER_FAMILY` severities. The
  base is recorded, so the labelling check "every failure loses to the clean result it was derived
  from" is well defined.

Every function takes ``low`` (H, W, 3) float32 sRGB in [0, 1] and returns the same shape in [0, 1];
all randomness comes from the ``rng`` given, so a group's candidates are reproducible.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from iaca_metric.training import enhancers as E

__all__ = ["Family", "FAMILIES", "DRAWS_PER_FAMILY", "BASE_NAME", "make_candidates", "family_of"]

DRAWS_PER_FAMILY = 2
#: The clean candidate every failure is derived from.
BASE_NAME = "adaptive_0"

Params = dict
Sampler = Callable[[np.random.Generator, int], Params]


@dataclass(frozen=True)
class Family:
    """A parametric candidate family.

    Attributes:
        name: stable prefix of its candidates (``<name>_<draw>``; networks use the bare name).
        kind: ``method``, ``network`` or ``failure``.
        sample: ``(rng, draw) -> params`` (``draw`` lets failures spread severities over draws).
        apply: ``(low, params, base) -> image``; ``base`` is the group's clean base (failures only).
        draws: results per group.
    """

    name: str
    kind: str
    sample: Sampler
    apply: Callable[[np.ndarray, Params, np.ndarray | None], np.ndarray]
    draws: int = DRAWS_PER_FAMILY


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sev(rng: np.random.Generator, draw: int, lo: float, hi: float, log: bool = False) -> float:
    """A severity in the draw's half of [lo, hi]: draw 0 milder, draw 1 stronger (both random)."""
    n = DRAWS_PER_FAMILY
    if log:
        a, b = math.log(lo), math.log(hi)
        return float(math.exp(rng.uniform(a + (b - a) * draw / n, a + (b - a) * (draw + 1) / n)))
    return float(rng.uniform(lo + (hi - lo) * draw / n, lo + (hi - lo) * (draw + 1) / n))


# ----------------------------------------------------------------------------- clean methods
def _adaptive(low: np.ndarray, target: float) -> np.ndarray:
    """Global gamma mapping mean luma to ``target`` (an auto-exposure tone curve)."""
    m = float(np.clip(E.luma(low).mean(), 1e-3, 0.9))
    g = float(np.clip(np.log(target) / np.log(m), 0.12, 1.0))
    return np.power(np.clip(low, 0.0, 1.0), g)


def _gamma(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(np.power(low, 1.0 / p["g"]))


def _log(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(np.log1p(p["a"] * low) / np.log1p(p["a"]))


def _gain(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(low * np.float32(E._gain_for_clipped_mean(low, p["target"])))


def _hist(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    from skimage import exposure

    v = low.max(axis=2)
    if p["variant"] == "he":
        he = E.hist_eq(low, None)  # type: ignore[arg-type]
        # Blend with a gamma lift: full HE over-stretches noisy shadows, practical HE tools blend.
        lift = _adaptive(low, 0.45)
        return E._finish(p["alpha"] * he + (1 - p["alpha"]) * lift)
    v_lift = np.power(v, p["lift"])
    v_new = exposure.equalize_adapthist(v_lift, clip_limit=p["clip"], kernel_size=p["kernel"]).astype(np.float32)
    return E._finish(E._scale_value(low, v, v_new))


def _retinex(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    s = p["scale"]
    if p["variant"] == "ssr":
        out = E._ssr(low, 80.0 * s)
        return E._finish(E._percentile_stretch(out, p["lo"], p["hi"], per_channel=False))
    msr = sum(E._ssr(low, sg * s) for sg in (15.0, 80.0, 250.0)) / 3.0
    if p["variant"] == "msr":
        return E._finish(E._percentile_stretch(msr, p["lo"], p["hi"], per_channel=False))
    cr = np.log(125.0 * low + 0.01) - np.log(low.sum(axis=2, keepdims=True) + 0.01)
    return E._finish(E._percentile_stretch(msr * cr, p["lo"], p["hi"], per_channel=True))


def _lime(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    t = low.max(axis=2)
    t = E.guided_filter(t, t, radius=int(p["radius"]), eps=0.01)
    t = np.power(np.clip(t, 0.03, 1.0), p["gamma"])
    r = low / t[..., None]
    if p["denoise"] > 0:
        y = E.luma(np.clip(r, 0, 1))
        sm = E.guided_filter(y, r, radius=3, eps=0.004)
        w = np.clip(t[..., None] ** p["denoise"], 0, 1)  # denoise more where the gain was large
        r = r * w + sm * (1.0 - w)
    return E._finish(r)


def _fusion(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    # The Mertens fusion of enhancers.exposure_fusion, with its exposure range, count and sigma as parameters.
    m = float(max(E.luma(low).mean(), 1e-3))
    return E._finish(E.mertens_fusion(low, np.geomspace(1.0, max(2.0, p["top"] / m), int(p["n"])), p["sigma"]))


def _denoised_curve(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    """Auto-exposure curve, then luma-guided denoising whose strength ``eps`` is the parameter."""
    out = _adaptive(low, p["target"]).astype(np.float32)
    sm = E.guided_filter(E.luma(out), out, radius=int(p["radius"]), eps=p["eps"])
    # Dark input regions were amplified most, so they get the most smoothing.
    w = np.clip(E.luma(low) / max(float(E.luma(low).mean()) * 2.0, 1e-3), 0, 1)[..., None]
    return E._finish(out * w + sm * (1 - w))


def _adaptive_apply(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(_adaptive(low, p["target"]))


# ----------------------------------------------------------------------------- networks
_NETS: dict[str, torch.nn.Module] = {}


def _zero_dce_official(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    from iaca_metric.zero_dce import load_official_zero_dce

    if "zdce" not in _NETS:
        _NETS["zdce"] = load_official_zero_dce()
    with torch.inference_mode():
        y = _NETS["zdce"].enhance(E._to_t(low))
    return E._finish(E._from_t(y, False))


def _self_supervised(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    from iaca_metric.training.self_supervised import load_self_supervised

    if "selfsup" not in _NETS:
        _NETS["selfsup"] = load_self_supervised()
    with torch.inference_mode():
        y = _NETS["selfsup"].enhance(E._to_t(low))
    return E._finish(E._from_t(y, False))


# ----------------------------------------------------------------------------- failures (on the base)
def _fail_noise(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    # Poisson-Gaussian sensor-like noise in the dark domain, then exactly the base's curve: the
    # result differs from the base only by the amplified noise an enhancer without denoising shows.
    rng = np.random.default_rng(p["seed"])
    std = np.sqrt(p["k"] * 0.0004 * low + (p["k"] * 0.003) ** 2)
    noisy = np.clip(low + std * rng.standard_normal(low.shape).astype(np.float32), 0, 1)
    m = float(np.clip(E.luma(low).mean(), 1e-3, 0.9))
    g = float(np.clip(np.log(p["base_target"]) / np.log(m), 0.12, 1.0))  # the base's exponent
    return E._finish(np.power(noisy, g))


def _fail_jpeg(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((np.clip(base, 0, 1) * 255.0 + 0.5).astype(np.uint8)).save(buf, format="JPEG",
                                                                            quality=int(p["quality"]))
    buf.seek(0)
    return E._finish(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def _fail_halo(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(base + p["amount"] * (base - E.blur(base, p["sigma"])))


def _balance(x: np.ndarray) -> np.ndarray:
    """Colour balance of an image: its channel means (3,) over their luma."""
    m = x.reshape(-1, 3).mean(axis=0).astype(np.float64) + 1e-4
    return m / float(m @ E._LUMA)


def _fail_cast(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    # A gain vector on a random hue direction; mean luma is kept so only colour changes. A cast that
    # moves the base's colour balance *towards* the scene's (the base may carry the input's own cast)
    # would be a correction, not a failure, so the direction is flipped (hue + pi) when its component
    # along the base's balance error is negative: the result is then always further off than the base.
    ang = p["hue"]
    d = np.array([math.cos(ang), math.cos(ang - 2 * math.pi / 3), math.cos(ang + 2 * math.pi / 3)], np.float32)
    ref = p.get("_reference")
    if ref is not None and float(d @ (_balance(base) - _balance(ref))) < 0.0:
        d = -d
    gains = 1.0 + p["strength"] * d
    gains = gains / float(gains @ E._LUMA)
    return E._finish(base * gains)


def _fail_smooth(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(E.guided_filter(E.luma(base), base, radius=int(p["radius"]), eps=p["eps"]))


def _fail_blur(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(E.blur(base, p["sigma"]))


def _fail_over(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    return E._finish(base * np.float32(E._gain_for_clipped_mean(base, p["target"])))


def _fail_under(low: np.ndarray, p: Params, base: np.ndarray | None) -> np.ndarray:
    # The base with less light: ``stops`` darker in linear light, counted from the darker of the base
    # and the reference (a base brighter than the scene darkened towards it would be a correction).
    # An exposure-only change: noise, colour and structure stay the base's, so the result differs
    # from the clean result it came from only by being under-enhanced.
    from iaca_metric.training import night as N

    lin = N.srgb_to_linear(base)
    ref = p.get("_reference")
    stops = float(p["stops"])
    ref_luma = float(E.luma(ref).mean()) if ref is not None else None
    if ref_luma is not None and ref_luma < float(E.luma(base).mean()):
        lin = lin * N.exposure_scale_for_luma(lin, ref_luma)  # down to the reference first
    return E._finish(N.linear_to_srgb(lin * 2.0 ** -stops).astype(np.float32))


def _noise_sampler(rng: np.random.Generator, d: int) -> Params:
    return {"k": _sev(rng, d, 0.6, 3.0, log=True), "seed": int(rng.integers(2**31))}


FAMILIES: tuple[Family, ...] = (
    # The base family first: its draw 0 is what failures are applied to.
    Family("adaptive", "method", lambda r, d: {"target": _u(r, 0.36, 0.52)}, _adaptive_apply),
    Family("gamma", "method", lambda r, d: {"g": _u(r, 1.8, 4.5)}, _gamma),
    Family("log", "method", lambda r, d: {"a": _logu(r, 12.0, 200.0)}, _log),
    Family("gain", "method", lambda r, d: {"target": _u(r, 0.30, 0.50)}, _gain),
    Family("hist", "method", lambda r, d: {
        "variant": "he" if r.uniform() < 0.35 else "clahe", "alpha": _u(r, 0.5, 1.0), "lift": _u(r, 0.3, 0.6),
        "clip": _logu(r, 0.004, 0.03), "kernel": int(r.choice([32, 64, 128]))}, _hist),
    Family("retinex", "method", lambda r, d: {
        "variant": str(r.choice(["ssr", "msr", "msrcr"])), "scale": _logu(r, 0.5, 2.0),
        "lo": _u(r, 0.3, 2.0), "hi": _u(r, 98.0, 99.8)}, _retinex),
    Family("lime", "method", lambda r, d: {
        "gamma": _u(r, 0.6, 0.95), "radius": int(r.integers(6, 21)),
        "denoise": 0.0 if r.uniform() < 0.4 else _u(r, 0.3, 2.0)}, _lime),
    Family("fusion", "method", lambda r, d: {
        "n": int(r.integers(3, 8)), "sigma": _u(r, 0.15, 0.3), "top": _u(r, 0.9, 1.5)}, _fusion),
    Family("denoise", "method", lambda r, d: {
        "target": _u(r, 0.36, 0.52), "radius": int(r.integers(2, 6)), "eps": _logu(r, 5e-4, 8e-3)}, _denoised_curve),
    Family("zero_dce", "network", lambda r, d: {}, _zero_dce_official, draws=1),
    Family("self_supervised", "network", lambda r, d: {}, _self_supervised, draws=1),
    Family("fail_noise", "failure", _noise_sampler, _fail_noise),
    Family("fail_jpeg", "failure", lambda r, d: {"quality": int(round(_sev(r, 1 - d, 5.0, 22.0)))}, _fail_jpeg),
    Family("fail_halo", "failure", lambda r, d: {"sigma": _u(r, 5.0, 20.0), "amount": _sev(r, d, 1.2, 3.0)},
           _fail_halo),
    Family("fail_cast", "failure", lambda r, d: {"hue": _u(r, 0.0, 2 * math.pi), "strength": _sev(r, d, 0.08, 0.3)},
           _fail_cast),
    Family("fail_smooth", "failure", lambda r, d: {"radius": int(r.integers(5, 13)),
                                                   "eps": _sev(r, d, 0.015, 0.08, log=True)}, _fail_smooth),
    Family("fail_blur", "failure", lambda r, d: {"sigma": _sev(r, d, 1.5, 4.5)}, _fail_blur),
    Family("fail_over", "failure", lambda r, d: {"target": _sev(r, d, 0.66, 0.86)}, _fail_over),
    Family("fail_under", "failure", lambda r, d: {"stops": _sev(r, d, 1.0, 2.5)}, _fail_under),
)

_BY_NAME = {f.name: f for f in FAMILIES}


def family_of(candidate: str) -> str:
    """Family name of a candidate name (``gamma_1`` -> ``gamma``; ``input``/``real_rankNN`` -> themselves'
    kind)."""
    if candidate == "input" or candidate.startswith("real_rank"):
        return "input" if candidate == "input" else "real_capture"
    if candidate in _BY_NAME:
        return candidate
    head, _, tail = candidate.rpartition("_")
    if head in _BY_NAME and tail.isdigit():
        return head
    raise KeyError(f"unknown candidate name {candidate!r}")


def candidate_names(families: tuple[Family, ...] = FAMILIES) -> list[str]:
    """Every candidate name the families produce, in build order."""
    return [f.name if f.draws == 1 else f"{f.name}_{d}" for f in families for d in range(f.draws)]


def make_candidates(low: np.ndarray, seed: int, names: set[str] | None = None,
                    families: tuple[Family, ...] = FAMILIES,
                    reference: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, Params, str]]:
    """Draw every family's parameters for one group and make its candidates.

    Args:
        low: (H, W, 3) float32 low-light input in [0, 1].
        seed: the group's seed (all parameters and noise come from it).
        names: only make these candidates (the parameters of every draw are still drawn, so a
            candidate's parameters do not depend on which others are made).
        reference: (H, W, 3) float32 [0, 1] well-exposed capture of the scene, if known. Only two
            failures use it, to make sure they move *away* from the scene: ``fail_cast`` flips a hue
            direction that would correct the base's colour balance, ``fail_under`` darkens from the
            darker of the base and the reference. It is never an input of a clean method.
    Returns:
        ``{name: (image (H, W, 3) float32 [0, 1], params, family kind)}``.
    """
    rng = np.random.default_rng(seed)
    plans: list[tuple[str, Family, Params]] = []
    for fam in families:
        for d in range(fam.draws):
            name = fam.name if fam.draws == 1 else f"{fam.name}_{d}"
            plans.append((name, fam, fam.sample(rng, d)))
    base_p = next(p for n, _, p in plans if n == BASE_NAME)
    base = _adaptive_apply(low, base_p, None)
    out: dict[str, tuple[np.ndarray, Params, str]] = {}
    for name, fam, p in plans:
        if names is not None and name not in names:
            continue
        if fam.kind == "failure":
            p = {**p, "base": BASE_NAME, "base_target": base_p["target"]}
            img = fam.apply(low, {**p, "_reference": reference}, base)
        else:
            img = fam.apply(low, p, base)
        out[name] = (img, p, fam.kind)
    return out
