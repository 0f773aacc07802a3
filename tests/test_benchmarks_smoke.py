"""Smoke tests of the benchmark scripts: speed.py --quick on the CPU, plots.py on small fabricated results."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "benchmarks" / "speed.py"
PLOTS = ROOT / "benchmarks" / "plots.py"


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return p


def _positive_finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def quick_speed(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed") / "speed_quick.json"
    # one thread: predictable on shared CI machines; the quick profile is 64x64, IACA-Lite only
    p = _run([SPEED, "--quick", "--device", "cpu", "--threads", "1", "--out", out])
    return out, p.stdout


def test_speed_quick_json(quick_speed):
    out, stdout = quick_speed
    d = json.loads(out.read_text())
    for key in ("date", "command", "machine", "device", "weights", "throughput", "loss", "memory", "folder",
                "checks", "skipped", "wall_s"):
        assert key in d, key
    assert d["quick"] is True and d["device"] == "cpu"
    assert "speed.py" in d["command"] and "--quick" in d["command"]
    for key in ("cpu", "cores", "torch", "torch_threads"):
        assert d["machine"][key], key
    assert d["throughput"], "no throughput settings measured"
    for rec in d["throughput"]:
        s = rec["setting"]
        assert {"resolution", "width", "height", "batch", "dtype", "memory_format"} <= set(s)
        assert {"iaca_lite", "backbone_lite", "psnr", "ssim"} <= set(rec["results"])
        for r in rec["results"].values():
            assert _positive_finite(r["images_per_s"])
            assert _positive_finite(r["latency_ms_median"])
            assert r["latency_ms_p90"] >= r["latency_ms_min"] > 0
        assert "iaca_lite/backbone_lite" in rec["ratios"]
        assert all(_positive_finite(v) for v in rec["ratios"].values())
    assert d["loss"] and all(_positive_finite(v) for rec in d["loss"] for v in rec["ratios"].values())
    assert "iaca_loss_lite/backbone_fwd_bwd_lite" in d["loss"][0]["ratios"]
    assert d["memory"] and all(_positive_finite(m["peak_rss_mb"]) for m in d["memory"])
    f = d["folder"]
    assert _positive_finite(f["ratio"]) and _positive_finite(f["cli_images_per_s"])
    assert f["cli_errors"] == [] and f["max_abs_score_diff_cli_vs_model"] < 1e-4  # CLI and model agree
    assert all({"what", "reason"} <= set(s) for s in d["skipped"])
    assert "iaca_lite/backbone_lite" in stdout  # ratios are printed


def _fake_accuracy(path: Path) -> None:
    rng = np.random.default_rng(0)
    groups = [f"scene{i // 4}" for i in range(12)]
    target = rng.random(12).tolist()
    iaca = (np.asarray(target) * 3 + rng.normal(0, 0.3, 12)).tolist()

    def m(srcc: float) -> dict:
        return {"n": 12, "srcc": srcc, "krcc": srcc * 0.8, "plcc": srcc, "plcc_logistic": srcc, "rmse_logistic": 0.2,
                "within_srcc_median": srcc, "within_krcc_median": srcc * 0.8, "within_plcc_median": srcc,
                "groups": 3}

    path.write_text(json.dumps({
        "date": "2025-01-01", "machine": "x86_64 test 2 threads", "command": "python benchmarks/accuracy.py --fake",
        "model": {"arch": "efficientnet_lite0", "source": "fabricated"},
        "datasets": {"fake_test": {"n_images": 12, "n_groups": 3, "metrics": {
            "iaca": m(0.81), "iaca_no_ref": m(0.7), "psnr": m(0.5), "ssim": m(0.55),
            "lpips": {"unavailable": "LPIPS unavailable: no lpips package"}},
            "per_image": {"target": target, "group": groups, "iaca": iaca, "name": [f"{i}.png" for i in range(12)]}}},
        "zerodce_vs_input": {"n": 4, "enhanced_wins": 3, "win_rate": 0.75, "rows": []}}))


def _fake_speed(path: Path) -> None:
    def res(ips: float, batch: int) -> dict:
        return {"images_per_s": ips, "latency_ms_median": 1e3 * batch / ips, "latency_ms_p90": 1.1e3 * batch / ips,
                "latency_ms_min": 0.9e3 * batch / ips}

    recs = []
    for (w, h), base in (((256, 256), 40.0), ((600, 400), 12.0), ((1920, 1080), 1.5)):
        recs.append({"setting": {"resolution": f"{w}x{h}", "width": w, "height": h, "batch": 1, "dtype": "fp32",
                                 "memory_format": "contiguous"}, "skipped": {"iaca_resnext": "CPU budget"}, "reps": 5,
                     "results": {"iaca_lite": res(base * 0.9, 1), "backbone_lite": res(base, 1),
                                 "psnr": res(base * 50, 1), "ssim": res(base * 5, 1)},
                     "ratios": {"iaca_lite/backbone_lite": 0.9, "psnr/iaca_lite": 55.0, "ssim/iaca_lite": 5.5}})
    s = {"resolution": "256x256", "width": 256, "height": 256, "batch": 8, "dtype": "fp32",
         "memory_format": "contiguous"}
    path.write_text(json.dumps({
        "benchmark": "speed", "date": "2025-01-01T00:00:00+00:00", "command": "python benchmarks/speed.py --fake",
        "device": "cpu", "quick": False, "weights": "random",
        "machine": {"cpu": "Fake CPU", "cores": 2, "torch_threads": 2, "torch": "2.x", "gpu": None},
        "throughput": recs,
        "loss": [{"setting": s, "skipped": {}, "reps": 3,
                  "results": {"iaca_loss_lite": res(20.0, 8), "backbone_fwd_bwd_lite": res(22.0, 8)},
                  "ratios": {"iaca_loss_lite/backbone_fwd_bwd_lite": 0.91}}],
        "memory": [{"contender": "iaca_lite", "setting": recs[0]["setting"], "peak_rss_mb": 300.0,
                    "baseline_rss_mb": 280.0, "call_rss_mb": 20.0}],
        "folder": {"n_images": 8, "resolution": "600x400", "with_ref": True, "batch": 8, "workers": 2,
                   "cli_images_per_s": 10.0, "model_images_per_s": 10.5, "ratio": 0.95, "target": 0.9, "pass": True},
        "checks": [{"name": "IACA-Lite 3840x2160 CPU peak RSS", "value_mb": 1500.0, "target": "< 4096 MB",
                    "pass": True}],
        "skipped": [{"what": "throughput 3840x2160 b32 fp32 contiguous", "reason": "CPU budget"}],
        "wall_s": 12.0}))


def _run_plots(results: Path, tmp_path: Path, *extra) -> subprocess.CompletedProcess:
    return _run([PLOTS, "--results", results, "--plots", tmp_path / "plots", "--doc", tmp_path / "benchmarks.md",
                 *extra])


def test_plots_from_fabricated_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _fake_accuracy(results / "accuracy_fake.json")
    _fake_speed(results / "speed_cpu.json")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# My benchmarks\n\nhand-written intro\n\n<!-- speed-table:start -->\nSTALE TABLE\n"
                   "<!-- speed-table:end -->\n\nhand-written outro\n")
    _run_plots(results, tmp_path)
    text = doc.read_text()
    assert "hand-written intro" in text and "hand-written outro" in text and "STALE TABLE" not in text
    for marker in ("accuracy-table", "speed-table", "gpu-check", "plots"):
        assert text.count(f"<!-- {marker}:start -->") == 1 and text.count(f"<!-- {marker}:end -->") == 1
    acc = text.split("<!-- accuracy-table:start -->")[1].split("<!-- accuracy-table:end -->")[0]
    assert "| IACA (with low-light input) | 0.810 |" in acc and "LPIPS" in acc and "fake_test" in acc
    assert "python benchmarks/accuracy.py --fake" in acc and "3/4" in acc  # command and Zero-DCE line from the JSON
    spd = text.split("<!-- speed-table:start -->")[1].split("<!-- speed-table:end -->")[0]
    assert "Fake CPU" in spd and "python benchmarks/speed.py --fake" in spd and "600x400" in spd
    assert "0.900" in spd and "0.910" in spd and "0.950" in spd  # inference, loss and folder ratios
    assert "No GPU check results" in text  # missing JSON -> a note, not a failure
    pytest.importorskip("matplotlib")
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert "accuracy_fake_fake_test_srcc.png" in pngs
    assert "accuracy_fake_fake_test_scatter.png" in pngs
    assert "throughput_speed_cpu.png" in pngs
    for p in (tmp_path / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
        assert f"plots/{p.name}" in text


def test_plots_missing_and_broken_inputs(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "speed_cpu.json").write_text("{not json")
    _run_plots(results, tmp_path)  # creates the doc, does not crash
    text = (tmp_path / "benchmarks.md").read_text()
    assert "No accuracy results" in text and "No speed results" in text and "could not read" in text


def test_plots_on_quick_speed_output(quick_speed, tmp_path):
    out, _ = quick_speed
    # quick runs are left out of the default glob, but used when named explicitly
    _run_plots(tmp_path / "none", tmp_path, "--speed", out)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "quick smoke run" in text and "64x64" in text
