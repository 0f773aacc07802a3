"""Scoring many files: pairing with low-light inputs, parallel decoding, sharding, resumable output.

This is the engine behind ``iaca-metric score``. Decoding runs in DataLoader worker processes so the
model is not starved; a file that cannot be read becomes an error row and the run goes on. Under
``torchrun`` (a ``torch.distributed`` process group), files are sharded across ranks and rank 0 writes
the one output file, identical to a single-process run.
"""
from __future__ import annotations

import collections
import csv
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist

from .inputs import MIN_SIDE, InputError, check_min_size, check_pair, load_image
from .model import IACAMetric

__all__ = ["IMAGE_SUFFIXES", "collect_images", "pair_refs", "score_files", "read_results", "FIELDS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FIELDS = ("path", "ref", "score", "mos", "error")


def collect_images(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Files given directly, plus image files (by suffix) inside given folders, sorted; order kept."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            out += sorted(f for f in it if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)  # missing or non-image files surface as error rows, naming the file
    seen, uniq = set(), []
    for f in out:
        if f not in seen:
            seen.add(f)
            uniq.append(f)
    return uniq


def pair_refs(files: Sequence[Path], ref_dir: str | os.PathLike | None) -> list[Path | None]:
    """Low-light input for each file, paired by file name in ``ref_dir``: the same name, else the same
    stem with any image suffix (so ``a.png`` pairs with ``a.jpg``). Unpaired -> the returned path does
    not exist and scoring reports it."""
    if ref_dir is None:
        return [None] * len(files)
    ref_dir = Path(ref_dir)
    by_stem: dict[str, Path] = {}
    if ref_dir.is_dir():
        for f in sorted(ref_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                by_stem.setdefault(f.stem, f)
    out = []
    for f in files:
        exact = ref_dir / f.name
        out.append(exact if exact.is_file() else by_stem.get(f.stem, exact))
    return out


@dataclass
class _Item:
    index: int
    img: torch.Tensor | None
    ref: torch.Tensor | None
    error: str | None


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, files: Sequence[Path], refs: Sequence[Path | None], grayscale: str,
                 max_pixels: int | None) -> None:
        self.files, self.refs, self.grayscale, self.max_pixels = list(files), list(refs), grayscale, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> _Item:
        try:
            img = load_image(self.files[i], grayscale=self.grayscale)[None]
            ref = None
            if self.refs[i] is not None:
                if not Path(self.refs[i]).is_file():
                    raise InputError(f"no low-light input for {self.files[i].name} in the ref folder "
                                     f"(looked for {self.refs[i]})")
                ref = load_image(self.refs[i], grayscale=self.grayscale)[None]
                check_pair(img, ref, names=(str(self.files[i]), str(self.refs[i])))
            check_min_size(img, MIN_SIDE, name=str(self.files[i]), purpose="IACA (stride-32 network)")
            if self.max_pixels is not None:
                from .large_images import fit_max_pixels

                img, ref = fit_max_pixels(img, ref, self.max_pixels)
            return _Item(i, img, ref, None)
        except (InputError, OSError, ValueError) as exc:
            return _Item(i, None, None, f"{type(exc).__name__}: {exc}")


def _collate(items: list[_Item]) -> list[_Item]:
    return items


def _thread_batches(ds: torch.utils.data.Dataset, batch_size: int, threads: int) -> Iterator[list[_Item]]:
    """Batches of decoded items, decoded by ``threads`` threads running ahead of the consumer.

    Threads rather than processes on CPU: PIL and numpy release the GIL while decoding, so the decode
    fills the time torch's threads leave idle, without the process start-up, shared-memory copies and
    extra runnable processes that made DataLoader workers slower than in-process decoding on 2 cores."""
    n = len(ds)
    ahead = max(2, 2 * threads) * batch_size  # bounded read-ahead: memory stays O(batch)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="iaca-decode") as pool:
        futures: collections.deque = collections.deque()
        nxt = 0
        while nxt < n or futures:
            while nxt < n and len(futures) < ahead:
                futures.append(pool.submit(ds.__getitem__, nxt))
                nxt += 1
            k = min(batch_size, len(futures))
            yield [futures.popleft().result() for _ in range(k)]


class _Progress:
    """tqdm when installed, else a plain counter line on stderr (tqdm is not a core dependency)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.n, self.enabled, self.t0 = total, 0, enabled, time.time()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, unit="img", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled:
            rate = self.n / max(time.time() - self.t0, 1e-9)
            print(f"\r{self.n}/{self.total} images, {rate:.1f} img/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results file written by :func:`score_files` (CSV or JSON)."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)["results"] if text.strip() else []
    return list(csv.DictReader(io.StringIO(text)))


def _write_results(path: Path | None, rows: list[dict], stream=None) -> None:
    if path is not None and path.suffix.lower() == ".json":
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"fields": list(FIELDS), "results": rows}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in FIELDS})
    if path is None:
        # sys.stdout looked up now, not at import: redirect_stdout / capture must receive the CSV
        (sys.stdout if stream is None else stream).write(buf.getvalue())
    else:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)


def score_files(model: IACAMetric, files: Sequence[Path], refs: Sequence[Path | None], *,
                out: str | os.PathLike | None = None, batch_size: int = 16, workers: int = 0,
                device: str | torch.device = "cpu", resume: bool = False, grayscale: str = "error",
                max_pixels: int | None = None, progress: bool = True, worker_type: str = "auto") -> list[dict]:
    """Score ``files`` (paired with ``refs``) and write one CSV/JSON (or CSV to stdout when ``out`` is
    None). Returns all rows in input order; each row has path, ref, score, mos, error.

    ``workers`` decode ahead of the model: threads by default on CPU (decoding overlaps the model without
    competing processes), DataLoader processes by default on accelerators (``worker_type`` chooses);
    0 decodes in-process, in order.

    ``resume``: rows already in ``out`` without an error are kept and their files skipped; failed rows
    are retried. Partial progress is saved to ``OUT.partial-<rank>.jsonl`` as batches finish, so a killed
    run resumes where it stopped."""
    rank, world = _dist_info()
    out_path = Path(out) if out is not None else None
    done: dict[str, dict] = {}
    if resume and out_path is not None:
        for r in read_results(out_path):
            if not r.get("error"):
                done[r["path"]] = r
        for part in out_path.parent.glob(out_path.name + ".partial-*.jsonl"):
            for line in part.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    r = json.loads(line)
                    if not r.get("error"):
                        done[r["path"]] = r
    todo = [i for i, f in enumerate(files) if str(f) not in done]
    mine = todo[rank::world]  # round-robin shard: every rank gets a similar mix of sizes
    model = model.to(device).eval()
    param = next(model.parameters())
    use_ref = model.uses_ref
    if model.requires_ref and any(r is None for r in refs):
        raise InputError("this model requires low-light inputs: pass --ref-dir")
    ds = torch.utils.data.Subset(_FileDataset(files, refs, grayscale, max_pixels), mine)
    if worker_type == "auto":
        worker_type = "threads" if torch.device(device).type == "cpu" else "processes"
    if worker_type not in ("threads", "processes"):
        raise ValueError(f"worker_type must be 'auto', 'threads' or 'processes', got {worker_type!r}")
    loader: Iterable[list[_Item]]
    if workers and worker_type == "threads":
        loader = _thread_batches(ds, batch_size, workers)
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                                             persistent_workers=False, prefetch_factor=4 if workers else None)
    part_path = out_path.parent / f"{out_path.name}.partial-{rank}.jsonl" if out_path is not None else None
    part = open(part_path, "a", encoding="utf-8") if part_path is not None else None
    rows: dict[int, dict] = {}
    bar = _Progress(len(mine), progress and rank == 0)
    with torch.no_grad():
        for items in loader:
            by_size: dict[tuple, list[_Item]] = {}
            for it in items:
                if it.error is not None:
                    rows[it.index] = _row(files, refs, it.index, None, None, it.error)
                else:
                    by_size.setdefault(tuple(it.img.shape[-2:]), []).append(it)
            for group in by_size.values():
                x = torch.cat([g.img for g in group]).to(device=param.device, dtype=param.dtype)
                r = None
                if use_ref and all(g.ref is not None for g in group):
                    r = torch.cat([g.ref for g in group]).to(device=param.device, dtype=param.dtype)
                elif use_ref and any(g.ref is not None for g in group):
                    # mixed batch: score those with and without ref separately to keep semantics per file
                    for g in group:
                        s = model(g.img.to(param.device, param.dtype),
                                  g.ref.to(param.device, param.dtype) if g.ref is not None else None)
                        rows[g.index] = _row(files, refs, g.index, float(s), float(model.to_mos(s)), None)
                    continue
                s = model(x, r).float().cpu()
                m = model.to_mos(s)
                for k, g in enumerate(group):
                    rows[g.index] = _row(files, refs, g.index, float(s[k]), float(m[k]), None)
            if part is not None:
                for it in items:
                    part.write(json.dumps(rows[it.index]) + "\n")
                part.flush()
            bar.update(len(items))
    bar.close()
    if part is not None:
        part.close()
    mine_rows = [rows[i] for i in sorted(rows)]
    if world > 1:
        gathered: list[list[dict]] = [None] * world  # type: ignore[list-item]
        dist.all_gather_object(gathered, mine_rows)
        mine_rows = [r for g in gathered for r in g]
    by_path = dict(done)
    for r in mine_rows:
        by_path[r["path"]] = r
    final = [by_path[str(f)] for f in files if str(f) in by_path]
    if rank == 0:
        _write_results(out_path, final)
    if world > 1:
        dist.barrier()  # everyone's partial file is merged into OUT before any is deleted
    if part_path is not None and part_path.exists():
        part_path.unlink()
    return final


def _row(files: Sequence[Path], refs: Sequence[Path | None], i: int, s: float | None, m: float | None,
         err: str | None) -> dict:
    return {"path": str(files[i]), "ref": "" if refs[i] is None else str(refs[i]),
            "score": None if s is None else round(s, 7), "mos": None if m is None else round(m, 7), "error": err}
