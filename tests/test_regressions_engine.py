"""Regression tests for issue #13 (one scoring engine, nothing a user runs can lose data) and the parts of
issue #14 that live in the core: each test names the defect it pins down and failed on the code before
the engine redesign (see the commit message / report for the mapping).

Small seeded models (tests/iaca_test_models.py) and generated images only; the embedded model is used
where the defect is about it (its pinned config, the shared default model)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import IACALoss, IACAMetric, IACAScore, InputError, WeightsError
from iaca_metric.cli import main

from iaca_test_models import low_light, make_image, make_model

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def _read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="surrogateescape"))))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """model dir (reference_or_image), 4 images, their low-light inputs."""
    root = tmp_path_factory.mktemp("reg")
    model = make_model("reference_or_image", seed=3)
    model.save_pretrained(root / "model")
    imgs, refs = root / "imgs", root / "refs"
    imgs.mkdir()
    refs.mkdir()
    for i, n in enumerate("abcd"):
        pic = make_image(64, 64 + 32 * (i == 2), seed=50 + i)
        Image.fromarray(pic).save(imgs / f"{n}.png")
        Image.fromarray(low_light(pic)).save(refs / f"{n}.png")
    return {"root": root, "model_dir": root / "model", "imgs": imgs, "refs": refs,
            "model": IACAMetric.from_pretrained(root / "model")}


def _score(folder, *extra, out=None) -> int:
    args = ["score", str(folder["imgs"]), "--ref-dir", str(folder["refs"]), "--model", str(folder["model_dir"]),
            "--workers", "0", "--quiet"]
    if out is not None:
        args += ["--out", str(out)]
    return main(args + [str(e) for e in extra])


# ============================================================================ data loss
def test_out_that_is_an_input_image_is_refused_before_any_work(folder, tmp_path, capsys) -> None:
    """Defect: `--out` naming an input image overwrote it with CSV."""
    imgs = tmp_path / "imgs"
    shutil.copytree(folder["imgs"], imgs)
    before = (imgs / "a.png").read_bytes()
    rc = main(["score", str(imgs), "--model", str(folder["model_dir"]), "--workers", "0", "--quiet",
               "--out", str(imgs / "a.png")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "one of the images to score" in err[0]
    assert (imgs / "a.png").read_bytes() == before
    # also when it is the low-light input, or spelled differently
    rc = main(["score", str(imgs), "--ref-dir", str(folder["refs"]), "--model", str(folder["model_dir"]),
               "--quiet", "--out", str(folder["refs"] / ".." / "refs" / "b.png")])
    assert rc == 2 and "one of the images" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "darwin" or os.name == "nt", reason="needs a filesystem with byte file names")
def test_non_utf8_file_name_is_written_and_resumed(folder, tmp_path) -> None:
    """Defect: one non-UTF-8 file name made the CSV write fail at the end (run lost; resume failed too)."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(folder["imgs"] / "a.png", imgs / "a.png")
    odd = os.fsdecode(b"caf\xe9-latin1.png")  # a Latin-1 name: not valid UTF-8
    shutil.copy(folder["imgs"] / "b.png", imgs / odd)
    out = tmp_path / "r.csv"
    args = ["score", str(imgs), "--model", str(folder["model_dir"]), "--workers", "0", "--quiet", "--out", str(out)]
    assert main(args) == 0
    assert b"caf\xe9-latin1.png" in out.read_bytes()  # the name's own bytes
    rows = _read_csv(out)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(["a.png", odd])
    assert all(r["error"] == "" and np.isfinite(float(r["score"])) for r in rows)
    # resume finds both rows done (the name round-trips), and JSON works as well
    calls = []
    from iaca_metric import folder_scoring

    orig = folder_scoring._FileDataset.__getitem__

    def counting(self, i):
        calls.append(i)
        return orig(self, i)

    folder_scoring._FileDataset.__getitem__ = counting
    try:
        assert main(args + ["--resume"]) == 0
    finally:
        folder_scoring._FileDataset.__getitem__ = orig
    assert calls == []
    assert main(args[:-1] + [str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert sorted(Path(r["path"]).name for r in data["results"]) == sorted(["a.png", odd])


def _fresh(folder, tmp_path) -> tuple[Path, list[dict]]:
    out = tmp_path / "clean.csv"
    assert _score(folder, out=out) == 0
    return out, _read_csv(out)


def test_resume_reuses_only_finite_rows_with_provenance(folder, tmp_path, monkeypatch) -> None:
    """Defect: --resume trusted any row without an error: a half-written row, a foreign score of 999 or
    "lol" were copied into the final CSV as done."""
    _, clean = _fresh(folder, tmp_path)
    out = tmp_path / "r.csv"
    fields = list(clean[0])
    rows = [dict(r) for r in clean]
    rows[0]["score"] = "lol"                         # not a number
    rows[1]["model_sha256"] = ""                     # a foreign row: no provenance, score 999
    rows[1]["score"] = "999"
    rows[2]["mos"] = "nan"                           # non-finite
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(str(folder["imgs"] / "d.png") + ",")  # a half-written row (d's real row is above it)
    from iaca_metric import folder_scoring

    loaded: list[str] = []
    orig = folder_scoring._FileDataset.__getitem__
    monkeypatch.setattr(folder_scoring._FileDataset, "__getitem__",
                        lambda self, i: (loaded.append(self.files[i].name), orig(self, i))[1])
    assert _score(folder, "--resume", out=out) == 0
    assert sorted(loaded) == ["a.png", "b.png", "c.png"]  # the three bad rows were rescored, d kept
    final = _read_csv(out)
    assert [r["path"] for r in final] == [r["path"] for r in clean]  # exactly one row per input
    for r, c in zip(final, clean):
        assert float(r["score"]) == pytest.approx(float(c["score"]), abs=1e-5)  # other batching: 1e-6 level
        assert np.isfinite(float(r["mos"]))


def test_resume_does_not_reuse_rows_of_other_settings_or_model(folder, tmp_path, monkeypatch) -> None:
    """Defect: --resume reused rows scored with another --ref-dir, --max-pixels or model."""
    from iaca_metric import folder_scoring

    out, clean = _fresh(folder, tmp_path)
    loaded: list[str] = []
    orig = folder_scoring._FileDataset.__getitem__
    monkeypatch.setattr(folder_scoring._FileDataset, "__getitem__",
                        lambda self, i: (loaded.append(self.files[i].name), orig(self, i))[1])
    assert _score(folder, "--resume", out=out) == 0 and loaded == []  # same settings: all reused
    # without the ref folder: every row is scored again, and differs
    args = ["score", str(folder["imgs"]), "--model", str(folder["model_dir"]), "--workers", "0", "--quiet",
            "--out", str(out), "--resume"]
    assert main(args) == 0 and len(loaded) == 4
    no_ref = _read_csv(out)
    assert all(r["ref"] == "" for r in no_ref)
    assert min(abs(float(a["score"]) - float(b["score"])) for a, b in zip(no_ref, clean)) > 1e-4
    # another max_pixels: scored again
    loaded.clear()
    assert main(args + ["--max-pixels", "2048"]) == 0 and len(loaded) == 4
    assert all("max_pixels=2048" in r["settings"] for r in _read_csv(out))
    # another model: scored again
    other = tmp_path / "other_model"
    make_model("reference_or_image", seed=9).save_pretrained(other)
    loaded.clear()
    assert main(args[:2] + ["--model", str(other)] + args[4:] + ["--max-pixels", "2048"]) == 0
    assert len(loaded) == 4
    assert {r["model_sha256"] for r in _read_csv(out)} == {IACAMetric.from_pretrained(other).weights_info["sha256"]}


def test_unreadable_resume_file_is_a_run_error_before_scoring(folder, tmp_path, capsys) -> None:
    """Defect: unreadable resume files gave raw tracebacks."""
    out = tmp_path / "r.csv"
    (tmp_path / "r.csv.partial-0.jsonl").mkdir()  # unreadable as a file, even for root
    assert _score(folder, "--resume", out=out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "partial-0.jsonl" in err[0]
    assert not out.exists()
    (tmp_path / "bad.json").write_text("{not json")
    assert _score(folder, "--resume", out=tmp_path / "bad.json") == 2
    assert "cannot resume" in capsys.readouterr().err


# ============================================================================ silent wrong scores
def _save_state(model: IACAMetric, folder: Path, state: dict) -> None:
    from safetensors.torch import save_file

    model.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_non_finite_weights_are_refused(tmp_path) -> None:
    """Defect: NaN weights (or a flipped exponent byte) loaded fine and wrote `nan` scores."""
    m = make_model(seed=1)
    state = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    state["regression.weight"][0, 3] = float("nan")
    _save_state(m, tmp_path / "nan", state)
    with pytest.raises(WeightsError, match="non-finite.*regression.weight"):
        IACAMetric.from_pretrained(tmp_path / "nan")
    # flipped exponent byte: the top byte of a float32 set to 0x7f/0xff gives Inf/NaN
    state = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    raw = state["dr6.0.weight"].view(torch.uint8).reshape(-1)
    raw[3] = 0x7F
    raw[2] |= 0x80
    _save_state(m, tmp_path / "flip", state)
    with pytest.raises(WeightsError, match="non-finite"):
        IACAMetric.from_pretrained(tmp_path / "flip")


def test_non_finite_score_is_an_error_never_a_row(tmp_path) -> None:
    """Defect: scores were never checked for NaN/Inf."""
    m = make_model(seed=1)
    with torch.no_grad():
        m.regression.bias.fill_(float("inf"))
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(RuntimeError, match="non-finite score") as ei:
        iaca_metric.score(x, model=m)
    assert type(ei.value).__name__ == "ScoreError"
    with pytest.raises(RuntimeError, match="non-finite score"):
        IACAScore(m).update(x)
    p = tmp_path / "a.png"
    Image.fromarray(make_image(64, 64, seed=1)).save(p)
    rows = list(iaca_metric.score_folder(p, model=m, workers=0))
    assert len(rows) == 1 and rows[0]["score"] is None and "non-finite score" in rows[0]["error"]


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.uint8])
def test_integer_and_bool_weights_are_refused(tmp_path, dtype) -> None:
    """Defect: safetensors dtypes were not checked (int32/bool weights loaded and truncated)."""
    m = make_model(seed=1)
    state = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    state["regr6.weight"] = (state["regr6.weight"] * 10).to(dtype)
    _save_state(m, tmp_path / "w", state)
    with pytest.raises(WeightsError, match=r"wrong dtypes: regr6.weight: torch\.\w+ \(expected a floating-point"):
        IACAMetric.from_pretrained(tmp_path / "w")


@pytest.mark.parametrize("edit,match", [
    ({"mos_scale": float("nan")}, "NaN"),
    ({"mos_scale": "0.5"}, "mos_scale must be a finite number"),
    ({"mos_offset": True}, "mos_offset must be a finite number"),
    ({"mos_scale": None}, "mos_scale must be a finite number"),
    ({"illumination": 3}, "unknown illumination"),
    ({"mos_range": [1, "x"]}, "mos_range"),
    ("drop:mos_scale", "no 'mos_scale' field"),
    ("drop:illumination", "no 'illumination' field"),
])
def test_config_fields_are_typed_finite_and_required(tmp_path, edit, match) -> None:
    """Defect: config.json values were not type/finiteness-checked (NaN or missing mos_scale silently
    became something else, a missing illumination silently ignored ref)."""
    m = make_model("reference_or_image", seed=1)
    m.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    if isinstance(edit, str):
        del cfg[edit.split(":")[1]]
    else:
        cfg.update(edit)
    (tmp_path / "config.json").write_text(json.dumps(cfg))  # json.dumps writes NaN as the bare token NaN
    with pytest.raises(WeightsError, match=match) as ei:
        IACAMetric.from_pretrained(tmp_path)
    assert "config.json" in str(ei.value)
    assert main(["info", str(tmp_path)]) == 2  # a bad config is a one-line error on the CLI


def test_embedded_config_is_sha256_pinned(tmp_path, monkeypatch) -> None:
    """Defect: the embedded config.json was not hash-pinned (an edited MOS map loaded silently)."""
    import iaca_metric.hub as hub

    src = hub.default_model_dir()
    bad = tmp_path / "iaca-lite-sice"
    bad.mkdir()
    shutil.copy(src / "model.safetensors", bad / "model.safetensors")
    cfg = json.loads((src / "config.json").read_text())
    cfg["mos_scale"] = 1.0
    (bad / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    monkeypatch.setattr(hub, "default_model_dir", lambda: bad)
    with pytest.raises(WeightsError, match="config.json: sha256 .* does not match the pinned"):
        IACAMetric()


def test_tiled_scores_under_autocast_keep_float32_heads() -> None:
    """Defect: tiled scores under autocast lost the float32-heads rule (bf16-quantised output)."""
    from iaca_metric.large_images import forward_all_tiled

    m = make_model("reference_or_image", seed=2)
    x = torch.from_numpy(make_image(128, 192, seed=4)).permute(2, 0, 1)[None].float() / 255
    r = x * 0.2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tiled = forward_all_tiled(m, x, r, tile=64, overlap=32)
        whole = m.forward_all(x, r)
    assert tiled.score.dtype == whole.score.dtype == torch.float32
    assert tiled.regr6.dtype == torch.float32
    # not on the bf16 grid (a bf16 output layer rounds scores of magnitude ~1-4 to steps of 0.008-0.03)
    assert not torch.equal(tiled.score, tiled.score.bfloat16().float())


def test_recursive_pairs_by_relative_path(folder, tmp_path) -> None:
    """Defect: --recursive paired enh/sub/b.png with low/b.png."""
    enh, low = tmp_path / "enh", tmp_path / "low"
    (enh / "sub").mkdir(parents=True)
    (low / "sub").mkdir(parents=True)
    top, deep = make_image(64, 64, seed=70), make_image(64, 64, seed=71)
    Image.fromarray(top).save(enh / "b.png")
    Image.fromarray(deep).save(enh / "sub" / "b.png")
    Image.fromarray(low_light(top)).save(low / "b.png")
    Image.fromarray(low_light(deep, 0.3)).save(low / "sub" / "b.png")
    out = tmp_path / "r.csv"
    assert main(["score", str(enh), "--ref-dir", str(low), "--recursive", "--model", str(folder["model_dir"]),
                 "--workers", "0", "--quiet", "--out", str(out)]) == 0
    rows = {Path(r["path"]).relative_to(enh).as_posix(): r for r in _read_csv(out)}
    assert Path(rows["b.png"]["ref"]) == low / "b.png"
    assert Path(rows["sub/b.png"]["ref"]) == low / "sub" / "b.png"
    exp = iaca_metric.score(str(enh / "sub" / "b.png"), str(low / "sub" / "b.png"), model=folder["model"])
    assert float(rows["sub/b.png"]["score"]) == pytest.approx(exp, abs=1e-5)


def test_duplicate_stems_in_ref_folder_are_an_error_row(folder, tmp_path) -> None:
    """Defect: duplicate stems in the ref folder were resolved alphabetically without a warning."""
    enh, low = tmp_path / "enh", tmp_path / "low"
    enh.mkdir()
    low.mkdir()
    pic = make_image(64, 64, seed=80)
    Image.fromarray(pic).save(enh / "x.bmp")
    Image.fromarray(low_light(pic)).save(low / "x.png")
    Image.fromarray(low_light(pic, 0.5)).save(low / "x.jpg")
    Image.fromarray(pic).save(enh / "y.bmp")
    Image.fromarray(low_light(pic)).save(low / "y.png")  # one candidate: paired across extensions
    out = tmp_path / "r.csv"
    assert main(["score", str(enh), "--ref-dir", str(low), "--model", str(folder["model_dir"]), "--workers", "0",
                 "--quiet", "--out", str(out)]) == 1  # x.bmp's row failed
    rows = {Path(r["path"]).name: r for r in _read_csv(out)}
    assert rows["x.bmp"]["score"] == ""
    assert "ambiguous low-light input for x.bmp: x.jpg, x.png" in rows["x.bmp"]["error"]
    assert rows["y.bmp"]["error"] == "" and Path(rows["y.bmp"]["ref"]) == low / "y.png"


def test_bare_constructor_does_not_ignore_arguments() -> None:
    """Defect: IACAMetric(illumination=..., mos_scale=...) silently returned the embedded model."""
    with pytest.raises(InputError, match=r"IACAMetric\(illumination='image'\) without arch"):
        IACAMetric(illumination="image")
    with pytest.raises(InputError, match="mos_scale=2.0"):
        IACAMetric(mos_scale=2.0)
    with pytest.raises(InputError, match="mos_scale must be a finite number"):
        IACAMetric(arch="efficientnet_lite0", mos_scale=float("inf"))


def test_one_set_of_mos_defaults() -> None:
    """Defect: two defaults for a missing MOS map (0.0963/0.5155 in IACAMetric, 1/0 in from_pretrained)."""
    from iaca_metric import ModelConfig
    from iaca_metric.model import RELEASE_MOS_OFFSET, RELEASE_MOS_SCALE

    cfg = ModelConfig(arch="resnet50")
    m = IACAMetric(arch="efficientnet_lite0")
    assert (cfg.mos_scale, cfg.mos_offset) == (m.mos_scale, m.mos_offset) == (RELEASE_MOS_SCALE, RELEASE_MOS_OFFSET)
    assert cfg.illumination == m.illumination == "image"
    assert IACAMetric.from_config(ModelConfig(arch="efficientnet_lite0", mos_scale=2.0)).mos_scale == 2.0


# ============================================================================ hangs and crashes
@pytest.mark.parametrize("bad", [["--batch-size", "0"], ["--batch-size", "-1"], ["--workers", "-1"],
                                 ["--threads", "-1"], ["--max-pixels", "10"], ["--max-pixels", "500"],
                                 ["--device", "cuda:7" if torch.cuda.is_available() else "cuda"],
                                 ["--device", "nonsense"], ["--out", ""], ["--out", "DIR"], ["--out", "r.txt"],
                                 ["--out", "missing_dir/r.csv"], ["--resume"], ["--tile", "--max-pixels", "300000"]])
def test_bad_score_arguments_fail_fast_with_one_line(folder, tmp_path, bad) -> None:
    """Defects: --batch-size 0/-1 spun forever; --device cuda without CUDA, --workers -1, --threads -1, bad
    --max-pixels, --out DIR and --out '' gave raw tracebacks, some only after scoring everything."""
    bad = [str(tmp_path) if b == "DIR" else str(tmp_path / b) if b in ("r.txt", "missing_dir/r.csv") else b
           for b in bad]
    cmd = [sys.executable, "-m", "iaca_metric.cli", "score", str(folder["imgs"]), "--model", str(folder["model_dir"]),
           "--quiet", *bad]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert res.stdout == ""  # nothing scored
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written


def test_python_api_bad_arguments_are_input_errors(folder) -> None:
    x = torch.rand(1, 3, 64, 64)
    for kw in ({"batch_size": 0}, {"batch_size": -1}, {"batch_size": 2.0}, {"mos": "yes"}, {"tile": 1},
               {"device": "cuda:9" if torch.cuda.is_available() else "cuda"}, {"device": "nonsense"},
               {"grayscale": "maybe"}, {"data_range": 0}, {"max_pixels": 10}):
        with pytest.raises(InputError):
            iaca_metric.score(x, model=folder["model"], **kw)
    with pytest.raises(InputError, match="workers"):
        iaca_metric.score_folder(folder["imgs"], model=folder["model"], workers=-1)  # at the call
    with pytest.raises(InputError, match="reduction"):
        IACALoss(folder["model"], reduction="avg")


def test_memory_errors_become_error_rows(folder, tmp_path, monkeypatch, capsys) -> None:
    """Defect: memory errors killed the run (no CSV, and again on resume) instead of becoming error rows."""
    imgs = tmp_path / "imgs"
    shutil.copytree(folder["imgs"], imgs)
    orig = IACAMetric.forward

    def forward(self, img, ref=None):
        if img.shape[-1] == 96:  # c.png is 64x96: pretend it alone does not fit in memory
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 6442450944 bytes.")
        return orig(self, img, ref)

    monkeypatch.setattr(IACAMetric, "forward", forward)
    out = tmp_path / "r.csv"
    rc = main(["score", str(imgs), "--model", str(folder["model_dir"]), "--workers", "0", "--quiet",
               "--batch-size", "4", "--out", str(out)])
    assert rc == 1  # rows failed, run completed
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: 1 of 4 images failed")
    rows = {Path(r["path"]).name: r for r in _read_csv(out)}
    assert len(rows) == 4 and "out of memory" in rows["c.png"]["error"] and rows["c.png"]["score"] == ""
    assert all(rows[n]["error"] == "" for n in ("a.png", "b.png", "d.png"))
    monkeypatch.setattr(IACAMetric, "forward", orig)
    assert main(["score", str(imgs), "--model", str(folder["model_dir"]), "--workers", "0", "--quiet",
                 "--out", str(out), "--resume"]) == 0  # resume retries the failed row only
    assert all(r["error"] == "" for r in _read_csv(out))


def test_batches_are_bounded_in_pixels_and_huge_images_tiled() -> None:
    """Defect: with the default batch of 8, 4K photos needed a 6.4 GB allocation; a black 8000x8000 PNG
    (under the bomb limit) needed >10 GB. Batches now hold <= DEFAULT_BATCH_PIXELS pixels and the folder
    scorer tiles images above FOLDER_TILE_ABOVE (shapes only here: no pixels are allocated)."""
    from iaca_metric import _engine
    from iaca_metric.folder_scoring import FOLDER_TILE_ABOVE, _folder_options

    opts = _folder_options(8, "error", None, False)
    big = torch.zeros(1, 3, 1, 1).expand(1, 3, 2160, 3840)
    items = [_engine.Item(big, None, f"4k[{i}]") for i in range(8)]
    batches = _engine._batches(items, opts)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) * 2160 * 3840 <= _engine.DEFAULT_BATCH_PIXELS for b in batches)
    small = [_engine.Item(torch.zeros(1, 3, 1, 1).expand(1, 3, 64, 64), None, "s") for _ in range(20)]
    assert [len(b) for b in _engine._batches(small, opts)] == [8, 8, 4]  # small images: batch_size rules
    huge = _engine.apply_size_policy(_engine.Item(torch.zeros(1, 3, 1, 1).expand(1, 3, 8000, 8000), None, "h"), opts)
    assert huge.tiling == (1024, 256) and 8000 * 8000 > FOLDER_TILE_ABOVE
    four_k = _engine.apply_size_policy(_engine.Item(big, None, "k"), opts)
    assert four_k.tiling is None  # a 4K photo is scored whole
    plain = _engine.apply_size_policy(_engine.Item(torch.zeros(1, 3, 1, 1).expand(1, 3, 8000, 8000), None, "h"),
                                      _engine.Options.make())
    assert plain.tiling is None  # score() keeps its documented whole-image behaviour


