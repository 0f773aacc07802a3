"""A tiny Hugging Face Hub look-alike HTTP server for offline tests.

The server lets the *real* ``huggingface_hub`` download code (``hf_hub_download``,
``snapshot_download``, ``HfApi.model_info`` / ``repo_info`` / ``list_repo_tree`` /
``list_repo_refs``, ``PyTorchModelHubMixin.from_pretrained``...) run without any
internet access.  It only ever listens on ``127.0.0.1``.

Repository layout on disk::

    root/<org>/<name>/<revision>/<files...>            # model repos
    root/datasets/<org>/<name>/<revision>/<files...>   # dataset repos
    root/<org>/<name>/commits.json                     # optional {"<revision>": "<40-hex sha>"}

Every revision folder is a branch (``main`` is the default one).  Its commit sha is
read from ``commits.json`` when present, otherwise it is derived deterministically
from the repo id, the revision name and the *content* of the folder (so modifying a
file gives a new commit, like a push to the real Hub would).  A revision can be
requested by branch name or by commit sha.

Files matching ``lfs_patterns`` (weights: ``*.safetensors``, ``*.bin``, ...) are
served like LFS files on the real Hub: ``/resolve`` answers ``302`` with
``X-Linked-Etag`` (sha256) / ``X-Linked-Size`` and a ``Location`` on a second
"CDN" listener (also on 127.0.0.1, another port, i.e. another origin).  Other
files are served inline with ``ETag`` = git blob sha1.  No ``X-Xet-*`` header and no
``xet-auth`` link are ever sent, so ``huggingface_hub`` always falls back to a
plain HTTP download even when ``hf_xet`` is installed.

Pointing ``huggingface_hub`` at the server
------------------------------------------
``HF_ENDPOINT`` is read once, at import time, into ``huggingface_hub.constants.ENDPOINT``
(and the derived ``HUGGINGFACE_CO_URL_TEMPLATE``; the module-level ``HfApi`` instance
behind ``huggingface_hub.model_info`` etc. also copied it).  Setting the environment
variable inside a running test is therefore NOT enough.  Use one of:

* in-process: ``point_hub_at(monkeypatch, server.url)`` (patches everything, undone
  by ``monkeypatch`` at test teardown);
* explicit: pass ``endpoint=server.url`` to ``hf_hub_download`` /
  ``snapshot_download`` / ``HfApi(endpoint=...)``;
* subprocess: ``env={**os.environ, "HF_ENDPOINT": server.url}``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "HOST",
    "HubServer",
    "disable_retry_sleep",
    "git_blob_sha",
    "lay_out_cache",
    "point_hub_at",
    "set_offline",
]

#: The only address the server ever binds to.
HOST = "127.0.0.1"

DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.onnx",
    "*.gguf",
    "*.h5",
    "*.msgpack",
    "*.npz",
)

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_EMPTY_AGENT_REGISTRY = {"standardEnvVars": [], "harnesses": {}}


# --------------------------------------------------------------------------- hashing


def git_blob_sha(data: bytes) -> str:
    """Git blob id of ``data`` (what the Hub uses as ETag for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class _FileMeta:
    __slots__ = ("size", "git_sha", "sha256", "lfs", "pointer_size", "pointer_sha")

    def __init__(self, data: bytes, lfs: bool) -> None:
        self.size = len(data)
        self.git_sha = git_blob_sha(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.lfs = lfs
        pointer = _lfs_pointer(self.sha256, self.size)
        self.pointer_size = len(pointer)
        self.pointer_sha = git_blob_sha(pointer)

    @property
    def etag(self) -> str:
        """ETag as the Hub sends it: sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_sha

    @property
    def oid(self) -> str:
        """Git object id in the tree (the pointer's for LFS files)."""
        return self.pointer_sha if self.lfs else self.git_sha


class _Revision:
    def __init__(self, repo_type: str, repo_id: str, name: str, path: Path, commit: str) -> None:
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.name = name
        self.path = path
        self.commit = commit


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: "HubServer", role: str, port: int) -> None:
        self.hub = hub
        self.role = role  # "hub" or "cdn"
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request, client_address) -> None:  # noqa: D401
        # Clients dropping connections (interrupted downloads, server stop) are expected.
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class HubServer:
    """Hub-compatible file server on ``127.0.0.1`` (see module docstring).

    Usage::

        with HubServer(tmp_path / "hub") as server:
            server.add_file("org/model", "main", "config.json", b"{}")
            point_hub_at(monkeypatch, server.url)
            hf_hub_download("org/model", "config.json", cache_dir=tmp_path / "cache")

    Attributes:
        request_log: ``(method, path)`` of every request received (hub and CDN
            listeners, in arrival order; ``path`` without the query string, as sent).
        request_details: one dict per request with ``server`` (``"hub"``/``"cdn"``),
            ``method``, ``path``, ``query``, ``headers`` (without credentials) and ``status``.
        downloads: ``(repo_id, commit, filename)`` each time file *content* was sent
            (GET answered 200/206, on either listener).  Use it to assert cache reuse.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lfs_patterns = tuple(lfs_patterns)
        self.request_log: list[tuple[str, str]] = []
        self.request_details: list[dict[str, Any]] = []
        self.downloads: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._meta_cache: dict[tuple[str, int, int], _FileMeta] = {}
        self._interrupt_after: int | None = None
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._ports: tuple[int, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "HubServer":
        """Start the hub + CDN listeners on 127.0.0.1.

        First start: ephemeral ports.  After ``stop()``, ``start()`` rebinds the same
        ports so an already patched endpoint keeps working ("server is back up").
        """
        if self._servers:
            return self
        hub_port, cdn_port = self._ports or (0, 0)
        hub = _Server(self, "hub", hub_port)
        try:
            cdn = _Server(self, "cdn", cdn_port)
        except BaseException:
            hub.server_close()
            raise
        self._servers = [hub, cdn]
        self._ports = (hub.server_address[1], cdn.server_address[1])
        for srv in self._servers:
            t = threading.Thread(
                target=srv.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"HubServer-{srv.role}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Stop listening: further requests get "connection refused". Idempotent."""
        servers, self._servers = self._servers, []
        threads, self._threads = self._threads, []
        # shutdown() blocks until serve_forever() notices (up to poll_interval): do both at once.
        stoppers = [threading.Thread(target=srv.shutdown, daemon=True) for srv in servers]
        for t in stoppers:
            t.start()
        for t in stoppers + threads:
            t.join(timeout=5)
        for srv in servers:
            srv.server_close()

    #: Simulate the Hub being unreachable (alias of :meth:`stop`).
    down = stop

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Endpoint to use as ``HF_ENDPOINT`` (``http://127.0.0.1:<port>``)."""
        if self._ports is None:
            raise RuntimeError("HubServer not started")
        return f"http://{HOST}:{self._ports[0]}"

    @property
    def cdn_url(self) -> str:
        """Origin of the fake CDN that serves LFS files."""
        if self._ports is None:
            raise RuntimeError("HubServer not started")
        return f"http://{HOST}:{self._ports[1]}"

    # ------------------------------------------------------------------ content

    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        org, name = _split_repo_id(repo_id)
        if org is None:
            raise ValueError(f"repo_id must be '<org>/<name>', got {repo_id!r}")
        base = self.root / "datasets" if repo_type == "dataset" else self.root
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"unsupported repo_type {repo_type!r}")
        return base / org / name

    def add_file(
        self,
        repo_id: str,
        revision: str,
        filename: str,
        data: bytes | str,
        *,
        repo_type: str = "model",
    ) -> Path:
        """Write ``filename`` (may contain ``/``) into ``revision`` of ``repo_id``."""
        if isinstance(data, str):
            data = data.encode()
        if not _safe_segment(revision):
            raise ValueError(f"invalid revision name {revision!r}")
        parts = filename.split("/")
        if not all(_safe_segment(p) for p in parts):
            raise ValueError(f"invalid filename {filename!r}")
        path = self.repo_path(repo_id, repo_type).joinpath(revision, *parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            self._meta_cache.clear()
        return path

    def set_commit(self, repo_id: str, revision: str, sha: str, *, repo_type: str = "model") -> None:
        """Pin the commit sha of ``revision`` (stored in ``commits.json``)."""
        if not _HEX40.match(sha):
            raise ValueError("commit sha must be 40 lowercase hex chars")
        path = self.repo_path(repo_id, repo_type) / "commits.json"
        commits = json.loads(path.read_text()) if path.is_file() else {}
        commits[revision] = sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(commits, indent=2))

    def commit_of(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Commit sha currently served for ``revision`` (branch name or sha).

        Derived from the content unless pinned in ``commits.json``: call it *after*
        adding the files of that revision.
        """
        rev = self._resolve(repo_type, repo_id, revision)
        if rev is None:
            raise KeyError(f"{repo_type} {repo_id}@{revision} does not exist")
        return rev.commit

    def file_etag(self, repo_id: str, revision: str, filename: str, *, repo_type: str = "model") -> str:
        """Name of the blob ``huggingface_hub`` stores in ``<cache>/.../blobs/``."""
        rev = self._resolve(repo_type, repo_id, revision)
        if rev is None:
            raise KeyError(f"{repo_type} {repo_id}@{revision} does not exist")
        return self._meta(rev.path.joinpath(*filename.split("/")), filename).etag

    # ------------------------------------------------------------------ logging / faults

    def clear_log(self) -> None:
        with self._lock:
            self.request_log.clear()
            self.request_details.clear()
            self.downloads.clear()

    def interrupt_next_download(self, after_bytes: int) -> None:
        """Make the next content GET send only ``after_bytes`` bytes then drop the
        connection (the client then resumes with a ``Range`` request)."""
        self._interrupt_after = after_bytes

    # ------------------------------------------------------------------ internals

    def _is_lfs(self, filename: str) -> bool:
        base = filename.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(base, pat) for pat in self.lfs_patterns)

    def _meta(self, path: Path, filename: str) -> _FileMeta:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            meta = self._meta_cache.get(key)
        if meta is None:
            meta = _FileMeta(path.read_bytes(), self._is_lfs(filename))
            with self._lock:
                self._meta_cache[key] = meta
        return meta

    def _list_files(self, revdir: Path) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(revdir):
            dirnames.sort()
            rel = Path(dirpath).relative_to(revdir)
            for fn in sorted(filenames):
                out.append((rel / fn).as_posix())
        return sorted(out)

    def _commits_json(self, repo_dir: Path) -> dict[str, str]:
        path = repo_dir / "commits.json"
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        return {str(k): str(v).lower() for k, v in data.items()}

    def _compute_commit(self, repo_type: str, repo_id: str, name: str, revdir: Path) -> str:
        h = hashlib.sha1(f"{repo_type}:{repo_id}@{name}\n".encode())
        for rel in self._list_files(revdir):
            h.update(f"{rel}\0{self._meta(revdir / rel, rel).git_sha}\n".encode())
        return h.hexdigest()

    def _revisions(self, repo_type: str, repo_id: str) -> list[_Revision] | None:
        """All revisions of a repo, or None if the repo does not exist."""
        try:
            repo_dir = self.repo_path(repo_id, repo_type)
        except ValueError:
            return None
        if not repo_dir.is_dir():
            return None
        pinned = self._commits_json(repo_dir)
        revs = []
        for child in sorted(repo_dir.iterdir()):
            if not child.is_dir():
                continue
            commit = pinned.get(child.name) or self._compute_commit(repo_type, repo_id, child.name, child)
            revs.append(_Revision(repo_type, repo_id, child.name, child, commit))
        return revs

    def _resolve(self, repo_type: str, repo_id: str, revision: str) -> _Revision | None:
        revs = self._revisions(repo_type, repo_id)
        if not revs:
            return None
        for rev in revs:
            if rev.name == revision:
                return rev
        for rev in revs:
            if rev.commit == revision.lower():
                return rev
        return None

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.request_log.append((entry["method"], entry["path"]))
            self.request_details.append(entry)

    def _record_download(self, rev: _Revision, filename: str) -> None:
        with self._lock:
            self.downloads.append((rev.repo_id, rev.commit, filename))

    def _take_interrupt(self) -> int | None:
        with self._lock:
            n, self._interrupt_after = self._interrupt_after, None
        return n


# --------------------------------------------------------------------------- handler


def _split_repo_id(repo_id: str) -> tuple[str | None, str | None]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_safe_segment(p) for p in parts):
        return None, None
    return parts[0], parts[1]


def _safe_segment(seg: str) -> bool:
    return bool(seg) and seg not in (".", "..") and "/" not in seg and "\\" not in seg and "\0" not in seg


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()
    server_version = "HubServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr logging
        pass

    # -- plumbing ---------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, head: bool) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self._status = 0
        self._entry = {
            "server": self.server.role,
            "method": self.command,
            "path": split.path,
            "query": parse_qs(split.query),
            "headers": {
                k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "cookie")
            },
            "status": None,
        }
        hub._record(self._entry)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        try:
            if self.server.role == "cdn":
                self._route_cdn(segs, head)
            elif segs and segs[0] == "api":
                self._route_api(segs[1:], self._entry["query"], head)
            else:
                self._route_resolve(segs, head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        self._entry["status"] = status
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **headers, "Connection": "close"}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, obj: Any, head: bool, status: int = 200) -> None:
        self._send(status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(obj).encode(), head)

    def _error(
        self,
        status: int,
        code: str | None,
        message: str,
        head: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        headers.update(extra or {})
        self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def _repo_not_found(self, head: bool) -> None:
        # The Hub answers 401 to anonymous requests for missing (or private) repos.
        self._error(401, "RepoNotFound", "Repository not found", head)

    def _revision_not_found(self, revision: str, head: bool) -> None:
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)

    def _lookup(self, repo_type: str, repo_id: str, revision: str, head: bool) -> _Revision | None:
        hub = self.server.hub
        if hub._revisions(repo_type, repo_id) is None:
            self._repo_not_found(head)
            return None
        rev = hub._resolve(repo_type, repo_id, revision)
        if rev is None:
            self._revision_not_found(revision, head)
        return rev

    @staticmethod
    def _file_path(rev: _Revision, filename: str) -> Path | None:
        parts = filename.split("/")
        if not all(_safe_segment(p) for p in parts):
            return None
        path = rev.path.joinpath(*parts)
        try:
            path.resolve().relative_to(rev.path.resolve())
        except ValueError:
            return None
        return path if path.is_file() else None

    # -- /{repo}/resolve/{revision}/{filename} -----------------------------------

    def _route_resolve(self, segs: list[str], head: bool) -> None:
        repo_type = "model"
        if segs and segs[0] == "datasets":
            repo_type, segs = "dataset", segs[1:]
        if len(segs) >= 3 and segs[1] == "resolve":  # single-segment repo id: not supported => not found
            return self._repo_not_found(head)
        if len(segs) < 5 or segs[2] != "resolve":
            return self._error(404, None, "Not found", head)
        repo_id = f"{segs[0]}/{segs[1]}"
        revision, filename = segs[3], "/".join(segs[4:])
        rev = self._lookup(repo_type, repo_id, revision, head)
        if rev is None:
            return
        path = self._file_path(rev, filename)
        if path is None:
            return self._error(
                404,
                "EntryNotFound",
                f"Entry not found: {filename}",
                head,
                {"X-Repo-Commit": rev.commit},
            )
        hub = self.server.hub
        meta = hub._meta(path, filename)
        common = {"X-Repo-Commit": rev.commit}
        if meta.lfs:
            prefix = "/datasets" if repo_type == "dataset" else ""
            location = (
                f"{hub.cdn_url}/lfs{prefix}/{quote(repo_id)}/{rev.commit}/{quote(filename)}"
            )
            body = f"Found. Redirecting to {location}".encode()
            headers = {
                **common,
                "Location": location,
                "ETag": f'"{meta.sha256}"',
                "X-Linked-Etag": f'"{meta.sha256}"',
                "X-Linked-Size": str(meta.size),
                "Content-Type": "text/plain; charset=utf-8",
            }
            return self._send(302, headers, body, head)
        self._serve_content(rev, filename, path, meta, common, head)

    def _route_cdn(self, segs: list[str], head: bool) -> None:
        # /lfs[/datasets]/{org}/{name}/{commit}/{filename...}
        if not segs or segs[0] != "lfs":
            return self._error(404, None, "Not found", head)
        segs = segs[1:]
        repo_type = "model"
        if segs and segs[0] == "datasets":
            repo_type, segs = "dataset", segs[1:]
        if len(segs) < 4:
            return self._error(404, None, "Not found", head)
        hub = self.server.hub
        rev = hub._resolve(repo_type, f"{segs[0]}/{segs[1]}", segs[2])
        filename = "/".join(segs[3:])
        path = self._file_path(rev, filename) if rev is not None else None
        if rev is None or path is None:
            return self._error(404, None, "Not found", head)
        self._serve_content(rev, filename, path, hub._meta(path, filename), {}, head)

    def _serve_content(
        self,
        rev: _Revision,
        filename: str,
        path: Path,
        meta: _FileMeta,
        extra: dict[str, str],
        head: bool,
    ) -> None:
        data = path.read_bytes()
        total = len(data)
        headers = {
            **extra,
            "ETag": f'"{meta.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{filename.rsplit("/", 1)[-1]}"',
        }
        status, start, end = 200, 0, total - 1
        rng = self.headers.get("Range")
        if rng and not head:
            parsed = _parse_range(rng, total)
            if parsed == "unsatisfiable":
                headers["Content-Range"] = f"bytes */{total}"
                return self._send(416, headers, b"", head)
            if parsed is not None:
                status, (start, end) = 206, parsed
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        body = data[start : end + 1]
        if head:
            return self._send(status, headers, body, head=True)

        cut = self.server.hub._take_interrupt()
        if cut is not None and cut < len(body):
            # Announce the full length, send a prefix, then drop the connection.
            self._entry["status"] = status
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body)), "Connection": "close"}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        # Record before sending: a client that has read the whole body may check ``downloads`` before
        # this handler thread runs again (a race that a fresh CI clone hit once).
        self.server.hub._record_download(rev, filename)
        self._send(status, headers, body, head=False)

    # -- /api/... ------------------------------------------------------------------

    def _route_api(self, segs: list[str], query: dict[str, list[str]], head: bool) -> None:
        if segs == ["agent-harnesses"]:
            # Fetched by huggingface_hub's user-agent detection: answer "no agents known".
            return self._json(_EMPTY_AGENT_REGISTRY, head)
        if len(segs) < 3 or segs[0] not in ("models", "datasets"):
            return self._error(404, None, "Not found", head)
        repo_type = "model" if segs[0] == "models" else "dataset"
        repo_id, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        if not rest:
            return self._api_info(repo_type, repo_id, "main", query, head)
        if rest[0] == "revision" and len(rest) == 2:
            return self._api_info(repo_type, repo_id, rest[1], query, head)
        if rest[0] == "tree" and len(rest) >= 2:
            return self._api_tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query, head)
        if rest == ["refs"]:
            return self._api_refs(repo_type, repo_id, head)
        return self._error(404, None, "Not found", head)

    def _api_info(
        self, repo_type: str, repo_id: str, revision: str, query: dict[str, list[str]], head: bool
    ) -> None:
        rev = self._lookup(repo_type, repo_id, revision, head)
        if rev is None:
            return
        hub = self.server.hub
        blobs = _truthy(query.get("blobs"))
        siblings = []
        total = 0
        for rel in hub._list_files(rev.path):
            meta = hub._meta(rev.path / rel, rel)
            total += meta.size
            sib: dict[str, Any] = {"rfilename": rel}
            if blobs:
                sib.update(size=meta.size, blobId=meta.oid)
                if meta.lfs:
                    sib["lfs"] = {"size": meta.size, "sha256": meta.sha256, "pointerSize": meta.pointer_size}
            siblings.append(sib)
        org = repo_id.split("/")[0]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": org,
            "sha": rev.commit,
            "lastModified": _LAST_MODIFIED,
            "createdAt": _LAST_MODIFIED,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": total,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        self._json(info, head)

    def _api_tree(
        self,
        repo_type: str,
        repo_id: str,
        revision: str,
        path_in_repo: str,
        query: dict[str, list[str]],
        head: bool,
    ) -> None:
        rev = self._lookup(repo_type, repo_id, revision, head)
        if rev is None:
            return
        hub = self.server.hub
        recursive = _truthy(query.get("recursive"))
        prefix = path_in_repo.strip("/")
        base = rev.path.joinpath(*prefix.split("/")) if prefix else rev.path
        if prefix and not (all(_safe_segment(p) for p in prefix.split("/")) and base.is_dir()):
            return self._error(
                404, "EntryNotFound", f"{path_in_repo} does not exist", head, {"X-Repo-Commit": rev.commit}
            )
        entries: list[dict[str, Any]] = []
        dirs_seen: set[str] = set()
        for rel in hub._list_files(rev.path):
            if prefix and not rel.startswith(prefix + "/"):
                continue
            sub = rel[len(prefix) + 1 :] if prefix else rel
            parts = sub.split("/")
            # directories on the way
            for depth in range(1, len(parts)):
                if not recursive and depth > 1:
                    break
                d = "/".join(([prefix] if prefix else []) + parts[:depth])
                if d not in dirs_seen:
                    dirs_seen.add(d)
                    entries.append(
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(f"tree:{rev.commit}:{d}".encode()).hexdigest(),
                            "size": 0,
                            "path": d,
                        }
                    )
            if not recursive and len(parts) > 1:
                continue
            meta = hub._meta(rev.path / rel, rel)
            entry: dict[str, Any] = {"type": "file", "oid": meta.oid, "size": meta.size, "path": rel}
            if meta.lfs:
                entry["lfs"] = {"oid": meta.sha256, "size": meta.size, "pointerSize": meta.pointer_size}
            entries.append(entry)
        self._json(entries, head)

    def _api_refs(self, repo_type: str, repo_id: str, head: bool) -> None:
        revs = self.server.hub._revisions(repo_type, repo_id)
        if revs is None:
            return self._repo_not_found(head)
        branches = [{"name": r.name, "ref": f"refs/heads/{r.name}", "targetCommit": r.commit} for r in revs]
        self._json({"branches": branches, "tags": [], "converts": [], "pullRequests": []}, head)


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


def _parse_range(header: str, total: int) -> tuple[int, int] | str | None:
    """Single byte range -> (start, end) inclusive; None = ignore header; "unsatisfiable"."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: last N bytes
        n = int(m.group(2))
        if n == 0:
            return "unsatisfiable"
        return (max(total - n, 0), total - 1) if total else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else total - 1
    if start >= total or end < start:
        return "unsatisfiable"
    return start, min(end, total - 1)


# --------------------------------------------------------------------------- client-side helpers


def point_hub_at(monkeypatch: Any, url: str, *, fast_retries: bool = True) -> None:
    """Make the in-process ``huggingface_hub`` talk to ``url`` (undone by ``monkeypatch``).

    Patches what ``huggingface_hub`` computed from ``HF_ENDPOINT`` at import time:
    ``constants.ENDPOINT``, ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, the hub host/origin
    allow-lists, and the module-level ``HfApi`` behind ``huggingface_hub.model_info`` & co.
    Also sets ``HF_ENDPOINT`` in ``os.environ`` (inherited by subprocesses), turns offline
    mode off (use :func:`set_offline` afterwards to test it), pre-seeds the agent
    harness registry so no extra ``/api/agent-harnesses`` request is made, and resets
    the shared HTTP client.  With ``fast_retries`` (default) the retry back-off sleeps
    of ``huggingface_hub`` are disabled (see :func:`disable_retry_sleep`), so
    "server down" tests do not wait ~25 s.
    """
    import huggingface_hub
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _detect_agent, _http

    url = url.rstrip("/")
    host = (urlsplit(url).hostname or "").lower()
    template = url + "/{repo_id}/resolve/{revision}/{filename}"

    monkeypatch.setenv("HF_ENDPOINT", url)
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), HOST, "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    if hasattr(constants, "HF_URL_HOSTS"):
        monkeypatch.setattr(constants, "HF_URL_HOSTS", frozenset(constants.HF_URL_HOSTS | {host}))
    if hasattr(_http, "_HUB_ORIGINS") and hasattr(_http, "_url_origin"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS | {_http._url_origin(url)}))
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    # Lazily exported copies on the top-level package, if they were already materialized.
    for name, value in (("ENDPOINT", url), ("HUGGINGFACE_CO_URL_TEMPLATE", template)):
        if name in vars(huggingface_hub):
            monkeypatch.setattr(huggingface_hub, name, value)
    set_offline(monkeypatch, False)
    if hasattr(_detect_agent, "_registry"):
        monkeypatch.setattr(_detect_agent, "_registry", dict(_EMPTY_AGENT_REGISTRY))
    if fast_retries:
        disable_retry_sleep(monkeypatch)
    _http.close_session()  # fresh client (picks up NO_PROXY); no pooled connections


