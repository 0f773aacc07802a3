"""Command line: ``iaca-metric {score,compare,demo,info,convert,train}``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

__all__ = ["main"]


# Exit status: 0 every row scored; 1 the run finished but some rows failed (each is an error row in the
# output); 2 the run failed (bad arguments, unreadable model, output not writable, internal error):
# nothing final was written. Both failures print one line starting with "error:".
EXIT_OK, EXIT_ROWS_FAILED, EXIT_RUN_FAILED = 0, 1, 2


def _load_model(spec: str | None, revision: str | None = None):
    from .model import IACAMetric

    if spec in (None, "", "default"):
        return IACAMetric()
    return IACAMetric.from_pretrained(spec, revision=revision)


def auto_threads() -> int:
    """torch intra-op threads for `score` when --threads is not given: the CPUs this process may use,
    minus the load already running on them (1-minute load average), at least 1. On a loaded 2-core
    machine this is 1, where 2 threads were measured 5.5x slower (each op waits for a descheduled thread)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def _validate_score_args(args: argparse.Namespace) -> None:
    """Every `score` argument, before any file is read or the model loaded (InputError -> exit 2)."""
    from . import _engine
    from .folder_scoring import _folder_options

    from .inputs import InputError, check_int

    _folder_options(args.batch_size, "replicate" if args.grayscale else "error", args.max_pixels, args.tile)
    check_int("--workers", args.workers, 0)
    if args.threads is not None:
        check_int("--threads", args.threads, 0, " (0 = torch's default)")
    if not args.device:
        raise InputError("--device is empty; use e.g. cpu or cuda")
    _engine.check_device(args.device)
    if args.resume and not args.out:
        raise InputError("--resume needs --out (the results file to resume)")


def _cmd_score(args: argparse.Namespace) -> int:
    import torch

    from .folder_scoring import check_out_path, collect_checked, score_files, summarize_rows

    _validate_score_args(args)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        backend = args.backend or ("nccl" if torch.cuda.is_available() and args.device.startswith("cuda") else "gloo")
        dist.init_process_group(backend)
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(args.device)
    try:
        threads = auto_threads() if args.threads is None else args.threads
        if threads:
            torch.set_num_threads(threads)
        files, refs = collect_checked(args.inputs, args.ref_dir, args.recursive)
        check_out_path(args.out, files, refs)  # before the model is loaded or anything is scored
        model = _load_model(args.model, args.revision)
        rows = score_files(model, files, refs, out=args.out, batch_size=args.batch_size, workers=args.workers,
                           device=args.device, resume=args.resume, max_pixels=args.max_pixels,
                           worker_type=args.worker_type, tile=args.tile,
                           grayscale="replicate" if args.grayscale else "error", progress=not args.quiet)
        failed = [r for r in rows if r.get("error")]
        rank0 = int(os.environ.get("RANK", "0")) == 0  # every rank holds all rows; report them once
        if rank0:
            for r in failed:
                print(f"failed: {r['path']}: {r['error']}", file=sys.stderr)
            last = getattr(score_files, "last_run", {})
            summ = summarize_rows(rows)
            rate = last.get("scored", 0) / max(last.get("seconds", 0.0), 1e-9)
            if not args.quiet:
                where = f" -> {args.out}" if args.out else ""
                print(f"summary: n={summ['n']} scored={summ['scored']} failed={summ['failed']} "
                      f"mean={summ['mean']:.4f} std={summ['std']:.4f} {rate:.1f} img/s{where}", file=sys.stderr)
            if failed:
                print(f"error: {len(failed)} of {len(rows)} images failed (error rows"
                      f"{' in ' + str(args.out) if args.out else ''}; listed above)", file=sys.stderr)
        return EXIT_ROWS_FAILED if failed else EXIT_OK
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _info_record(model) -> dict:
    import platform

    import torch

    from . import __version__

    info = {k: v for k, v in model.weights_info.items() if not k.startswith("_")}
    return {
        "iaca_metric": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "arch": model.arch, "parameters": model.num_parameters(), "illumination": model.illumination,
        "uses_ref": model.uses_ref, "requires_ref": model.requires_ref, "mos_scale": model.mos_scale,
        "mos_offset": model.mos_offset, "mos_range": list(model.mos_range),
        "higher_is_better": model.higher_is_better,
        "weights": {"source": info.get("source"), "revision": info.get("revision"), "path": info.get("path"),
                    "sha256": info.get("sha256"), "config_sha256": info.get("config_sha256")},
    }


