"""What does IACA-Lite's autocast precision policy cost? (GPU: ~30 s; CPU works, slowly)

Under bf16/fp16 autocast IACA-Lite keeps its stem and first ``features.fp32_blocks[dtype]`` blocks in
float32 (bf16: the whole trunk; fp16: 3 blocks), which keeps it within 1e-2 of fp32
(benchmarks/precision.py). This script times, side by side and interleaved, the embedded model's forward
pass and IACALoss forward+backward at one setting (default 600x400, batch 32, channels-last): fp32
(PyTorch defaults: TF32 convolutions on Ampere and newer), bf16 and fp16 autocast with the default
policy, bf16 with 3 float32 blocks, and bf16/fp16 with every block in half precision. It prints
images/s and the ratios to the all-bf16 mode.

    python benchmarks/autocast_policy.py [--device cuda] [--batch 32] [--size 600x400] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from iaca_metric import IACALoss, IACAMetric

MODES = {  # name: (autocast dtype or None, float32 blocks under autocast; None: the model's default)
    "fp32": (None, None),
    "bf16_default": (torch.bfloat16, None),
    "bf16_fp32_3": (torch.bfloat16, 3),
    "bf16_all": (torch.bfloat16, 0),
    "fp16_default": (torch.float16, None),
    "fp16_all": (torch.float16, 0),
}


def _timer(dev: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(fn: Callable[[], object]) -> float:
        """Milliseconds for one call (CUDA events on GPU, wall clock after synchronising elsewhere)."""
        if dev.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            return a.elapsed_time(b)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", default="600x400", help="WxH")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    w, h = map(int, args.size.split("x"))
    model = IACAMetric().to(dev).eval().requires_grad_(False)
    loss_fn = IACALoss(model=model)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, h, w, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    low = (x * 0.2).contiguous(memory_format=torch.channels_last)

    def call(mode: str, kind: str) -> Callable[[], object]:
        dt, blocks = MODES[mode]

        def fn() -> object:
            model.features.fp32_blocks = dict(default)
            if dt is not None and blocks is not None:
                model.features.fp32_blocks[dt] = blocks
            with torch.autocast(dev.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
                if kind == "score":
                    with torch.inference_mode():
                        return model(x, low)
                xg = x.detach().requires_grad_(True)
                loss_fn(xg, low).backward()
                return xg.grad
        return fn

    default = dict(model.features.fp32_blocks)
    timer = _timer(dev)
    fns = {(m, k): call(m, k) for m in MODES for k in ("score", "loss")}
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    for _ in range(args.reps):  # interleaved: drift and throttling hit every mode alike
        for k, fn in fns.items():
            times[k].append(timer(fn))
    model.features.fp32_blocks = default
    res: dict = {"benchmark": "autocast_policy", "date": datetime.date.today().isoformat(), "device": str(dev),
                 "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                 "torch": torch.__version__, "setting": f"{args.size} batch {args.batch} channels_last",
                 "weights_sha256": model.weights_info.get("sha256"), "reps": args.reps,
                 "fp32_blocks_default": {str(k).split(".")[-1]: v for k, v in default.items()}, "modes": {}}
    for kind in ("score", "loss"):
        base = statistics.median(times[("bf16_all", kind)])
        for m in MODES:
            ms = statistics.median(times[(m, kind)])
            res["modes"].setdefault(m, {})[kind] = {"ms": ms, "img_per_s": args.batch / ms * 1e3,
                                                    "throughput_vs_bf16_all": base / ms}
            print(f"{kind:5s} {m:15s} {ms:9.2f} ms  {args.batch / ms * 1e3:9.1f} img/s  "
                  f"x{base / ms:.3f} of all-bf16", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
