"""A fixed "panel" of full-reference metrics that stands in for human pairwise judgements.

SQUARE-LOL's scores are within-scene win rates of a round-robin pairwise
comparison by human observers. We have no observers for our SICE-derived
training data, so every pair of candidates (a, b) for one low-light input is
judged by five full-reference "panel members", each comparing both candidates
with a well-exposed real capture of the same scene (the reference):

==============  ==============================================================  ==========  =========
member          what it measures                                                better      tolerance
==============  ==============================================================  ==========  =========
``psnr``        PSNR over RGB (pixel-level fidelity, punishes any big error)   higher      0.1 dB
``ssim``        SSIM over RGB at half resolution (local structure/contrast)     higher      0.002
``delta_e``     mean CIEDE2000 colour difference in CIELAB, at half resolution  lower       0.25
``gmsd``        gradient-magnitude-similarity deviation (Xue et al. 2014), luma lower       0.002
``brightness``  abs difference of mean Rec.601 luma to the reference's          lower       0.005
==============  ==============================================================  ==========  =========

Each member votes for the candidate with the better value, or abstains when the
two values differ by less than its tolerance (a crude just-noticeable
difference). The candidate with more votes wins the pair (preference 1 or 0);
equal votes, including all members abstaining, give a tie (0.5). Because every
member is a function of (candidate, reference) only, the values are computed
once per candidate and all n(n-1)/2 pairs are then judged from the table.

Win rate of a candidate = (wins + 0.5 * ties) / (n - 1) over all other
candidates, so the n win rates of a group sum to n/2, exactly the structure of
SQUARE-LOL's scores. Without ties every score is a multiple of 1/(n-1); a tie
contributes half a win, so in general scores are multiples of 1/(2(n-1)).

Why this approximates observers: the reference is a real, well-exposed capture
of the same view, so a candidate's distance to it measures the errors people
penalise in enhanced low-light images: wrong overall exposure (brightness, PSNR),
colour casts and desaturation (delta_e), lost or destroyed structure, halos and
blocking (ssim, gmsd), and amplified noise (psnr, ssim, gmsd). A majority vote of
heterogeneous metrics is more robust than any single one: e.g. PSNR alone
prefers blurry results, SSIM alone is nearly blind to global colour casts.

Where it does not: (1) the reference is only one exposure of the bracket and
may itself have clipped highlights or noisy shadows; candidates are pulled
towards its particular tone curve rather than towards what looks best.
(2) Full-reference metrics under-penalise the noise vs. over-smoothing
trade-off the way people see it and ignore aesthetics (pleasant contrast,
vivid colour). (3) Observers sometimes prefer results brighter or more
saturated than the reference; the brightness member penalises any deviation
symmetrically. (4) Tolerance-based ties are a crude model of human
indecision. (5) The panel, its members, tolerances and the majority rule are
fixed by hand and were not fitted to or validated against human data, except
indirectly through how well a model trained on it predicts SQUARE-LOL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage import color

from iaca_metric.reference_metrics import psnr, ssim

# Rec.601 luma weights (also used by the enhancers and scenes.csv's mean_luma).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _nchw(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) float in [0, 1] -> (N, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)


def _psnr(c: np.ndarray, ref: np.ndarray) -> np.ndarray:
    x = _nchw(c)
    y = _nchw(ref[None]).expand_as(x)
    return psnr(x, y, data_range=1.0, reduction="none").numpy().astype(np.float64)


def _ssim(c: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # Wang et al.'s reference implementation first downsamples by
    # round(min(H, W) / 256) (2 for our 512 px images) so that the 11x11 window
    # matches the viewing scale; it also makes this member 4x cheaper.
    x = _nchw(_half(c))
    y = _nchw(_half(ref)[None]).expand_as(x).contiguous()
    return ssim(x, y, data_range=1.0, reduction="none").numpy().astype(np.float64)


def _half(img: np.ndarray) -> np.ndarray:
    """2x2 mean downsample of (..., H, W, C); odd trailing rows/cols are dropped."""
    h, w = img.shape[-3] // 2 * 2, img.shape[-2] // 2 * 2
    a = img[..., :h, :w, :]
    return 0.25 * (a[..., 0::2, 0::2, :] + a[..., 1::2, 0::2, :] + a[..., 0::2, 1::2, :] + a[..., 1::2, 1::2, :])


def _delta_e(c: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # Half resolution: colour judgements are made at a coarser scale than
    # structure, and CIELAB conversion + CIEDE2000 is the panel's slowest step.
    lab_ref = color.rgb2lab(_half(ref))
    lab = color.rgb2lab(_half(c))  # skimage converts the whole (N, h, w, 3) batch at once
    return np.array([float(color.deltaE_ciede2000(l, lab_ref).mean()) for l in lab])


_PREWITT = torch.tensor([[1.0, 0.0, -1.0]] * 3) / 3.0


def _gmsd(c: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Gradient magnitude similarity deviation on luma, at full resolution.

    GMSD's paper downsamples by 2 first; we do not, because at half resolution
    amplified noise averages out and then even *lowers* the deviation (a
    uniformly bad similarity map has a small standard deviation).
    """
    y = torch.from_numpy(np.ascontiguousarray(c @ _LUMA))[:, None]
    r = torch.from_numpy(np.ascontiguousarray(ref @ _LUMA))[None, None]
    k = torch.stack([_PREWITT, _PREWITT.T])[:, None]  # (2, 1, 3, 3): horizontal, vertical

    def gm(t: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(t, k)
        return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2)

    gy, gr = gm(y), gm(r)
    cst = 0.0026  # the paper's c = 170 for 8-bit images, rescaled to [0, 1]
    gms = (2 * gy * gr + cst) / (gy**2 + gr**2 + cst)
    return gms.flatten(1).std(dim=1, unbiased=False).numpy().astype(np.float64)


