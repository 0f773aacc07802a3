"""Regression tests for defects found by the code review of 2026-12-07 (inference mode, half precision with
``max_pixels``, folder-argument checks, IACALoss's silent NaN and grayscale hint, read-only arrays, numpy
integers). Each test names its defect and failed on the code before the fix.

Small seeded models (tests/iaca_test_models.py) and generated images; the embedded default model only
where the defect is about it, in a fresh interpreter (it is cached process-wide)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import IACALoss, IACAMetric, InputError
from iaca_metric._engine import ScoreError
from iaca_metric.cli import main
from iaca_metric.hub import tensor_signature
from iaca_metric.large_images import fit_max_pixels

from iaca_test_models import low_light, make_image, make_model

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> IACAMetric:
    return make_model("reference_or_image", seed=11)


def _pair(h: int = 64, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    img = torch.from_numpy(make_image(h, w, seed=seed)).permute(2, 0, 1)[None].float() / 255
    return img, img * 0.2


def test_first_default_score_under_inference_mode_works_and_the_loss_can_still_train() -> None:
    """Defect: the first score()/IACAMetric() inside torch.inference_mode() crashed reading the version
    counter of inference tensors, and a default model first built there could not be used by IACALoss."""
    code = """
import torch, iaca_metric
x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)); r = x * 0.2
with torch.inference_mode():
    s_inf = iaca_metric.score(x, r)
    s_inf64 = float(iaca_metric.IACALoss()(x.double(), r.double()))  # a float64 copy made in inference mode
    own = iaca_metric.IACAMetric()
assert not any(p.is_inference() for p in own.parameters())
xg = x.double().clone().requires_grad_(True)
iaca_metric.IACALoss()(xg, r.double()).backward()
assert float(xg.grad.abs().sum()) > 0
print(float(s_inf[0]), float(iaca_metric.score(x, r)[0]), -s_inf64)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    s_inf, s, s64 = map(float, res.stdout.split())
    assert s_inf == s  # the same computation, in or out of inference mode
    assert abs(s64 - s) < 1e-4  # float64 vs float32 of the same model


def test_model_first_placed_under_inference_mode_can_be_trained_through(model) -> None:
    """Defect: the cached device/dtype copy made under inference mode held inference tensors, so a later
    IACALoss backward through it failed ("Inference tensors cannot be saved for backward")."""
    x, r = _pair(seed=1)
    m = make_model("reference_or_image", seed=12)
    with torch.inference_mode():
        first = iaca_metric.score(x.double(), r.double(), model=m, device="cpu")
        IACALoss(m)(x.double(), r.double())
    xg = x.double().clone().requires_grad_(True)
    loss = IACALoss(m)(xg, r.double())
    loss.backward()
    assert float(xg.grad.abs().sum()) > 0
    assert abs(-float(loss.detach()) - first) < 1e-5  # score() reports float32


def test_weight_replaced_by_an_inference_tensor_is_treated_as_changed(model) -> None:
    """An inference tensor has no version counter: its in-place changes cannot be seen, so the signature
    must never match (caches rebuilt, fingerprint from the state) instead of raising."""
    m = make_model("reference_or_image", seed=13)
    with torch.inference_mode():
        m.regression.bias = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    assert tensor_signature(m) != tensor_signature(m)
    x, r = _pair(seed=2)
    a = iaca_metric.score(x.double(), r.double(), model=m)
    with torch.inference_mode():
        m.regression.bias.add_(1.0)  # an unseen in-place change...
    b = iaca_metric.score(x.double(), r.double(), model=m)
    assert b != a  # ...is still scored with the new weights, not a stale cached copy


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_with_max_pixels(model, dtype) -> None:
    """Defect: half/bfloat16 inputs with max_pixels crashed in the antialiased resize (no such kernel)."""
    x, r = _pair(128, 160, seed=3)
    xh, rh = x.to(dtype), r.to(dtype)
    s = iaca_metric.score(xh, rh, model=model, max_pixels=64 * 64)
    # The same downscale done in float32 on the same (rounded) values, then rounded to the input dtype.
    small, small_r = fit_max_pixels(xh.float(), rh.float(), 64 * 64)
    assert small.shape[-2] * small.shape[-1] <= 64 * 64
    expected = iaca_metric.score(small.to(dtype).float(), small_r.to(dtype).float(), model=model)
    assert s == pytest.approx(expected, abs=1e-5)
    ys, yr = fit_max_pixels(xh, rh, 64 * 64)
    assert ys.dtype == dtype and yr.dtype == dtype and float(ys.min()) >= 0 and float(ys.max()) <= 1


