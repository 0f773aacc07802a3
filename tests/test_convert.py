"""`iaca_metric.convert` / `iaca-metric convert`: original release checkpoints -> hub-ready folders.

The checkpoint is built from the golden formula weights (../shared/golden, read at run time), stored in
float32 like the release trains, in the release's format ``{"model": state_dict, "optimizer": ...}`` and
as a bare ``nn.DataParallel`` state dict (``module.`` prefixes).  The converted folder must reproduce the
golden outputs of the original code; broken or unsafe checkpoints must give a WeightsError.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import iaca_metric
from iaca_metric import IACAMetric
from iaca_metric.cli import main as cli_main
from iaca_metric.convert import convert_checkpoint
from iaca_metric.hub import WeightsError

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
ARCH = "resnet50"
CASE = "crop_224"
TOL_F32 = 1e-4
MOS_SCALE = 0.09627324560431309
MOS_OFFSET = 0.5154855778833177

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "expected.json").is_file() or not (GOLDEN / "formula.py").is_file(),
    reason=f"golden parity files not found at {GOLDEN} (expected ../shared/golden next to the repo)",
)


# ------------------------------------------------------------------------------------------ helpers
def _formula_state_float32() -> dict[str, torch.Tensor]:
    spec = importlib.util.spec_from_file_location("iaca_golden_formula", GOLDEN / "formula.py")
    formula = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(formula)
    manifest = json.loads((GOLDEN / f"manifest_{ARCH}.json").read_text())
    state = formula.formula_state_dict(manifest)
    state.update(formula.load_overrides(GOLDEN / f"overrides_{ARCH}.json"))
    # The release trains (and saves) in float32; keep the manifest's key order.
    return {k: (state[k].float() if state[k].is_floating_point() else state[k]) for k, _, _ in manifest["keys"]}


def _optimizer_state(state: dict[str, torch.Tensor]) -> dict:
    """What `optimizer.state_dict()` of the release's Adam looks like (tensors, ints, floats, lists)."""
    n = sum(1 for v in state.values() if v.is_floating_point())
    return {
        "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                          "amsgrad": False, "params": list(range(n))}],
    }


def _crop_input() -> torch.Tensor:
    from PIL import Image

    arr = np.array(Image.open(GOLDEN / "low00009_MR_0.png").convert("RGB"))
    a = torch.from_numpy(arr).permute(2, 0, 1).float().div(255).double().unsqueeze(0)
    return a[:, :, 100:324, 200:424].float()


def _assert_golden(model: IACAMetric, expected: dict) -> dict[str, float]:
    exp = expected["cases"][ARCH][CASE]
    with torch.inference_mode():
        out = model.forward_all(_crop_input())
    errs = {}
    for k in ("regr6", "regr7", "score"):
        got = getattr(out, k)
        assert got.dtype == torch.float32
        errs[k] = (got.double() - torch.tensor(exp[k], dtype=torch.float64)).abs().max().item()
    assert max(errs.values()) <= TOL_F32, errs
    return errs


class _Payload:
    """An arbitrary object: unpickling it would call `_unpickle_side_effect` (code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return _unpickle_side_effect, (self.marker,)


def _unpickle_side_effect(marker: str) -> str:
    Path(marker).write_text("executed")
    return marker


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _formula_state_float32()


@pytest.fixture(scope="module")
def release_ckpt(tmp_path_factory, state) -> Path:
    """The release's format: torch.save({"model": sd, "optimizer": ...}, "checkpoints/resnet50_last")."""
    path = tmp_path_factory.mktemp("ckpt") / f"{ARCH}_last"
    torch.save({"model": state, "optimizer": _optimizer_state(state), "epoch": 7}, path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, release_ckpt) -> tuple[Path, IACAMetric]:
    dst = tmp_path_factory.mktemp("converted") / "iaca-resnet50"
    model = convert_checkpoint(release_ckpt, dst, arch=ARCH)
    return dst, model


# ------------------------------------------------------------------------------------------ tests
@needs_golden
def test_release_checkpoint_round_trip(converted, state, expected):
    dst, returned = converted
    assert sorted(p.name for p in dst.iterdir()) == ["LICENSE", "README.md", "config.json", "model.safetensors"]
    model = IACAMetric.from_pretrained(dst)
    assert model.arch == ARCH
    # bit-exact weights: float32 storage kept, every tensor equal to the checkpoint's
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype, k
        assert torch.equal(loaded[k], v), k
    errs = _assert_golden(model, expected)
    print(f"\nconvert round trip ({ARCH}, float32, {CASE}) max abs errors: {errs}")
    # the model returned by convert_checkpoint is the same one
    assert returned.weights_info["sha256"] == model.weights_info["sha256"]
    assert all(torch.equal(a, b) for a, b in zip(returned.state_dict().values(), loaded.values()))


