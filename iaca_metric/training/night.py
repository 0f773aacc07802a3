"""Simulated night captures: LOL-like very dark, noisy inputs made from real SICE exposures.

SICE's dark exposures (mean luma 0.05-0.2 at 512 px, where down-scaling has averaged most sensor
noise away) are far brighter and cleaner than the inputs the human method preferences were collected
on: SQUARE-LOL is built on LOL-v2-real, whose inputs average 0.02-0.10 and carry visible shot and
read noise. Measured on the first IACA-Lite 2, every test input where the model preferred
Self_Supervised to Zero-DCE was darker than 0.10, and on LOL it preferred Self_Supervised in 11 of 15
photos, the opposite of people (287 of 290 scenes). This module adds that regime to training.

A night capture is made from one real exposure of the scene (the brightest one darker than the
reference: its shadows still hold detail and few highlights are clipped, as in a real short exposure,
where SICE's darkest captures are already crushed to black) like a shorter exposure of the same sensor: undo the sRGB transfer curve, scale the linear signal so the result's mean luma is
``target_luma`` (drawn in [0.03, 0.10], LOL's range), add Poisson-Gaussian noise of
variance ``shot * x + read**2`` on the linear signal (spatially correlated over ~1 px, like a
demosaiced sensor), re-apply the sRGB curve and quantise to 8 bits (which posterises the shadows as
real 8-bit night photos are). Parameters are drawn from a per-group seed, so builds are reproducible.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NIGHT_SUFFIX", "NIGHT_SPLITS", "srgb_to_linear", "linear_to_srgb", "sample_params", "simulate"]

#: Group stem suffix of a simulated night input (``<source stem>_night``).
NIGHT_SUFFIX = "_night"
#: Splits that get simulated night groups. Training augmentation only: the test scenes stay real
#: captures, so the held-out benchmark measures the model on real inputs.
NIGHT_SPLITS = ("train", "val")
#: Range of the simulated input's mean Rec.601 luma (sRGB, [0, 1]).
LUMA_RANGE = (0.03, 0.10)
#: Shot-noise gain (variance per unit of linear signal) and read-noise std ranges (linear units).
SHOT_RANGE = (3e-5, 2.5e-4)
READ_RANGE = (5e-5, 3e-4)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB [0, 1] -> linear [0, 1] (IEC 61966-2-1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """linear [0, 1] -> sRGB [0, 1] (values outside [0, 1] are clipped first)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def sample_params(rng: np.random.Generator) -> dict:
    """Draw one night capture's parameters: target luma (log-uniform), shot and read noise, noise seed."""
    lo, hi = LUMA_RANGE
    return {
        "target_luma": float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
        "shot": float(np.exp(rng.uniform(*np.log(SHOT_RANGE)))),
        "read": float(np.exp(rng.uniform(*np.log(READ_RANGE)))),
        "seed": int(rng.integers(2**31)),
    }


def _mean_luma(srgb: np.ndarray) -> float:
    return float((srgb @ np.array([0.299, 0.587, 0.114])).mean())


def exposure_scale_for_luma(lin: np.ndarray, target_luma: float) -> float:
    """Linear-light factor in [1e-4, 1] that gives ``lin`` (H, W, 3) a mean sRGB luma of ``target_luma``.

    Found by bisection (geometric, 40 steps), since the sRGB curve is not a power law; 1 when even the
    unscaled image is darker than the target.
    """
    lo, hi = 1e-4, 1.0
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        if _mean_luma(linear_to_srgb(lin * mid)) > target_luma:
            hi = mid
        else:
            lo = mid
    return float(np.sqrt(lo * hi))


def simulate(source_u8: np.ndarray, params: dict) -> np.ndarray:
    """A simulated night capture of the scene in ``source_u8``.

    Args:
        source_u8: (H, W, 3) uint8 sRGB real exposure of the scene (any exposure brighter than the target).
        params: :func:`sample_params`'s dict.
    Returns:
        (H, W, 3) uint8 sRGB, mean luma close to ``params["target_luma"]``.
    """
    from scipy import ndimage

    lin = srgb_to_linear(np.asarray(source_u8, dtype=np.float64) / 255.0)
    x = lin * exposure_scale_for_luma(lin, params["target_luma"])  # on the noise-free result
    rng = np.random.default_rng(params["seed"])
    z = rng.standard_normal(x.shape)
    # ~1 px spatial correlation (demosaicing), renormalised to unit variance
    z = ndimage.gaussian_filter(z, (0.6, 0.6, 0), mode="reflect")
    z /= z.std() + 1e-12
    noisy = x + np.sqrt(params["shot"] * x + params["read"] ** 2) * z
    return (linear_to_srgb(noisy) * 255.0 + 0.5).astype(np.uint8)