def _brightness(c: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs((c @ _LUMA).mean(axis=(1, 2)) - float((ref @ _LUMA).mean())).astype(np.float64)


@dataclass(frozen=True)
class Member:
    """One panel member.

    Attributes:
        name: stable key used in the dataset index.
        fn: ``(candidates (N, H, W, 3), ref (H, W, 3)) -> (N,)`` values, float in [0, 1] inputs.
        higher_is_better: direction of the value.
        tolerance: the member abstains when two values differ by less than this.
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    higher_is_better: bool
    tolerance: float


#: The panel (odd size, so without abstentions a pair is never tied).
PANEL: tuple[Member, ...] = (
    Member("psnr", _psnr, True, 0.1),
    Member("ssim", _ssim, True, 0.002),
    Member("delta_e", _delta_e, False, 0.25),
    Member("gmsd", _gmsd, False, 0.002),
    Member("brightness", _brightness, False, 0.005),
)


def _as_batch(candidates: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    batch = np.asarray(candidates, dtype=np.float32) if not isinstance(candidates, np.ndarray) else candidates
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"candidates must be (N, H, W, 3) or a list of (H, W, 3), got {batch.shape}")
    return batch.astype(np.float32, copy=False)


def member_values(
    candidates: Sequence[np.ndarray] | np.ndarray, ref: np.ndarray, chunk: int = 8
) -> dict[str, np.ndarray]:
    """Every panel member's value for every candidate.

    Args:
        candidates: N images (H, W, 3) float in [0, 1], same size as ``ref``.
        ref: (H, W, 3) float in [0, 1], the well-exposed reference.
        chunk: candidates processed together (bounds peak memory).
    Returns:
        ``{member name: (N,) float64}``.
    """
    batch = _as_batch(candidates)
    ref = np.asarray(ref, dtype=np.float32)
    if batch.shape[1:] != ref.shape:
        raise ValueError(f"candidate shape {batch.shape[1:]} differs from reference {ref.shape}")
    out: dict[str, list[np.ndarray]] = {m.name: [] for m in PANEL}
    with torch.inference_mode():
        for s in range(0, len(batch), chunk):
            part = batch[s : s + chunk]
            for m in PANEL:
                out[m.name].append(np.asarray(m.fn(part, ref), dtype=np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def vote_matrix(values: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise panel decisions from precomputed member values.

    Args:
        values: output of :func:`member_values` (each (N,)).
    Returns:
        (N, N) float array P with P[i, j] = 1 if i beats j, 0 if j beats i, 0.5 on
        a tie; P + P.T = 1 off the diagonal, and the diagonal is 0.
    """
    n = len(next(iter(values.values())))
    margin = np.zeros((n, n))  # votes for row minus votes for column
    for m in PANEL:
        v = np.asarray(values[m.name], dtype=np.float64)
        d = v[:, None] - v[None, :]
        if not m.higher_is_better:
            d = -d
        margin += np.where(np.abs(d) < m.tolerance, 0.0, np.sign(d))
    p = np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))
    np.fill_diagonal(p, 0.0)
    return p


def win_rates(values: dict[str, np.ndarray]) -> np.ndarray:
    """Round-robin win rates from precomputed member values: (N,), sums to N/2."""
    p = vote_matrix(values)
    n = p.shape[0]
    if n < 2:
        raise ValueError("a round robin needs at least two candidates")
    return p.sum(axis=1) / (n - 1)


def preference(a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> float:
    """Panel decision for one pair.

    Args:
        a, b: (H, W, 3) float in [0, 1] candidates.
        ref: (H, W, 3) float in [0, 1] well-exposed reference of the same scene.
    Returns:
        1.0 if the panel prefers ``a``, 0.0 if it prefers ``b``, 0.5 on a tie.
    """
    return float(vote_matrix(member_values([a, b], ref))[0, 1])


def round_robin(candidates: Sequence[np.ndarray] | np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Win rate of every candidate over all n(n-1)/2 pairs judged by the panel.

    Args:
        candidates: n >= 2 images (H, W, 3) float in [0, 1].
        ref: (H, W, 3) float in [0, 1].
    Returns:
        (n,) float64 in [0, 1]: (wins + ties/2) / (n - 1); sums to n/2.
    """
    return win_rates(member_values(candidates, ref))
