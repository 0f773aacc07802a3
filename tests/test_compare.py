"""Tests for ``iaca-metric compare`` (iaca_metric.compare and iaca_metric._report_html).

All images are generated: dark structured pictures as the low-light inputs (two datasets, DICM-like
"A" with four inputs and a flat-named "B" with three, mixed extensions), and method folders made by
applying different synthetic enhancements to them. The model is the seeded test model of
tests/iaca_test_models.py, so the numbers are checked against ``iaca_metric.score`` on the same pairs,
not against fixed values. The statistics are checked against independent computations (scipy's
rankdata, explicit loops, the normal approximation of the bootstrap).
"""
from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import InputError
from iaca_metric.cli import main
from iaca_metric.compare import (CompareResult, bootstrap_ci, compare_methods, mean_ranks, pair_methods,
                                 rank_matrix, read_scores, summarize_scores, win_rates)
from iaca_metric.inputs import load_image
from iaca_metric.reference_metrics import psnr, ssim

from iaca_test_models import make_image, make_model

torch.set_num_threads(1)

DATASETS = {"A": ["01", "02", "9", "10"], "B": ["1", "2", "3"]}


# --------------------------------------------------------------------------------- generated data
def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if path.suffix == ".jpg":
        Image.fromarray(arr).save(path, quality=95)
    else:
        Image.fromarray(arr).save(path)


ENHANCE = {
    "gamma": lambda low, rng: np.power(low, 1 / 2.2),
    "gain": lambda low, rng: np.clip(low * 4.0, 0, 1),
    "noisy": lambda low, rng: np.clip(low * 5.0 + rng.normal(0, 0.15, low.shape), 0, 1),
}


def make_layout(root: Path, gt: bool = False, size: tuple[int, int] = (64, 80)) -> dict[str, Path]:
    """low/{A,B}/..., methods/{gamma,gain,noisy}/{A,B}/... (outputs saved as PNG, inputs as PNG in A and
    BMP in B, so pairing has to ignore the extension) and optionally gt/{A,B}/... ."""
    h, w = size
    rng = np.random.default_rng(0)
    for d_i, (ds, names) in enumerate(DATASETS.items()):
        for i, name in enumerate(names):
            clean = make_image(h, w, seed=10 * d_i + i).astype(np.float64) / 255
            low = np.round(clean * 0.12 * 255).astype(np.uint8)
            _save(low, root / "low" / ds / f"{name}.{'png' if ds == 'A' else 'bmp'}")
            if gt:
                _save(clean, root / "gt" / ds / f"{name}.png")
            lowf = low.astype(np.float64) / 255
            for m, fn in ENHANCE.items():
                _save(fn(lowf, rng), root / "methods" / m / ds / f"{name}.png")
    return {"low": root / "low", "gt": root / "gt", **{m: root / "methods" / m for m in ENHANCE}}


@pytest.fixture(scope="module")
def model():
    return make_model("reference_or_image")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return make_layout(tmp_path_factory.mktemp("cmp"), gt=True)


@pytest.fixture(scope="module")
def result(layout, model) -> CompareResult:
    return compare_methods([layout[m] for m in ENHANCE], layout["low"], layout["gt"], model=model,
                           n_boot=500, progress=False, niqe=False)


# ---------------------------------------------------------------------------------------- statistics
def test_rank_matrix_ties_and_against_scipy() -> None:
    np.testing.assert_array_equal(rank_matrix([[3.0, 1.0, 1.0, 0.0]]), [[1.0, 2.5, 2.5, 4.0]])
    np.testing.assert_array_equal(rank_matrix([[2.0, 2.0, 2.0]]), [[2.0, 2.0, 2.0]])
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    s = rng.integers(0, 4, size=(50, 5)).astype(float)  # many ties
    expected = np.stack([scipy_stats.rankdata(-row, method="average") for row in s])
    np.testing.assert_allclose(rank_matrix(s), expected)
    for k in (2, 3, 5, 7):
        r = mean_ranks(rng.normal(size=(30, k)).round(1))
        assert r.sum() == pytest.approx(k * (k + 1) / 2)
        assert np.all((r >= 1) & (r <= k))


