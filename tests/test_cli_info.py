"""`iaca-metric info`: what a weights folder holds (arch, parameter count, source, sha256)."""
from __future__ import annotations

import hashlib
import re

import pytest
import torch

from iaca_metric import IACAMetric
from iaca_metric.cli import main

ARCH = "efficientnet_lite0"
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread is fastest


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = IACAMetric(arch=ARCH, mos_scale=0.5, mos_offset=0.25)
    d = tmp_path_factory.mktemp("info_model")
    model.save_pretrained(d)
    return d, model


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def test_info_prints_arch_parameters_source_sha(folder, capsys):
    d, model = folder
    assert main(["info", str(d)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    f = _fields(captured.out)
    assert f["arch"] == ARCH

    n = int(f["parameters"].replace(",", ""))
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", f["parameters"])
    assert n == model.num_parameters()
    # independent count: every tensor of the saved file except BatchNorm buffers is a parameter
    from safetensors.torch import load_file

    saved = load_file(str(d / "model.safetensors"))
    assert n == sum(v.numel() for k, v in saved.items() if not k.endswith(BN_BUFFERS))
    assert n == sum(p.numel() for p in IACAMetric(arch=ARCH).parameters())

    assert f["weights source"] == f"local folder {d.resolve()}"
    assert f["weights revision"] == "-"
    assert f["weights path"] == str(d / "model.safetensors")
    assert f["weights sha256"] == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    assert f["MOS mapping"] == "mos = 0.5 * score + 0.25"
    assert f["illumination"].startswith("image ")


def test_info_nonexistent_folder(capsys):
    assert main(["info", "/nonexistent"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: ")
    assert "'/nonexistent'" in err and "no such folder" in err
    assert "model.safetensors" in err  # says what a weights folder must hold
    assert "Traceback" not in captured.err
