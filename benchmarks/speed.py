"""Speed benchmark: IACA vs its bare backbone, PSNR/SSIM, IACALoss, the folder CLI, peak memory.

Everything that is compared is measured side by side in one run: per repetition the contenders of a
setting run one after another in a rotating order, so slow phases of a noisy machine hit all of them
alike; latency is the median (and p90) over repetitions after warm-up, and every ratio is the median of
the per-repetition ratios.

Measured, per setting (resolution x batch x dtype x memory format):
  * images/s and latency of IACA-Lite (EfficientNet-Lite0, illumination from the low-light input) and of
    the paper's IACA (ResNeXt-101 32x8d), each next to its bare backbone (``model.features``, the two
    taps only), and of PSNR and SSIM (``iaca_metric.reference_metrics``); ratio IACA / backbone;
  * forward+backward of ``IACALoss`` vs the bare backbone's forward+backward (``sum of outputs``), both
    with frozen weights, so gradients flow to the images only, as when training an enhancer;
  * peak memory: CPU peak RSS of a fresh subprocess per (setting, contender), or
    ``torch.cuda.max_memory_allocated`` on GPU; the 4K IACA-Lite CPU check (target < 4 GB);
  * the folder CLI engine (``score_files`` with decoding workers) on generated PNG/JPEG files vs the
    same model on pre-decoded tensors already on the device (target ratio >= 0.9).

Weights are random (BatchNorm statistics calibrated on random images so activations have realistic
magnitudes): speed does not depend on the weight values.

On CPU, settings that would not fit a ~15 min run on 2 cores are skipped and listed (``--no-skips``
measures everything asked for). Examples:

    python benchmarks/speed.py --device cpu --out docs/results/speed_cpu.json
    python benchmarks/speed.py --device cuda                      # -> docs/results/speed_cuda.json
    python benchmarks/speed.py --quick --out /tmp/speed.json      # smoke test, < 30 s
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from iaca_metric import IACALoss, IACAMetric
from iaca_metric.reference_metrics import psnr, ssim

# name -> (arch, illumination, label, label of its bare backbone)
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "lite": ("efficientnet_lite0", "reference_or_image", "IACA-Lite", "EfficientNet-Lite0 backbone"),
    "resnext": ("resnext101_32x8d", "image", "IACA (ResNeXt-101, paper)", "ResNeXt-101 32x8d backbone"),
    "resnet50": ("resnet50", "image", "IACA (ResNet-50)", "ResNet-50 backbone"),
}
HEAVY_VARIANTS = ("resnext", "resnet50")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

# Per-device defaults; --quick replaces them with a tiny smoke-test profile. Explicit options win.
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": dict(resolutions="256x256,600x400,1920x1080,3840x2160", batches="1,8,32", dtypes="fp32,bf16",
                formats="contiguous,channels_last", variants="lite,resnext", reps=10, min_reps=3, warmup=2,
                setting_budget=20.0, loss_settings="256x256:1,256x256:8,600x400:1", folder_n=32, folder_size="600x400",
                folder_batch=8, folder_workers=2, folder_reps=3, memory=True, memory_contenders="all",
                rss_4k=True),
    "cuda": dict(resolutions="256x256,600x400,1920x1080,3840x2160", batches="1,8,32", dtypes="fp32,bf16",
                 formats="contiguous,channels_last", variants="lite,resnext", reps=30, min_reps=5, warmup=3,
                 setting_budget=10.0, loss_settings="600x400:32", folder_n=256, folder_size="600x400",
                 folder_batch=32, folder_workers=8, folder_reps=3, memory=True, memory_contenders="all",
                 rss_4k=True),
    "quick": dict(resolutions="64x64", batches="1,2", dtypes="fp32", formats="contiguous,channels_last",
                  variants="lite", reps=3, min_reps=2, warmup=1, setting_budget=2.0, loss_settings="64x64:2",
                  folder_n=4, folder_size="64x64", folder_batch=2, folder_workers=1, folder_reps=2,
                  memory=True, memory_contenders="iaca_lite", rss_4k=False),
}

CPU_MAX_PIXELS_PER_CALL = 2.2e6  # batch > 1 on CPU only up to this many pixels per call
GPU_MAX_PIXELS_PER_CALL = 8 * 3840 * 2160
RSS_4K_TARGET_MB = 4096.0
FOLDER_TARGET = 0.9


# ---------------------------------------------------------------------------------------------- helpers
def parse_res(text: str) -> tuple[int, int]:
    """'600x400' -> (width 600, height 400)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 600x400 (width x height), got {text!r}")
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"IACA needs both sides >= 32 pixels, got {text!r}")
    return w, h


