"""`IACAMetric.from_pretrained`: local folders, an on-disk HF cache (offline) and real downloads from the
local Hub look-alike (tests/hub_server.py), plus every failure mode a user can run into.

A small seeded model (efficientnet_lite0 with the variance-preserving init of ``iaca_test_models``)
keeps this fast; outputs on a fixed random 64x64 batch must be bit-identical after loading. PyTorch's
default init is not used: its trunk activations shrink to ~1e-8, and on some CPUs (MKL's AVX-512 path)
two different images then give bit-identical scores, so the fixture would test nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import struct
import textwrap
from pathlib import Path

import pytest
import torch

from iaca_metric import IACAMetric
from iaca_metric.backbones import BACKBONES
from iaca_metric.hub import WeightsError

from hub_server import lay_out_cache, set_offline
from iaca_test_models import make_model

REPO = "acme/iaca-tiny"
ARCH = "efficientnet_lite0"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _make(seed: int, illumination: str = "image", mos_scale: float = 1.0, mos_offset: float = 0.0,
          **kw) -> IACAMetric:
    return make_model(illumination=illumination, seed=seed, mos_scale=mos_scale, mos_offset=mos_offset, **kw)


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.rand(2, 3, 64, 64, generator=g)


def _out(model: IACAMetric, x: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> torch.Tensor:
    with torch.inference_mode():
        o = model.forward_all(_x() if x is None else x, ref)
    return torch.stack([o.score, o.regr6, o.regr7])


def _safetensors_parts(path: Path) -> tuple[dict, bytes]:
    """(parsed JSON header, data bytes) of a safetensors file."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread is fastest


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """Two small models with different weights, saved with save_pretrained, and their outputs."""
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        model = _make(seed)
        d = tmp_path_factory.mktemp(f"model_{name}")
        model.save_pretrained(d)
        out[name] = {"dir": d, "out": _out(model), "state": {k: v.clone() for k, v in model.state_dict().items()},
                     "files": {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}}
    assert not torch.equal(out["a"]["out"], out["b"]["out"])
    # Informative outputs on any CPU: the two images' scores differ by far more than float32 rounding.
    assert torch.isfinite(out["a"]["out"]).all() and out["a"]["out"][0].std() > 1e-3
    return out


def _hub_files(saved_model: dict) -> dict[str, bytes]:
    return {k: saved_model["files"][k] for k in ("config.json", "model.safetensors")}


def _publish(server, revision: str, files: dict[str, bytes], repo: str = REPO) -> str:
    for name, data in files.items():
        server.add_file(repo, revision, name, data)
    return server.commit_of(repo, revision)


def _weight_downloads(server, repo: str = REPO) -> list:
    return [d for d in server.downloads if d[0] == repo and d[2] == "model.safetensors"]


# ------------------------------------------------------------------------------------------ (a) local
def test_local_folder_round_trip(saved):
    d = saved["a"]["dir"]
    assert {"config.json", "model.safetensors"} <= set(saved["a"]["files"])
    model = IACAMetric.from_pretrained(d)
    assert model.arch == ARCH and not model.training
    assert torch.equal(_out(model), saved["a"]["out"])
    state = model.state_dict()
    assert list(state) == list(saved["a"]["state"])
    assert all(torch.equal(state[k], v) for k, v in saved["a"]["state"].items())
    info = model.weights_info
    assert info["sha256"] == _sha(d / "model.safetensors")
    assert info["revision"] is None
    assert info["source"] == f"local folder {d.resolve()}"
    assert Path(info["path"]) == d / "model.safetensors"
    # a str works as well as a Path
    assert torch.equal(_out(IACAMetric.from_pretrained(str(d))), saved["a"]["out"])


