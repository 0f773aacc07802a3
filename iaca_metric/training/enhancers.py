"""Low-light enhancement methods and typical failure modes used to make training candidates.

Every entry of :data:`ENHANCERS` has the signature
``fn(low: np.ndarray, rng: np.random.Generator) -> np.ndarray`` where ``low`` is an
(H, W, 3) float32 image in [0, 1] (sRGB-encoded, as stored in JPEG) and the result
has the same shape and dtype, lies in [0, 1] and is deterministic given ``rng``'s
state. Methods that are deterministic by nature ignore ``rng``.

The set spans the families the SQUARE-LOL methods come from (tone curves,
histogram methods, Retinex, illumination-map estimation, fusion, a learned
curve estimator) plus deliberate failures applied on top of a reasonable
enhancement (over-enhancement, amplified noise, colour casts, over-smoothing,
halos, compression blocking, under-enhancement), so that a quality model sees
both good and bad results for the same scene. All methods are our own compact
implementations of the published ideas and are tuned for speed (< ~0.3 s for a
512x512 image on one CPU core); they are not reference implementations.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from skimage import exposure

Enhancer = Callable[[np.ndarray, np.random.Generator], np.ndarray]

_EPS = 1e-4
# Rec.601 luma weights: the same weighting PIL's "L" conversion uses, which is how
# the mean_luma column of scenes.csv was measured.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ----------------------------------------------------------------------------- helpers
def luma(img: np.ndarray) -> np.ndarray:
    """Rec.601 luma of an (H, W, 3) image in [0, 1] -> (H, W)."""
    return img @ _LUMA


def _finish(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], replace non-finite values and return float32 (H, W, 3)."""
    return np.clip(np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)


