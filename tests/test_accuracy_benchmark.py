"""benchmarks/accuracy.py end to end on a small generated dataset in the SQUARE-LOL layout."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iaca_metric import IACAMetric
from iaca_metric.correlation import kendall, spearman, summarize

from synthetic_data import write_squarelol_like

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("accuracy_bench", ROOT / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kendall_and_summary_numbers():
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    s = summarize([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], groups=["a"] * 3 + ["b"] * 3, linear_map=(2.0, 1.0))
    assert s["srcc"] == pytest.approx(1) and s["within_srcc_median"] == pytest.approx(1)
    assert s["rmse_linear_fit"] == pytest.approx(0, abs=1e-9)
    assert s["rmse_release_map"] == pytest.approx(math.sqrt(np.mean((np.arange(1, 7) + 1.0) ** 2)))
    assert s["plcc_logistic"] == pytest.approx(1, abs=1e-3)


def test_accuracy_benchmark_end_to_end(tmp_path, capsys):
    data = write_squarelol_like(tmp_path / "sq", scenes=3, size=192)  # >= 176 px so MS-SSIM is defined
    torch.manual_seed(0)
    model = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image")
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "acc.json"
    bench = _load_benchmark()
    assert bench.main(["--model", str(tmp_path / "model"), "--squarelol", str(data), "--squarelol-split", "all",
                       "--out", str(out), "--threads", "1"]) == 0
    report = json.loads(out.read_text())
    # the model entry says which weights were scored, without in-process bookkeeping (tensor ids)
    assert report["model"]["arch"] == "efficientnet_lite0"
    assert not [k for k in report["model"] if k.startswith("_")], sorted(report["model"])
    res = report["datasets"]["squarelol_all"]
    assert res["n_images"] == 15 and res["n_groups"] == 3
    m = res["metrics"]
    for name in ("iaca", "iaca_no_ref", "psnr", "ssim", "ms_ssim", "brightness", "entropy", "colourfulness",
                 "contrast", "loe"):
        for key in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic", "within_srcc_median"):
            assert np.isfinite(m[name][key]), (name, key)
    assert "plcc_release_map" in m["iaca"] and "plcc_release_map" not in m["psnr"]
    for name in ("niqe", "brisque"):  # negated NIQE/BRISQUE: scored, or unavailable with the reason
        assert ("unavailable" in m[name] and name.upper() in m[name]["unavailable"]) or \
            np.isfinite(m[name]["within_srcc_median"]), (name, m[name])
    # the generated candidates improve with the score: full-reference PSNR must rank them perfectly
    assert m["psnr"]["within_srcc_median"] == pytest.approx(1.0)
    # the numbers in the report are the statistics of the per-image scores it also stores
    per = res["per_image"]
    assert m["psnr"]["srcc"] == pytest.approx(spearman(per["psnr"], per["target"]))
    # LPIPS cannot load its backbone here: reported as unavailable with the reason, never replaced
    assert ("unavailable" in m["lpips"]) or np.isfinite(m["lpips"]["srcc"])
    printed = capsys.readouterr().out
    assert "within SRCC" in printed and "best no-reference baseline" in printed


def test_zerodce_check_splits_by_input_brightness(tmp_path: Path) -> None:
    """zerodce_check pairs enhanced/ZeroDCE/<set>/<name> with lowlight/<set>/<name>, scores both with the
    low-light input as ref, and reports the win rate for inputs darker and brighter than IACA-Lite's
    training inputs (mean luma DARK_INPUT_LUMA)."""
    from PIL import Image

    bench = _load_benchmark()
    rng = np.random.default_rng(0)
    levels = {"DICM": [0.05, 0.1, 0.5], "LIME": [0.08]}
    for sub, lv in levels.items():
        for d in ("lowlight", "enhanced/ZeroDCE"):
            (tmp_path / d / sub).mkdir(parents=True)
        for i, level in enumerate(lv):
            low = np.clip(level + 0.02 * rng.standard_normal((48, 64, 3)), 0, 1)
            Image.fromarray((low * 255).round().astype(np.uint8)).save(tmp_path / "lowlight" / sub / f"{i}.png")
            enh = np.clip(low ** 0.5, 0, 1)
            Image.fromarray((enh * 255).round().astype(np.uint8)).save(tmp_path / "enhanced/ZeroDCE" / sub / f"{i}.png")
    # An enhanced image without its input is skipped.
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "enhanced/ZeroDCE/LIME/orphan.png")
    torch.manual_seed(0)
    model = IACAMetric(arch="efficientnet_lite0", illumination="reference_or_image").eval()
    res = bench.zerodce_check(tmp_path, model)
    assert res["n"] == 4 and len(res["rows"]) == 4
    lum = {(r["set"], r["name"]): r["input_mean_luma"] for r in res["rows"]}
    assert lum[("DICM", "2.png")] == pytest.approx(0.5, abs=0.01) and lum[("DICM", "0.png")] < 0.06
    split = res["by_input_luma"]
    dark, bright = split[f"input_mean_luma_below_{bench.DARK_INPUT_LUMA}"], \
        split[f"input_mean_luma_at_least_{bench.DARK_INPUT_LUMA}"]
    assert (dark["n"], bright["n"]) == (3, 1)
    assert dark["enhanced_wins"] + bright["enhanced_wins"] == res["enhanced_wins"] == sum(
        r["enhanced"] > r["input"] for r in res["rows"])


def test_baseline_cache_reuses_values_of_unchanged_files_only(tmp_path: Path) -> None:
    bench = _load_benchmark()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"first image bytes")
    b.write_bytes(b"first image bytes")  # same content, other name: same key
    calls = []

    def compute(v: float):
        return lambda: calls.append(v) or v

    cache = bench.BaselineCache(tmp_path / "nr.jsonl")
    assert cache.get("niqe", a, compute(3.5)) == 3.5
    assert cache.get("niqe", b, compute(9.0)) == 3.5 and calls == [3.5]
    assert cache.get("brisque", a, compute(7.0)) == 7.0  # another metric is another entry
    again = bench.BaselineCache(tmp_path / "nr.jsonl")  # persisted
    assert again.get("niqe", a, compute(1.0)) == 3.5 and calls == [3.5, 7.0]
    a.write_bytes(b"changed bytes")
    assert again.get("niqe", a, compute(4.25)) == 4.25  # a changed file is recomputed
    assert len((tmp_path / "nr.jsonl").read_text().splitlines()) == 3
    assert bench.BaselineCache(None).get("niqe", a, compute(2.0)) == 2.0  # no file: always computed


def test_network_output_cache_is_exact_and_keyed_by_content(tmp_path: Path) -> None:
    """The method-preference check's cache of the two networks' outputs: stored as 8-bit values (what is
    scored), computed once per key, reloaded from disk unchanged, and keyed by the bytes of the photo
    and of the weights, so a changed photo or weight file is recomputed."""
    bench = _load_benchmark()
    photo, w1, w2 = tmp_path / "set" / "p.png", tmp_path / "w1", tmp_path / "w2"
    photo.parent.mkdir()
    for f, b in ((photo, b"photo"), (w1, b"zero-dce"), (w2, b"self-sup")):
        f.write_bytes(b)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 8, 12, generator=g), torch.rand(1, 3, 8, 12, generator=g)
    calls = []

    def compute():
        calls.append(1)
        return a, b

    path = tmp_path / "outs.pt"
    cache = bench.NetworkOutputCache(path)
    key = cache.key(photo, (w1, w2), 800)
    got_a, got_b = cache.get(key, compute)
    assert torch.equal(got_a, torch.round(a * 255) / 255) and torch.equal(got_b, torch.round(b * 255) / 255)
    cache.save()
    again = bench.NetworkOutputCache(path)
    a2, b2 = again.get(key, compute)
    assert len(calls) == 1 and torch.equal(a2, got_a) and torch.equal(b2, got_b)
    w2.write_bytes(b"retrained")
    assert again.key(photo, (w1, w2), 800) != key
    assert cache.key(photo, (w1, w1), 800) != key
    assert cache.key(photo, (w1, w2), 600) != cache.key(photo, (w1, w2), 800)
