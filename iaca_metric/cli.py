"""Command line: ``iaca-metric {score,compare,demo,info,convert,train}``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

__all__ = ["main"]


def _load_model(spec: str | None, revision: str | None = None):
    from .model import IACAMetric

    if spec in (None, "", "default"):
        return IACAMetric()
    return IACAMetric.from_pretrained(spec, revision=revision)


def _cmd_score(args: argparse.Namespace) -> int:
    import torch

    from .folder_scoring import collect_images, pair_refs, score_files

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        backend = args.backend or ("nccl" if torch.cuda.is_available() and args.device.startswith("cuda") else "gloo")
        dist.init_process_group(backend)
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(args.device)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        model = _load_model(args.model, args.revision)
        files = collect_images(args.inputs, recursive=args.recursive)
        if not files:
            print("error: no image files found in the given paths", file=sys.stderr)
            return 2
        refs = pair_refs(files, args.ref_dir)
        rows = score_files(model, files, refs, out=args.out, batch_size=args.batch_size, workers=args.workers,
                           device=args.device, resume=args.resume, max_pixels=args.max_pixels,
                           worker_type=args.worker_type,
                           grayscale="replicate" if args.grayscale else "error", progress=not args.quiet)
        failed = [r for r in rows if r.get("error")]
        if int(os.environ.get("RANK", "0")) == 0:  # every rank holds all rows; report them once
            for r in failed:
                print(f"failed: {r['path']}: {r['error']}", file=sys.stderr)
        if args.out and not args.quiet:
            print(f"wrote {len(rows)} rows to {args.out} ({len(failed)} failed)", file=sys.stderr)
        return 1 if failed else 0
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def _cmd_info(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.revision)
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
    from .demo import run_demo

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
    s.add_argument("--out", help="results file, .csv or .json (default: CSV on stdout)")
    s.add_argument("--model", default=None, help="weights folder or hub repo id (default: embedded IACA-Lite)")
    s.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--device", default="cpu")
    s.add_argument("--workers", type=int, default=2, help="decoding workers running ahead of the model: threads on CPU, "
                   "processes on GPUs (see --worker-type); 0 = decode in-process")
    s.add_argument("--worker-type", choices=["auto", "threads", "processes"], default="auto",
                   help="auto: threads when --device is cpu, DataLoader processes otherwise")
    s.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    s.add_argument("--resume", action="store_true", help="skip files already scored in --out")
    s.add_argument("--recursive", action="store_true", help="also look into sub-folders")
    s.add_argument("--grayscale", action="store_true", help="replicate single-channel images to RGB")
    s.add_argument("--max-pixels", type=int, default=None,
                   help="downscale images above this many pixels before scoring (memory bound)")
    s.add_argument("--backend", default=None, help="torch.distributed backend under torchrun (gloo/nccl)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_score)

    i = sub.add_parser("info", help="describe a model: arch, parameters, weights source and sha256")
    i.add_argument("model", nargs="?", default=None, help="weights folder or hub repo id (default: embedded)")
    i.add_argument("--revision", default=None)
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("convert", help="convert an original IACA release checkpoint to a hub-ready folder")
    c.add_argument("src", help="checkpoint file ({'model': state_dict, ...} or a bare state dict)")
    c.add_argument("dst", help="output folder (model.safetensors, config.json, README.md)")
    c.add_argument("--arch", default="resnext101_32x8d", choices=["resnext101_32x8d", "resnet50"])
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
    from .hub import WeightsError
    from .inputs import InputError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (WeightsError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