def _to_t(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) numpy -> (1, C, H, W) float32 tensor."""
    a = img[..., None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]


def _from_t(t: torch.Tensor, squeeze: bool) -> np.ndarray:
    a = t[0].permute(1, 2, 0).numpy()
    return a[..., 0] if squeeze else a


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W) or (H, W, C) image over the spatial axes only.

    Large sigmas (Retinex surrounds of 80-250 px) would cost seconds with a direct
    separable filter, so for sigma > 4 we blur an area-downscaled copy with
    sigma / f and upsample bilinearly; the result of a wide Gaussian is smooth, so
    the approximation error is far below 8-bit quantisation.
    """
    squeeze = img.ndim == 2
    f = max(1, int(sigma // 4))
    if f == 1:
        s = (sigma, sigma) if squeeze else (sigma, sigma, 0)
        return ndimage.gaussian_filter(img, s, mode="reflect").astype(np.float32)
    h, w = img.shape[:2]
    t = _to_t(img)
    small = F.interpolate(t, size=(max(1, round(h / f)), max(1, round(w / f))), mode="area")
    sm = _from_t(small, False)
    sm = ndimage.gaussian_filter(sm, (sigma / f, sigma / f, 0), mode="reflect")
    up = F.interpolate(_to_t(sm), size=(h, w), mode="bilinear", align_corners=False)
    return _from_t(up, squeeze).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Gray-guide guided filter (He, Sun & Tang, ECCV 2010), O(1) per pixel via box means.

    Args:
        guide: (H, W) guidance image in [0, 1].
        src: (H, W) or (H, W, C) image to filter.
        radius: box radius in pixels (window 2r+1).
        eps: regularisation; larger -> smoother (edges with variance << eps are removed).
    Returns:
        Filtered ``src``, same shape, float32.
    """
    size = 2 * radius + 1

    def box(a: np.ndarray) -> np.ndarray:
        s = (size, size) if a.ndim == 2 else (size, size, 1)
        return ndimage.uniform_filter(a, s, mode="reflect")

    g = guide if src.ndim == 2 else guide[..., None]
    mean_i = box(guide)
    var_i = box(guide * guide) - mean_i * mean_i
    if src.ndim == 3:
        mean_i, var_i = mean_i[..., None], var_i[..., None]
    mean_p = box(src)
    cov_ip = box(g * src) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return (box(a) * g + box(b)).astype(np.float32)


def _scale_value(img: np.ndarray, v_old: np.ndarray, v_new: np.ndarray) -> np.ndarray:
    """Rescale RGB so that max-RGB becomes ``v_new``: changes HSV value only, keeps hue/saturation."""
    return img * (v_new / np.maximum(v_old, _EPS))[..., None]


def _gain_to_mean(img: np.ndarray, target: float) -> np.ndarray:
    """Linear gain so that mean luma reaches ``target`` (before clipping)."""
    m = float(luma(img).mean())
    return img * (target / max(m, _EPS))


def _percentile_stretch(img: np.ndarray, lo: float, hi: float, per_channel: bool) -> np.ndarray:
    """Map the [lo, hi] percentiles to [0, 1] globally or per channel ("simplest colour balance")."""
    if per_channel:
        p = np.percentile(img.reshape(-1, img.shape[-1]), [lo, hi], axis=0)
        return (img - p[0]) / np.maximum(p[1] - p[0], _EPS)
    a, b = np.percentile(img, [lo, hi])
    return (img - a) / max(b - a, _EPS)


# ----------------------------------------------------------------------------- tone curves
def _gamma(g: float) -> Enhancer:
    def fn(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _finish(np.power(low, 1.0 / g))

    fn.__doc__ = f"Per-channel power curve y = x**(1/{g:g})."
    return fn


def log_curve(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logarithmic curve y = log(1 + a x) / log(1 + a), a = 60 (strong shadow lift)."""
    a = 60.0
    return _finish(np.log1p(a * low) / np.log1p(a))


def adaptive_gamma(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-channel gamma chosen so that the mean luma maps to ~0.45 (an auto-exposure tone curve)."""
    m = float(np.clip(luma(low).mean(), 1e-3, 0.9))
    g = np.clip(np.log(0.45) / np.log(m), 0.15, 1.0)
    return _finish(np.power(low, g))


def auto_gain(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear exposure gain to mean luma 0.45 with clipping (what a camera's exposure push does)."""
    return _finish(_gain_to_mean(low, 0.45))


# ----------------------------------------------------------------------------- histogram methods
def hist_eq(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global histogram equalisation of HSV value (max-RGB), hue and saturation kept."""
    v = low.max(axis=2)
    hist, edges = np.histogram(v, bins=256, range=(0.0, 1.0))
    cdf = np.cumsum(hist).astype(np.float64)
    cdf = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1.0)
    v_new = np.interp(v, edges[1:], cdf).astype(np.float32)
    return _finish(_scale_value(low, v, v_new))


def clahe(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast-limited adaptive HE (skimage) on HSV value after a mild gamma lift.

    CLAHE's clip limit keeps it from lifting a very dark image much on its own, so
    (as usual in practice) a gamma 1/2 pre-lift is applied first.
    """
    v = low.max(axis=2)
    v_lift = np.sqrt(v)
    v_new = exposure.equalize_adapthist(v_lift, clip_limit=0.01, kernel_size=64).astype(np.float32)
    return _finish(_scale_value(low, v, v_new))


# ----------------------------------------------------------------------------- Retinex
def _ssr(img: np.ndarray, sigma: float) -> np.ndarray:
    """Single-scale Retinex log(I) - log(G_sigma * I), per channel, unnormalised."""
    return np.log(img + 0.01) - np.log(blur(img, sigma) + 0.01)


def ssr(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Single-scale Retinex (Jobson et al. 1997), sigma 80 px, global 1-99 % stretch."""
    return _finish(_percentile_stretch(_ssr(low, 80.0), 1.0, 99.0, per_channel=False))


def msrcr(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multi-scale Retinex (sigmas 15/80/250) with colour restoration and simplest colour balance."""
    msr = sum(_ssr(low, s) for s in (15.0, 80.0, 250.0)) / 3.0
    # Colour restoration (Jobson et al. 1997b): boost channels by their share of the sum.
    cr = np.log(125.0 * low + 0.01) - np.log(low.sum(axis=2, keepdims=True) + 0.01)
    out = msr * cr
    return _finish(_percentile_stretch(out, 1.0, 99.0, per_channel=True))


# ----------------------------------------------------------------------------- illumination map
def _lime(low: np.ndarray, denoise: bool) -> np.ndarray:
    # LIME (Guo, Li & Ling, TIP 2017): illumination T = max over RGB, refined by a
    # structure-aware smoother (here a self-guided filter instead of the paper's
    # weighted-TV solver), gamma-compressed (0.8) and divided out.
    t = low.max(axis=2)
    t = guided_filter(t, t, radius=12, eps=0.01)
    t = np.power(np.clip(t, 0.03, 1.0), 0.8)
    r = low / t[..., None]
    if denoise:
        # Denoise mostly where the gain was large (the paper uses BM3D + recomposition).
        y = luma(np.clip(r, 0, 1))
        sm = guided_filter(y, r, radius=3, eps=0.004)
        w = t[..., None]
        r = r * w + sm * (1.0 - w)
    return _finish(r)


def lime(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """LIME-style enhancement: max-RGB illumination, guided-filter refinement, gamma 0.8, divide."""
    return _lime(low, denoise=False)


def lime_denoised(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """LIME-style enhancement followed by illumination-weighted guided-filter denoising."""
    return _lime(low, denoise=True)


# ----------------------------------------------------------------------------- exposure fusion
def _down(t: torch.Tensor) -> torch.Tensor:
    """Halve (N, C, H, W): 2x2 mean then a [1, 2, 1]/4 blur at the low resolution.

    Together this is the separable [1, 3, 3, 1]/8 anti-alias filter, ~10x cheaper on
    CPU than a 5-tap depthwise convolution at full resolution.
    """
    t = F.avg_pool2d(t, 2)
    p = F.pad(t, (1, 1, 1, 1), mode="replicate")
    t = 0.25 * p[..., :, :-2] + 0.5 * p[..., :, 1:-1] + 0.25 * p[..., :, 2:]
    return 0.25 * t[..., :-2, :] + 0.5 * t[..., 1:-1, :] + 0.25 * t[..., 2:, :]


def _up(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Any upsampler gives exact reconstruction as long as the same one is used to
    # build and to collapse the Laplacian pyramid.
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def exposure_fusion(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mertens-style fusion (Mertens, Kautz & Van Reeth 2007) of synthetic exposures of the input.

    Five gained copies (gain 1 up to the gain that puts mean luma at 1.2, geometric
    steps, clipped) are weighted per pixel by contrast (|Laplacian| of gray),
    saturation (std over RGB) and well-exposedness (Gaussian around 0.5, sigma 0.2),
    and blended with Gaussian-pyramid weights and Laplacian-pyramid images.
    """
    m = float(max(luma(low).mean(), 1e-3))
    return _finish(mertens_fusion(low, np.geomspace(1.0, max(2.0, 1.2 / m), 5), sigma=0.2))


def mertens_fusion(low: np.ndarray, gains: np.ndarray, sigma: float) -> np.ndarray:
    """Mertens fusion of ``low`` (H, W, 3) gained by each of ``gains`` (clipped), well-exposedness
    Gaussian ``sigma``; returns (H, W, 3) float32, not yet clipped."""
    stack = torch.from_numpy(
        np.stack([np.clip(low * np.float32(g), 0, 1) for g in gains]).astype(np.float32)
    ).permute(0, 3, 1, 2)
    gray = (stack * torch.from_numpy(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    lap_k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    contrast = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="reflect"), lap_k).abs()
    # Saturation = std over RGB (written out: torch's std over dim 1 is slow on CPU).
    sat = (stack - stack.mean(1, keepdim=True)).pow(2).mean(1, keepdim=True).sqrt()
    well = torch.exp(-((stack - 0.5) ** 2) / (2 * sigma**2)).prod(dim=1, keepdim=True)
    w = contrast * sat * well + 1e-6
    w = w / w.sum(0, keepdim=True)

    levels = int(np.floor(np.log2(min(low.shape[:2])))) - 3
    g_img, g_w = [stack], [w]
    for _ in range(levels):
        g_img.append(_down(g_img[-1]))
        g_w.append(_down(g_w[-1]))
    fused = []
    for i in range(levels + 1):
        lap = g_img[i] if i == levels else g_img[i] - _up(g_img[i + 1], g_img[i].shape[-2:])
        fused.append((lap * g_w[i]).sum(0, keepdim=True))
    out = fused[-1]
    for i in range(levels - 1, -1, -1):
        out = fused[i] + _up(out, fused[i].shape[-2:])
    return _from_t(out, False)


# ----------------------------------------------------------------------------- Zero-DCE
_ZDCE: dict[str, torch.nn.Module] = {}


def _zero_dce(low: np.ndarray, n_iter: int) -> np.ndarray:
    from ..research.zero_dce import load_pretrained_zero_dce

    if "m" not in _ZDCE:  # load once per process (workers each hold a copy, 0.3 MB)
        _ZDCE["m"] = load_pretrained_zero_dce()
    with torch.inference_mode():
        # Curves estimated at 256 px and upsampled: ~4x faster on CPU, ~0.01 mean abs change.
        y = _ZDCE["m"].enhance(_to_t(low), n_iter=n_iter, curve_size=256)
    return _finish(_from_t(y, False))


def zero_dce(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pretrained Zero-DCE (8 curve iterations, as trained)."""
    return _zero_dce(low, 8)


def zero_dce_x2(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pretrained Zero-DCE applied with 16 iterations (every curve map twice): stronger, often over-bright."""
    return _zero_dce(low, 16)


# ----------------------------------------------------------------------------- failures
def _gain_for_clipped_mean(img: np.ndarray, target: float, max_gain: float = 64.0) -> float:
    """Linear gain g such that mean luma of clip(g * img) is ~``target`` (bisection, 4x subsampled).

    Clipping caps how bright a gained image can get, so a pre-clip target
    (``_gain_to_mean``) under-shoots on scenes with bright highlights.
    """
    y = luma(img[::4, ::4])
    lo, hi = 1.0, max_gain
    if float(np.clip(y * hi, 0, 1).mean()) <= target:
        return hi
    for _ in range(20):
        mid = np.sqrt(lo * hi)
        if float(np.clip(y * mid, 0, 1).mean()) < target:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def fail_over_enhance(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-enhancement: linear gain until the *clipped* mean luma is 0.68 -> washed out, blown highlights."""
    return _finish(low * np.float32(_gain_for_clipped_mean(low, 0.68)))


def fail_noise_amplified(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Amplified noise: signal-dependent sensor-like noise added to the dark input, then a strong gain."""
    # Poisson-Gaussian model in the dark domain; the later ~x10 gain amplifies it
    # exactly as an enhancement without denoising would amplify real sensor noise.
    std = np.sqrt(0.0008 * low + 0.006**2)
    noisy = low + std * rng.standard_normal(low.shape).astype(np.float32)
    return _finish(np.power(np.clip(_gain_to_mean(np.clip(noisy, 0, 1), 0.3), 0, 1), 0.8))


_CASTS = np.array(
    [[1.18, 1.0, 0.78], [0.80, 1.0, 1.22], [0.88, 1.15, 0.88], [1.12, 0.85, 1.12]], dtype=np.float32
)


def fail_colour_cast(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour cast on a LIME enhancement: warm, cool, green or magenta channel gains (rng picks)."""
    cast = _CASTS[rng.integers(len(_CASTS))] * np.float32(rng.uniform(0.9, 1.1))
    return _finish(_lime(low, denoise=False) * cast)


def fail_over_smooth(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-smoothing: adaptive-gamma result with a heavy edge-aware denoiser that wipes out texture."""
    base = adaptive_gamma(low, rng)
    return _finish(guided_filter(luma(base), base, radius=6, eps=0.02))


def fail_halo_unsharp(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Halos: strong wide unsharp mask (amount 1.5, sigma 10) on an adaptive-gamma result."""
    base = adaptive_gamma(low, rng)
    return _finish(base + 1.5 * (base - blur(base, 10.0)))


def fail_halo_retinex(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Halos/greying: single-scale Retinex with a too-small surround (sigma 6 px)."""
    return _finish(_percentile_stretch(_ssr(low, 6.0), 1.0, 99.0, per_channel=False))


def fail_jpeg_blocking(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG blocking: adaptive-gamma result round-tripped through PIL JPEG at quality 8-15 (rng)."""
    base = adaptive_gamma(low, rng)
    buf = io.BytesIO()
    Image.fromarray((base * 255.0 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(8, 16)))
    buf.seek(0)
    return _finish(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def fail_under_enhance(low: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-enhancement: mild gamma 1/1.4 that leaves the image clearly too dark."""
    return _finish(np.power(low, 1.0 / 1.4))


# ----------------------------------------------------------------------------- registry
#: Stable names -> enhancement functions. Names starting with ``fail_`` are deliberate failures.
ENHANCERS: dict[str, Enhancer] = {
    "gamma_2.2": _gamma(2.2),
    "gamma_3": _gamma(3.0),
    "gamma_4": _gamma(4.0),
    "log_curve": log_curve,
    "adaptive_gamma": adaptive_gamma,
    "auto_gain": auto_gain,
    "hist_eq": hist_eq,
    "clahe": clahe,
    "ssr": ssr,
    "msrcr": msrcr,
    "lime": lime,
    "lime_denoised": lime_denoised,
    "exposure_fusion": exposure_fusion,
    "zero_dce": zero_dce,
    "zero_dce_x2": zero_dce_x2,
    "fail_over_enhance": fail_over_enhance,
    "fail_noise_amplified": fail_noise_amplified,
    "fail_colour_cast": fail_colour_cast,
    "fail_over_smooth": fail_over_smooth,
    "fail_halo_unsharp": fail_halo_unsharp,
    "fail_halo_retinex": fail_halo_retinex,
    "fail_jpeg_blocking": fail_jpeg_blocking,
    "fail_under_enhance": fail_under_enhance,
}

#: Enhancers that are not expected to brighten a dark image much (used by tests).
WEAK_BRIGHTENING: frozenset[str] = frozenset({"fail_under_enhance"})