def test_round_trip_keeps_config(tmp_path):
    model = _make(3, illumination="reference_or_image", mos_scale=2.5, mos_offset=-0.25, mos_range=(1.0, 5.0))
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["arch"] == ARCH and cfg["illumination"] == "reference_or_image" and cfg["uses_ref"] is True
    loaded = IACAMetric.from_pretrained(tmp_path)
    assert (loaded.illumination, loaded.mos_scale, loaded.mos_offset, loaded.mos_range) == \
        ("reference_or_image", 2.5, -0.25, (1.0, 5.0))
    ref = _x() * 0.1
    assert torch.equal(_out(loaded, ref=ref), _out(model, ref=ref))
    assert not torch.equal(_out(loaded, ref=ref), _out(loaded))  # the low-light input is really used
    # saving the loaded model again gives the same file: same header (as JSON: safetensors writes the
    # metadata keys in a per-process random order, so the raw header bytes may differ) and same data bytes
    loaded.save_pretrained(tmp_path / "again")
    assert _safetensors_parts(tmp_path / "again" / "model.safetensors") == \
        _safetensors_parts(tmp_path / "model.safetensors")


# ------------------------------------------------------------------------------------------ (b) cache
def test_offline_from_laid_out_cache(saved, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    lay_out_cache(cache, REPO, _hub_files(saved["a"]), commit=COMMIT)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    set_offline(monkeypatch)
    model = IACAMetric.from_pretrained(REPO, cache_dir=cache)
    assert torch.equal(_out(model), saved["a"]["out"])
    assert model.weights_info["revision"] == COMMIT
    assert model.weights_info["source"] == f"hub repo {REPO}"
    assert model.weights_info["sha256"] == hashlib.sha256(saved["a"]["files"]["model.safetensors"]).hexdigest()
    # by commit sha too
    assert torch.equal(_out(IACAMetric.from_pretrained(REPO, revision=COMMIT, cache_dir=cache)), saved["a"]["out"])
    # a revision that is not cached: clear offline error, not a network attempt
    with pytest.raises(WeightsError, match="offline mode is on") as ei:
        IACAMetric.from_pretrained(REPO, revision="v9", cache_dir=cache)
    assert "HF_HUB_OFFLINE=1" in str(ei.value) and "hf download acme/iaca-tiny --local-dir" in str(ei.value)


def test_offline_subprocess_env_var(saved, tmp_path):
    """HF_HUB_OFFLINE=1 in the environment of a fresh interpreter (read at import time)."""
    cache = tmp_path / "cache"
    lay_out_cache(cache, REPO, _hub_files(saved["a"]), commit=COMMIT, symlinks=False)
    script = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads({torch.get_num_threads()})
        from iaca_metric import IACAMetric
        m = IACAMetric.from_pretrained({REPO!r}, cache_dir=sys.argv[1])
        g = torch.Generator().manual_seed(1234)
        x = torch.rand(2, 3, 64, 64, generator=g)
        with torch.inference_mode():
            o = m.forward_all(x)
        print(json.dumps({{"out": torch.stack([o.score, o.regr6, o.regr7]).tolist(),
                          "revision": m.weights_info["revision"]}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf_home"))
    proc = subprocess.run([sys.executable, "-c", script, str(cache)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["revision"] == COMMIT
    assert torch.equal(torch.tensor(res["out"], dtype=torch.float32), saved["a"]["out"])


# ------------------------------------------------------------------------------------------ (c) server
def test_download_cache_reuse_and_revisions(saved, hub_endpoint, tmp_path):
    server = hub_endpoint
    main_sha = _publish(server, "main", _hub_files(saved["a"]))
    v2_sha = _publish(server, "v2", _hub_files(saved["b"]))
    assert main_sha != v2_sha
    cache = tmp_path / "cache"

    # first download
    m1 = IACAMetric.from_pretrained(REPO, cache_dir=cache)
    assert torch.equal(_out(m1), saved["a"]["out"])
    assert _weight_downloads(server) == [(REPO, main_sha, "model.safetensors")]
    assert m1.weights_info["revision"] == main_sha
    assert m1.weights_info["sha256"] == hashlib.sha256(saved["a"]["files"]["model.safetensors"]).hexdigest()
    assert m1.weights_info["sha256"] == _sha(m1.weights_info["path"])
    assert Path(m1.weights_info["path"]).parent.name == main_sha  # snapshots/<sha>/model.safetensors

    # cache reuse: the weights are not fetched again
    server.clear_log()
    m2 = IACAMetric.from_pretrained(REPO, cache_dir=cache)
    assert torch.equal(_out(m2), saved["a"]["out"])
    assert _weight_downloads(server) == []
    assert server.downloads == []

    # revision pinning: branch v2 has other weights
    mb = IACAMetric.from_pretrained(REPO, revision="v2", cache_dir=cache)
    assert torch.equal(_out(mb), saved["b"]["out"])
    assert not torch.equal(_out(mb), _out(m1))
    assert mb.weights_info["revision"] == v2_sha
    assert _weight_downloads(server) == [(REPO, v2_sha, "model.safetensors")]

    # by commit sha: main's commit gives main's weights (already cached), v2's commit gives v2's
    server.clear_log()
    ma = IACAMetric.from_pretrained(REPO, revision=main_sha, cache_dir=cache)
    assert torch.equal(_out(ma), saved["a"]["out"])
    assert ma.weights_info["revision"] == main_sha
    mb2 = IACAMetric.from_pretrained(REPO, revision=v2_sha, cache_dir=cache)
    assert torch.equal(_out(mb2), saved["b"]["out"])
    assert mb2.weights_info["revision"] == v2_sha
    assert _weight_downloads(server) == []

    # a fresh cache pinned to v2's sha downloads exactly that commit
    mc = IACAMetric.from_pretrained(REPO, revision=v2_sha, cache_dir=tmp_path / "cache2")
    assert torch.equal(_out(mc), saved["b"]["out"])
    assert _weight_downloads(server) == [(REPO, v2_sha, "model.safetensors")]

    # the server goes down: the cached model still loads
    server.stop()
    m3 = IACAMetric.from_pretrained(REPO, cache_dir=cache)
    assert torch.equal(_out(m3), saved["a"]["out"])


# ------------------------------------------------------------------------------------------ errors
def test_server_down_nothing_cached(saved, hub_endpoint, tmp_path):
    _publish(hub_endpoint, "main", _hub_files(saved["a"]))
    hub_endpoint.stop()
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(REPO, cache_dir=tmp_path / "empty_cache")
    msg = str(ei.value)
    assert REPO in msg
    assert "unreachable" in msg and "offline" in msg and "cache" in msg
    assert f"hf download {REPO} --local-dir DIR" in msg  # how to get the weights
    assert "from_pretrained('DIR')" in msg and "HF_HUB_OFFLINE=1" in msg


def test_offline_nothing_cached(tmp_path, monkeypatch):
    set_offline(monkeypatch)
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(REPO, cache_dir=tmp_path / "empty_cache")
    msg = str(ei.value)
    assert "offline mode is on" in msg and "not in the local cache" in msg and "hf download acme/iaca-tiny --local-dir" in msg


def test_repo_missing(hub_endpoint, tmp_path):
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained("acme/does-not-exist", cache_dir=tmp_path / "cache")
    msg = str(ei.value)
    assert "'acme/does-not-exist' not found" in msg and "token" in msg and "local folder" in msg


def test_revision_missing(saved, hub_endpoint, tmp_path):
    _publish(hub_endpoint, "main", _hub_files(saved["a"]))
    with pytest.raises(WeightsError, match="revision 'nope' of hub repo 'acme/iaca-tiny' does not exist"):
        IACAMetric.from_pretrained(REPO, revision="nope", cache_dir=tmp_path / "cache")


def test_repo_without_weights_file(saved, hub_endpoint, tmp_path):
    _publish(hub_endpoint, "main", {"config.json": saved["a"]["files"]["config.json"], "README.md": b"# hi\n"})
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(REPO, cache_dir=tmp_path / "cache")
    msg = str(ei.value)
    assert "has no file 'model.safetensors'" in msg and REPO in msg
    assert "pickle" not in msg


@pytest.mark.parametrize("with_config", [True, False], ids=["with-config", "bin-only"])
def test_repo_with_only_pickle(saved, hub_endpoint, tmp_path, with_config):
    files = {"pytorch_model.bin": b"\x80\x02pretend pickle"}
    if with_config:
        files["config.json"] = saved["a"]["files"]["config.json"]
    _publish(hub_endpoint, "main", files)
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(REPO, cache_dir=tmp_path / "cache")
    msg = str(ei.value)
    assert "pytorch_model.bin" in msg and "pickle" in msg and "arbitrary code" in msg
    assert "iaca-metric convert" in msg
    assert _weight_downloads(hub_endpoint) == [] and not any(d[2].endswith(".bin") for d in hub_endpoint.downloads)


def test_local_folder_with_only_bin(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02pretend pickle")
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(tmp_path)
    msg = str(ei.value)
    assert str(tmp_path) in msg and "pytorch_model.bin" in msg and "pickle" in msg
    assert "iaca-metric convert" in msg


def test_missing_local_folder():
    with pytest.raises(WeightsError, match="no such folder"):
        IACAMetric.from_pretrained("/nonexistent/iaca-model")


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "empty"])
def test_damaged_safetensors(saved, tmp_path, damage):
    data = saved["a"]["files"]["model.safetensors"]
    bad = {"truncated": data[: len(data) // 2],
           "random-bytes": torch.randint(0, 256, (len(data) // 4,), generator=torch.Generator().manual_seed(5),
                                         dtype=torch.uint8).numpy().tobytes(),
           "empty": b""}[damage]
    (tmp_path / "config.json").write_bytes(saved["a"]["files"]["config.json"])
    (tmp_path / "model.safetensors").write_bytes(bad)
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(tmp_path)
    msg = str(ei.value)
    assert "model.safetensors" in msg and "truncated or corrupt" in msg and "force_download=True" in msg


def test_truncated_download_from_hub(saved, hub_endpoint, tmp_path):
    data = saved["a"]["files"]["model.safetensors"]
    _publish(hub_endpoint, "main", {"config.json": saved["a"]["files"]["config.json"],
                                    "model.safetensors": data[: len(data) // 2]})
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        IACAMetric.from_pretrained(REPO, cache_dir=tmp_path / "cache")


def test_weights_of_another_arch(saved, tmp_path):
    cfg = json.loads(saved["a"]["files"]["config.json"])
    cfg["arch"] = "resnet50"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(saved["a"]["files"]["model.safetensors"])
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(tmp_path)
    msg = str(ei.value)
    assert "do not match the resnet50 architecture" in msg
    assert "missing keys: features.0.weight" in msg
    assert "unexpected keys: features.blocks.0.bn1.num_batches_tracked" in msg
    assert "(318 in all)" in msg and "(288 in all)" in msg  # long lists: the first 12 named, all counted
    assert "shape mismatches: dr6.0.weight: file (1024, 112) vs model (1024, 1024)" in msg
    assert "config.json's arch" in msg


def test_unknown_arch_in_config(saved, tmp_path):
    cfg = json.loads(saved["a"]["files"]["config.json"])
    cfg["arch"] = "vit_huge_999"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(saved["a"]["files"]["model.safetensors"])
    with pytest.raises(WeightsError) as ei:
        IACAMetric.from_pretrained(tmp_path)
    msg = str(ei.value)
    assert "unknown arch 'vit_huge_999'" in msg
    assert str(sorted(BACKBONES)) in msg
    assert all(a in msg for a in ("efficientnet_lite0", "resnet50", "resnext101_32x8d"))


@pytest.mark.parametrize("content", [None, "{not json", '["a list"]', '{"illumination": "image"}'],
                         ids=["missing", "invalid-json", "not-object", "no-arch"])
def test_bad_config(saved, tmp_path, content):
    (tmp_path / "model.safetensors").write_bytes(saved["a"]["files"]["model.safetensors"])
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(WeightsError, match="config.json"):
        IACAMetric.from_pretrained(tmp_path)