@pytest.fixture()
def folders(tmp_path, model):
    imgs, refs = tmp_path / "imgs", tmp_path / "refs"
    imgs.mkdir()
    refs.mkdir()
    for i in range(2):
        pic = make_image(64, 64, seed=30 + i)
        Image.fromarray(pic).save(imgs / f"{i}.png")
        Image.fromarray(low_light(pic)).save(refs / f"{i}.png")
    model.save_pretrained(tmp_path / "model")
    return imgs, refs, tmp_path


def test_mistyped_ref_dir_or_input_fails_before_any_work(folders, monkeypatch, capsys) -> None:
    """Defect: a mistyped --ref-dir gave one error row per image (exit 1, file written) and a mistyped
    input folder an error row, both after the model was loaded, contrary to the README."""
    imgs, refs, tmp = folders
    loaded = []
    import iaca_metric.cli as cli

    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: loaded.append(1))
    out = tmp / "r.csv"
    for args, word in (([imgs, "--ref-dir", tmp / "refz"], "does not exist"),
                       ([imgs, "--ref-dir", imgs / "0.png"], "is a file, not a folder"),
                       ([tmp / "imgz", "--ref-dir", refs], "not found"),
                       ([tmp / "model"], "no image files found")):
        rc = main(["score", *map(str, args), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and word in err and err.startswith("error:"), err
        assert not out.exists() and not loaded


def test_score_folder_checks_paths_at_the_call(folders, model) -> None:
    """Defect: score_folder with a mistyped ref_dir yielded error rows, and an empty folder nothing."""
    imgs, refs, tmp = folders
    with pytest.raises(InputError, match="ref_dir .* does not exist"):
        iaca_metric.score_folder(imgs, tmp / "nope", model=model)
    with pytest.raises(InputError, match="no image files found"):
        iaca_metric.score_folder(tmp / "model", model=model)
    with pytest.raises(InputError, match="not found"):
        iaca_metric.score_folder([imgs / "0.png", imgs / "9.png"], model=model)
    rows = list(iaca_metric.score_folder(imgs, refs, model=model, workers=0))
    assert [r["error"] for r in rows] == [None, None]


def test_loss_refuses_a_non_finite_score() -> None:
    """Defect: IACALoss returned NaN silently (damaged weights), contrary to the README."""
    m = make_model("reference_or_image", seed=14)
    with torch.no_grad():
        m.regression.bias.fill_(float("nan"))
    x, r = _pair(seed=4)
    with pytest.raises(ScoreError, match="non-finite") as loss_err:
        IACALoss(m)(x.requires_grad_(True), r)
    with pytest.raises(ScoreError) as score_err:
        iaca_metric.score(x.detach(), r, model=m)  # the same verdict as score()
    for e in (loss_err, score_err):  # both name the same causes and fixes
        msg = str(e.value)
        assert "iaca-metric info" in msg and "sha256" in msg and "torch.autocast" in msg, msg


def test_loss_grayscale_replicate(model) -> None:
    """Defect: IACALoss's grayscale error told users to pass grayscale='replicate', which it did not take."""
    g = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(InputError, match="grayscale='replicate'"):
        IACALoss(model)(g, g * 0.2)
    loss = IACALoss(model, reduction="none", grayscale="replicate")
    gg = g.clone().requires_grad_(True)
    v = loss(gg, g * 0.2)
    rgb = IACALoss(model, reduction="none")(g.repeat(1, 3, 1, 1), (g * 0.2).repeat(1, 3, 1, 1))
    torch.testing.assert_close(v.detach(), rgb, atol=1e-6, rtol=0)
    v.sum().backward()
    assert gg.grad.shape == g.shape and float(gg.grad.abs().sum()) > 0
    with pytest.raises(InputError, match="grayscale"):
        IACALoss(model, grayscale="average")


def test_read_only_numpy_array_scores_without_warning(model) -> None:
    """Defect: np.asarray(PIL image) (read-only) made torch warn about non-writable memory."""
    pic = make_image(64, 64, seed=6)
    ro = np.asarray(Image.fromarray(pic))
    ro_ref = low_light(pic)
    ro_ref.setflags(write=False)
    assert not ro.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = iaca_metric.score(ro, ro_ref, model=model)
    assert s == iaca_metric.score(pic.copy(), low_light(pic), model=model)


def test_numpy_integers_and_bool_data_range(model, tmp_path) -> None:
    """Defect: batch_size=np.int64(4) was refused while data_range=True was taken as 1.0."""
    x, r = _pair(96, 96, seed=7)
    a = iaca_metric.score([x, x], [r, r], model=model, batch_size=np.int64(1), max_pixels=np.int64(64 * 64))
    b = iaca_metric.score([x, x], [r, r], model=model, batch_size=2, max_pixels=64 * 64)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for bad in (True, np.bool_(True), "255"):
        with pytest.raises(InputError, match="data_range"):
            iaca_metric.score(x, r, model=model, data_range=bad)
    with pytest.raises(InputError, match="batch_size"):
        iaca_metric.score(x, r, model=model, batch_size=2.0)
    from iaca_metric._engine import Options

    opts = Options.make(batch_size=np.int64(3), max_pixels=np.int64(4096))
    assert type(opts.batch_size) is int and type(opts.max_pixels) is int
    for bad, why in ((True, "must be an int >= 1024"), (4096.0, "must be an int >= 1024"),
                     (np.int64(1000), "must be >= 1024, got 1000 .*32x32")):
        with pytest.raises(InputError, match="max_pixels " + why):
            Options.make(max_pixels=bad)
    with pytest.raises(InputError, match="workers must be >= 0, got -1"):
        list(iaca_metric.score_folder(tmp_path, model=model, workers=-1))
    json.dumps(opts.settings())  # provenance stays writable


def test_loss_under_cpu_bf16_autocast_with_a_half_ref(model) -> None:
    """Defect: img and ref of different float dtypes (under autocast) crashed joining the batch."""
    x, r = _pair(seed=8)
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = IACALoss(model)(xg, r.half())
    v.backward()
    assert bool(torch.isfinite(v.detach())) and float(xg.grad.abs().sum()) > 0
    ref = IACALoss(model)(x, r.half().float())
    assert float(v.detach()) == pytest.approx(float(ref), abs=0.05 * max(1.0, abs(float(ref))))


def test_an_nchw_batch_of_one_gets_a_tensor_back(model) -> None:
    """Defect: score() of an (N, 3, H, W) batch returned a float when N was 1 (a DataLoader's last batch),
    so code collecting batch scores with torch.cat broke on it."""
    x, r = _pair(seed=9)
    batches = [iaca_metric.score(torch.cat([x, x]), torch.cat([r, r]), model=model),
               iaca_metric.score(x, r, model=model)]
    assert all(isinstance(b, torch.Tensor) for b in batches)
    assert [tuple(b.shape) for b in batches] == [(2,), (1,)]
    one = iaca_metric.score(x[0], r[0], model=model)  # a CHW tensor is one image: one float
    assert isinstance(one, float) and one == float(batches[1][0])