@needs_golden
def test_converted_folder_contents(converted, release_ckpt):
    dst, model = converted
    weights = dst / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["arch"] == ARCH
    assert cfg["illumination"] == "image"
    assert cfg["mos_scale"] == MOS_SCALE and cfg["mos_offset"] == MOS_OFFSET
    assert cfg["iaca_metric_version"] == iaca_metric.__version__
    assert "[0, 1]" in cfg["input"] and "no mean/std normalisation" in cfg["input"]
    assert cfg["requires_ref"] is False and cfg["uses_ref"] is False

    from safetensors import safe_open

    with safe_open(str(weights), "pt") as fh:
        meta = fh.metadata()
        dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}
    assert meta == {"format": "pt"}  # one key: a deterministic file (see IACAMetric._save_pretrained)
    assert dtypes == {"F32", "I64"}  # float32 weights, int64 num_batches_tracked

    card = (dst / "README.md").read_text()
    assert "library_name: iaca-metric" in card
    assert f"`{ARCH}`" in card
    assert f"{model.num_parameters():,} parameters" in card
    assert sha in card
    assert hashlib.sha256(release_ckpt.read_bytes()).hexdigest() in card
    assert f"mos = {MOS_SCALE!r} * score + {MOS_OFFSET!r}" in card
    assert model.weights_info["sha256"] == sha


@needs_golden
def test_cli_convert_dataparallel_bare_state_dict(tmp_path, state, expected, capsys):
    src = tmp_path / "dp_state.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, src)
    dst = tmp_path / "out"
    assert cli_main(["convert", str(src), str(dst), "--arch", ARCH]) == 0
    printed = capsys.readouterr().out
    sha = hashlib.sha256((dst / "model.safetensors").read_bytes()).hexdigest()
    assert f"arch {ARCH}" in printed and sha in printed
    model = IACAMetric.from_pretrained(dst)
    assert list(model.state_dict()) == list(state)  # `module.` stripped, nothing else renamed
    _assert_golden(model, expected)


@needs_golden
def test_mismatched_checkpoint_names_every_offending_key(tmp_path, state):
    bad = dict(state)
    del bad["regression.bias"]                                   # missing
    bad["features.9.weight"] = torch.zeros(3)                    # unexpected
    bad["regr6.weight"] = torch.zeros(1, 32)                     # wrong shape (model: 1 x 64)
    src = tmp_path / "bad_last"
    torch.save({"model": bad, "optimizer": {}}, src)
    with pytest.raises(WeightsError) as ei:
        convert_checkpoint(src, tmp_path / "out", arch=ARCH)
    msg = str(ei.value)
    assert "missing keys: regression.bias" in msg
    assert "unexpected keys: features.9.weight" in msg
    assert "regr6.weight: file (1, 32) vs model (1, 64)" in msg
    assert not (tmp_path / "out" / "model.safetensors").exists()
    # the CLI reports it as an error (exit code 2), not a traceback
    assert cli_main(["convert", str(src), str(tmp_path / "out2"), "--arch", ARCH]) == 2


def test_not_a_torch_checkpoint(tmp_path, capsys):
    for name, data in (("text_last", b"this is not a checkpoint\n"),
                       ("random_last", np.random.default_rng(0).bytes(4096)),
                       ("empty_last", b"")):
        src = tmp_path / name
        src.write_bytes(data)
        with pytest.raises(WeightsError, match="cannot be read as a PyTorch checkpoint"):
            convert_checkpoint(src, tmp_path / "out", arch=ARCH)
    assert cli_main(["convert", str(tmp_path / "random_last"), str(tmp_path / "out"), "--arch", ARCH]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "random_last" in err and "weights_only=True" in err
    with pytest.raises(WeightsError, match="not found"):
        convert_checkpoint(tmp_path / "missing_last", tmp_path / "out", arch=ARCH)


def test_not_a_state_dict(tmp_path):
    src = tmp_path / "list_last"
    torch.save([torch.zeros(2)], src)  # loadable with weights_only, but not a state dict
    with pytest.raises(WeightsError, match="expected a state dict"):
        convert_checkpoint(src, tmp_path / "out", arch=ARCH)


def test_arbitrary_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker.txt"
    src = tmp_path / "evil_last"
    torch.save({"model": {"regression.bias": torch.zeros(1)}, "hook": _Payload(str(marker))}, src)
    with pytest.raises(WeightsError) as ei:
        convert_checkpoint(src, tmp_path / "out", arch=ARCH)
    assert "weights_only=True" in str(ei.value)
    assert not marker.exists(), "the converter executed code from the pickle"
    assert not (tmp_path / "out").exists()
    # Control: the same file DOES run code when unpickled unsafely, so the check above can fail.
    torch.load(src, weights_only=False)
    assert marker.read_text() == "executed"
