"""IACAScore (update / compute / reset), its torch.distributed sync, and the torchmetrics adapter."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iaca_metric
from iaca_metric import InputError
from iaca_metric.stateful import IACAScore, summarize_sums, to_torchmetrics

TESTS = Path(__file__).resolve().parent
from iaca_test_models import low_light, make_image, make_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread is fastest


# Scores of the same image agree to ~2e-6 (not bitwise) when it is scored in a different batch: CPU
# convolutions block the work differently by batch size. Comparisons across batchings use TOL.
TOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return make_model(illumination="reference_or_image", seed=0)


@pytest.fixture(scope="module")
def images():
    """Six enhanced/low-light pairs: four 48x64, two 64x40 (mixed sizes)."""
    sizes = [(48, 64)] * 4 + [(64, 40)] * 2
    enh = [make_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    return enh, [low_light(e, 0.2) for e in enh]


@pytest.fixture(scope="module")
def expected(model, images):
    enh, low = images
    return iaca_metric.score(enh, low, model=model)  # (6,) float32, the reference


def _feed_mixed(metric: IACAScore, images, tmp_path: Path) -> None:
    """The six pairs in four updates with different input types: a batch tensor, one numpy pair, a
    list of PIL images, a list of file paths."""
    enh, low = images
    batch = torch.stack([torch.from_numpy(e).permute(2, 0, 1).float() / 255 for e in enh[:2]])
    batch_low = torch.stack([torch.from_numpy(e).permute(2, 0, 1).float() / 255 for e in low[:2]])
    metric.update(batch, batch_low)
    metric.update(enh[2], low[2])
    metric.update([Image.fromarray(enh[3]), Image.fromarray(enh[4])],
                  [Image.fromarray(low[3]), Image.fromarray(low[4])])
    Image.fromarray(enh[5]).save(tmp_path / "e5.png")
    Image.fromarray(low[5]).save(tmp_path / "l5.png")
    metric.update([str(tmp_path / "e5.png")], [tmp_path / "l5.png"])


def _reference_summary(scores: torch.Tensor) -> dict:
    s = scores.double()
    return {"mean": float(s.mean()), "std": float(s.std()), "count": s.numel()}


def test_mixed_updates_equal_score(model, images, expected, tmp_path) -> None:
    m = IACAScore(model, keep_scores=True)
    _feed_mixed(m, images, tmp_path)
    res = m.compute()
    ref = _reference_summary(expected)
    assert res["count"] == 6
    assert res["mean"] == pytest.approx(ref["mean"], abs=TOL)
    assert res["std"] == pytest.approx(ref["std"], abs=TOL)
    torch.testing.assert_close(res["scores"], expected, atol=TOL, rtol=0)


def test_same_batching_is_bitwise_score(model, images, expected) -> None:
    enh, low = images
    m = IACAScore(model, keep_scores=True)
    m.update(enh, low)  # the same call as `expected`: identical batches, identical scores
    res = m.compute()
    assert torch.equal(res["scores"], expected)
    assert res["mean"] == pytest.approx(float(expected.double().mean()), abs=1e-12)
    assert res["std"] == pytest.approx(float(expected.double().std()), abs=1e-12)


def test_constant_memory_without_keep_scores(model, images) -> None:
    enh, low = images
    m = IACAScore(model)
    for _ in range(3):
        m.update(enh[:4], low[:4])
    assert m.scores == []
    for t in (m.total, m.total_sq, m.count):
        assert t.dtype == torch.float64 and t.shape == () and not t.requires_grad
    assert "scores" not in m.compute() and m.compute()["count"] == 12


def test_update_under_no_grad_and_with_grad_inputs(model, images, expected) -> None:
    enh, low = images
    x = torch.stack([torch.from_numpy(e).permute(2, 0, 1).float() / 255 for e in enh[:4]]).requires_grad_(True)
    r = torch.stack([torch.from_numpy(e).permute(2, 0, 1).float() / 255 for e in low[:4]])
    m = IACAScore(model, keep_scores=True)
    with torch.no_grad():
        m.update(x[:2], r[:2])
    with torch.enable_grad():
        m.update(x[2:], r[2:])  # update itself runs under no_grad: no graph is kept
    assert not m.total.requires_grad and x.grad is None
    torch.testing.assert_close(m.compute()["scores"], expected[:4], atol=TOL, rtol=0)


def test_compute_does_not_mutate_and_reset(model, images, expected) -> None:
    enh, low = images
    m = IACAScore(model)
    m.update(enh[:3], low[:3])
    first = m.compute()
    assert first == m.compute()  # idempotent
    m.update(enh[3:], low[3:])
    assert m.compute()["mean"] == pytest.approx(float(expected.double().mean()), abs=TOL)
    m.reset()
    with pytest.warns(UserWarning, match="before any update"):
        empty = m.compute()
    assert empty["count"] == 0 and np.isnan(empty["mean"]) and np.isnan(empty["std"])
    m.update(enh[0], low[0])
    one = m.compute()
    assert one["count"] == 1 and one["mean"] == pytest.approx(float(expected[0]), abs=TOL) and np.isnan(one["std"])


def test_mos_and_invalid_input_leaves_state(model, images, expected) -> None:
    enh, low = images
    m = IACAScore(model, mos=True)
    m.update(enh, low)
    assert m.compute()["mean"] == pytest.approx(float(model.to_mos(expected.double()).mean()), abs=TOL)
    before = (m.total.clone(), m.count.clone())
    with pytest.raises(InputError):
        m.update(enh[0], low[4])  # size mismatch between image and low-light input
    with pytest.raises(InputError):
        m.update(np.full((40, 40, 3), np.nan, dtype=np.float32))
    assert torch.equal(m.total, before[0]) and torch.equal(m.count, before[1])


def test_constructor_validation(model) -> None:
    with pytest.raises(TypeError):
        IACAScore(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        IACAScore(model, max_pixels=10)
    with pytest.raises(ValueError, match="batch_size"):
        IACAScore(model, batch_size=0)


def test_summarize_sums_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 0.01, 1000)  # large mean, small spread: the float64 sums must still be accurate
    res = summarize_sums(float(x.sum()), float((x * x).sum()), 1000.0)
    assert res["count"] == 1000
    assert res["mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert res["std"] == pytest.approx(x.std(ddof=1), rel=1e-6)


# ------------------------------------------------------------------ torch.distributed (gloo, 2 ranks)
_WORKER = textwrap.dedent("""
    import json, os, sys
    import torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from iaca_test_models import low_light, make_image, make_model
    from iaca_metric.stateful import IACAScore
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = make_model(illumination="reference_or_image", seed=0)
    sizes = [(48, 64)] * 4 + [(64, 40)] * 2
    mine = list(range(6))[rank:5:world]  # image 5 is held back: ranks get 3 and 2 images
    m = IACAScore(model, keep_scores=True)
    for i in mine:
        e = make_image(*sizes[i], seed=i)
        m.update(e, low_light(e, 0.2))
    out = {{"rank": rank, "first": m.compute(), "local": m.compute(sync=False)}}
    if rank == 1:  # update after compute: the synced result must not have been folded into the state
        e = make_image(*sizes[5], seed=5)
        m.update(e, low_light(e, 0.2))
    out["second"] = m.compute()
    try:
        from iaca_metric.stateful import to_torchmetrics
        tm = to_torchmetrics(model, keep_scores=True)
        for i in mine:
            e = make_image(*sizes[i], seed=i)
            tm.update(e, ref=low_light(e, 0.2))
        out["torchmetrics"] = {{k.removeprefix("iaca_"): v.tolist() for k, v in tm.compute().items()}}
    except ImportError:
        pass
    for k in ("first", "second", "local"):
        out[k]["scores"] = out[k]["scores"].tolist()
    dist.destroy_process_group()
    print("RESULT " + json.dumps(out))
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_compute_equals_single_process(model, images, expected) -> None:
    code = _WORKER.format(tests=str(TESTS))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    procs = [subprocess.Popen([sys.executable, "-c", code], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=240)
            assert p.returncode == 0, se[-3000:]
            outs.append(json.loads(next(ln for ln in so.splitlines() if ln.startswith("RESULT "))[7:]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    five, six = expected[:5], expected
    # the same result on both ranks, equal to one process scoring all the images
    for o in outs:
        for key, exp, order in (("first", five, [0, 2, 4, 1, 3]), ("second", six, [0, 2, 4, 1, 3, 5])):
            got, ref = o[key], _reference_summary(exp)
            assert got["count"] == ref["count"]
            assert got["mean"] == pytest.approx(ref["mean"], abs=TOL)
            assert got["std"] == pytest.approx(ref["std"], abs=TOL)
            # per-image scores: rank 0's first, then rank 1's
            np.testing.assert_allclose(got["scores"], exp[order].numpy(), atol=TOL, rtol=0)
        mine = [0, 2, 4] if o["rank"] == 0 else [1, 3]
        assert o["local"]["count"] == len(mine)  # sync=False: this rank only
        if "torchmetrics" in o:
            tm = o["torchmetrics"]
            assert tm["count"] == 5 and tm["mean"] == pytest.approx(float(five.double().mean()), abs=TOL)
            assert sorted(tm["scores"]) == pytest.approx(sorted(five.tolist()), abs=TOL)


# ------------------------------------------------------------------ torchmetrics adapter
def test_torchmetrics_missing_gives_install_hint(monkeypatch) -> None:
    import iaca_metric.stateful as st

    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # import fails
    monkeypatch.setattr(st, "_TORCHMETRICS_CLASS", None)
    with pytest.raises(ImportError, match=r"pip install 'iaca-metric\[metrics\]'"):
        to_torchmetrics()
    with pytest.raises(ImportError, match="iaca-metric"):
        from iaca_metric.stateful import IACATorchMetric  # noqa: F401
    exec("from iaca_metric.stateful import *", {})  # star-import never needs torchmetrics


def test_torchmetrics_adapter(model, images, expected) -> None:
    pytest.importorskip("torchmetrics", reason="torchmetrics not installed (optional extra: iaca-metric[metrics])")
    import torchmetrics

    from iaca_metric.stateful import IACATorchMetric

    enh, low = images
    tm = to_torchmetrics(model, keep_scores=True)
    assert isinstance(tm, torchmetrics.Metric) and isinstance(tm, IACATorchMetric)
    assert list(tm.parameters()) == [] and not any("features" in k for k in tm.state_dict())
    tm.update(enh[:3], ref=low[:3])
    tm.update(enh[3:], ref=low[3:])
    res = tm.compute()
    ref = _reference_summary(expected)
    assert int(res["iaca_count"]) == 6
    assert float(res["iaca_mean"]) == pytest.approx(ref["mean"], abs=TOL)
    assert float(res["iaca_std"]) == pytest.approx(ref["std"], abs=TOL)
    torch.testing.assert_close(res["iaca_scores"], expected, atol=TOL, rtol=0)
    tm.reset()
    tm.update(enh[0], ref=low[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert int(tm.compute()["iaca_count"]) == 1