def _csv(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def setting_dict(w: int, h: int, batch: int, dtype: str, fmt: str) -> dict[str, Any]:
    return {"resolution": f"{w}x{h}", "width": w, "height": h, "batch": batch, "dtype": dtype,
            "memory_format": fmt}


def setting_name(s: dict[str, Any]) -> str:
    return f"{s['resolution']} b{s['batch']} {s['dtype']} {s['memory_format']}"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_cpu_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info(device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_native_bf16": native_cpu_bf16(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        info.update({"gpu": torch.cuda.get_device_name(idx), "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32})
    return info


def autocast_ctx(device: str, dtype: str):
    amp = DTYPES[dtype]
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=amp)


def sync_fn(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# ---------------------------------------------------------------------------------------------- models
@torch.no_grad()
def calibrate_batchnorm(model: IACAMetric, device: str, size: int = 128, batch: int = 4, seed: int = 0) -> None:
    """Set every BatchNorm's running statistics from a few random images (cumulative average), so a
    randomly initialised network has normalised activations like a trained one (no overflow, no
    denormals). Only the statistics change; the model ends in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.rand(batch, 3, size, size, generator=g).to(device)
        model(x, x * 0.2 if model.uses_ref else None)
    for bn in bns:
        bn.momentum = 0.1
        bn.eval()


def default_weights(variant: str) -> str | None:
    """"embedded" for IACA-Lite when the packaged model is present, else None (random weights).

    Trained weights matter on CPUs: random networks can push activations into float32 denormals, which
    x86 cores process tens of times slower, so random-weight CPU timings can be badly off."""
    if variant != "lite":
        return None
    try:
        from iaca_metric.hub import default_model_dir

        default_model_dir()
        return "embedded"
    except Exception:  # noqa: BLE001 - not installed in this checkout: random weights
        return None


def build_model(variant: str, device: str, calibrate: bool = True, weights: str | None = None) -> IACAMetric:
    """IACA model of ``variant`` on ``device``, frozen, eval mode. ``weights``: a folder/hub repo for
    ``from_pretrained``, "embedded" (the packaged IACA-Lite) or None: random, seeded, with a non-degenerate
    illumination weight map and (``calibrate``) BatchNorm statistics from random images."""
    arch, illum, _, _ = VARIANTS[variant]
    if weights == "embedded":
        model = IACAMetric()
    elif weights:
        model = IACAMetric.from_pretrained(weights)
    else:
        torch.manual_seed(0)
        model = IACAMetric(arch=arch, illumination=illum)
        # The illumination nets end in a ReLU: with default init their weight map is often all zero, which
        # zeroes every feature and makes the score a constant. A positive output bias keeps it alive.
        with torch.no_grad():
            for getw in (model.getw5, model.getw6):
                getw[2].bias.fill_(0.5)
    model = model.to(device).eval()
    if calibrate and not weights:
        calibrate_batchnorm(model, device)
    return model.requires_grad_(False)


def make_inputs(s: dict[str, Any], device: str, seed: int = 0, need_gt: bool = True) -> dict[str, torch.Tensor]:
    """Enhanced image, its low-light input and (``need_gt``) a ground truth for PSNR/SSIM, in the
    setting's memory format."""
    g = torch.Generator().manual_seed(seed)
    fmt = FORMATS[s["memory_format"]]
    img = torch.rand(s["batch"], 3, s["height"], s["width"], generator=g).to(device).contiguous(memory_format=fmt)
    out = {"img": img, "low": img * 0.2}
    if need_gt:
        out["gt"] = (img * 0.9 + 0.05).clamp(0, 1)
    return {k: v.contiguous(memory_format=fmt) for k, v in out.items()}


def set_format(models: dict[str, IACAMetric], fmt: str) -> None:
    for m in models.values():
        m.to(memory_format=FORMATS[fmt])


# ---------------------------------------------------------------------------------------------- skip rules
def budget_skip(s: dict[str, Any], variant: str | None, device: str, no_skips: bool,
                kind: str = "inference") -> str | None:
    """Why a setting (variant None) or a variant within it is not measured, or None."""
    if no_skips:
        return None
    pixels = s["batch"] * s["width"] * s["height"]
    if device.startswith("cuda"):
        if pixels > GPU_MAX_PIXELS_PER_CALL:
            return f"GPU: more than {GPU_MAX_PIXELS_PER_CALL / 1e6:.0f} MP per call (batch 32 at 4K)"
        return None
    if variant is None:
        if s["dtype"] != "fp32":
            limit = 600 * 400 if native_cpu_bf16() else 256 * 256
            if s["batch"] > 1 or s["width"] * s["height"] > limit:
                return ("CPU budget: reduced precision only at batch 1 up to "
                        + ("600x400" if native_cpu_bf16() else "256x256 (no avx512_bf16/amx_bf16 on this CPU: "
                                                               "autocast runs emulated kernels, ~10x slower than fp32)"))
        if s["batch"] > 1 and pixels > CPU_MAX_PIXELS_PER_CALL:
            return (f"CPU budget: batch > 1 only up to {CPU_MAX_PIXELS_PER_CALL / 1e6:.1f} MP per call "
                    "(batch 8 up to 600x400, batch 32 at 256x256)")
        if s["memory_format"] != "contiguous" and s["batch"] > 1:
            return "CPU budget: channels_last only at batch 1"
        return None
    if variant in HEAVY_VARIANTS and s["dtype"] != "fp32":
        return f"CPU budget: {VARIANTS[variant][0]} only in fp32"
    if variant in HEAVY_VARIANTS and kind == "loss" and (s["batch"] > 1 or s["width"] * s["height"] > 256 * 256):
        return f"CPU budget: {VARIANTS[variant][0]} fwd+bwd only at batch 1 up to 256x256"
    if variant in HEAVY_VARIANTS and (s["batch"] > 1 or s["width"] * s["height"] > 600 * 400):
        return (f"CPU budget: {VARIANTS[variant][0]} (~80 GFLOPs per 600x400 image, ~700 at 1080p) only at "
                "batch 1 up to 600x400")
    return None


# ---------------------------------------------------------------------------------------------- timing
def time_interleaved(contenders: dict[str, Callable[[], Any]], *, warmup: int, reps: int, min_reps: int,
                     budget_s: float, sync: Callable[[], None]) -> tuple[dict[str, list[float]], int]:
    """Per-call wall times of each contender. Up to ``warmup`` untimed rounds (at least 1; further
    rounds only while a round takes under a quarter of ``budget_s``: one call of a slow setting already
    warms allocator caches and cuDNN autotuning), then ``n`` timed rounds, where ``n`` = ``reps`` capped so
    the timed part takes about ``budget_s`` (never below ``min_reps``). Round r runs the contenders
    rotated by r, so no contender always goes first."""
    names = list(contenders)
    t_round = 0.0
    for i in range(max(1, warmup)):
        if i > 0 and budget_s > 0 and t_round > budget_s / 4:
            break
        t0 = time.perf_counter()
        for k in names:
            contenders[k]()
            sync()
        t_round = time.perf_counter() - t0
    n = reps
    if budget_s > 0:
        n = max(min_reps, min(reps, int(budget_s / max(t_round, 1e-9))))
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(n):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            sync()
            t0 = time.perf_counter()
            contenders[k]()
            sync()
            times[k].append(time.perf_counter() - t0)
    return times, n


def stats(ts: list[float], batch: int) -> dict[str, float]:
    a = np.asarray(ts)
    med = float(np.median(a))
    return {"images_per_s": batch / med, "latency_ms_median": 1e3 * med,
            "latency_ms_p90": 1e3 * float(np.percentile(a, 90)), "latency_ms_min": 1e3 * float(a.min())}


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over repetitions of throughput(num) / throughput(den) = time(den) / time(num)."""
    return float(np.median(np.asarray(times[den]) / np.asarray(times[num])))


def _finite(obj: Any) -> Any:
    """Non-finite floats -> None, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() or "can't allocate" in str(exc)


def free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def cuda_peak(fn: Callable[[], Any], device: str) -> dict[str, float]:
    """Peak allocated GPU memory of one call, and what was allocated before it (weights, inputs)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mb": peak / 2**20, "baseline_mb": base / 2**20, "call_mb": (peak - base) / 2**20}


# ---------------------------------------------------------------------------------------------- contenders
def inference_contenders(s: dict[str, Any], models: dict[str, IACAMetric], x: dict[str, torch.Tensor],
                         device: str) -> dict[str, Callable[[], Any]]:
    def run(fn):
        def call():
            with torch.inference_mode(), autocast_ctx(device, s["dtype"]):
                return fn()
        return call

    out: dict[str, Callable[[], Any]] = {}
    for v, m in models.items():
        ref = x["low"] if m.uses_ref else None
        out[f"iaca_{v}"] = run(lambda m=m, ref=ref: m(x["img"], ref))
        out[f"backbone_{v}"] = run(lambda m=m: m.features(x["img"]))
    out["psnr"] = run(lambda: psnr(x["img"], x["gt"]))
    out["ssim"] = run(lambda: ssim(x["img"], x["gt"]))
    return out


def loss_contenders(s: dict[str, Any], models: dict[str, IACAMetric], x: dict[str, torch.Tensor],
                    device: str) -> dict[str, Callable[[], Any]]:
    img = x["img"].detach().clone().requires_grad_(True)
    out: dict[str, Callable[[], Any]] = {}
    for v, m in models.items():
        crit = IACALoss(model=m)

        def loss_step(crit=crit):
            img.grad = None
            with autocast_ctx(device, s["dtype"]):
                loss = crit(img, x["low"])
            loss.backward()

        def backbone_step(m=m):
            img.grad = None
            with autocast_ctx(device, s["dtype"]):
                f16, f32 = m.features(img)
                total = f16.float().sum() + f32.float().sum()
            total.backward()

        out[f"iaca_loss_{v}"] = loss_step
        out[f"backbone_fwd_bwd_{v}"] = backbone_step
    return out


def label(name: str) -> str:
    for v, (_, _, lab, bb) in VARIANTS.items():
        if name == f"iaca_{v}":
            return lab
        if name == f"backbone_{v}":
            return bb
        if name == f"iaca_loss_{v}":
            return f"IACALoss fwd+bwd, {lab}"
        if name == f"backbone_fwd_bwd_{v}":
            return f"{bb} fwd+bwd"
    return {"psnr": "PSNR", "ssim": "SSIM"}.get(name, name)


# ---------------------------------------------------------------------------------------------- sections
class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.time() + seconds if seconds and seconds > 0 else None

    def passed(self) -> bool:
        return self.end is not None and time.time() > self.end


def measure_setting(s: dict[str, Any], models: dict[str, IACAMetric], device: str, args: argparse.Namespace,
                    kind: str) -> dict[str, Any]:
    """Time one setting (kind 'inference' or 'loss') with all its contenders interleaved."""
    rec: dict[str, Any] = {"setting": s, "skipped": {}}
    active = {}
    for v, m in models.items():
        why = budget_skip(s, v, device, args.no_skips, kind)
        if why:
            rec["skipped"][f"iaca_{v}" if kind == "inference" else f"iaca_loss_{v}"] = why
        else:
            active[v] = m
    set_format(active, s["memory_format"])
    try:
        return _measure(rec, s, active, device, args, kind)
    except (RuntimeError, MemoryError) as exc:
        if not is_oom(exc):
            raise
        rec["error"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
        return rec
    finally:
        free_memory(device)
        set_format(active, "contiguous")


def _measure(rec: dict[str, Any], s: dict[str, Any], active: dict[str, IACAMetric], device: str,
             args: argparse.Namespace, kind: str) -> dict[str, Any]:
    x = make_inputs(s, device, need_gt=kind == "inference")
    build = inference_contenders if kind == "inference" else loss_contenders
    contenders = build(s, active, x, device)
    times, n = time_interleaved(contenders, warmup=args.warmup, reps=args.reps, min_reps=args.min_reps,
                                budget_s=args.setting_budget, sync=sync_fn(device))
    rec["reps"] = n
    rec["results"] = {k: stats(t, s["batch"]) for k, t in times.items()}
    ratios = {}
    for v in active:
        if kind == "inference":
            ratios[f"iaca_{v}/backbone_{v}"] = ratio(times, f"iaca_{v}", f"backbone_{v}")
        else:
            ratios[f"iaca_loss_{v}/backbone_fwd_bwd_{v}"] = ratio(times, f"iaca_loss_{v}", f"backbone_fwd_bwd_{v}")
    if kind == "inference" and "lite" in active:
        ratios["psnr/iaca_lite"] = ratio(times, "psnr", "iaca_lite")
        ratios["ssim/iaca_lite"] = ratio(times, "ssim", "iaca_lite")
    rec["ratios"] = ratios
    if device.startswith("cuda") and args.memory:
        mem = {}
        for k, fn in contenders.items():
            try:
                mem[k] = cuda_peak(fn, device)
            except (RuntimeError, MemoryError) as exc:
                if not is_oom(exc):
                    raise
                free_memory(device)
                mem[k] = {"error": "out of memory"}
        rec["cuda_memory"] = mem
    return rec


def print_setting(rec: dict[str, Any], title: str) -> None:
    s = rec["setting"]
    print(f"\n[{title}: {setting_name(s)}]" + (f"  reps={rec['reps']}" if "reps" in rec else ""))
    if "error" in rec:
        print(f"  not measured: {rec['error']}")
    for k, r in rec.get("results", {}).items():
        mem = rec.get("cuda_memory", {}).get(k, {})
        mtxt = f"  peak {mem['peak_mb']:8.0f} MB" if "peak_mb" in mem else ""
        print(f"  {label(k):<46}{r['images_per_s']:10.2f} img/s  latency median {r['latency_ms_median']:9.2f} ms"
              f"  p90 {r['latency_ms_p90']:9.2f} ms{mtxt}")
    for k, r in rec.get("ratios", {}).items():
        a, b = k.split("/")
        print(f"  ratio {label(a)} / {label(b)}: {r:.3f}x throughput (time x{1 / r:.3g})")
    for k, why in rec["skipped"].items():
        print(f"  skipped {label(k)}: {why}")


# ---------------------------------------------------------------------------------------------- memory (CPU)
def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024.0


def child_main(spec: dict[str, Any]) -> int:
    """Fresh-process peak RSS of one contender in one setting (CPU). Prints one JSON line."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    s, name = spec["setting"], spec["contender"]
    models = {}
    for v in VARIANTS:
        if name.endswith("_" + v):
            models[v] = build_model(v, "cpu", calibrate=False, weights=default_weights(v))
    set_format(models, s["memory_format"])
    is_loss = name.startswith(("iaca_loss_", "backbone_fwd_bwd_"))
    x = make_inputs(s, "cpu", need_gt=name in ("psnr", "ssim"))
    fn = (loss_contenders if is_loss else inference_contenders)(s, models, x, "cpu")[name]
    baseline = _status_mb("VmRSS")
    before = peak_rss_mb()
    reset = False
    try:  # reset the high-water mark so the peak below is the calls' own (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        pass
    for _ in range(2):
        fn()
    peak_calls = peak_rss_mb()
    print(json.dumps({"contender": name, "setting": s, "baseline_rss_mb": baseline,
                      "peak_rss_mb": max(before, peak_calls),
                      "peak_rss_during_calls_mb": peak_calls if reset else None,
                      "call_rss_mb": (peak_calls - baseline) if (reset and baseline is not None) else None}))
    return 0


def run_child(spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"contender": spec["contender"], "setting": spec["setting"], "error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit code {p.returncode}"]
        return {"contender": spec["contender"], "setting": spec["setting"], "error": tail[0][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- folder CLI
def _synthetic_photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth, photo-like uint8 image (random low-frequency colour field plus mild noise): PNG/JPEG
    sizes and decode times like real photos, unlike pure noise."""
    coarse = rng.random((max(h // 50, 2), max(w // 50, 2), 3))
    up = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    up += rng.normal(0, 4, up.shape)
    return np.clip(up, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    if path.suffix == ".jpg":
        Image.fromarray(arr).save(path, quality=92)
    else:
        Image.fromarray(arr).save(path)


def run_folder(model: IACAMetric, device: str, args: argparse.Namespace) -> dict[str, Any]:
    from iaca_metric.folder_scoring import score_files
    from iaca_metric.inputs import load_image

    w, h = parse_res(args.folder_size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="iaca_speed_") as tmp:
        tmp_p = Path(tmp)
        (tmp_p / "enh").mkdir()
        (tmp_p / "low").mkdir()
        files, refs = [], []
        for i in range(args.folder_n):
            ext = ".png" if i % 2 == 0 else ".jpg"
            arr = _synthetic_photo(rng, w, h)
            f = tmp_p / "enh" / f"img{i:04d}{ext}"
            _save(arr, f)
            files.append(f)
            if args.folder_ref:
                r = tmp_p / "low" / f.name
                _save((arr.astype(np.float32) * 0.2).astype(np.uint8), r)
                refs.append(r)
            else:
                refs.append(None)
        # model alone: pre-decoded, pre-batched, already on the device (the strictest baseline)
        batches = []
        for i in range(0, len(files), args.folder_batch):
            xs = torch.cat([load_image(f)[None] for f in files[i:i + args.folder_batch]]).to(device)
            rs = (torch.cat([load_image(r)[None] for r in refs[i:i + args.folder_batch]]).to(device)
                  if args.folder_ref else None)
            batches.append((xs, rs))
        model_scores: list[float] = []

        def model_only():
            model_scores.clear()
            with torch.no_grad():
                for xs, rs in batches:
                    model_scores.extend(model(xs, rs).float().cpu().tolist())

        cli_rows: list[dict] = []

        def cli():
            cli_rows[:] = score_files(model, files, refs, out=tmp_p / "scores.csv", batch_size=args.folder_batch,
                                      workers=args.folder_workers, device=device, progress=False)

        times, n = time_interleaved({"cli": cli, "model": model_only}, warmup=1, reps=args.folder_reps,
                                    min_reps=args.folder_reps, budget_s=0, sync=sync_fn(device))
    errors = [r["error"] for r in cli_rows if r.get("error")]
    diff = max((abs(r["score"] - s) for r, s in zip(cli_rows, model_scores) if r.get("score") is not None),
               default=float("nan"))
    n_img = len(files)
    rec = {"n_images": n_img, "resolution": f"{w}x{h}", "formats": "alternating PNG / JPEG (quality 92)",
           "with_ref": bool(args.folder_ref), "batch": args.folder_batch, "workers": args.folder_workers,
           "dtype": "fp32", "reps": n, "cli_images_per_s": n_img / float(np.median(times["cli"])),
           "model_images_per_s": n_img / float(np.median(times["model"])),
           "ratio": ratio(times, "cli", "model"), "target": FOLDER_TARGET,
           "max_abs_score_diff_cli_vs_model": finite_or_none(diff), "cli_errors": errors[:3]}
    rec["pass"] = rec["ratio"] >= FOLDER_TARGET and not errors
    return rec


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--quick", action="store_true", help="tiny smoke-test profile (64x64, IACA-Lite only, < 30 s)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default docs/results/speed_<device>.json)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--resolutions", default=None, help="comma list of WIDTHxHEIGHT")
    ap.add_argument("--batches", default=None, help="comma list of batch sizes")
    ap.add_argument("--dtypes", default=None, help="comma list of fp32, bf16, fp16 (autocast)")
    ap.add_argument("--formats", default=None, help="comma list of contiguous, channels_last")
    ap.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per setting (at most)")
    ap.add_argument("--min-reps", type=int, default=None, help="timed repetitions per setting (at least)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds per setting (>= 1)")
    ap.add_argument("--setting-budget", type=float, default=None,
                    help="seconds of timed work per setting; reps are cut to fit (0 = always --reps)")
    ap.add_argument("--loss-settings", default=None, help="comma list of WIDTHxHEIGHT:BATCH for IACALoss fwd+bwd")
    ap.add_argument("--folder-n", type=int, default=None, help="generated files for the folder CLI check")
    ap.add_argument("--folder-size", default=None, help="WIDTHxHEIGHT of the generated files")
    ap.add_argument("--folder-batch", type=int, default=None)
    ap.add_argument("--folder-workers", type=int, default=None)
    ap.add_argument("--folder-reps", type=int, default=None)
    ap.add_argument("--folder-ref", action=argparse.BooleanOptionalAction, default=True,
                    help="score the folder with paired low-light inputs (as --ref-dir does); default on")
    ap.add_argument("--memory-contenders", default=None,
                    help="CPU peak RSS: 'all' or a comma list (iaca_lite, backbone_lite, psnr, ...)")
    ap.add_argument("--no-memory", dest="memory", action="store_false", default=None, help="skip peak memory")
    ap.add_argument("--no-rss-4k", dest="rss_4k", action="store_false", default=None,
                    help="skip the 4K IACA-Lite CPU peak RSS check")
    ap.add_argument("--no-loss", action="store_true", help="skip IACALoss fwd+bwd")
    ap.add_argument("--no-folder", action="store_true", help="skip the folder CLI check")
    ap.add_argument("--no-skips", action="store_true", help="measure every requested setting (no CPU budget skips)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="seconds; after this, remaining settings are skipped and listed (0 = none)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    profile = PROFILES["quick" if args.quick else ("cuda" if args.device.startswith("cuda") else "cpu")]
    for k, v in profile.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.out is None:
        dev = "cuda" if args.device.startswith("cuda") else "cpu"
        args.out = Path(f"docs/results/speed_{dev}{'_quick' if args.quick else ''}.json")
    for v in _csv(args.variants):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    for d in _csv(args.dtypes):
        if d not in DTYPES:
            raise SystemExit(f"unknown dtype {d!r}; known: {', '.join(DTYPES)}")
    for f in _csv(args.formats):
        if f not in FORMATS:
            raise SystemExit(f"unknown memory format {f!r}; known: {', '.join(FORMATS)}")
    return args


def plan_settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for fmt in _csv(args.formats):
        for dt in _csv(args.dtypes):
            for res in _csv(args.resolutions):
                w, h = parse_res(res)
                for b in _csv(args.batches):
                    out.append(setting_dict(w, h, int(b), dt, fmt))
    return out


def plan_loss_settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for item in _csv(args.loss_settings):
        res, _, b = item.partition(":")
        w, h = parse_res(res)
        for fmt in _csv(args.formats):
            for dt in _csv(args.dtypes):
                s = setting_dict(w, h, int(b or 1), dt, fmt)
                out.append(s)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    args = resolve_args(args)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch (torch "
                         f"{torch.__version__}, built with CUDA {torch.version.cuda})")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    t_start = time.time()
    deadline = Deadline(args.time_limit)
    report: dict[str, Any] = {
        "benchmark": "speed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "device": device, "quick": bool(args.quick), "machine": machine_info(device),
        "weights": {v: default_weights(v) or "random initialisation, BatchNorm statistics calibrated on random "
                    "images" for v in VARIANTS},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"},
        "definitions": {
            "images_per_s": "batch / median per-call latency",
            "latency_ms": "wall time of one call (one batch), median and 90th percentile over repetitions",
            "ratios": "A/B = median over repetitions of throughput(A) / throughput(B), contenders interleaved "
                      "per repetition; iaca_X/backbone_X < 1 means the IACA heads cost (1/ratio - 1) extra",
            "backbone": "model.features(x): the two backbone taps, no heads",
            "loss": "IACALoss(img, low).backward() vs (sum of both backbone taps).backward(); weights frozen, "
                    "gradients w.r.t. the images only; input validation included in IACALoss",
            "cpu_memory": "peak RSS (VmHWM) of a fresh process that built the model and inputs and ran 2 calls; "
                          "call_rss_mb = peak during the calls minus RSS just before them",
            "cuda_memory": "torch.cuda.max_memory_allocated during one call; call_mb = minus what was allocated before",
            "folder": "score_files (decoding workers, CSV output) vs the same model on pre-decoded batches already "
                      "on the device; ratio = CLI images/s / model images/s",
        },
        "throughput": [], "loss": [], "memory": [], "folder": None, "checks": [], "skipped": [],
    }
    variants = _csv(args.variants)
    print(f"speed benchmark on {device}: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
          + (f", GPU {report['machine']['gpu']}" if report["machine"]["gpu"] else ""))
    print(f"weights: {report['weights']}")
    models = {v: build_model(v, device, weights=default_weights(v)) for v in variants}

    def save() -> None:  # after every section, so an interrupted run keeps what it measured
        report["wall_s"] = round(time.time() - t_start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, args.out)

    def skip(what: str, why: str) -> None:
        report["skipped"].append({"what": what, "reason": why})
        print(f"  skipped {what}: {why}")

    # ---- inference throughput
    for s in plan_settings(args):
        why = budget_skip(s, None, device, args.no_skips)
        if why is None and deadline.passed():
            why = f"--time-limit {args.time_limit:g} s reached"
        if why:
            skip(f"throughput {setting_name(s)}", why)
            continue
        rec = measure_setting(s, models, device, args, "inference")
        for k, r in rec["skipped"].items():
            report["skipped"].append({"what": f"throughput {setting_name(s)} {k}", "reason": r})
        report["throughput"].append(rec)
        print_setting(rec, "inference")
        save()

    # ---- IACALoss forward+backward
    if args.no_loss:
        skip("IACALoss fwd+bwd", "--no-loss")
    else:
        for s in plan_loss_settings(args):
            why = budget_skip(s, None, device, args.no_skips)
            if why is None and not device.startswith("cuda") and not args.no_skips and s["memory_format"] != "contiguous":
                why = "CPU budget: IACALoss fwd+bwd only in contiguous format"
            if why is None and deadline.passed():
                why = f"--time-limit {args.time_limit:g} s reached"
            if why:
                skip(f"loss {setting_name(s)}", why)
                continue
            rec = measure_setting(s, models, device, args, "loss")
            for k, r in rec["skipped"].items():
                report["skipped"].append({"what": f"loss {setting_name(s)} {k}", "reason": r})
            report["loss"].append(rec)
            print_setting(rec, "IACALoss fwd+bwd")
            save()

    # ---- CPU peak RSS, fresh process per (setting, contender)
    if not device.startswith("cuda") and args.memory:
        print("\n[CPU peak RSS, fresh process per contender; batch 1, fp32, contiguous]")
        for res in _csv(args.resolutions):
            w, h = parse_res(res)
            s = setting_dict(w, h, 1, "fp32", "contiguous")
            names = [n for v in variants for n in (f"iaca_{v}", f"backbone_{v}")] + ["psnr", "ssim"]
            if args.memory_contenders != "all":
                names = [n for n in names if n in _csv(args.memory_contenders)]
            for name in names:
                v = name.split("_", 1)[1] if "_" in name else None
                why = budget_skip(s, v, device, args.no_skips) if v else None
                if why is None and deadline.passed():
                    why = f"--time-limit {args.time_limit:g} s reached"
                if why:
                    skip(f"memory {setting_name(s)} {name}", why)
                    continue
                m = run_child({"setting": s, "contender": name, "threads": args.threads})
                report["memory"].append(m)
                txt = m.get("error") or (f"peak RSS {m['peak_rss_mb']:8.0f} MB"
                                         + (f"  (calls {m['call_rss_mb']:+.0f} MB over {m['baseline_rss_mb']:.0f} MB)"
                                            if m.get("call_rss_mb") is not None else ""))
                print(f"  {res:>10}  {label(name):<40}{txt}")
        save()
    elif device.startswith("cuda") and args.memory:
        pass  # measured in-process per setting (cuda_memory in each throughput/loss record)
    else:
        skip("memory", "--no-memory")

    # ---- 4K IACA-Lite CPU peak RSS check
    if args.rss_4k and not deadline.passed():
        s = setting_dict(3840, 2160, 1, "fp32", "contiguous")
        m = next((r for r in report["memory"] if r["setting"] == s and r["contender"] == "iaca_lite"
                  and "peak_rss_mb" in r), None)
        if m is None:
            m = run_child({"setting": s, "contender": "iaca_lite", "threads": args.threads})
        peak = m.get("peak_rss_mb")
        check = {"name": "IACA-Lite 3840x2160 CPU peak RSS (fresh process, fp32, with low-light input)",
                 "value_mb": peak, "target": f"< {RSS_4K_TARGET_MB:.0f} MB",
                 "pass": peak is not None and peak < RSS_4K_TARGET_MB, "error": m.get("error")}
        report["checks"].append(check)
        save()
        print(f"\n[check] {check['name']}: " + (f"{peak:.0f} MB" if peak else str(m.get("error")))
              + f" -> {'PASS' if check['pass'] else 'FAIL'} (target {check['target']})")
    else:
        skip("4K CPU peak RSS check", "--no-rss-4k / --quick" if not args.rss_4k else "--time-limit reached")

    # ---- folder CLI vs model only
    if args.no_folder or "lite" not in models:
        skip("folder CLI", "--no-folder" if args.no_folder else "needs the lite variant")
    elif deadline.passed():
        skip("folder CLI", "--time-limit reached")
    else:
        f = run_folder(models["lite"], device, args)
        report["folder"] = f
        report["checks"].append({"name": "folder CLI images/s / model-only images/s", "value": f["ratio"],
                                 "target": f">= {FOLDER_TARGET}", "pass": f["pass"],
                                 **({"note": "--quick: a few tiny files, worker start-up dominates; not meaningful"}
                                    if args.quick else {})})
        print(f"\n[folder CLI: {f['n_images']} files {f['resolution']} PNG/JPEG, batch {f['batch']}, "
              f"{f['workers']} workers, ref={'yes' if f['with_ref'] else 'no'}]\n"
              f"  score_files {f['cli_images_per_s']:.2f} img/s, model on pre-decoded tensors "
              f"{f['model_images_per_s']:.2f} img/s -> ratio {f['ratio']:.3f} "
              f"({'PASS' if f['pass'] else 'FAIL'}, target >= {FOLDER_TARGET}); "
              f"max |score diff| {f['max_abs_score_diff_cli_vs_model']}")

    # ---- summary
    report["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print("\n[summary: throughput ratios]")
    for rec in report["throughput"] + report["loss"]:
        for k, r in rec.get("ratios", {}).items():
            print(f"  {setting_name(rec['setting']):<36}{k:<44}{r:8.3f}x")
    if report["skipped"]:
        print(f"\n{len(report['skipped'])} skipped items (reasons in the JSON 'skipped' list)")
    save()
    print(f"\ntotal {report['wall_s']} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