def set_offline(monkeypatch: Any, offline: bool = True) -> None:
    """Toggle ``HF_HUB_OFFLINE`` for this process (``constants.HF_HUB_OFFLINE``, read
    by ``is_offline_mode()`` on every request) and for subprocesses (environment)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


class _NoSleepTime:
    """Stand-in for the ``time`` module with a no-op ``sleep``."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def disable_retry_sleep(monkeypatch: Any) -> None:
    """No-op the back-off sleeps in ``huggingface_hub.utils._http`` (``http_backoff``)
    and ``huggingface_hub.file_download`` (``http_get`` resume), without touching the
    global ``time.sleep``.  Retries still happen, they just do not wait."""
    import time

    from huggingface_hub import file_download
    from huggingface_hub.utils import _http

    for module in (_http, file_download):
        if getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", _NoSleepTime(time))


def lay_out_cache(
    cache_dir: Path | str,
    repo_id: str,
    files: dict[str, bytes],
    *,
    commit: str,
    refs: Iterable[str] = ("main",),
    repo_type: str = "model",
    lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
    symlinks: bool = True,
) -> Path:
    """Write a ``huggingface_hub`` cache entry by hand (no server needed).

    Creates ``<cache_dir>/<type>s--<org>--<name>/{blobs/<etag>, snapshots/<commit>/<file>,
    refs/<ref>}``.  Returns the snapshot folder.  ``etag`` follows the Hub rules (sha256
    for LFS-pattern files, git blob sha1 otherwise), like :class:`HubServer`.
    """
    if not _HEX40.match(commit):
        raise ValueError("commit must be 40 lowercase hex chars")
    patterns = tuple(lfs_patterns)
    storage = Path(cache_dir) / "--".join([f"{repo_type}s", *repo_id.split("/")])
    snapshot = storage / "snapshots" / commit
    for filename, data in files.items():
        lfs = any(fnmatch.fnmatch(filename.rsplit("/", 1)[-1], p) for p in patterns)
        etag = _FileMeta(data, lfs).etag
        blob = storage / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot.joinpath(*filename.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        if symlinks:
            target.symlink_to(os.path.relpath(blob, target.parent))
        else:
            shutil.copyfile(blob, target)
    snapshot.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        ref_path = storage / "refs" / ref
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(commit)
    return snapshot
