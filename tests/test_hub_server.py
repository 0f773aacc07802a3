"""The fake Hub (tests/hub_server.py) driven by the real huggingface_hub client."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    hf_hub_download,
    hf_hub_url,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import HOST, git_blob_sha, lay_out_cache, point_hub_at, set_offline

REPO = "acme/tiny-model"
CONFIG = b'{"hidden": 8}'


@pytest.fixture
def hub(hub_server, monkeypatch):
    hub_server.add_file(REPO, "main", "config.json", CONFIG)
    point_hub_at(monkeypatch, hub_server.url)
    return hub_server


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _storage(cache, repo=REPO):
    return cache / ("models--" + repo.replace("/", "--"))


def test_binds_loopback_only_and_point_hub_at(hub):
    assert hub.url.startswith(f"http://{HOST}:")
    assert all(srv.server_address[0] == "127.0.0.1" for srv in hub._servers)
    assert constants.ENDPOINT == hub.url
    assert os.environ["HF_ENDPOINT"] == hub.url
    assert hf_hub_url(REPO, "config.json") == f"{hub.url}/{REPO}/resolve/main/config.json"


def test_download_then_served_from_cache(hub, cache):
    path = hf_hub_download(REPO, "config.json", cache_dir=cache)
    assert Path(path).read_bytes() == CONFIG
    commit = hub.commit_of(REPO, "main")
    assert Path(path).parent.name == commit
    assert (_storage(cache) / "blobs" / git_blob_sha(CONFIG)).is_file()
    assert (_storage(cache) / "refs" / "main").read_text() == commit
    assert hub.request_log == [
        ("HEAD", f"/{REPO}/resolve/main/config.json"),
        ("GET", f"/{REPO}/resolve/main/config.json"),
    ]
    assert hub.downloads == [(REPO, commit, "config.json")]

    # Branch revision: only a HEAD to resolve "main", no second GET of the content.
    hub.clear_log()
    assert hf_hub_download(REPO, "config.json", cache_dir=cache) == path
    assert hub.request_log == [("HEAD", f"/{REPO}/resolve/main/config.json")]
    assert hub.downloads == []

    # Commit sha revision + cached file: no request at all.
    assert hf_hub_download(REPO, "config.json", revision=commit, cache_dir=cache) == path
    assert hub.request_log == [("HEAD", f"/{REPO}/resolve/main/config.json")]


def test_lfs_file_goes_through_cdn_redirect(hub, cache):
    weights = bytes(range(256)) * 40
    hub.add_file(REPO, "main", "model.safetensors", weights)
    path = hf_hub_download(REPO, "model.safetensors", cache_dir=cache)
    assert Path(path).read_bytes() == weights
    # LFS files are stored under their sha256 (X-Linked-Etag).
    etag = hub.file_etag(REPO, "main", "model.safetensors")
    assert len(etag) == 64 and (_storage(cache) / "blobs" / etag).is_file()
    statuses = [(d["server"], d["method"], d["status"]) for d in hub.request_details]
    assert statuses == [("hub", "HEAD", 302), ("cdn", "GET", 200)]
    # The fake CDN is another origin: the client must not forward credentials there.
    assert "authorization" not in {k.lower() for k in hub.request_details[1]["headers"]}

    hub.clear_log()
    assert hf_hub_download(REPO, "model.safetensors", cache_dir=cache) == path
    assert [(d["server"], d["method"]) for d in hub.request_details] == [("hub", "HEAD")]
    assert hub.downloads == []


def test_revision_pinning_by_branch_and_sha(hub, cache):
    hub.add_file(REPO, "v1", "config.json", b'{"hidden": 4}')
    main_sha, v1_sha = hub.commit_of(REPO, "main"), hub.commit_of(REPO, "v1")
    assert main_sha != v1_sha and len(v1_sha) == 40

    by_branch = hf_hub_download(REPO, "config.json", revision="v1", cache_dir=cache)
    assert Path(by_branch).read_bytes() == b'{"hidden": 4}'
    assert Path(by_branch).parent.name == v1_sha
    by_main = hf_hub_download(REPO, "config.json", cache_dir=cache)
    assert Path(by_main).read_bytes() == CONFIG

    # By sha, from a fresh cache: the server resolves the sha itself.
    fresh = cache.parent / "fresh"
    by_sha = hf_hub_download(REPO, "config.json", revision=v1_sha, cache_dir=fresh)
    assert Path(by_sha).read_bytes() == b'{"hidden": 4}'
    assert ("HEAD", f"/{REPO}/resolve/{v1_sha}/config.json") in hub.request_log
    assert hub.commit_of(REPO, v1_sha) == v1_sha

    # Pushing new content to main gives a new commit => new snapshot.
    hub.add_file(REPO, "main", "config.json", b'{"hidden": 16}')
    assert hub.commit_of(REPO, "main") != main_sha
    assert Path(hf_hub_download(REPO, "config.json", cache_dir=cache)).read_bytes() == b'{"hidden": 16}'


def test_pinned_commit_from_commits_json(hub, cache):
    sha = "0123456789abcdef0123456789abcdef01234567"
    hub.set_commit(REPO, "main", sha)
    assert hub.commit_of(REPO) == sha
    path = hf_hub_download(REPO, "config.json", revision=sha, cache_dir=cache)
    assert Path(path).parent.name == sha


def test_missing_repo(hub, cache):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/nope", "config.json", cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        model_info("acme/nope")


def test_missing_file(hub, cache):
    with pytest.raises(RemoteEntryNotFoundError) as info:
        hf_hub_download(REPO, "nope.json", cache_dir=cache)
    assert isinstance(info.value, EntryNotFoundError)
    assert not isinstance(info.value, LocalEntryNotFoundError)
    # The client caches the non-existence under the commit from X-Repo-Commit.
    assert (_storage(cache) / ".no_exist" / hub.commit_of(REPO) / "nope.json").is_file()


def test_missing_revision(hub, cache):
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="nope", cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="f" * 40, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="nope", cache_dir=cache)


def test_server_down_with_cache(hub, cache):
    path = hf_hub_download(REPO, "config.json", cache_dir=cache)
    hub.stop()
    hub.clear_log()
    assert hf_hub_download(REPO, "config.json", cache_dir=cache, local_files_only=True) == path
    # Without local_files_only the HEAD fails to connect and the client falls back to the cache.
    assert hf_hub_download(REPO, "config.json", cache_dir=cache) == path
    assert hub.request_log == []


def test_server_down_without_cache(hub, cache):
    hub.down()
    with pytest.raises(LocalEntryNotFoundError) as info:
        hf_hub_download(REPO, "config.json", cache_dir=cache)
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "config.json", cache_dir=cache, local_files_only=True)
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, cache_dir=cache)
    # Back up on the same port: the patched endpoint works again.
    hub.start()
    assert Path(hf_hub_download(REPO, "config.json", cache_dir=cache)).read_bytes() == CONFIG


def test_offline_mode_in_process(hub, cache, monkeypatch):
    path = hf_hub_download(REPO, "config.json", cache_dir=cache)
    hub.add_file(REPO, "main", "other.json", b"{}")
    hub.clear_log()
    set_offline(monkeypatch)
    assert hf_hub_download(REPO, "config.json", cache_dir=cache) == path
    with pytest.raises(LocalEntryNotFoundError) as info:
        hf_hub_download(REPO, "other.json", cache_dir=cache)
    assert isinstance(info.value.__cause__, OfflineModeIsEnabled)
    assert hub.request_log == []  # blocked client-side, before any connection


def test_offline_env_subprocess_with_hand_made_cache(hub, tmp_path):
    """HF_HUB_OFFLINE is read at import time: exercise the real env var in a subprocess."""
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    cache = tmp_path / "handmade"
    lay_out_cache(cache, "acme/offline", {"config.json": b"{}", "w/model.safetensors": b"\0" * 64}, commit=sha)
    script = textwrap.dedent(
        """
        import json, sys
        from huggingface_hub import constants, hf_hub_download, snapshot_download
        cache = sys.argv[1]
        out = {"offline": constants.HF_HUB_OFFLINE, "endpoint": constants.ENDPOINT}
        out["config"] = open(hf_hub_download("acme/offline", "config.json", cache_dir=cache)).read()
        out["weights"] = len(open(hf_hub_download("acme/offline", "w/model.safetensors", cache_dir=cache), "rb").read())
        out["snapshot"] = snapshot_download("acme/offline", cache_dir=cache)
        try:
            hf_hub_download("acme/offline", "missing.json", cache_dir=cache)
        except Exception as e:
            out["missing"] = [type(e).__name__, type(e.__cause__).__name__]
        try:
            hf_hub_download("acme/uncached", "config.json", cache_dir=cache)
        except Exception as e:
            out["uncached"] = [type(e).__name__, type(e.__cause__).__name__]
        print(json.dumps(out))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    res = subprocess.run(
        [sys.executable, "-c", script, str(cache)], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["offline"] is True and out["endpoint"] == hub.url
    assert out["config"] == "{}" and out["weights"] == 64
    assert Path(out["snapshot"]) == _storage(cache, "acme/offline") / "snapshots" / sha
    assert out["missing"] == ["LocalEntryNotFoundError", "OfflineModeIsEnabled"]
    assert out["uncached"] == ["LocalEntryNotFoundError", "OfflineModeIsEnabled"]
    assert hub.request_log == []


def test_resume_with_range_after_interrupted_download(hub, cache, monkeypatch):
    # http_get only resumes from what it wrote; use small chunks so the prefix is written.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    data = os.urandom(5000)
    hub.add_file(REPO, "main", "data.txt", data)
    hub.interrupt_next_download(after_bytes=1234)
    path = hf_hub_download(REPO, "data.txt", cache_dir=cache)
    assert Path(path).read_bytes() == data
    gets = [d for d in hub.request_details if d["method"] == "GET"]
    assert len(gets) == 2
    assert gets[1]["headers"].get("Range") == "bytes=1024-" and gets[1]["status"] == 206


def test_snapshot_download_and_api(hub, cache):
    hub.add_file(REPO, "main", "model.safetensors", b"\1" * 100)
    hub.add_file(REPO, "main", "sub/tok.txt", b"a b c")
    commit = hub.commit_of(REPO)

    info = model_info(REPO)
    assert info.sha == commit
    assert sorted(s.rfilename for s in info.siblings) == ["config.json", "model.safetensors", "sub/tok.txt"]
    info = HfApi().model_info(REPO, revision=commit, files_metadata=True)
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["config.json"] is None and lfs["model.safetensors"].size == 100
    refs = HfApi().list_repo_refs(REPO)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", commit)]

    folder = Path(snapshot_download(REPO, cache_dir=cache))
    assert folder.name == commit
    assert (folder / "sub" / "tok.txt").read_bytes() == b"a b c"
    assert (folder / "model.safetensors").read_bytes() == b"\1" * 100
    assert len(hub.downloads) == 3

    hub.clear_log()
    assert Path(snapshot_download(REPO, cache_dir=cache)) == folder
    assert hub.request_log == [("GET", f"/api/models/{REPO}/revision/main")]
    assert hub.downloads == []


def test_plain_http_no_xet(hub, cache):
    """hf_xet may be installed: the server never advertises Xet, so downloads are plain HTTP."""
    hub.add_file(REPO, "main", "model.safetensors", b"\2" * 10)
    for name in ("config.json", "model.safetensors"):
        r = httpx2.head(hf_hub_url(REPO, name))
        assert not [h for h in r.headers if h.lower().startswith("x-xet")]
        assert "xet-auth" not in r.links
    hub.clear_log()
    hf_hub_download(REPO, "model.safetensors", cache_dir=cache)
    assert [d[2] for d in hub.downloads] == ["model.safetensors"]
    assert not any("xet" in p for _, p in hub.request_log)
