"""Every entry point, the same inputs, the same answers (in the spirit of torchmetrics' MetricTester).

The entry points: ``iaca_metric.score``, ``IACAScore``, the torchmetrics adapter, ``score_folder``,
``score_files`` (and ``iaca-metric score`` on the command line), and for tensors ``IACALoss``. They all
go through one engine (``iaca_metric._engine``), so on the same images they must give the same scores
(within float tolerance: batch composition changes the convolution blocking at the 1e-6 level) and on
the same bad arguments or inputs the same exception type with the same message."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import IACALoss, IACAScore, InputError
from iaca_metric.cli import main
from iaca_metric.folder_scoring import pair_refs, score_files
from iaca_metric.inputs import load_image

from iaca_test_models import low_light, make_image, make_model

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("entry")
    model = make_model("reference_or_image", seed=11)
    model.save_pretrained(root / "model")
    model = iaca_metric.IACAMetric.from_pretrained(root / "model")
    enh, low = root / "enh", root / "low"
    enh.mkdir()
    low.mkdir()
    sizes = [(64, 64), (64, 96), (64, 64), (96, 64), (64, 64)]
    for i, (h, w) in enumerate(sizes):
        pic = make_image(h, w, seed=200 + i)
        Image.fromarray(pic).save(enh / f"{i}.png")
        Image.fromarray(low_light(pic)).save(low / f"{i}.png")
    files = sorted(enh.iterdir())
    refs = [low / f.name for f in files]
    return {"root": root, "model": model, "model_dir": root / "model", "enh": enh, "low": low,
            "files": files, "refs": refs}


def _tm(case, **kw):
    pytest.importorskip("torchmetrics")
    from iaca_metric.stateful import to_torchmetrics

    return to_torchmetrics(case["model"], keep_scores=True, **kw)


def _all_scores(case, mos: bool = False) -> dict[str, np.ndarray]:
    m, files, refs = case["model"], case["files"], case["refs"]
    fs, rs = [str(f) for f in files], [str(r) for r in refs]
    out: dict[str, np.ndarray] = {}
    out["score"] = iaca_metric.score(fs, rs, model=m, mos=mos).numpy()
    out["score_one_by_one"] = np.array([iaca_metric.score(f, r, model=m, mos=mos) for f, r in zip(fs, rs)])
    st = IACAScore(m, keep_scores=True, mos=mos)
    st.update(fs[:2], rs[:2])
    st.update(fs[2:], rs[2:])
    out["IACAScore"] = st.compute()["scores"].numpy()
    try:
        tm = _tm(case, mos=mos)
        tm.update(fs[:3], ref=rs[:3])
        tm.update(fs[3:], ref=rs[3:])
        out["torchmetrics"] = tm.compute()["iaca_scores"].numpy()
    except pytest.skip.Exception:
        pass
    key = "mos" if mos else "score"
    out["score_folder"] = np.array([r[key] for r in iaca_metric.score_folder(case["enh"], case["low"], model=m,
                                                                             workers=2, batch_size=3)])
    rows = score_files(m, files, pair_refs(files, case["low"], [case["enh"]]), out=case["root"] / "sf.csv",
                       progress=False, batch_size=2)
    out["score_files"] = np.array([r[key] for r in rows])
    cli_out = case["root"] / f"cli_{key}.csv"
    assert main(["score", str(case["enh"]), "--ref-dir", str(case["low"]), "--model", str(case["model_dir"]),
                 "--out", str(cli_out), "--quiet", "--workers", "1"]) == 0
    out["cli"] = np.array([float(r[key]) for r in csv.DictReader(io.StringIO(cli_out.read_text()))])
    if not mos:
        x = [load_image(f)[None] for f in files]
        r = [load_image(p)[None] for p in refs]
        loss = IACALoss(m, reduction="none")
        out["IACALoss"] = np.array([-float(loss(a, b)) for a, b in zip(x, r)])
    return out


@pytest.mark.parametrize("mos", [False, True], ids=["raw", "mos"])
def test_same_scores_through_every_entry_point(case, mos) -> None:
    got = _all_scores(case, mos)
    base = got["score"]
    assert np.ptp(base) > 0.05  # distinct scores: an order or pairing mix-up would show
    for name, s in got.items():
        np.testing.assert_allclose(s, base, atol=TOL, rtol=0, err_msg=name)


# -------------------------------------------------------------------------------- the same errors
def _entry_points(case) -> dict[str, Callable[..., Any]]:
    """name -> f(img, ref, **options) that scores through that entry point (raising what it raises)."""
    m = case["model"]

    def st(img, ref, model=m, **kw):
        s = IACAScore(model, **kw)
        s.update(img, ref)
        return s.compute()

    def tmetric(img, ref, model=m, **kw):
        pytest.importorskip("torchmetrics")
        from iaca_metric.stateful import to_torchmetrics

        t = to_torchmetrics(model, **kw)
        t.update(img, ref=ref)
        return t.compute()

    def folder(img, ref, model=m, **kw):
        return list(iaca_metric.score_folder(img, model=model, workers=0, **kw))

    return {"score": lambda img, ref, model=m, **kw: iaca_metric.score(img, ref, model=model, **kw),
            "IACAScore": st, "torchmetrics": tmetric, "score_folder": folder}


_BAD_OPTIONS = [
    {"batch_size": 0}, {"batch_size": -3}, {"batch_size": 1.5}, {"max_pixels": 10}, {"max_pixels": "big"},
    {"max_pixels": 300_000, "tile": True}, {"grayscale": "maybe"}, {"tile": "yes"}, {"model": "not a model"},
]


@pytest.mark.parametrize("bad", _BAD_OPTIONS, ids=lambda d: ",".join(f"{k}={v!r}" for k, v in d.items()))
def test_same_errors_for_bad_arguments(case, bad) -> None:
    f, r = str(case["files"][0]), str(case["refs"][0])
    seen = {}
    for name, fn in _entry_points(case).items():
        try:
            with pytest.raises(InputError) as ei:
                fn(f, r, **bad)
        except pytest.skip.Exception:
            continue
        seen[name] = (type(ei.value), str(ei.value))
    assert len(set(seen.values())) == 1, seen
    # the command line says the same thing, as one line
    flag = {"batch_size": "--batch-size", "max_pixels": "--max-pixels", "tile": "--tile"}
    if set(bad) <= set(flag) and all(not isinstance(v, (float, str)) for v in bad.values()):
        args = []
        for k, v in bad.items():
            args += [flag[k]] if v is True else [flag[k], str(v)]
        import subprocess
        import sys

        res = subprocess.run([sys.executable, "-m", "iaca_metric.cli", "score", f, "--model", str(case["model_dir"]),
                              "--quiet", *args], capture_output=True, text=True, timeout=120,
                             env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        assert res.returncode == 2
        assert res.stderr.strip() == f"error: {next(iter(seen.values()))[1]}"


def test_same_errors_for_bad_inputs(case, tmp_path) -> None:
    m = case["model"]
    x = torch.rand(1, 3, 64, 64)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    cases = {"nan": (nan, None), "mismatch": (x, torch.rand(1, 3, 64, 32)), "tiny": (torch.rand(1, 3, 16, 64), None),
             "range": (x * 255, None), "int": (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), None)}
    loss = IACALoss(m)
    for what, (img, ref) in cases.items():
        seen = {}
        for name, fn in _entry_points(case).items():
            if name == "score_folder":
                continue  # files only; see below
            try:
                with pytest.raises(InputError) as ei:
                    fn(img, ref)
            except pytest.skip.Exception:
                continue
            seen[name] = str(ei.value)
        if what != "int":  # the loss words integer tensors its own way (it needs gradients)
            with pytest.raises(InputError) as ei:
                loss(img, ref)
            seen["IACALoss"] = str(ei.value)
        assert len(set(seen.values())) == 1, (what, seen)
    # a corrupt file: score() raises, the folder scorers write the same message as the row's error
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError) as ei:
        iaca_metric.score(str(bad), model=m)
    (row,) = iaca_metric.score_folder(bad, model=m, workers=0)
    assert row["error"] == f"InputError: {ei.value}"
    (row2,) = score_files(m, [bad], [None], out=tmp_path / "r.csv", progress=False)
    assert row2["error"] == row["error"]
    with pytest.raises(InputError) as e2:
        IACAScore(m).update(str(bad))
    assert str(e2.value) == str(ei.value)