def test_exit_codes_distinguish_rows_failed_from_run_failed(folder, tmp_path, capsys) -> None:
    """Defect: exit status 1 meant both "some rows failed" and "crashed, nothing written"."""
    imgs = tmp_path / "imgs"
    shutil.copytree(folder["imgs"], imgs)
    (imgs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "r.csv"
    assert main(["score", str(imgs), "--model", str(folder["model_dir"]), "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: 1 of 5 images failed (error rows in {out}; listed above)"
    assert len(_read_csv(out)) == 5
    assert main(["score", str(imgs), "--model", str(tmp_path / "no_model"), "--quiet", "--out",
                 str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and not (tmp_path / "s.csv").exists()


def test_threaded_decoding_does_not_touch_the_warnings_filters(tmp_path, monkeypatch) -> None:
    """Defect: threaded decoding leaked an ('error', DecompressionBombWarning) filter into the process
    (catch_warnings is not thread-safe)."""
    from iaca_metric.inputs import load_image

    for i in range(24):
        Image.fromarray(make_image(40, 40, seed=i)).save(tmp_path / f"{i}.png")
    calls = []
    monkeypatch.setattr(warnings, "simplefilter", lambda *a, **k: calls.append(a))
    before = list(warnings.filters)
    threads = [threading.Thread(target=lambda k=k: [load_image(tmp_path / f"{j}.png") for j in range(k, 24, 4)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [] and warnings.filters == before
    assert not any(f[2] is Image.DecompressionBombWarning for f in warnings.filters)
    # the 1x-2x zone is still refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="decompression-bomb limit"):
        load_image(tmp_path / "0.png")  # 1600 pixels: between 1x and 2x the limit


def test_score_does_not_move_or_mutate_the_callers_model() -> None:
    """Defect: score(model=m, device=...) moved and mutated the caller's model."""
    m = make_model(seed=4).train()
    params = {k: v for k, v in m.state_dict().items()}
    x = torch.rand(2, 3, 64, 64)
    s1 = iaca_metric.score(x, model=m, device="cpu")
    IACAScore(m, device="cpu").update(x)
    assert m.training  # still in the caller's mode
    s64 = iaca_metric.score(x.double(), model=m.double(), device="cpu")  # a float64 model is used as is
    m.float()
    assert all(v.dtype == torch.float32 for v in m.state_dict().values() if v.is_floating_point())
    torch.testing.assert_close(s1, s64, atol=1e-4, rtol=0)
    assert set(params) == set(m.state_dict())


def test_float64_loss_does_not_change_the_shared_or_callers_model() -> None:
    """Defect: IACALoss fed float64 turned the shared default model (or yours) into float64."""
    from iaca_metric.api import default_model

    shared = default_model()
    mine = make_model(seed=5)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    for loss in (IACALoss(), IACALoss(mine)):
        v = loss(x, x.detach() * 0.2)
        v.backward()
        assert v.dtype == torch.float64 and x.grad is not None
    assert next(shared.parameters()).dtype == torch.float32
    assert next(mine.parameters()).dtype == torch.float32
    assert isinstance(iaca_metric.score(torch.rand(3, 64, 64)), float)


def test_hub_repo_id_with_a_dot_is_looked_up(hub_endpoint, tmp_path) -> None:
    """Defect: hub repo ids with a dot (org/iaca-v1.1) were refused without looking."""
    m = make_model(seed=6)
    m.save_pretrained(tmp_path / "m")
    for name in ("config.json", "model.safetensors"):
        hub_endpoint.add_file("org/iaca-v1.1", "main", name, (tmp_path / "m" / name).read_bytes())
    loaded = IACAMetric.from_pretrained("org/iaca-v1.1", cache_dir=tmp_path / "cache")
    assert loaded.weights_info["source"] == "hub repo org/iaca-v1.1"
    from iaca_metric.hub import is_hub_repo_id

    assert is_hub_repo_id("org/iaca-v1.1") and is_hub_repo_id("iaca.v2")
    assert not any(is_hub_repo_id(s) for s in ("./weights", "/abs/path", "a/b/c", "~/w", "org/bad name"))
    with pytest.raises(WeightsError, match="no such folder"):
        IACAMetric.from_pretrained("./no/such/folder.v1")


def test_convert_infers_the_architecture(tmp_path, capsys) -> None:
    """Defect: convert on a ResNet-50 checkpoint listed hundreds of missing ResNeXt keys instead of
    inferring the arch (or saying --arch resnet50)."""
    from iaca_metric.convert import convert_checkpoint, infer_arch

    torch.manual_seed(0)
    r50 = IACAMetric(arch="resnet50")
    src = tmp_path / "resnet50_last"
    torch.save({"model": {f"module.{k}": v for k, v in r50.state_dict().items()}, "optimizer": {}}, src)
    assert infer_arch(r50.state_dict()) == "resnet50"
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    assert "arch resnet50" in capsys.readouterr().out
    assert IACAMetric.from_pretrained(tmp_path / "out").arch == "resnet50"
    # the wrong explicit arch: the advice names the right --arch
    with pytest.raises(WeightsError, match="looks like resnet50: pass --arch resnet50"):
        convert_checkpoint(src, tmp_path / "out2", arch="resnext101_32x8d")
    # an unknown layout: the advice names --arch
    odd = tmp_path / "odd_last"
    torch.save({"model": {"features.0.weight": torch.zeros(3)}}, odd)
    with pytest.raises(WeightsError, match="--arch resnext101_32x8d or --arch resnet50"):
        convert_checkpoint(odd, tmp_path / "out3")


# ============================================================================ issue #14, core parts
def test_conventions_higher_is_better_and_score_range() -> None:
    import math

    assert IACAMetric.higher_is_better is True and IACAMetric.score_range == (-math.inf, math.inf)
    assert IACALoss.higher_is_better is False and IACALoss.score_range == (-math.inf, math.inf)
    assert IACAScore.higher_is_better is True


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "iaca_metric" / "py.typed").is_file()
    cfg = (ROOT / "setup.cfg").read_text()
    assert "py.typed" in cfg.split("[options.package_data]")[1].split("[")[0]


def test_torchmetrics_adapter_in_a_metric_collection(folder) -> None:
    """#14: unprefixed mean/std/count keys in a MetricCollection, and update(preds, target) silently
    passing the ground truth as the low-light ref."""
    torchmetrics = pytest.importorskip("torchmetrics")
    from iaca_metric.stateful import to_torchmetrics

    m = folder["model"]
    enh = torch.stack([torch.from_numpy(make_image(64, 64, seed=90 + i)).permute(2, 0, 1).float() / 255
                       for i in range(3)])
    low, gt = enh * 0.2, enh.flip(-1)
    expected = iaca_metric.score(enh, low, model=m)
    tm = to_torchmetrics(m)
    with pytest.raises(InputError, match="ground-truth target"):
        tm.update(enh, gt)
    tm.update(enh, ref=low)
    res = tm.compute()
    assert set(res) == {"iaca_mean", "iaca_std", "iaca_count"}
    assert float(res["iaca_mean"]) == pytest.approx(float(expected.double().mean()), abs=1e-5)
    col = torchmetrics.MetricCollection({"iaca": to_torchmetrics(m, ignore_target=True),
                                         "mse": torchmetrics.MeanSquaredError()})
    col.update(enh, gt, ref=low)
    out = col.compute()
    assert {"iaca_mean", "iaca_std", "iaca_count", "mse"} <= set(out)
    assert float(out["iaca_mean"]) == pytest.approx(float(expected.double().mean()), abs=1e-5)


def test_save_pretrained_writes_card_licence_and_0644(folder, tmp_path) -> None:
    old = os.umask(0o077)
    try:
        IACAMetric().save_pretrained(tmp_path / "embedded")
        folder["model"].save_pretrained(tmp_path / "other")
    finally:
        os.umask(old)
    from iaca_metric.hub import default_model_dir

    shipped_card = (default_model_dir() / "README.md").read_text()
    for d in ("embedded", "other"):
        names = sorted(p.name for p in (tmp_path / d).iterdir())
        assert names == ["LICENSE", "README.md", "config.json", "model.safetensors"]
        assert all(stat.S_IMODE((tmp_path / d / n).stat().st_mode) == 0o644 for n in names)
    emb = tmp_path / "embedded"
    from iaca_metric.hub import sha256_file

    if sha256_file(emb / "model.safetensors") == IACAMetric().weights_info["sha256"]:
        assert (emb / "README.md").read_text() == shipped_card  # our real card, not the mixin's template
        assert "research" in (emb / "LICENSE").read_text().lower()
    card = (tmp_path / "other" / "README.md").read_text()
    assert "efficientnet_lite0" in card and sha256_file(tmp_path / "other" / "model.safetensors") in card
    assert IACAMetric.from_pretrained(emb).mos_scale == IACAMetric().mos_scale


def test_info_json(capsys) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["iaca_metric"] == iaca_metric.__version__ and info["torch"] == torch.__version__
    from iaca_metric.hub import DEFAULT_CONFIG_SHA256, DEFAULT_MODEL_SHA256

    assert info["weights"]["sha256"] == DEFAULT_MODEL_SHA256
    assert info["weights"]["config_sha256"] == DEFAULT_CONFIG_SHA256
    assert info["arch"] == "efficientnet_lite0" and info["higher_is_better"] is True


def test_jsonl_output_summary_and_tile_flag(folder, tmp_path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["score", str(folder["imgs"]), "--ref-dir", str(folder["refs"]), "--model", str(folder["model_dir"]),
                 "--workers", "0", "--out", str(out), "--tile"]) == 0
    lines = out.read_text().splitlines()
    rows = [json.loads(ln) for ln in lines]
    assert len(rows) == 4 and all(set(r) == set(iaca_metric.folder_scoring.FIELDS) for r in rows)
    assert all("tile=1" in r["settings"] for r in rows)
    err = capsys.readouterr().err
    summary = [ln for ln in err.splitlines() if ln.startswith("summary:")]
    assert len(summary) == 1 and "n=4 scored=4 failed=0" in summary[0] and "img/s" in summary[0]
    mean = float(summary[0].split("mean=")[1].split()[0])
    assert mean == pytest.approx(np.mean([r["score"] for r in rows]), abs=1e-4)


def test_score_folder_streams_rows(folder, monkeypatch) -> None:
    """#14: a streaming, exported folder API (not score(list), which decodes everything first)."""
    from iaca_metric import folder_scoring

    decoded: list[int] = []
    orig = folder_scoring._FileDataset.__getitem__
    monkeypatch.setattr(folder_scoring._FileDataset, "__getitem__",
                        lambda self, i: (decoded.append(i), orig(self, i))[1])
    gen = iaca_metric.score_folder(folder["imgs"], folder["refs"], model=folder["model"], workers=0, batch_size=1)
    first = next(gen)
    assert decoded == [0]  # one file decoded for the first row, not all of them
    rows = [first, *gen]
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png", "c.png", "d.png"]
    exp = iaca_metric.score([r["path"] for r in rows], [r["ref"] for r in rows], model=folder["model"])
    np.testing.assert_allclose([r["score"] for r in rows], exp.numpy(), atol=1e-5, rtol=0)


def test_auto_threads_does_not_oversubscribe_a_loaded_machine(monkeypatch) -> None:
    from iaca_metric import cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.5, 1.2))
    assert cli.auto_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert cli.auto_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert cli.auto_threads() == 1
