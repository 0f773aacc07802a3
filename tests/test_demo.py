"""Tests for iaca_metric.demo: the low-light sensor simulation (numerically) and the full demo run.

simulate_low_light: sRGB -> linear, exposure cut, Poisson shot noise on ``full_well`` electrons at
white, Gaussian read noise, back to 8-bit sRGB. Mapping the uint8 output back to linear electrons
must give mean = exposure * full_well * linear(input) and variance = mean + read_noise**2 (Poisson:
variance equal to the mean), which the tests check on flat patches.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
import iaca_metric.model
from iaca_metric.demo import (DEMO_METHODS, DEMO_PHOTOS, SHEET, _photo, contact_sheet, interpret, run_demo,
                              simulate_low_light)
from iaca_metric.training.night import srgb_to_linear as _srgb_to_linear

from iaca_test_models import make_image, make_model

torch.set_num_threads(1)

EMBEDDED = Path(__file__).resolve().parents[1] / "weights" / "iaca-lite-sice" / "model.safetensors"
LEVELS = (0.3, 0.45, 0.6, 0.8, 1.0)  # flat sRGB grey levels (darker ones clip at 0 after read noise)


def _electrons(out: np.ndarray, full_well: float) -> np.ndarray:
    return _srgb_to_linear(out.astype(np.float64) / 255.0) * full_well


def test_output_uint8_same_shape_and_much_darker() -> None:
    img = make_image(80, 96, seed=3).astype(np.float64) / 255
    out = simulate_low_light(img, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.mean() / 255 < 0.4 * img.mean()  # much darker in sRGB
    # in linear light the mean is the exposure fraction (6%) of the input's
    lin_ratio = _srgb_to_linear(out / 255.0).mean() / _srgb_to_linear(img).mean()
    assert lin_ratio == pytest.approx(0.06, rel=0.05)
    # brighter exposure -> brighter output; same rng seed -> identical output
    brighter = simulate_low_light(img, np.random.default_rng(0), exposure=0.2)
    assert brighter.mean() > out.mean() * 1.5
    assert np.array_equal(simulate_low_light(img, np.random.default_rng(0)), out)
    assert not np.array_equal(simulate_low_light(img, np.random.default_rng(1)), out)


@pytest.mark.parametrize("full_well", [4000.0, 16000.0])
def test_shot_noise_variance_grows_with_signal(full_well: float) -> None:
    rng = np.random.default_rng(0)
    means, variances = [], []
    for lv in LEVELS:
        out = simulate_low_light(np.full((100, 100, 3), lv), rng, full_well=full_well)
        e = _electrons(out, full_well)
        expected_mean = float(_srgb_to_linear(np.array(lv))) * 0.06 * full_well
        assert e.mean() == pytest.approx(expected_mean, rel=0.01, abs=0.5), lv
        means.append(e.mean())
        variances.append(e.var())
    means, variances = np.array(means), np.array(variances)
    assert np.all(np.diff(variances) > 0)  # noise variance grows with the signal
    fano = (variances - 3.0 ** 2) / means  # Poisson: (var - read_noise^2) / mean == 1
    np.testing.assert_allclose(fano, 1.0, atol=0.1)
    # relative noise falls with the signal (std/mean ~ 1/sqrt(mean)), unlike a constant-noise model
    rel = np.sqrt(variances) / means
    assert np.all(np.diff(rel) < 0)


def test_read_noise_adds_constant_variance() -> None:
    # Gaussian read noise is additive in electrons: raising it from 0 to 6 e- adds 6**2 = 36 e-^2 of
    # variance on top of the shot noise, at the same signal level.
    rng = np.random.default_rng(1)
    flat = np.full((100, 100, 3), 0.5)
    e0 = _electrons(simulate_low_light(flat, rng, read_noise=0.0), 4000.0)
    e6 = _electrons(simulate_low_light(flat, rng, read_noise=6.0), 4000.0)
    assert e0.var() / e0.mean() == pytest.approx(1.0, abs=0.1)  # pure Poisson
    assert e6.var() - e0.var() == pytest.approx(36.0, rel=0.3)


# ---------------------------------------------------------------------------------------- full demo
def _check_demo_outputs(out: Path, rows: list[dict]) -> None:
    n_cands = len(DEMO_METHODS) + 1
    assert len(rows) == len(DEMO_PHOTOS) * n_cands
    with open(out / "scores.csv", newline="", encoding="utf-8") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == len(rows)
    assert list(csv_rows[0]) == ["photo", "method", "score", "rank"]
    for p in DEMO_PHOTOS:
        mine = [r for r in csv_rows if r["photo"] == p]
        assert [int(r["rank"]) for r in mine] == list(range(1, n_cands + 1))
        assert {r["method"] for r in mine} == {"low-light input", *DEMO_METHODS}
        scores = [float(r["score"]) for r in mine]
        assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))
    row_h = SHEET["tile_h"] + SHEET["caption_h"] + SHEET["gap"]
    with Image.open(out / "contact_sheet.png") as sheet:
        sheet.load()
        assert sheet.mode == "RGB"
        assert sheet.size == (SHEET["title_w"] + n_cands * (SHEET["tile_w"] + SHEET["gap"]),
                              SHEET["header_h"] + len(DEMO_PHOTOS) * row_h)
        arr = np.asarray(sheet, dtype=np.int16)
    # captions: red exactly under the deliberate failures, in the rank order of scores.csv
    for p_i, p in enumerate(DEMO_PHOTOS):
        y0 = SHEET["header_h"] + p_i * row_h
        title = arr[y0:y0 + SHEET["tile_h"], :SHEET["title_w"]]
        assert (title.max(axis=2) < 80).sum() > 100  # the row title is drawn (dark text)
        for r in (r for r in csv_rows if r["photo"] == p):
            x0 = SHEET["title_w"] + (int(r["rank"]) - 1) * (SHEET["tile_w"] + SHEET["gap"])
            cap = arr[y0 + SHEET["tile_h"]:y0 + SHEET["tile_h"] + SHEET["caption_h"], x0:x0 + SHEET["tile_w"]]
            red = ((cap[..., 0] > 150) & (cap[..., 1] < 80) & (cap[..., 2] < 80)).sum()
            inked = (cap.min(axis=2) < 200).sum()
            assert inked > 150, (p, r["method"])  # caption text present (black, red or grey)
            assert (red > 50) == r["method"].startswith("fail_"), (p, r["method"], red)
    text = (out / "interpretation.txt").read_text()
    assert text.startswith("What this shows") and "What to conclude" in text
    assert text == "\n".join(interpret(rows)) + "\n"


def test_run_demo_with_test_model(tmp_path, monkeypatch, capsys) -> None:
    """The whole demo at size=64 on a seeded test model (run_demo builds its model with IACAMetric(),
    looked up in iaca_metric.model at call time, so the bare constructor is swapped for a factory)."""
    pytest.importorskip("skimage")
    model = make_model("reference_or_image")
    monkeypatch.setattr(iaca_metric.model, "IACAMetric", lambda: model)
    rows = run_demo(out_dir=tmp_path / "demo", size=64)
    _check_demo_outputs(tmp_path / "demo", rows)
    printed = capsys.readouterr().out
    assert "efficientnet_lite0" in printed and "wrote" in printed
    assert "What this shows" in printed and "What to conclude" in printed
    # the low-light input's score is the score of the simulated capture against itself
    photo = DEMO_PHOTOS[0]
    low = simulate_low_light(_photo(photo, 64), np.random.default_rng(0)).astype(np.float32) / 255
    expected = iaca_metric.score(low, low, model=model)
    (got,) = [r["score"] for r in rows if r["photo"] == photo and r["method"] == "low-light input"]
    assert got == pytest.approx(expected, abs=1e-5)
    # distinct methods get distinct scores (the test model is input-dependent)
    assert len({r["score"] for r in rows if r["photo"] == photo}) == len(DEMO_METHODS) + 1


@pytest.mark.skipif(not EMBEDDED.exists(), reason="embedded default model weights/iaca-lite-sice/"
                    "model.safetensors not present yet (it is being trained): the real-weights demo "
                    "run is skipped")
def test_run_demo_with_embedded_model(tmp_path) -> None:
    pytest.importorskip("skimage")
    rows = run_demo(out_dir=tmp_path / "demo", size=64)
    _check_demo_outputs(tmp_path / "demo", rows)


# ------------------------------------------------------------------------------------ interpretation
def _rows(ranking: dict[str, list[str]], photos: list[str]) -> list[dict]:
    rows = []
    for p in photos:
        for rank, m in enumerate(ranking[p], 1):
            rows.append({"photo": p, "method": m, "score": -float(rank), "rank": rank})
    return rows


def test_interpret_counts_where_failures_landed() -> None:
    order = ["gamma_3", "fail_noise_amplified", "clahe", "low-light input", "fail_over_enhance"]
    rows = _rows({"p1": order, "p2": ["clahe", "gamma_3", "fail_noise_amplified", "fail_over_enhance",
                                      "low-light input"]}, ["p1", "p2"])
    lines = interpret(rows)
    assert lines[0] == "What this shows (ranks out of 5 per photo, 1 = best):"
    noise = next(x for x in lines if x.startswith("- fail_noise_amplified: "))
    assert "ranked 2, 3 on p1, p2 (in the top 2 on 1 of 2 photos)" in noise
    assert "ranked 5, 4 on p1, p2 (in the top 2 on 0 of 2 photos)" in next(
        x for x in lines if x.startswith("- fail_over_enhance: "))
    # clean vs failures: p1: gamma beats both, clahe beats over only (3 of 4); p2: 4 of 4 -> 7 of 8
    assert any("beat the deliberate failures in 7 of 8 same-photo comparisons (88%)" in x for x in lines)
    assert any("above the unenhanced low-light input in 4 of 4 cases (100%)" in x for x in lines)
    # noise failure in the top 2 on half of the photos: the model card's known weakness is named
    assert any(x.startswith("- fail_noise_amplified lands in the top 2") and "weak spot" in x for x in lines)
    assert "- In short: on these photos the score separates the clean enhancements from the failures." in lines
    assert lines[-1].startswith("What to conclude")
    assert not any("outscores most clean enhancements" in x for x in lines)


def test_interpret_says_when_the_input_outscores_the_clean_enhancements() -> None:
    # the input above clahe and gamma_3 on p1, above clahe only on p2: clean above the input in 1 of 4
    rows = _rows({"p1": ["low-light input", "clahe", "gamma_3", "fail_over_enhance"],
                  "p2": ["gamma_3", "low-light input", "clahe", "fail_over_enhance"]}, ["p1", "p2"])
    lines = interpret(rows)
    assert any("above the unenhanced low-light input in 1 of 4 cases (25%)" in x for x in lines)
    note = next(x for x in lines if x.startswith("- The unenhanced input outscores most clean enhancements"))
    assert "charges darkness less" in note and "92 of 101" in note
    # exactly half is not "most": no note
    rows = _rows({"p1": ["low-light input", "clahe", "gamma_3"], "p2": ["gamma_3", "clahe", "low-light input"]},
                 ["p1", "p2"])
    assert not any("outscores most" in x for x in interpret(rows))


def test_interpret_when_failures_rank_low() -> None:
    rows = _rows({"p": ["clahe", "gamma_3", "low-light input", "fail_colour_cast", "fail_over_enhance"]}, ["p"])
    lines = interpret(rows)
    assert any("beat the deliberate failures in 4 of 4" in x for x in lines)
    assert any("Every deliberate failure ranks below the top 2" in x for x in lines)
    assert not any("lands in the top" in x for x in lines)
    rows = _rows({"p": ["fail_colour_cast", "clahe", "fail_over_enhance", "gamma_3", "low-light input"]}, ["p"])
    lines = interpret(rows)  # clahe beats fail_over_enhance, gamma_3 beats neither: 1 of 4
    assert any("beat the deliberate failures in 1 of 4" in x for x in lines)
    assert "- In short: on these photos the score does not separate the clean enhancements from the failures." in lines


def test_contact_sheet_long_names_stay_inside_their_tile(tmp_path) -> None:
    img = np.full((60, 90, 3), 0.5, dtype=np.float32)
    long = "a_very_long_method_name_that_would_overflow_its_tile"
    contact_sheet([[(long, 0.5, img), ("fail_x", -0.25, img)]], ["photo"], tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.int16)
    y = SHEET["header_h"] + SHEET["tile_h"]
    first_gap = arr[y:y + SHEET["caption_h"], SHEET["title_w"] + SHEET["tile_w"]:SHEET["title_w"] + SHEET["tile_w"] + SHEET["gap"]]
    assert first_gap.min() >= 250  # nothing drawn in the gap between the first and second tile
    # small images are scaled up to fill the tile box (90x60 -> 220 wide or 165 high)
    tile = arr[SHEET["header_h"]:y, SHEET["title_w"]:SHEET["title_w"] + SHEET["tile_w"]]
    grey = (np.abs(tile - 128) <= 2).all(axis=2)
    assert grey.any(axis=0).sum() == SHEET["tile_w"] or grey.any(axis=1).sum() == SHEET["tile_h"]
