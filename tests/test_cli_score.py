"""Tests for ``iaca-metric score`` (iaca_metric.cli + iaca_metric.folder_scoring).

Most runs call :func:`iaca_metric.cli.main` in-process; one runs the installed ``iaca-metric`` console
script in a subprocess. The model is a small seeded EfficientNet-Lite0 IACA network saved with
``save_pretrained`` and passed with ``--model DIR``; all images are generated PNGs (64x64, one 96x64).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import IACAMetric
from iaca_metric.cli import main
from iaca_metric.folder_scoring import _FileDataset
from iaca_metric.inputs import load_image
from iaca_metric.large_images import fit_max_pixels

from iaca_test_models import low_light, make_image, make_model

torch.set_num_threads(1)

NAMES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """model dir, image dir (6 PNGs), ref dir (5 PNGs + e.jpg: same stem, other extension)."""
    root = tmp_path_factory.mktemp("cli")
    model = make_model("reference_or_image")
    model.save_pretrained(root / "model")
    imgs, refs = root / "imgs", root / "refs"
    imgs.mkdir()
    refs.mkdir()
    for i, n in enumerate(NAMES):
        pic = make_image(96 if n == "c" else 64, 64, seed=i)
        Image.fromarray(pic).save(imgs / f"{n}.png")
        if n == "e":
            Image.fromarray(low_light(pic)).save(refs / "e.jpg", quality=95)
        else:
            Image.fromarray(low_light(pic)).save(refs / f"{n}.png")
    loaded = IACAMetric.from_pretrained(root / "model")
    return {"root": root, "model_dir": root / "model", "imgs": imgs, "refs": refs, "model": loaded}


def _run(args: list[str]) -> int:
    return main(["score", *[str(a) for a in args], "--quiet"])


def _read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _expected(setup, files: list[Path], refs: list[Path]) -> np.ndarray:
    return iaca_metric.score([str(f) for f in files], [str(r) for r in refs], model=setup["model"]).numpy()


def test_folder_with_ref_dir_csv_and_json(setup, tmp_path) -> None:
    imgs, refs = setup["imgs"], setup["refs"]
    out_csv, out_json = tmp_path / "results.csv", tmp_path / "results.json"
    assert _run([imgs, "--ref-dir", refs, "--model", setup["model_dir"], "--out", out_csv, "--workers", 0]) == 0
    rows = _read_csv(out_csv)
    assert list(rows[0]) == ["path", "ref", "score", "mos", "error", "model_sha256", "settings"]
    assert {r["model_sha256"] for r in rows} == {setup["model"].weights_info["sha256"]}  # provenance per row
    assert all("max_pixels=None" in r["settings"] and "iaca_metric=" in r["settings"] for r in rows)
    assert [Path(r["path"]).name for r in rows] == [f"{n}.png" for n in NAMES]  # sorted input order
    assert [Path(r["ref"]).name for r in rows] == ["a.png", "b.png", "c.png", "d.png", "e.jpg", "f.png"]
    assert all(r["error"] == "" for r in rows)
    files = [imgs / f"{n}.png" for n in NAMES]
    ref_files = [refs / Path(r["ref"]).name for r in rows]
    expected = _expected(setup, files, ref_files)
    got = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.ptp(got) > 0.1  # distinct scores: a pairing or order mix-up would show
    m = setup["model"]
    np.testing.assert_allclose([float(r["mos"]) for r in rows], m.mos_scale * expected + m.mos_offset,
                               atol=1e-5, rtol=0)
    # without ref each score differs (the ref really was used: illumination="reference_or_image")
    no_ref = iaca_metric.score([str(f) for f in files], model=m).numpy()
    assert np.abs(no_ref - got).min() > 1e-3

    assert _run([imgs, "--ref-dir", refs, "--model", setup["model_dir"], "--out", out_json, "--workers", 0]) == 0
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["fields"] == ["path", "ref", "score", "mos", "error", "model_sha256", "settings"]
    assert data["meta"]["model_sha256"] == setup["model"].weights_info["sha256"]
    assert data["meta"]["summary"]["n"] == 6 and data["meta"]["summary"]["failed"] == 0
    assert [r["path"] for r in data["results"]] == [r["path"] for r in rows]
    assert [r["error"] for r in data["results"]] == [None] * 6
    np.testing.assert_allclose([r["score"] for r in data["results"]], expected, atol=1e-5, rtol=0)
    assert not list(tmp_path.glob("*.partial-*")) and not list(tmp_path.glob("*.tmp"))  # cleaned up


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
def test_workers_2_equals_workers_0(setup, tmp_path, worker_type) -> None:
    outs = {}
    for w in (0, 2):
        out = tmp_path / f"w{w}.csv"
        assert _run([setup["imgs"], "--ref-dir", setup["refs"], "--model", setup["model_dir"], "--out", out,
                     "--workers", w, "--batch-size", 4, "--worker-type", worker_type]) == 0
        outs[w] = _read_csv(out)
    assert [r["path"] for r in outs[0]] == [r["path"] for r in outs[2]]
    np.testing.assert_allclose([float(r["score"]) for r in outs[2]], [float(r["score"]) for r in outs[0]],
                               atol=1e-6, rtol=0)


def test_thread_decoding_keeps_order_and_error_rows(setup, tmp_path) -> None:
    """Read-ahead threads finish out of order; rows must still follow the input order, and a corrupt or
    truncated file must still become its own error row (batch size 3 does not divide the 9 files)."""
    imgs, refs = _bad_folder(setup, tmp_path)
    outs = {}
    for w in (0, 3):
        out = tmp_path / f"t{w}.csv"
        assert _run([imgs, "--ref-dir", refs, "--model", setup["model_dir"], "--out", out, "--workers", w,
                     "--batch-size", 3, "--worker-type", "threads", "--quiet"]) == 1  # bad files: exit 1
        outs[w] = _read_csv(out)
    assert [r["path"] for r in outs[3]] == [r["path"] for r in outs[0]]
    assert [bool(r["error"]) for r in outs[3]] == [bool(r["error"]) for r in outs[0]]
    assert sum(bool(r["error"]) for r in outs[3]) == 3
    good = [i for i, r in enumerate(outs[0]) if not r["error"]]
    np.testing.assert_allclose([float(outs[3][i]["score"]) for i in good], [float(outs[0][i]["score"]) for i in good],
                               atol=1e-6, rtol=0)


def _bad_folder(setup, root: Path) -> tuple[Path, Path]:
    """The 6 good images plus corrupt.png (random bytes), truncated.png (first 60% of a PNG) and
    noref.png (a good image without a low-light input in the ref folder)."""
    imgs, refs = root / "imgs", root / "refs"
    shutil.copytree(setup["imgs"], imgs)
    shutil.copytree(setup["refs"], refs)
    (imgs / "corrupt.png").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    Image.fromarray(make_image(64, 64, seed=20)).save(buf, format="PNG")
    full = buf.getvalue()
    (imgs / "truncated.png").write_bytes(full[: int(len(full) * 0.6)])
    Image.fromarray(low_light(make_image(64, 64, seed=20))).save(refs / "truncated.png")
    Image.fromarray(make_image(64, 64, seed=21)).save(imgs / "noref.png")
    return imgs, refs


def test_bad_files_become_error_rows(setup, tmp_path, capsys) -> None:
    imgs, refs = _bad_folder(setup, tmp_path)
    out = tmp_path / "results.csv"
    rc = main(["score", str(imgs), "--ref-dir", str(refs), "--model", str(setup["model_dir"]), "--out", str(out),
               "--workers", "0", "--quiet"])
    assert rc == 1
    rows = {Path(r["path"]).name: r for r in _read_csv(out)}
    assert list(rows) == sorted(rows) and len(rows) == 9
    errors = {n: r["error"] for n, r in rows.items() if r["error"]}
    assert set(errors) == {"corrupt.png", "truncated.png", "noref.png"}
    assert "corrupt.png" in errors["corrupt.png"] and "InputError" in errors["corrupt.png"]
    assert "not an image file" in errors["corrupt.png"]
    assert "truncated.png" in errors["truncated.png"] and "truncated" in errors["truncated.png"]
    assert "no low-light input for noref.png" in errors["noref.png"]
    for n in errors:
        assert rows[n]["score"] == "" and rows[n]["mos"] == ""
    # the good ones are scored exactly as in a clean run
    good = [f"{n}.png" for n in NAMES]
    files = [imgs / n for n in good]
    expected = _expected(setup, files, [refs / Path(rows[n]["ref"]).name for n in good])
    np.testing.assert_allclose([float(rows[n]["score"]) for n in good], expected, atol=1e-5, rtol=0)
    err = capsys.readouterr().err
    for n in ("corrupt.png", "truncated.png", "noref.png"):
        assert f"failed: {imgs / n}:" in err


def test_resume_keeps_done_rows_and_scores_only_missing(setup, tmp_path, monkeypatch) -> None:
    imgs, refs = _bad_folder(setup, tmp_path)
    out = tmp_path / "results.csv"
    args = [imgs, "--ref-dir", refs, "--model", setup["model_dir"], "--out", out, "--workers", 0, "--resume"]
    assert _run(args) == 1  # first run (nothing to resume yet): 3 error rows
    first = {Path(r["path"]).name: r for r in _read_csv(out)}

    # Edit the results: a sentinel score for a.png, c.png's row removed; fix the corrupt file.
    rows = _read_csv(out)
    for r in rows:
        if Path(r["path"]).name == "a.png":
            r["score"] = "123.456"
    rows = [r for r in rows if Path(r["path"]).name != "c.png"]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    fixed = make_image(64, 64, seed=30)
    Image.fromarray(fixed).save(imgs / "corrupt.png")
    Image.fromarray(low_light(fixed)).save(refs / "corrupt.png")

    loaded: list[str] = []
    orig = _FileDataset.__getitem__

    def counting(self, i):
        loaded.append(self.files[i].name)
        return orig(self, i)

    monkeypatch.setattr(_FileDataset, "__getitem__", counting)
    assert _run(args) == 1  # truncated.png and noref.png still fail
    # only the missing row and the previously failed rows were (re)loaded
    assert sorted(loaded) == ["c.png", "corrupt.png", "noref.png", "truncated.png"]
    final = {Path(r["path"]).name: r for r in _read_csv(out)}
    assert list(final) == sorted(final) and len(final) == 9
    assert final["a.png"]["score"] == "123.456"  # kept, not recomputed
    assert float(final["c.png"]["score"]) == pytest.approx(float(first["c.png"]["score"]), abs=1e-6)
    for n in ("b.png", "d.png", "e.png", "f.png"):
        assert final[n]["score"] == first[n]["score"]
    assert final["corrupt.png"]["error"] == "" and final["corrupt.png"]["score"] != ""
    expected = iaca_metric.score(str(imgs / "corrupt.png"), str(refs / "corrupt.png"), model=setup["model"])
    assert float(final["corrupt.png"]["score"]) == pytest.approx(expected, abs=1e-5)

    # a third resume with everything done but the two broken files loads only those
    loaded.clear()
    assert _run(args) == 1
    assert sorted(loaded) == ["noref.png", "truncated.png"]


def test_progress_on_stderr_csv_on_stdout_in_process(setup, capsys) -> None:
    rc = main(["score", str(setup["imgs"]), "--ref-dir", str(setup["refs"]), "--model", str(setup["model_dir"]),
               "--workers", "0"])
    assert rc == 0
    cap = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(cap.out)))
    assert [Path(r["path"]).name for r in rows] == [f"{n}.png" for n in NAMES]
    assert "6/6" in cap.err  # the progress bar / counter
    assert "6/6" not in cap.out and "img/s" not in cap.out


def test_console_script_subprocess(setup, tmp_path) -> None:
    exe = Path(sys.executable).with_name("iaca-metric")
    if not exe.exists():
        exe = Path(shutil.which("iaca-metric") or "iaca-metric")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([str(exe), "score", str(setup["imgs"]), "--ref-dir", str(setup["refs"]),
                          "--model", str(setup["model_dir"]), "--workers", "0", "--threads", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))  # stdout is nothing but the CSV
    assert res.stdout.splitlines()[0] == "path,ref,score,mos,error,model_sha256,settings"
    assert len(res.stdout.splitlines()) == 7
    assert [Path(r["path"]).name for r in rows] == [f"{n}.png" for n in NAMES]
    files = [setup["imgs"] / f"{n}.png" for n in NAMES]
    expected = _expected(setup, files, [setup["refs"] / Path(r["ref"]).name for r in rows])
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, atol=1e-5, rtol=0)
    assert "6/6" in res.stderr


def test_max_pixels_downscales(setup, tmp_path) -> None:
    imgs, refs = tmp_path / "imgs", tmp_path / "refs"
    imgs.mkdir()
    refs.mkdir()
    big = make_image(192, 256, seed=40)  # 49152 pixels
    Image.fromarray(big).save(imgs / "big.png")
    Image.fromarray(low_light(big)).save(refs / "big.png")
    out = tmp_path / "r.csv"
    assert _run([imgs, "--ref-dir", refs, "--model", setup["model_dir"], "--out", out, "--workers", 0,
                 "--max-pixels", 4096]) == 0
    (row,) = _read_csv(out)
    img, ref = load_image(imgs / "big.png")[None], load_image(refs / "big.png")[None]
    small, small_ref = fit_max_pixels(img, ref, 4096)
    h, w = small.shape[-2:]
    assert h * w <= 4096 and h >= 32 and w >= 32 and small_ref.shape == small.shape
    expected = iaca_metric.score(small, small_ref, model=setup["model"])
    assert float(row["score"]) == pytest.approx(expected, abs=1e-5)
    full = iaca_metric.score(img, ref, model=setup["model"])
    assert abs(full - expected) > 1e-3  # it really was downscaled


def test_no_images_and_missing_model(setup, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run([empty, "--model", setup["model_dir"]]) == 2
    assert "no image files found" in capsys.readouterr().err
    assert _run([setup["imgs"], "--model", tmp_path / "nope"]) == 2
    assert "error:" in capsys.readouterr().err
