"""Packaging: the wheel carries the embedded default model and the committed split lists, and the core
dependencies are exactly the five the package promises."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_core_dependencies_are_exactly_five():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    names = sorted(r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in reqs)
    assert names == ["huggingface_hub", "numpy", "pillow", "safetensors", "torch"]


@pytest.mark.skipif(not (ROOT / "weights" / "iaca-lite-sice" / "model.safetensors").is_file(),
                    reason="the embedded default model has not been trained into weights/iaca-lite-sice yet")
def test_wheel_contains_default_model_and_splits(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("iaca_metric-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("model.safetensors", "config.json", "README.md"):
        assert f"iaca_metric/_weights/iaca-lite-sice/{f}" in names
    for split in ("train", "val", "test"):
        assert f"iaca_metric/training/splits/sice_{split}.txt" in names
    assert not any(n.endswith((".png", ".jpg")) for n in names)  # no images ever ship
    assert "iaca_metric/py.typed" in names  # PEP 561: type checkers use the package's hints
    for mod in ("_engine", "_config", "evaluation/reference_metrics", "evaluation/no_reference_metrics",
                "research/demo", "research/zero_dce",  # the layout, and the shims of the documented old paths:
                "reference_metrics", "no_reference_metrics", "zero_dce"):
        assert f"iaca_metric/{mod}.py" in names


# (old public path, module's home): the old path must stay the *same module object*, so a monkeypatch
# or attribute set through either name is seen through the other
MOVED = [("iaca_metric.reference_metrics", "iaca_metric.evaluation.reference_metrics"),
         ("iaca_metric.no_reference_metrics", "iaca_metric.evaluation.no_reference_metrics"),
         ("iaca_metric.baselines", "iaca_metric.evaluation.baselines"),
         ("iaca_metric.correlation", "iaca_metric.evaluation.correlation"),
         ("iaca_metric.zero_dce", "iaca_metric.research.zero_dce"),
         ("iaca_metric.demo", "iaca_metric.research.demo")]


def test_old_module_paths_are_the_moved_modules():
    # A fresh interpreter, old paths imported first (in this process earlier tests may already have
    # imported the new ones, which would hide a shim that only works in one order).
    code = f"""
import importlib, os, sys
from pathlib import Path
os.environ.pop("IACA_ZERO_DCE_OFFICIAL", None)
from iaca_metric.zero_dce import load_official_zero_dce, official_zero_dce_path  # used by training/benchmarks
from iaca_metric.no_reference_metrics import niqe, brisque
import iaca_metric.zero_dce
for old, new in {MOVED!r}:
    a = importlib.import_module(old)
    b = importlib.import_module(new)
    assert a is b and sys.modules[old] is b, (old, a, b)
    assert b.__name__ == new and b.__file__.endswith(new.split(".", 1)[1].replace(".", os.sep) + ".py"), b.__file__
import iaca_metric.research.zero_dce as z
assert load_official_zero_dce is z.load_official_zero_dce and niqe.__module__ == "iaca_metric.evaluation.no_reference_metrics"
iaca_metric.zero_dce._probe = 1  # set through the old name, seen through the new one
assert z._probe == 1
# the default location of the official Zero-DCE weights did not move with the module: ../shared/... of the repo
root = Path(importlib.import_module("iaca_metric").__file__).resolve().parents[1]
assert official_zero_dce_path() == root.parent / "shared" / "data" / "weights" / "zero_dce_official_Epoch99.pth", \
    official_zero_dce_path()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _ci_lines() -> list[str]:
    return (ROOT / ".ci" / "run").read_text().splitlines()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    cmd = readme[readme.index("Install the test extras and run the whole suite:") + 3]
    assert cmd.endswith("python -m pytest -q tests"), cmd
    code = [ln for ln in _ci_lines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert code[-1] == cmd  # verbatim, and the last thing CI does (its exit status is CI's)


@pytest.mark.parametrize("has_browser,apt_ok", [(True, True), (False, True), (False, False)])
def test_ci_chromium_step_is_guarded_and_best_effort(tmp_path, has_browser, apt_ok):
    # The step as .ci/run has it, run under the script's own `set -euo pipefail` with stand-ins on PATH:
    # nothing is installed when both tools are there; a failing apt-get must not stop CI.
    lines = _ci_lines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("{ command -v chromium"))
    stop = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    step = "\n".join(lines[start:stop + 1])
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "apt.log"
    tools = {"apt-get": f'echo "$*" >> {log}\nexit {0 if apt_ok else 100}\n'}
    if has_browser:
        tools.update({"chromium": "exit 0\n", "chromedriver": "exit 0\n"})
    for name, body in tools.items():
        (bin_ / name).write_text("#!/bin/sh\n" + body)
        (bin_ / name).chmod(0o755)
    bash = shutil.which("bash")
    out = subprocess.run([bash, "-c", "set -euo pipefail\n" + step + "\necho reached-the-tests"],
                         capture_output=True, text=True, timeout=60, env={"PATH": str(bin_)})
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "reached-the-tests", (out.stdout, out.stderr)
    calls = log.read_text().splitlines() if log.exists() else []
    if has_browser:
        assert calls == []
    elif apt_ok:
        assert calls == ["update -q", "install -y -q chromium chromium-driver"]
        assert "will skip" not in out.stdout
    else:
        assert calls == ["update -q"] and "headless-browser tests in tests/test_compare.py will skip" in out.stdout
