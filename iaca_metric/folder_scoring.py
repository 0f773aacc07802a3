"""Scoring many files: pairing with low-light inputs, parallel decoding, sharding, resumable output.

This is the engine behind ``iaca-metric score`` and :func:`score_folder`; the model step is the shared
engine (:mod:`iaca_metric._engine`), so a folder row equals :func:`iaca_metric.score` on the same file.
Decoding runs ahead of the model in worker threads (or DataLoader processes); a file that cannot be
read, an image that alone runs out of memory and a non-finite score each become an error row, and the
run goes on. Under ``torchrun`` (a ``torch.distributed`` process group), files are sharded across ranks
and rank 0 writes the one output file, identical to a single-process run.

Correct by construction:

* the file list, the pairing and the set of rows already done (``resume``) are decided once, by rank 0,
  before anyone writes, and broadcast to every rank, so all ranks shard the same to-do list;
* a row is reused on resume only if it has no error, finite ``score`` and ``mos``, the same ``ref``, and
  the same ``model_sha256`` and ``settings`` (model, options and package version; every row stores them);
* the output path is checked (not an input, not a folder, writable, a known suffix) before any work;
* every input ends with exactly one row, checked before the final (atomic) write; partial progress
  (``OUT.partial-<rank>.jsonl``) is deleted only after that write;
* file names that are not valid UTF-8 are written with ``surrogateescape``, so the bytes round-trip.
"""
from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

from . import _engine
from .inputs import MIN_SIDE, InputError, check_int, check_min_size, check_pair, load_image
from .model import IACAMetric