def _cmd_info(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.revision)
    if args.json:
        import json

        print(json.dumps(_info_record(model), indent=1, sort_keys=True))
        return 0
    info = model.weights_info
    lines = [
        ("arch", model.arch),
        ("parameters", f"{model.num_parameters():,}"),
        ("illumination", f"{model.illumination} (uses low-light input: {model.uses_ref}, "
                         f"requires it: {model.requires_ref})"),
        ("MOS mapping", f"mos = {model.mos_scale!r} * score + {model.mos_offset!r}"),
        ("weights source", info.get("source")),
        ("weights revision", info.get("revision") or "-"),
        ("weights path", info.get("path", "-")),
        ("weights sha256", info.get("sha256")),
    ]
    for k, v in lines:
        print(f"{k:>17}: {v}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    model = convert_checkpoint(args.src, args.dst, arch=args.arch)
    print(f"wrote {args.dst}: arch {model.arch}, {model.num_parameters():,} parameters, "
          f"model.safetensors sha256 {model.weights_info['sha256']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .research.demo import run_demo

    run_demo(out_dir=args.out, size=args.size)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    """``iaca-metric compare``: score methods side by side (see iaca_metric.compare)."""
    from .compare import run_compare_cli

    return run_compare_cli(args, _load_model)


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.train import train

    best = train(args)
    print(f"best model: {best}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="iaca-metric", description="IACA perceptual quality metric for low-light "
                                "image enhancement (higher score = better).")
    p.add_argument("--version", action="version", version=f"iaca-metric {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score images or folders of enhanced images")
    s.add_argument("inputs", nargs="+", help="image files and/or folders")
    s.add_argument("--ref-dir", help="folder of the low-light inputs, paired by file name")
    s.add_argument("--out", help="results file, .csv, .json or .jsonl (default: CSV on stdout); checked before "
                   "any work: not an input image, not a folder, writable")
    s.add_argument("--model", default=None, help="weights folder or hub repo id (default: embedded IACA-Lite)")
    s.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    s.add_argument("--batch-size", type=int, default=8, help="images per forward pass (>= 1; a pass also holds "
                   "at most 4096x2048 pixels)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (checked before any work)")
    s.add_argument("--workers", type=int, default=2, help="decoding workers running ahead of the model: threads on CPU, "
                   "processes on GPUs (see --worker-type); 0 = decode in-process")
    s.add_argument("--worker-type", choices=["auto", "threads", "processes"], default="auto",
                   help="auto: threads when --device is cpu, DataLoader processes otherwise")
    s.add_argument("--threads", type=int, default=None, help="torch intra-op threads (0 = torch default; default: "
                   "the CPUs not already busy, at least 1)")
    s.add_argument("--resume", action="store_true", help="skip files already scored in --out with the same model "
                   "and settings (finite, error-free rows only)")
    s.add_argument("--recursive", action="store_true", help="also look into sub-folders; low-light inputs pair by "
                   "relative path (enh/sub/b.png with REF_DIR/sub/b.png)")
    s.add_argument("--grayscale", action="store_true", help="replicate single-channel images to RGB")
    s.add_argument("--max-pixels", type=int, default=None,
                   help="downscale images above this many pixels before scoring (memory bound); with --tile, "
                   "the tile budget instead")
    s.add_argument("--tile", action="store_true", help="score large images at full resolution in tiles "
                   "(exact global statistics; within 0.02 of whole-image scores)")
    s.add_argument("--backend", default=None, help="torch.distributed backend under torchrun (gloo/nccl)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_score)

    i = sub.add_parser("info", help="describe a model: arch, parameters, weights source and sha256")
    i.add_argument("model", nargs="?", default=None, help="weights folder or hub repo id (default: embedded)")
    i.add_argument("--revision", default=None)
    i.add_argument("--json", action="store_true", help="one JSON object: package, torch and weight versions")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("convert", help="convert an original IACA release checkpoint to a hub-ready folder")
    c.add_argument("src", help="checkpoint file ({'model': state_dict, ...} or a bare state dict)")
    c.add_argument("dst", help="output folder (model.safetensors, config.json, README.md)")
    c.add_argument("--arch", default=None, choices=["resnext101_32x8d", "resnet50"],
                   help="backbone of the checkpoint (default: inferred from its keys)")
    c.set_defaults(func=_cmd_convert)

    d = sub.add_parser("demo", help="offline demo: simulate low light on sample photos, enhance, score, rank")
    d.add_argument("--out", default="iaca_demo", help="output folder (contact sheet PNG + CSV)")
    d.add_argument("--size", type=int, default=256, help="short side of the demo photos in pixels")
    d.set_defaults(func=_cmd_demo)

    from .compare import add_compare_arguments

    cm = sub.add_parser("compare", help="compare enhancement methods: tables (Markdown/LaTeX/CSV) and an HTML report")
    add_compare_arguments(cm)
    cm.set_defaults(func=_cmd_compare)

    from .training.train import build_parser as train_parser

    t = sub.add_parser("train", help="train an IACA model (see iaca_metric.training.train)")
    train_parser(t)
    t.set_defaults(func=_cmd_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some rows failed, 2 the run failed)."""
    from ._engine import ScoreError
    from .folder_scoring import RunError
    from .hub import WeightsError
    from .inputs import InputError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (WeightsError, InputError, RunError, ScoreError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("error: interrupted (partial progress, if any, is kept for --resume)", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as exc:  # noqa: BLE001 - a crash is a failed run with one line, not a traceback
        if os.environ.get("IACA_METRIC_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {_one_line(exc)} (unexpected; set IACA_METRIC_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return EXIT_RUN_FAILED


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    raise SystemExit(main())
