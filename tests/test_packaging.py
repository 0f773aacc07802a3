"""Packaging: the wheel carries the embedded default model and the committed split lists, and the core
dependencies are exactly the five the package promises."""
from __future__ import annotations

import configparser
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
    for mod in ("_engine", "_config", "evaluation/reference_metrics", "research/demo",
                "reference_metrics", "zero_dce"):  # the layout, and the shims of the documented old paths
        assert f"iaca_metric/{mod}.py" in names