def test_win_rates_antisymmetry_and_counts() -> None:
    rng = np.random.default_rng(2)
    s = rng.integers(0, 3, size=(40, 4)).astype(float)
    win, tie = win_rates(s)
    np.testing.assert_allclose(win + win.T + tie, np.ones((4, 4)))
    np.testing.assert_array_equal(np.diag(tie), 1.0)
    np.testing.assert_array_equal(np.diag(win), 0.0)
    for i in range(4):  # explicit loops
        for j in range(4):
            assert win[i, j] == pytest.approx(sum(s[n, i] > s[n, j] for n in range(40)) / 40)
            assert tie[i, j] == pytest.approx(sum(s[n, i] == s[n, j] for n in range(40)) / 40)
    win2, _ = win_rates([[1.0, 0.0], [1.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(win2, [[0, 1 / 3], [1 / 3, 0]])


def test_bootstrap_ci_contains_mean_matches_normal_approximation_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.5, size=400)
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=0)
    assert lo < x.mean() < hi
    # for a mean of n iid values the 95% interval is about mean +- 1.96 sd / sqrt(n)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * half, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.25 * half)
    assert bootstrap_ci(x, n_boot=2000, seed=0) == (lo, hi)
    assert bootstrap_ci(x, n_boot=2000, seed=1) != (lo, hi)
    assert bootstrap_ci([1.25], n_boot=100) == (1.25, 1.25)
    # 2-D: columns are resampled with the same images, so each column equals its own 1-D run
    m = np.stack([x, 2 * x + 1], axis=1)
    lo2, hi2 = bootstrap_ci(m, n_boot=300, seed=5)
    assert (lo2[0], hi2[0]) == pytest.approx(bootstrap_ci(x, n_boot=300, seed=5))
    assert (lo2[1], hi2[1]) == pytest.approx((2 * lo2[0] + 1, 2 * hi2[0] + 1))
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_ci(x, n_boot=0)


def test_summarize_scores_rows() -> None:
    s = np.array([[0.1, 0.5, 0.3], [0.2, 0.4, 0.4], [0.0, 0.9, -1.0]])
    rows = summarize_scores(s, ["a", "b", "c"], n_boot=200, seed=0,
                            extra={"psnr": np.array([[10, 20, np.nan], [12, 22, np.nan], [14, 24, np.nan]])})
    assert [r.method for r in rows] == ["a", "b", "c"]
    assert [r.iaca_mean for r in rows] == pytest.approx(s.mean(axis=0).tolist())
    # per image: (3, 1, 2), (3, 1.5, 1.5) [tie], (2, 1, 3)
    assert [r.mean_rank for r in rows] == pytest.approx([8 / 3, 3.5 / 3, 6.5 / 3])
    assert sum(r.mean_rank for r in rows) == pytest.approx(6.0)
    assert rows[0].psnr_mean == pytest.approx(12.0) and rows[2].psnr_mean is None
    for r in rows:
        assert r.iaca_ci_low <= r.iaca_mean <= r.iaca_ci_high and r.n == 3
    with pytest.raises(InputError, match="columns"):
        summarize_scores(s, ["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        summarize_scores([[0.0, np.nan]], ["a", "b"])


# ------------------------------------------------------------------------------------------ pairing
def test_pairing_by_relative_path_and_stem_any_extension(tmp_path) -> None:
    lay = make_layout(tmp_path)
    # a method whose outputs are JPEG in A and TIFF in B still pairs with PNG/BMP inputs
    other = tmp_path / "methods" / "other"
    for ds, names in DATASETS.items():
        for n in names:
            img = load_image(next((lay["low"] / ds).glob(f"{n}.*"))).permute(1, 2, 0).numpy()
            _save(img, other / ds / f"{n}.{'jpg' if ds == 'A' else 'tif'}")
    p = pair_methods([lay["gamma"], other], lay["low"])
    assert p.methods == ["gamma", "other"] and p.datasets == ["A", "B"]
    assert p.images("A") == ["01", "02", "9", "10"]  # natural order (not 10 before 9)
    assert p.problems == []
    assert p.outputs["other"][("B", "2")].name == "2.tif" and p.inputs[("B", "2")].name == "2.bmp"
    assert p.outputs["other"][("A", "10")].parent.name == "A"


def test_flat_layout_is_dataset_all_and_nested_names(tmp_path) -> None:
    pic = make_image(40, 40, seed=1)
    _save(pic, tmp_path / "low" / "x.png")
    _save(pic, tmp_path / "low" / "D" / "sub" / "y.png")
    _save(pic, tmp_path / "m" / "x.jpg")
    _save(pic, tmp_path / "m" / "D" / "sub" / "y.png")
    p = pair_methods([tmp_path / "m"], tmp_path / "low")
    assert sorted(p.inputs) == [("D", "sub/y"), ("all", "x")]
    assert sorted(p.outputs["m"]) == [("D", "sub/y"), ("all", "x")]


def test_symlinked_dataset_folders_are_followed_once(tmp_path) -> None:
    lay = make_layout(tmp_path / "data")
    pick = tmp_path / "pick"
    pick.mkdir()
    (pick / "B").symlink_to(lay["low"] / "B", target_is_directory=True)
    (pick / "B2").symlink_to(pick, target_is_directory=True)  # a loop: must not recurse forever
    p = pair_methods([lay["gamma"]], pick)
    assert [k for k in p.inputs if k[0] == "B"] == [("B", "1"), ("B", "2"), ("B", "3")]
    assert set(p.inputs) == {("B", "1"), ("B", "2"), ("B", "3")}
    # gamma's dataset A has no inputs here: reported as extra outputs, B pairs fully
    assert {(x.kind, x.dataset) for x in p.problems} == {("extra_output", "A")}


def test_missing_extra_and_ambiguous_outputs_are_reported(tmp_path) -> None:
    lay = make_layout(tmp_path)
    (lay["gain"] / "A" / "02.png").unlink()
    _save(make_image(64, 80), lay["gain"] / "A" / "99.png")             # no such input
    _save(make_image(64, 80), lay["gain"] / "C" / "1.png")              # no such dataset
    _save(make_image(64, 80), lay["noisy"] / "B" / "3.jpg")             # second file with stem 3
    p = pair_methods([lay[m] for m in ENHANCE], lay["low"])
    kinds = sorted((x.kind, x.method, x.dataset, x.image) for x in p.problems)
    assert kinds == [("ambiguous", "noisy", "B", "3"), ("extra_output", "gain", "A", "99"),
                     ("extra_output", "gain", "C", "1"), ("missing_output", "gain", "A", "02"),
                     ("missing_output", "noisy", "B", "3")]  # neither of the two files named 3 is used
    amb = next(x for x in p.problems if x.kind == "ambiguous")
    assert "3.jpg and 3.png" in amb.detail and ("B", "3") not in p.outputs["noisy"]
    missing = next(x for x in p.problems if x.kind == "missing_output")
    assert missing.path.endswith("02.png") and "gain" in missing.detail
    assert ("A", "02") not in p.outputs["gain"] and ("A", "02") in p.outputs["gamma"]


def test_pairing_errors_name_the_problem(tmp_path) -> None:
    lay = make_layout(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        pair_methods([lay["gamma"]], tmp_path / "nope")
    with pytest.raises(InputError, match="unique"):
        pair_methods([lay["gamma"], lay["gamma"]], lay["low"])
    # a method folder one level too deep (datasets missing) pairs with nothing
    with pytest.raises(InputError, match="mirror --ref-dir"):
        pair_methods([lay["gamma"] / "A"], lay["low"])
    p = pair_methods([lay["gamma"], lay["gamma"]], lay["low"], names=["g1", "g2"])
    assert p.methods == ["g1", "g2"]
    with pytest.raises(InputError, match="one name per folder"):
        pair_methods([lay["gamma"]], lay["low"], names=["a", "b"])


# ---------------------------------------------------------------------------------------- scoring
def test_scores_equal_iaca_score_of_each_pair(result, layout, model) -> None:
    assert result.methods == list(ENHANCE) and result.datasets == ["A", "B"]
    assert result.problems == [] and len(result.rows) == 3 * 7
    for r in result.rows:
        out, low, gt = load_image(r.output), load_image(r.input), load_image(r.gt)
        assert r.iaca == pytest.approx(iaca_metric.score(out, low, model=model), abs=1e-4)
        assert r.psnr == pytest.approx(float(psnr(out, gt)), abs=1e-3)
        assert r.ssim == pytest.approx(float(ssim(out, gt)), abs=1e-4)
        assert r.error is None and r.rank in (1.0, 1.5, 2.0, 2.5, 3.0)


def test_dataset_summaries_match_the_per_image_rows(result) -> None:
    for ds, names in DATASETS.items():
        s = result.summaries[ds]
        assert s.methods == list(ENHANCE) and s.images == names and s.n_inputs == len(names)
        by = {(r.image, r.method): r for r in result.rows_for(ds)}
        S = np.array([[by[(im, m)].iaca for m in s.methods] for im in names])
        np.testing.assert_allclose(s.scores, S)
        for j, row in enumerate(s.rows):
            assert row.iaca_mean == pytest.approx(S[:, j].mean())
            assert row.iaca_ci_low <= row.iaca_mean <= row.iaca_ci_high
            assert row.mean_rank == pytest.approx(np.mean([by[(im, row.method)].rank for im in names]))
            assert row.psnr_mean == pytest.approx(np.mean([by[(im, row.method)].psnr for im in names]))
        assert sum(r.mean_rank for r in s.rows) == pytest.approx(6.0)
        np.testing.assert_allclose(s.win + s.win.T + s.tie, 1.0)
    # the three enhancements really score differently on the test model
    assert len({round(r.iaca, 5) for r in result.rows}) > 15


def test_missing_output_and_size_mismatch_reported_and_excluded(tmp_path, model) -> None:
    lay = make_layout(tmp_path)
    (lay["gain"] / "A" / "9.png").unlink()
    _save(make_image(48, 48), lay["noisy"] / "B" / "2.png")  # wrong size
    (lay["gamma"] / "B" / "1.png").write_bytes(b"not an image")
    res = compare_methods([lay[m] for m in ENHANCE], lay["low"], model=model, n_boot=100, progress=False,
                          niqe=False)
    kinds = sorted((p.kind, p.method, p.dataset, p.image) for p in res.problems)
    assert kinds == [("missing_output", "gain", "A", "9"), ("size_mismatch", "noisy", "B", "2"),
                     ("unreadable", "gamma", "B", "1")]
    a, b = res.summaries["A"], res.summaries["B"]
    assert a.images == ["01", "02", "10"] and a.n_inputs == 4 and any(": 9" in n for n in a.notes)
    assert b.images == ["3"]
    # still one row per (method, input), with the reason
    assert len(res.rows) == 21
    row = next(r for r in res.rows if r.method == "gain" and r.image == "9")
    assert row.iaca is None and row.error == "missing output" and row.rank is None
    row = next(r for r in res.rows if r.method == "noisy" and r.image == "2")
    assert row.iaca is None and "48x48" in row.error
    lines = res.problem_summary()
    assert any("missing output: gain / A: 1 image(s): 9" in line for line in lines)


def test_missing_and_mismatched_ground_truth(tmp_path, model) -> None:
    lay = make_layout(tmp_path, gt=True)
    (lay["gt"] / "A" / "02.png").unlink()
    _save(make_image(32, 32), lay["gt"] / "A" / "10.png")  # wrong size
    for f in (lay["gt"] / "B").iterdir():
        f.unlink()                                            # no ground truth for dataset B at all
    res = compare_methods([lay["gamma"], lay["gain"]], lay["low"], lay["gt"], model=model, n_boot=50,
                          progress=False, niqe=False, thumb_size=0)
    kinds = sorted((p.kind, p.dataset, p.image) for p in res.problems)
    assert kinds == [("gt_size_mismatch", "A", "10"), ("missing_gt", "A", "02")]
    assert res.has_gt
    a, b = res.summaries["A"], res.summaries["B"]
    assert a.images == DATASETS["A"]  # IACA statistics still use every input
    by = {(r.image, r.method): r for r in res.rows}
    assert by[("02", "gamma")].psnr is None and by[("10", "gamma")].psnr is None and by[("10", "gamma")].iaca is not None
    want = np.mean([by[(im, "gamma")].psnr for im in ("01", "9")])
    assert a.rows[0].psnr_mean == pytest.approx(want)
    assert "PSNR/SSIM over the 2 of 4 inputs that have ground truth" in a.notes
    assert b.rows[0].psnr_mean is None and "PSNR/SSIM over the 0 of 3 inputs that have ground truth" in b.notes
    assert "| - |" in res.to_markdown().split("## B")[1]  # not computed, shown as a dash


def test_method_without_a_dataset_is_left_out_of_that_table(tmp_path, model) -> None:
    lay = make_layout(tmp_path, size=(40, 40))
    for f in (lay["gain"] / "B").iterdir():
        f.unlink()
    res = compare_methods([lay[m] for m in ENHANCE], lay["low"], model=model, n_boot=50, progress=False,
                          niqe=False, thumb_size=0)
    assert res.summaries["B"].methods == ["gamma", "noisy"] and len(res.summaries["B"].images) == 3
    assert any("gain left out" in n for n in res.summaries["B"].notes)
    assert res.summaries["A"].methods == list(ENHANCE)
    assert any("(all 3)" in line for line in res.problem_summary())
    assert res.thumbnails == {}


# where compare imports NIQE from (the module's home; ``iaca_metric.no_reference_metrics`` is a shim to it)
NR_MODULE = "iaca_metric.evaluation.no_reference_metrics"


def test_niqe_column_when_available_and_note_when_not(tmp_path, model, monkeypatch) -> None:
    lay = make_layout(tmp_path, size=(40, 40))
    dirs = [lay["gamma"], lay["gain"]]
    fake = types.ModuleType(NR_MODULE)
    fake.niqe = lambda x: 10.0 - 5.0 * float(x.mean())  # brightness stand-in; gets one (3, H, W) tensor
    monkeypatch.setitem(sys.modules, NR_MODULE, fake)
    res = compare_methods(dirs, lay["low"], model=model, n_boot=50, progress=False)
    assert res.has_niqe and not res.notes
    r = res.rows[0]
    assert r.niqe == pytest.approx(10.0 - 5.0 * float(load_image(r.output).mean()), abs=1e-5)
    assert "NIQE ↓" in res.to_markdown() and "NIQE" in res.to_latex()
    s = res.summaries["A"]
    assert s.best("niqe_mean", higher=False) == {min(s.rows, key=lambda x: x.niqe_mean).method}
    # a NIQE that refuses one image: that row keeps its IACA score, the problem and the table note say so
    calls = []

    def picky(x):
        calls.append(1)
        if len(calls) == 1:
            raise InputError("img is 40x40 pixels but NIQE needs at least one 96x96 patch")
        return 10.0 - 5.0 * x.mean()
    fake.niqe = picky
    res = compare_methods(dirs, lay["low"], model=model, n_boot=50, progress=False)
    first = res.rows[0]
    assert first.niqe is None and first.iaca is not None
    assert [(p.kind, p.method, p.dataset, p.image) for p in res.problems] == [("niqe_failed", "gamma", "A", "01")]
    assert "NIQE of gamma over 3 of 4 inputs" in " ".join(res.summaries["A"].notes)
    assert res.summaries["A"].images == DATASETS["A"]  # still compared on every input
    monkeypatch.setitem(sys.modules, NR_MODULE, None)  # import fails
    res = compare_methods(dirs, lay["low"], model=model, n_boot=50, progress=False)
    assert not res.has_niqe and all(r.niqe is None for r in res.rows)
    assert any("NIQE column left out" in n for n in res.notes)
    assert "NIQE" not in res.to_markdown().split("## A")[1]
    assert "NIQE column left out" in res.to_markdown()


def test_real_niqe_when_the_package_has_it(tmp_path, model) -> None:
    nr = pytest.importorskip("iaca_metric.no_reference_metrics", reason="NIQE module not in this checkout")
    try:
        nr.load_niqe_params()
    except Exception as exc:  # its pristine model is fetched once; offline without a cache it cannot be
        pytest.skip(f"NIQE's pristine model is not available here: {exc}")
    lay = make_layout(tmp_path, size=(128, 128))
    res = compare_methods([lay["gamma"], lay["noisy"]], lay["low"], model=model, n_boot=50, progress=False,
                          thumb_size=0)
    assert res.has_niqe and not res.notes and not res.problems
    for r in res.rows[:4]:
        assert r.niqe == pytest.approx(nr.niqe(load_image(r.output)), rel=1e-6)
    # NIQE sees the added noise: the noisy method's mean NIQE is worse (higher) on both datasets
    for s in res.summaries.values():
        by = {x.method: x for x in s.rows}
        assert by["noisy"].niqe_mean > by["gamma"].niqe_mean


# ---------------------------------------------------------------------------------------- writers
def test_written_tables_parse(result, tmp_path) -> None:
    paths = result.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"tables.md", "tables.tex", "summary.csv", "winrates.csv",
                                               "scores.csv", "scores.jsonl", "problems.csv", "compare.json",
                                               "report.html"}
    # summary CSV round trip at full precision
    with open(paths["summary.csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 3
    for r in rows:
        want = next(x for x in result.summaries[r["dataset"]].rows if x.method == r["method"])
        for k in ("iaca_mean", "iaca_ci_low", "iaca_ci_high", "mean_rank", "psnr_mean", "ssim_mean"):
            assert float(r[k]) == getattr(want, k)
        assert r["niqe_mean"] == "" and int(r["n"]) == want.n
    # win rates CSV: win + tie + loss = 1 and loss(i, j) = win(j, i)
    with open(paths["winrates.csv"], newline="") as fh:
        wr = list(csv.DictReader(fh))
    assert len(wr) == 2 * 3 * 2
    for r in wr:
        assert float(r["win"]) + float(r["tie"]) + float(r["loss"]) == pytest.approx(1.0)
        back = next(x for x in wr if (x["dataset"], x["method"], x["opponent"]) == (r["dataset"], r["opponent"], r["method"]))
        assert float(back["loss"]) == float(r["win"])
    # per-image CSV and JSONL agree with the result
    jl = read_scores(paths["scores.jsonl"])
    with open(paths["scores.csv"], newline="") as fh:
        sc = list(csv.DictReader(fh))
    assert len(jl) == len(sc) == len(result.rows)
    for a, b, r in zip(jl, sc, result.rows):
        assert a["iaca"] == r.iaca and float(b["iaca"]) == r.iaca and a["rank"] == r.rank and a["gt"] == r.gt
    meta = json.loads(paths["compare.json"].read_text())
    assert meta["metadata"]["n_boot"] == 500 and meta["metadata"]["model_arch"] == "efficientnet_lite0"
    assert meta["summaries"]["A"]["n_images"] == 4


def test_latex_has_one_row_per_method_and_best_in_bold(result) -> None:
    tex = result.to_latex()
    tabulars = re.findall(r"\\midrule\n(.*?)\n\\bottomrule", tex, flags=re.S)
    assert len(tabulars) == 2 * 2  # summary + win rates per dataset
    for body in tabulars:
        lines = body.split("\n")
        assert len(lines) == 3 and all(line.endswith("\\\\") for line in lines)
        assert [line.split(" & ")[0] for line in lines] == list(ENHANCE)
    assert tex.count("\\toprule") == tex.count("\\bottomrule") == 4
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 4
    first = tabulars[0].split("\n")
    best = max(result.summaries["A"].rows, key=lambda r: r.iaca_mean)
    line = next(x for x in first if x.startswith(best.method))
    assert f"\\textbf{{{best.iaca_mean:.3f}}}".replace("-", "$-$") in line
    assert sum("\\textbf" in x.split(" & ")[1] for x in first) == 1
    # every summary row has the same number of cells as the header
    header = re.findall(r"\\toprule\n(.*?) \\\\\n\\midrule", tex)[0]
    assert all(x.count(" & ") == header.count(" & ") for x in first)


def test_markdown_tables(result) -> None:
    md = result.to_markdown()
    sec = md.split("## A")[1].split("## B")[0]
    table = [x for x in sec.splitlines() if x.startswith("| ")]
    assert len(table) == 2 * (1 + 3)  # summary and win-rate tables: header + 3 methods each
    assert "PSNR (dB) ↑" in table[0] and "SSIM ↑" in table[0]
    best = max(result.summaries["A"].rows, key=lambda r: r.iaca_mean)
    assert f"| {best.method} | **{best.iaca_mean:.3f}** [" in sec
    s = result.summaries["A"]
    i, j = s.methods.index("gamma"), s.methods.index("noisy")
    row = next(x for x in table[4:] if x.startswith("| gamma "))
    assert row.split(" | ")[j + 1].strip(" |") == f"{100 * s.win[i, j]:.0f}%"


def test_html_report_is_self_contained(result) -> None:
    page = result.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(?:src|href)=\"(?!data:|#)", page)  # only data: URIs and in-page anchors
    assert "http://" not in page and "https://" not in page
    n_thumbs = 7 * (1 + 3)  # every input and every output
    assert page.count('src="data:image/jpeg;base64,') == n_thumbs == len(result.thumbnails)
    # worst-first: per-image rows of A ordered by their lowest score
    sec = page.split('data-dataset="A"')[1].split("</table>")[0]
    order = re.findall(r'<tr data-image="([^"]+)">', sec)
    worst = {im: min(r.iaca for r in result.rows_for("A") if r.image == im) for im in DATASETS["A"]}
    assert order == sorted(DATASETS["A"], key=worst.get)


def test_cli_compare(layout, model, tmp_path, capsys) -> None:
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    rc = main(["compare", str(layout["gamma"]), str(layout["noisy"]), "--ref-dir", str(layout["low"]),
               "--gt-dir", str(layout["gt"]), "--out", str(out), "--model", str(tmp_path / "model"),
               "--n-boot", "200", "--quiet", "--names", "Gamma,Noisy", "--no-niqe"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "## A" in printed.out and "| Gamma |" in printed.out
    assert (out / "report.html").is_file() and (out / "tables.tex").is_file()
    rows = read_scores(out / "scores.jsonl")
    assert {r["method"] for r in rows} == {"Gamma", "Noisy"} and len(rows) == 14
    ref = compare_methods([layout["gamma"], layout["noisy"]], layout["low"], model=model, n_boot=200,
                          progress=False, niqe=False, names=["Gamma", "Noisy"], thumb_size=0)
    assert [r["iaca"] for r in rows] == pytest.approx([r.iaca for r in ref.rows], abs=1e-5)
    # --strict turns a missing output into exit status 1, and stderr names it
    (layout["noisy"] / "B" / "3.png").rename(tmp_path / "moved.png")
    try:
        rc = main(["compare", str(layout["gamma"]), str(layout["noisy"]), "--ref-dir", str(layout["low"]),
                   "--out", str(out), "--model", str(tmp_path / "model"), "--n-boot", "50", "--quiet",
                   "--strict", "--no-html", "--no-niqe"])
    finally:
        (tmp_path / "moved.png").rename(layout["noisy"] / "B" / "3.png")
    assert rc == 1
    err = capsys.readouterr().err
    assert "missing output: noisy / B: 1 image(s): 3" in err
    with open(out / "problems.csv", newline="") as fh:
        probs = list(csv.DictReader(fh))
    assert [(p["kind"], p["method"], p["image"]) for p in probs] == [("missing_output", "noisy", "3")]


# ------------------------------------------------------------------------------ headless Chromium
def _chromium() -> tuple[str | None, str | None, str]:
    """(browser, chromedriver, reason when unavailable): Debian's chromium + chromium-driver."""
    import shutil

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return browser, driver, "selenium is not installed (pip install 'iaca-metric[test]')"
    if not browser or not driver:
        return browser, driver, ("Chromium or chromedriver not found; install them with "
                                 "`apt-get install chromium chromium-driver`")
    return browser, driver, ""


_BROWSER, _DRIVER, _NO_BROWSER = _chromium()
needs_chromium = pytest.mark.skipif(bool(_NO_BROWSER), reason=_NO_BROWSER or "-")


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium driven by chromedriver, with the browser console captured."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _BROWSER
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1500,1100"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=_DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def _console_errors(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _column_order(drv, ds: str) -> list[str]:
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('table.images[data-dataset=\"' + arguments[0] + '\"] tbody tr'))"
        ".map(r => r.getAttribute('data-image'));", ds)


@needs_chromium
def test_report_renders_and_sorts_in_headless_chromium(result, tmp_path, browser) -> None:
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    page.write_text(result.to_html(), encoding="utf-8")
    browser.get(page.as_uri())
    assert browser.title == "Method comparison"
    # the tables render with one row per method and a real size on screen
    for cls, n_rows in (("summary", 3), ("winrate", 3), ("images", None)):
        tables = browser.find_elements(By.CSS_SELECTOR, f"table.{cls}")
        assert len(tables) == 2, cls
        for t in tables:
            assert t.is_displayed() and t.size["height"] > 20 and t.size["width"] > 100
            if n_rows:
                assert len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) == n_rows
    first = browser.find_elements(By.CSS_SELECTOR, "table.summary tbody tr")[0]
    assert first.find_elements(By.TAG_NAME, "td")[0].text == "gamma"
    # every thumbnail decoded (a broken data: URI gives naturalWidth 0) and is laid out
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, "
        "i.getBoundingClientRect().width]);")
    assert len(imgs) == 28
    for complete, w, h, shown in imgs:
        assert complete and (w, h) == (80, 64) and shown > 50  # 80x64 images: never upscaled to 160
    # sorting: first click on a method's header sorts ascending by its score, second descending
    scores = {r.image: r.iaca for r in result.rows_for("A") if r.method == "noisy"}
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, 'table.images[data-dataset="A"] th')
                  if th.text.strip().startswith("noisy"))
    header.click()
    assert _column_order(browser, "A") == sorted(scores, key=scores.get)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert _column_order(browser, "A") == sorted(scores, key=scores.get, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    name = browser.find_elements(By.CSS_SELECTOR, 'table.images[data-dataset="A"] th')[0]
    name.click()
    assert _column_order(browser, "A") == ["01", "02", "9", "10"]  # natural order: 9 before 10
    name.click()
    assert _column_order(browser, "A") == ["10", "9", "02", "01"]
    # B's table is untouched by clicks in A's
    worst_b = {im: min(r.iaca for r in result.rows_for("B") if r.image == im) for im in DATASETS["B"]}
    assert _column_order(browser, "B") == sorted(worst_b, key=worst_b.get)
    browser.save_screenshot(str(tmp_path / "shot.png"))
    with Image.open(tmp_path / "shot.png") as shot:
        arr = np.asarray(shot.convert("RGB"), dtype=np.float64)
    assert arr.shape[0] > 500 and arr.std() > 20  # not a blank page
    assert _console_errors(browser) == []


@needs_chromium
def test_report_with_a_missing_output_sorts_it_last(tmp_path, model, browser) -> None:
    from selenium.webdriver.common.by import By

    lay = make_layout(tmp_path / "data", size=(40, 48))
    (lay["gain"] / "A" / "02.png").unlink()
    res = compare_methods([lay[m] for m in ENHANCE], lay["low"], model=model, n_boot=50, progress=False,
                          niqe=False, thumb_size=48)
    page = tmp_path / "report.html"
    page.write_text(res.to_html(), encoding="utf-8")
    browser.get(page.as_uri())
    cell = browser.find_element(By.CSS_SELECTOR, 'table.images[data-dataset="A"] tr[data-image="02"] td.missing')
    assert cell.text == "missing" and cell.is_displayed()
    assert "1 problem(s)" in browser.find_element(By.CSS_SELECTOR, "details.problems summary").text
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, 'table.images[data-dataset="A"] th')
                  if th.text.strip().startswith("gain"))
    for _ in range(2):  # ascending, then descending: the input without a gain output stays last
        header.click()
        assert _column_order(browser, "A")[-1] == "02"
    assert _console_errors(browser) == []


