"""Is IACA-Lite on a GPU limited by kernel launches? (run on a lent GPU; ~30 s)

At 600x400, batch 32, bf16 autocast, IACA-Lite ran at 0.70x its bare backbone on an H200 while the
ResNeXt variant ran at 0.96x and IACA-Lite in fp32 at 0.92x. This script times, side by side and
interleaved, IACA-Lite and its backbone (a) as eager calls and (b) replayed from a CUDA graph, which
removes the CPU cost of launching kernels, and counts the CPU and GPU time per call with the profiler.
If the eager ratio is low but the graph ratio is near 1, the heads' extra kernels cost launch time on
the CPU, not GPU time.

    python benchmarks/gpu_launch_overhead.py [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402


def _graphed(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _time(fns: dict[str, Callable], reps: int) -> dict[str, float]:
    """Median ms per call, contenders interleaved, CUDA events."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times[k].append(a.elapsed_time(b))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", default="600x400")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    w, h = map(int, args.size.split("x"))
    model = speed.build_model("lite", "cuda", weights=speed.default_weights("lite"))
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(args.batch, 3, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
    low = (x * 0.2).contiguous(memory_format=torch.channels_last)
    result: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "setting":
                    f"{args.size} b{args.batch} bf16 autocast channels_last", "modes": {}}
    for dtype_name, dt in (("bf16", torch.bfloat16), ("fp32", None)):
        ctx = (lambda: torch.autocast("cuda", dtype=dt, cache_enabled=False)) if dt else torch.no_grad

        def iaca() -> torch.Tensor:
            with torch.inference_mode(), ctx():
                return model(x, low)

        def backbone() -> torch.Tensor:
            with torch.inference_mode(), ctx():
                return model.features(x)[1]

        eager = {"iaca": iaca, "backbone": backbone}
        graphs = {"iaca_graph": _graphed(iaca), "backbone_graph": _graphed(backbone)}
        ms = _time({**eager, **graphs}, args.reps)
        prof = {}
        for k, fn in eager.items():
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                    torch.profiler.ProfilerActivity.CUDA]) as p:
                for _ in range(5):
                    fn()
                torch.cuda.synchronize()
            ev = p.key_averages()
            cuda_us = sum(e.self_device_time_total for e in ev) / 5
            n_kernels = sum(e.count for e in ev if e.self_device_time_total > 0) / 5
            prof[k] = {"gpu_ms_per_call": cuda_us / 1e3, "kernels_per_call": n_kernels}
        res = {"ms": ms, "profile": prof,
               "ratio_eager": ms["backbone"] / ms["iaca"], "ratio_graph": ms["backbone_graph"] / ms["iaca_graph"],
               "img_per_s": {k: args.batch / v * 1e3 for k, v in ms.items()}}
        result["modes"][dtype_name] = res
        print(f"[{dtype_name}] ms/call {({k: round(v, 3) for k, v in ms.items()})}")
        print(f"[{dtype_name}] IACA/backbone throughput: eager {res['ratio_eager']:.3f}, CUDA graph "
              f"{res['ratio_graph']:.3f}; profile {prof}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