__all__ = ["IMAGE_SUFFIXES", "OUTPUT_SUFFIXES", "FIELDS", "FOLDER_TILE_ABOVE", "RunError", "collect_images",
           "relative_names", "pair_refs", "score_files", "score_folder", "read_results", "model_fingerprint",
           "run_settings", "check_out_path", "summarize_rows"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
OUTPUT_SUFFIXES = (".csv", ".json", ".jsonl")
FIELDS = ("path", "ref", "score", "mos", "error", "model_sha256", "settings")
#: The folder scorer tiles images above this many pixels (4096x2048; one 4K photo is scored whole), so the
#: default command's memory stays bounded (about 3 GB for IACA-Lite) whatever the image size. Tiled scores
#: are within :data:`iaca_metric.large_images.TILED_ABS_TOL` of whole-image ones (measured: 0.00075 on a
#: real 1080p photo).
FOLDER_TILE_ABOVE = _engine.DEFAULT_BATCH_PIXELS
_ENC = dict(encoding="utf-8", errors="surrogateescape")  # non-UTF-8 file names round-trip as their bytes


class RunError(RuntimeError):
    """The run itself failed (as opposed to some rows failing): nothing final was written; partial
    progress, if any, is kept for ``resume``."""


# ---------------------------------------------------------------------------------------------- files
def collect_images(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Files given directly, plus image files (by suffix) inside given folders, sorted; order kept."""
    return [f for f, _ in _collect(inputs, recursive)]


def _collect(inputs: Sequence[str | os.PathLike], recursive: bool) -> list[tuple[Path, str]]:
    """(file, relative name) pairs: the name relative to the input folder it was found in (with
    ``recursive``, ``sub/b.png``), or the file name for files given directly."""
    out: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in it if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            out += [(f, f.relative_to(p).as_posix()) for f in found]
        else:
            # An unreadable file given directly becomes its error row (missing paths: check_input_paths).
            out.append((p, p.name))
    seen: set[Path] = set()
    uniq = []
    for f, rel in out:
        if f not in seen:
            seen.add(f)
            uniq.append((f, rel))
    return uniq


def check_input_paths(inputs: Sequence[str | os.PathLike], ref_dir: str | os.PathLike | None) -> None:
    """Refuse, before any work, input paths that do not exist and a ``ref_dir`` that is not a folder
    (InputError). A mistyped path would otherwise become an error row after the model was loaded, and a
    mistyped ``--ref-dir`` one error row per image; files that exist but cannot be decoded stay rows."""
    missing = [str(i) for i in inputs if not Path(i).exists()]
    if missing:
        raise InputError(f"input path(s) not found: {', '.join(missing[:5])}"
                         f"{f' ... ({len(missing)} in all)' if len(missing) > 5 else ''}; check the spelling "
                         "(inputs are image files or folders of them)")
    if ref_dir is not None and not Path(ref_dir).is_dir():
        what = "is a file, not a folder" if Path(ref_dir).exists() else "does not exist"
        raise InputError(f"ref_dir {str(ref_dir)!r} {what}; pass the folder holding the low-light inputs "
                         "(paired with the images by relative path)")


def collect_checked(inputs: Sequence[str | os.PathLike], ref_dir: str | os.PathLike | None, recursive: bool
                    ) -> tuple[list[Path], list[Path | None]]:
    """The image files of ``inputs`` and their low-light inputs (see :func:`pair_refs`), after
    :func:`check_input_paths`; InputError when no image file is found (naming where it looked)."""
    check_input_paths(inputs, ref_dir)
    files = [f for f, _ in _collect(inputs, recursive)]
    if not files:
        raise InputError(f"no image files found in {', '.join(map(str, inputs))} (image suffixes: "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}{'' if recursive else '; sub-folders need --recursive'})")
    return files, pair_refs(files, ref_dir, inputs)


def relative_names(files: Sequence[Path], inputs: Sequence[str | os.PathLike] | None) -> list[str]:
    """Each file's name relative to the input folder (of ``inputs``) that holds it, else its name."""
    roots = [Path(i) for i in (inputs or []) if Path(i).is_dir()]
    out = []
    for f in files:
        rel = f.name
        for r in roots:
            try:
                rel = f.relative_to(r).as_posix()
                break
            except ValueError:
                continue
        out.append(rel)
    return out


def pair_refs(files: Sequence[Path], ref_dir: str | os.PathLike | None,
              inputs: Sequence[str | os.PathLike] | None = None) -> list[Path | None]:
    """Low-light input for each file, by its path relative to its input folder (``inputs``; without
    them, by file name): ``enh/sub/b.png`` pairs with ``REF_DIR/sub/b.png``. The same relative name is
    taken first; else the one file in the same ref sub-folder with the same stem and another image
    suffix (``a.png`` with ``a.jpg``). Unpaired, or several same-stem candidates: the returned path does
    not exist and the file's row says why (naming the candidates)."""
    if ref_dir is None:
        return [None] * len(files)
    ref_dir = Path(ref_dir)
    rels = relative_names(files, inputs)
    stems: dict[Path, dict[str, list[Path]]] = {}
    out: list[Path | None] = []
    for rel in rels:
        exact = ref_dir / rel
        if exact.is_file():
            out.append(exact)
            continue
        folder = exact.parent
        if folder not in stems:
            by_stem: dict[str, list[Path]] = {}
            if folder.is_dir():
                for f in sorted(folder.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                        by_stem.setdefault(f.stem, []).append(f)
            stems[folder] = by_stem
        cands = stems[folder].get(Path(rel).stem, [])
        out.append(cands[0] if len(cands) == 1 else exact)
    return out


def _missing_ref_message(file: Path, ref: Path) -> str:
    cands = []
    if ref.parent.is_dir():
        cands = sorted(f.name for f in ref.parent.iterdir()
                       if f.stem == ref.stem and f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if len(cands) > 1:
        return (f"ambiguous low-light input for {file.name}: {', '.join(cands)} in {ref.parent} share its stem "
                f"and none is named {ref.name}; rename the one that belongs to it to {ref.name}")
    return f"no low-light input for {file.name} in the ref folder (looked for {ref})"


# ---------------------------------------------------------------------------------------------- decoding
@dataclass
class _Item:
    index: int
    img: torch.Tensor | None
    ref: torch.Tensor | None
    error: str | None


class _FileDataset(torch.utils.data.Dataset):
    """Decodes file ``i`` (and its ref) into an :class:`_Item`; every failure becomes the item's error."""

    def __init__(self, files: Sequence[Path], refs: Sequence[Path | None], grayscale: str,
                 max_pixels: int | None, opts: "_engine.Options | None" = None) -> None:
        self.files, self.refs, self.grayscale, self.max_pixels = list(files), list(refs), grayscale, max_pixels
        self.opts = opts

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> _Item:
        try:
            img = load_image(self.files[i], grayscale=self.grayscale)[None]
            ref = None
            if self.refs[i] is not None:
                if not Path(self.refs[i]).is_file():
                    raise InputError(_missing_ref_message(Path(self.files[i]), Path(self.refs[i])))
                ref = load_image(self.refs[i], grayscale=self.grayscale)[None]
                check_pair(img, ref, names=(str(self.files[i]), str(self.refs[i])))
            check_min_size(img, MIN_SIDE, name=str(self.files[i]), purpose="IACA (stride-32 network)")
            if self.max_pixels is not None and (self.opts is None or not self.opts.tile):
                from .large_images import fit_max_pixels

                img, ref = fit_max_pixels(img, ref, self.max_pixels)  # in the worker: resizing in parallel
            return _Item(i, img, ref, None)
        except Exception as exc:  # noqa: BLE001 - any failure to read one file is that file's row, not the run's
            return _Item(i, None, None, f"{type(exc).__name__}: {exc}")


def _identity(x: Any) -> Any:
    return x


def _decoded(ds: torch.utils.data.Dataset, indices: Sequence[int], workers: int, worker_type: str
             ) -> Iterator[_Item]:
    """Items of ``indices`` in that order, decoded by ``workers`` threads/processes running ahead.

    Threads rather than processes on CPU: PIL and numpy release the GIL while decoding, so the decode
    fills the time torch's threads leave idle, without the process start-up, shared-memory copies and
    extra runnable processes that made DataLoader workers slower than in-process decoding on 2 cores.
    Read-ahead is bounded in items (2 per worker), so memory stays O(workers) images."""
    if workers == 0:
        for i in indices:
            yield ds[i]
        return
    if worker_type == "processes":
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, list(indices)), batch_size=None,
                                             num_workers=workers, collate_fn=_identity, prefetch_factor=2)
        yield from loader
        return
    ahead = 2 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iaca-decode") as pool:
        futures: collections.deque = collections.deque()
        it = iter(indices)
        for i in it:
            futures.append(pool.submit(ds.__getitem__, i))
            if len(futures) >= ahead:
                break
        while futures:
            item = futures.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                futures.append(pool.submit(ds.__getitem__, nxt))
            yield item


# ---------------------------------------------------------------------------------------------- provenance
def model_fingerprint(model: IACAMetric) -> str:
    """sha256 identifying the model's weights: its ``model.safetensors`` sha256 when the weights are
    unchanged since loading (as ``iaca-metric info`` shows), else ``state:`` + the sha256 of the state
    dict's bytes (for models built or modified in memory)."""
    info = getattr(model, "weights_info", {}) or {}
    from .hub import tensor_signature

    sig = info.get("_signature")
    if info.get("sha256") and sig is not None and sig == tensor_signature(model):
        return str(info["sha256"])
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()


def run_settings(model: IACAMetric, opts: "_engine.Options") -> str:
    """Everything besides the weights that changes a row's numbers, as one string (stored in every row;
    resume reuses a row only when it is equal): package version, model config, size policy, grayscale."""
    from . import __version__

    s = opts.settings()
    return (f"iaca_metric={__version__};illumination={model.illumination};"
            f"mos={model.mos_scale!r}*s+{model.mos_offset!r};max_pixels={s['max_pixels']};tile={int(s['tile'])};"
            f"tile_above={s['tile_above']};grayscale={s['grayscale']}")


def _row(files: Sequence[Path], refs: Sequence[Path | None], i: int, s: float | None, m: float | None,
         err: str | None, fp: str, settings: str) -> dict:
    return {"path": str(files[i]), "ref": "" if refs[i] is None else str(refs[i]),
            "score": None if s is None else round(s, 7), "mos": None if m is None else round(m, 7), "error": err,
            "model_sha256": fp, "settings": settings}


def _finite(v: Any) -> bool:
    if v is None or isinstance(v, bool) or v == "":
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _reusable(r: Any, path: str, ref: str, fp: str, settings: str) -> bool:
    return (isinstance(r, dict) and r.get("path") == path and (r.get("ref") or "") == ref and not r.get("error")
            and r.get("model_sha256") == fp and r.get("settings") == settings
            and _finite(r.get("score")) and _finite(r.get("mos")))


def summarize_rows(rows: Sequence[dict], seconds: float | None = None) -> dict[str, Any]:
    """n, failed, mean, std (ddof=1) of the scores, and images/s when ``seconds`` is given."""
    vals = [float(r["score"]) for r in rows if not r.get("error") and _finite(r.get("score"))]
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    out: dict[str, Any] = {"n": len(rows), "scored": n, "failed": len(rows) - n, "mean": mean, "std": std}
    if seconds is not None:
        out["seconds"] = round(seconds, 3)
    return out


# ---------------------------------------------------------------------------------------------- output files
def check_out_path(out: str | os.PathLike | None, files: Sequence[Path] = (), refs: Sequence[Path | None] = ()
                   ) -> Path | None:
    """The checked output path (None: stdout). Raises InputError when it is empty, a folder, of an
    unknown kind, in a missing or read-only folder, or one of the input or low-light images."""
    if out is None:
        return None
    if str(out) == "":
        raise InputError("--out is empty; give a results file ending in .csv, .json or .jsonl (or omit it for "
                         "CSV on stdout)")
    p = Path(out)
    if p.is_dir():
        raise InputError(f"--out {str(p)!r} is a folder; give a results file inside it, e.g. {str(p / 'scores.csv')!r}")
    target = p.resolve()
    for f in [*files, *(r for r in refs if r is not None)]:
        try:
            same = f.resolve() == target or (p.exists() and f.exists() and os.path.samefile(f, p))
        except OSError:
            same = False
        if same:
            raise InputError(f"--out {str(p)!r} is one of the images to score ({f}); writing results there would "
                             "overwrite it. Choose another file name")
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"--out {str(p)!r}: unknown results format {p.suffix or '(no suffix)'!r}; use a name ending "
                         "in .csv, .json or .jsonl")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out {str(p)!r}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"--out {str(p)!r} is not writable; choose another location")
    return p


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results file written by :func:`score_files` (CSV, JSON or JSON Lines). A missing file
    gives []; an unreadable one raises InputError. JSON Lines lines that do not parse (a half-written
    last line) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text(**_ENC)
    except OSError as exc:
        raise InputError(f"cannot read the results file {path} to resume from it ({exc}); fix its permissions "
                         "or drop --resume") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            if not text.strip():
                return []
            obj = json.loads(text)
            rows = obj.get("results") if isinstance(obj, dict) else None
            if not isinstance(rows, list):
                raise ValueError("no 'results' list")
            return [r for r in rows if isinstance(r, dict)]
        if suffix == ".jsonl" or path.name.endswith(".jsonl"):
            return _read_jsonl(text)
        return list(csv.DictReader(io.StringIO(text)))
    except (ValueError, csv.Error) as exc:
        raise InputError(f"cannot resume from {path}: it is not a results file this tool wrote ({exc}); move it "
                         "away or choose another --out") from None


