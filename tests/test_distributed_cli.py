"""`iaca-metric score` under torchrun (2 CPU ranks, gloo on 127.0.0.1) equals a single-process run:
one CSV, every file exactly once, the same order, the same scores, exit status 1 for a corrupt file
in both, and no partial files left behind."""
from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

TESTS = Path(__file__).resolve().parent
from iaca_test_models import make_image, make_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread is fastest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo on the loopback interface
    return env


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_cli")
    imgs = root / "imgs"
    imgs.mkdir()
    sizes = [(48, 64), (64, 40), (48, 64), (40, 40), (64, 64), (48, 64)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(make_image(h, w, seed=i)).save(imgs / f"img{i}.png")
    (imgs / "img3_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")  # 7 files, 1 bad
    model_dir = root / "model"
    make_model(seed=0).save_pretrained(model_dir)
    return root, imgs, model_dir


def test_torchrun_two_ranks_equals_single_process(folder) -> None:
    root, imgs, model_dir = folder
    common = ["score", str(imgs), "--model", str(model_dir), "--workers", "0", "--batch-size", "1", "--quiet"]
    single_dir, dist_dir = root / "single", root / "dist"
    single_dir.mkdir()
    dist_dir.mkdir()
    single = subprocess.run([sys.executable, "-m", "iaca_metric.cli", *common, "--out", str(single_dir / "out.csv")],
                            env=_env(), capture_output=True, text=True, timeout=120)
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "iaca_metric.cli", *common, "--backend", "gloo", "--out", str(dist_dir / "out.csv")],
                          env=_env(), capture_output=True, text=True, timeout=180)
    # the corrupt file fails the run (exit status 1) in both, after every other file was scored
    assert single.returncode == 1, single.stderr[-3000:]
    assert dist.returncode == 1, dist.stderr[-3000:]
    assert "img3_corrupt.png" in single.stderr and "img3_corrupt.png" in dist.stderr
    # exactly one output file each, no partial/tmp files left
    assert sorted(p.name for p in single_dir.iterdir()) == ["out.csv"]
    assert sorted(p.name for p in dist_dir.iterdir()) == ["out.csv"]
    a, b = _rows(single_dir / "out.csv"), _rows(dist_dir / "out.csv")
    names = [Path(r["path"]).name for r in b]
    assert names == sorted(p.name for p in imgs.iterdir())  # every file once, in input order
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["ref"] == rb["ref"] and ra["error"] == rb["error"]
        if ra["error"]:
            assert ra["score"] == rb["score"] == ""
        else:
            assert abs(float(ra["score"]) - float(rb["score"])) <= 1e-6
            assert abs(float(ra["mos"]) - float(rb["mos"])) <= 1e-6
    assert sum(bool(r["error"]) for r in b) == 1


_SLOW_READER = """
import os, pathlib, sys, time
# Rank 1 reads files slowly (a loaded network filesystem): before the fix every rank read the previous
# results at its own moment, so rank 1 saw rows rank 0 had just appended and sharded another to-do list.
if os.environ.get("RANK") == "1":
    _orig = pathlib.Path.read_text
    def _slow(self, *a, **k):
        if self.name.startswith("out.csv"):  # the results and progress files only
            time.sleep(4.0)
        return _orig(self, *a, **k)
    pathlib.Path.read_text = _slow
from iaca_metric.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_resume_keeps_every_row(tmp_path) -> None:
    """Regression (issue #13, data loss 1): `torchrun ... score --resume` dropped rows (exit 0) when the
    ranks read the partial files at different moments. The file list and done set are now decided by
    rank 0 and broadcast before anyone writes; every input must end with exactly one row."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(12):
        Image.fromarray(make_image(40, 40, seed=100 + i)).save(imgs / f"p{i:02d}.png")
    model_dir = tmp_path / "model"
    make_model(seed=1).save_pretrained(model_dir)
    common = ["score", str(imgs), "--model", str(model_dir), "--workers", "0", "--batch-size", "1", "--quiet",
              "--threads", "1"]
    full = tmp_path / "full.csv"
    single = subprocess.run([sys.executable, "-m", "iaca_metric.cli", *common, "--out", str(full)],
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    rows = _rows(full)
    # A killed earlier run: three rows in rank 0's progress file, no final output.
    out = tmp_path / "out.csv"
    import json

    (tmp_path / "out.csv.partial-0.jsonl").write_text(
        "".join(json.dumps({k: (v if v != "" else None) if k in ("error",) else v for k, v in r.items()}
                           | {"score": float(r["score"]), "mos": float(r["mos"])}) + "\n" for r in rows[:3]))
    runner = tmp_path / "runner.py"
    runner.write_text(_SLOW_READER)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(runner),
                          *common, "--backend", "gloo", "--resume", "--out", str(out)],
                         env=_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    got = _rows(out)
    assert [r["path"] for r in got] == [r["path"] for r in rows]  # all 12, once each, in order
    for a, b in zip(got, rows):
        assert abs(float(a["score"]) - float(b["score"])) <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.csv")) == ["out.csv"]