@needs_chromium
def test_console_error_check_catches_a_broken_page(tmp_path, browser) -> None:
    """Negative control: the console scan used above does see a script error."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>x</title><link rel=icon href='data:,'></head><body>"
                   "<script>undefinedFunction();</script></body></html>")
    browser.get(bad.as_uri())
    errors = _console_errors(browser)
    assert len(errors) == 1 and "undefinedFunction" in errors[0]


# ------------------------------------------------------------------------------ scripts (smoke)
REPO = Path(__file__).resolve().parents[1]


def _load_script(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_example_layout_pairs_completely(tmp_path, model) -> None:
    ex = _load_script(REPO / "examples" / "compare_synthetic.py")
    root = ex.build_layout(tmp_path, size=(48, 64))
    res = compare_methods([root / "methods" / m for m in ex.METHODS], root / "low", model=model, n_boot=50,
                          progress=False, niqe=False, thumb_size=0)
    assert res.problems == [] and res.datasets == sorted(ex.DATASETS)
    assert {ds: len(s.images) for ds, s in res.summaries.items()} == ex.DATASETS
    assert len(res.rows) == sum(ex.DATASETS.values()) * len(ex.METHODS)


def test_real_data_demo_script_on_a_generated_shared_layout(tmp_path, monkeypatch, capsys) -> None:
    """benchmarks/compare_demo.py on a generated stand-in for ../shared/data (same folder names, tiny
    images), without the two networks: links, generation, comparison, and the published method's
    missing LOL dataset reported."""
    demo = _load_script(REPO / "benchmarks" / "compare_demo.py")
    data = tmp_path / "data"
    for d_i, ds in enumerate(demo.DATASETS):
        for i in range(2):
            pic = make_image(40, 48, seed=10 * d_i + i)
            _save((pic * 0.15).astype(np.uint8), data / "lowlight" / ds / f"{i + 1}.{'jpg' if ds == 'DICM' else 'png'}")
            if ds != "LOL_eval15_full":
                _save(pic, data / "enhanced" / "ZeroDCE" / ds / f"{i + 1}.{'jpg' if ds == 'DICM' else 'png'}")
    out = tmp_path / "work"
    monkeypatch.setattr("iaca_metric.api.default_model", lambda device=None: make_model("reference_or_image"))
    assert demo.main(["--data", str(data), "--out", str(out), "--skip-nets", "--no-docs", "--threads", "1"]) == 0
    printed = capsys.readouterr()
    assert "## LOL_eval15_full" in printed.out and "ZeroDCE_published left out" in printed.out
    assert "missing output: ZeroDCE_published / LOL_eval15_full (all 2)" in printed.err
    assert (out / "low" / "DICM").is_symlink() and (out / "report" / "report.html").is_file()
    rows = read_scores(out / "report" / "scores.jsonl")
    assert {r["method"] for r in rows} == {"ZeroDCE_published", *demo.CLASSICAL}
    assert sum(r["iaca"] is not None for r in rows) == 2 * 2 + 6 * len(demo.CLASSICAL)
    with pytest.raises(SystemExit, match="outside the repository"):
        demo.main(["--data", str(data), "--out", str(REPO / "tmp_demo"), "--skip-nets", "--no-docs"])
