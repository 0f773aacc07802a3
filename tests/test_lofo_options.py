"""benchmarks/lofo.py's --shipped-recipe: it takes the recipe from reproduce.TRAIN_ARGS and refuses
recipe flags beside it (no training here: argument handling only)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import lofo  # noqa: E402

from iaca_metric.training.reproduce import TRAIN_ARGS  # noqa: E402


def test_shipped_recipe_reads_train_args():
    args = argparse.Namespace(freeze="stride16", epochs=6, bf16_exact_trunk=False)
    lofo._use_shipped_recipe(args)
    assert args.train_args_list == TRAIN_ARGS
    assert args.freeze == TRAIN_ARGS[TRAIN_ARGS.index("--freeze") + 1]
    assert args.epochs == int(TRAIN_ARGS[TRAIN_ARGS.index("--epochs") + 1])
    assert args.bf16_exact_trunk is ("--bf16-exact-trunk" in TRAIN_ARGS)


def test_shipped_recipe_passes_train_args_to_training(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(lofo.T, "main", lambda argv: seen.append(list(argv)))
    args = argparse.Namespace(data=tmp_path / "sice", cache=tmp_path / "feat", threads=1)
    lofo._use_shipped_recipe(args)
    lofo._train(args, tmp_path / "run", "fail_cast")
    assert seen == [["--data", str(tmp_path / "sice"), "--run", str(tmp_path / "run"), "--cache",
                     str(tmp_path / "feat"), "--threads", "1", *TRAIN_ARGS, "--exclude-families", "fail_cast"]]


@pytest.mark.parametrize("flag", [["--seed", "3"], ["--epochs", "2"], ["--max-candidates", "5"],
                                  ["--bf16-exact-trunk"], ["--train-args", "--ema 0.9"]])
def test_shipped_recipe_refuses_recipe_flags(tmp_path, flag):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lofo.py"), "--data", str(tmp_path), "--cache",
                        str(tmp_path), "--shipped-recipe", *flag], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "--shipped-recipe sets the recipe itself; drop " + flag[0] in p.stderr