def _read_jsonl(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run: its image is simply scored again
        if isinstance(r, dict) and "path" in r:
            rows.append(r)
    return rows


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in FIELDS})
    return buf.getvalue()


def _write_results(path: Path | None, rows: list[dict], meta: dict | None = None, stream=None) -> None:
    if path is None:
        # sys.stdout looked up now, not at import: redirect_stdout / capture must receive the CSV. Encoded
        # with surrogateescape so a non-UTF-8 file name is written as its bytes instead of failing.
        out = sys.stdout if stream is None else stream
        text = _csv_text(rows)
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            out.flush()
            buffer.write(text.encode("utf-8", "surrogateescape"))
            buffer.flush()
        else:
            out.write(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        return
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps({"meta": meta or {}, "fields": list(FIELDS), "results": rows}, indent=1) + "\n"
    elif suffix == ".jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        text = _csv_text(rows)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", **_ENC) as fh:
        fh.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- scoring
class _Progress:
    """tqdm when installed, else a plain counter line on stderr (tqdm is not a core dependency)."""

    def __init__(self, total: int, enabled: bool, desc: str | None = None, what: str = "images") -> None:
        self.total, self.n, self.enabled, self.t0 = total, 0, enabled, time.time()
        self.bar, self.desc, self.what = None, desc, what
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, unit="img", desc=desc, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled:
            rate = self.n / max(time.time() - self.t0, 1e-9)
            head = f"{self.desc}: " if self.desc else ""
            print(f"\r{head}{self.n}/{self.total} {self.what}, {rate:.1f} img/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_workers(workers: Any, worker_type: Any) -> str:
    check_int("workers", workers, 0)
    if worker_type not in ("auto", "threads", "processes"):
        raise InputError(f"worker_type must be 'auto', 'threads' or 'processes', got {worker_type!r}")
    return worker_type


def _stream_rows(model: IACAMetric, files: Sequence[Path], refs: Sequence[Path | None], indices: Sequence[int],
                 opts: "_engine.Options", workers: int, worker_type: str, fp: str, settings: str
                 ) -> Iterator[list[tuple[int, dict]]]:
    """Chunks of (index, row) in the order of ``indices``; a chunk is at most ``batch_size`` images and
    ``batch_pixels`` pixels, scored by the engine together (grouped by size inside)."""
    ds = _FileDataset(files, refs, opts.grayscale, opts.max_pixels, opts)
    use_ref = model.uses_ref
    chunk: list[_Item] = []
    pixels = 0

    def flush(items: list[_Item]) -> list[tuple[int, dict]]:
        out: list[tuple[int, dict]] = []
        good = [it for it in items if it.error is None]
        eitems = [_engine.Item(it.img, it.ref if use_ref else None, str(files[it.index])) for it in good]
        raw, errors = _engine.run(model, eitems, opts) if eitems else (torch.zeros(0), {})
        mos = _engine.to_mos(model, raw) if eitems else raw
        k_of = {it.index: k for k, it in enumerate(good)}
        for it in items:
            if it.error is not None:
                out.append((it.index, _row(files, refs, it.index, None, None, it.error, fp, settings)))
                continue
            k = k_of[it.index]
            if k in errors:
                e = errors[k]
                out.append((it.index, _row(files, refs, it.index, None, None, f"{type(e).__name__}: {e}", fp,
                                           settings)))
            else:
                out.append((it.index, _row(files, refs, it.index, float(raw[k]), float(mos[k]), None, fp,
                                           settings)))
        return out

    for item in _decoded(ds, indices, workers, worker_type):
        chunk.append(item)
        if item.img is not None:
            pixels += int(item.img.shape[-2]) * int(item.img.shape[-1])
        if len(chunk) >= opts.batch_size or pixels >= opts.batch_pixels:
            yield flush(chunk)
            chunk, pixels = [], 0
    if chunk:
        yield flush(chunk)


def _folder_options(batch_size: Any, grayscale: Any, max_pixels: Any, tile: Any) -> "_engine.Options":
    return _engine.Options.make(batch_size=batch_size, grayscale=grayscale, max_pixels=max_pixels, tile=tile,
                                tile_above=FOLDER_TILE_ABOVE)


def score_folder(inputs: str | os.PathLike | Sequence[str | os.PathLike], ref_dir: str | os.PathLike | None = None, *,
                 model: IACAMetric | None = None, recursive: bool = False, batch_size: int = 8, workers: int = 2,
                 device: str | torch.device | None = None, max_pixels: int | None = None, tile: bool = False,
                 grayscale: str = "error", worker_type: str = "auto") -> Iterator[dict]:
    """Score image files and folders, yielding one row per file, in input order, as they are scored.

    Streaming: files are decoded ``workers`` at a time ahead of the model (bounded read-ahead), so
    memory does not grow with the number of files (unlike ``score(list_of_paths)``, which decodes all
    of them first). Arguments are validated before anything is read (InputError).

    Args:
        inputs: a file or folder, or a list of them (folders: image files by suffix, sorted).
        ref_dir: folder of the low-light inputs, paired by path relative to the input folder (see
            :func:`pair_refs`); None scores without them.
        model: any :class:`IACAMetric` (default: the embedded IACA-Lite); never moved or modified.
        recursive: also look into sub-folders (``enh/sub/b.png`` pairs with ``REF_DIR/sub/b.png``).
        batch_size, workers, device, max_pixels, tile, grayscale, worker_type: as ``iaca-metric score``.

    Yields:
        dicts with ``path``, ``ref`` ("" without one), ``score``, ``mos`` (floats, None on error),
        ``error`` (None, or the reason), ``model_sha256`` and ``settings`` (provenance). Images above
        :data:`FOLDER_TILE_ABOVE` pixels are scored in tiles (bounded memory).
    """
    from .api import resolve_model

    opts = _folder_options(batch_size, grayscale, max_pixels, tile)
    worker_type = _check_workers(workers, worker_type)
    dev = _engine.check_device(device)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files, refs = collect_checked(inputs, ref_dir, recursive)
    base = _engine.check_model(model) if model is not None else None
    m = resolve_model(base, dev)
    fp, settings = model_fingerprint(base if base is not None else m), run_settings(m, opts)
    if m.requires_ref and any(r is None for r in refs):
        raise InputError("this model requires low-light inputs: pass ref_dir")
    if worker_type == "auto":
        worker_type = "threads" if next(m.parameters()).device.type == "cpu" else "processes"

    def rows() -> Iterator[dict]:
        with torch.no_grad():
            for chunk in _stream_rows(m, files, refs, range(len(files)), opts, workers, worker_type, fp, settings):
                for _, row in chunk:
                    yield row

    return rows()  # everything above ran now, so bad arguments raise at the call, before any decoding


def score_files(model: IACAMetric, files: Sequence[Path], refs: Sequence[Path | None], *,
                out: str | os.PathLike | None = None, batch_size: int = 16, workers: int = 0,
                device: str | torch.device = "cpu", resume: bool = False, grayscale: str = "error",
                max_pixels: int | None = None, progress: bool = True, worker_type: str = "auto",
                tile: bool = False) -> list[dict]:
    """Score ``files`` (paired with ``refs``) and write one CSV / JSON / JSON Lines file (or CSV to stdout
    when ``out`` is None). Returns all rows in input order; each row has path, ref, score, mos, error,
    model_sha256 and settings.

    ``workers`` decode ahead of the model: threads by default on CPU (decoding overlaps the model without
    competing processes), DataLoader processes by default on accelerators (``worker_type`` chooses);
    0 decodes in-process, in order.

    ``resume``: rows already in ``out`` (or in its ``OUT.partial-<rank>.jsonl`` progress files) are kept
    and their files skipped when they are finite, error-free and were scored with the same model
    (``model_sha256``), ``ref`` and ``settings``; all other files are scored. Partial progress is saved
    as batches finish, so a killed run resumes where it stopped. Under ``torch.distributed``, rank 0
    decides the file list and the done set and broadcasts them before any rank writes.

    Raises InputError for bad arguments or output paths (before any work) and :class:`RunError` when a
    row would be missing from the final file (nothing is written; partial files are kept)."""
    rank, world = _dist_info()
    opts = _folder_options(batch_size, grayscale, max_pixels, tile)
    worker_type = _check_workers(workers, worker_type)
    _engine._check_bool("resume", resume)
    dev = _engine.check_device(device) or torch.device("cpu")
    _engine.check_model(model)
    if len(files) != len(refs):
        raise InputError(f"got {len(files)} files but {len(refs)} refs; pass one ref (or None) per file")
    out_path = check_out_path(out, files, refs)
    if resume and out_path is None:
        raise InputError("resume needs an output file (--out) to resume from")
    if model.requires_ref and any(r is None for r in refs):
        raise InputError("this model requires low-light inputs: pass --ref-dir")
    fp = model_fingerprint(model)
    run_model = _engine.place(model, dev)  # the caller's model is not moved
    settings = run_settings(run_model, opts)

    # ---- decided once, by rank 0, before anyone writes; every rank gets the same plan
    plan: list[Any] = [None]
    if rank == 0:
        files_s = [str(f) for f in files]
        refs_s = ["" if r is None else str(r) for r in refs]
        done: dict[int, dict] = {}
        if resume and out_path is not None:
            previous = read_results(out_path)
            for part in sorted(out_path.parent.glob(out_path.name + ".partial-*.jsonl")):
                try:
                    previous += _read_jsonl(part.read_text(**_ENC))
                except OSError as exc:
                    raise InputError(f"cannot read the progress file {part} to resume ({exc})") from None
            index = {p: i for i, p in enumerate(files_s)}
            for r in previous:
                i = index.get(r.get("path")) if isinstance(r, dict) else None
                if i is not None and _reusable(r, files_s[i], refs_s[i], fp, settings):
                    done[i] = _normalised(r)
        plan = [(files_s, refs_s, done)]
    if world > 1:
        dist.broadcast_object_list(plan, src=0)
    files_s, refs_s, done = plan[0]
    files = [Path(f) for f in files_s]
    refs = [Path(r) if r else None for r in refs_s]

    todo = [i for i in range(len(files)) if i not in done]
    mine = todo[rank::world]  # round-robin shard: every rank gets a similar mix of sizes
    if worker_type == "auto":
        worker_type = "threads" if dev.type == "cpu" else "processes"
    part_path = out_path.parent / f"{out_path.name}.partial-{rank}.jsonl" if out_path is not None else None
    rows: dict[int, dict] = {}
    bar = _Progress(len(mine), progress and rank == 0)
    t0 = time.time()
    part = open(part_path, "a", **_ENC) if part_path is not None else None
    try:
        with torch.no_grad():
            for chunk in _stream_rows(run_model, files, refs, mine, opts, workers, worker_type, fp, settings):
                for i, row in chunk:
                    rows[i] = row
                if part is not None:
                    part.write("".join(json.dumps(row) + "\n" for _, row in chunk))
                    part.flush()
                bar.update(len(chunk))
    finally:
        bar.close()
        if part is not None:
            part.close()
    mine_rows = list(rows.items())
    if world > 1:
        gathered: list[list[tuple[int, dict]]] = [None] * world  # type: ignore[list-item]
        dist.all_gather_object(gathered, mine_rows)
        mine_rows = [r for g in gathered for r in g]
    by_index = dict(done)
    by_index.update(mine_rows)
    missing = [files_s[i] for i in range(len(files)) if i not in by_index]
    wrong = [files_s[i] for i, r in by_index.items() if r.get("path") != files_s[i]]
    if missing or wrong or len(by_index) != len(files):
        raise RunError(f"{len(missing)} input(s) have no row and {len(wrong)} a mismatched one (e.g. "
                       f"{(missing + wrong)[:3]}); nothing final was written, progress is kept in "
                       f"{out_path}.partial-*.jsonl for --resume" if out_path else "rows are missing")
    final = [by_index[i] for i in range(len(files))]
    seconds = time.time() - t0
    if rank == 0:
        from . import __version__

        meta = {"iaca_metric": __version__, "torch": torch.__version__, "model_sha256": fp, "settings": settings,
                "arch": model.arch, "weights_source": model.weights_info.get("source"),
                "summary": {**summarize_rows(final), "newly_scored": len(todo), "seconds": round(seconds, 3)}}
        _write_results(out_path, final, meta)
    if world > 1:
        dist.barrier()  # everyone's progress is in OUT before any partial file is deleted
    if rank == 0 and out_path is not None:
        for p in out_path.parent.glob(out_path.name + ".partial-*.jsonl"):
            p.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    score_files.last_run = {"seconds": seconds, "scored": len(todo)}  # type: ignore[attr-defined]
    return final


def _normalised(r: dict) -> dict:
    """A reused row with the types a fresh row has (CSV gives strings)."""
    return {"path": r["path"], "ref": r.get("ref") or "", "score": round(float(r["score"]), 7),
            "mos": round(float(r["mos"]), 7), "error": None, "model_sha256": r["model_sha256"],
            "settings": r["settings"]}
