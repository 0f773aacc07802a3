"""One-shot GPU check (run once on a lent GPU machine, a few minutes; see gpu_check.sh).

Parts, in priority order (each is skipped, and listed, once ``--time-limit`` is reached):
  1. target settings: 600x400, batch 32, bf16 autocast (channels_last and contiguous) and fp32, both
     IACA variants next to their bare backbones, PSNR/SSIM; IACALoss fwd+bwd vs backbone fwd+bwd;
     peak ``torch.cuda.max_memory_allocated`` per contender;
  2. reduced precision: bf16 and fp16 autocast scores vs strict fp32 (TF32 off) on the GPU, and the
     input gradient of IACALoss under bf16 vs fp32 (cosine similarity);
  3. CPU vs GPU agreement: fp32 scores of a few generated images of different sizes, GPU with default
     TF32 convolutions and with TF32 off;
  4. the folder CLI engine (score_files, decoding workers) vs the model on pre-decoded tensors, 256
     generated 600x400 PNG/JPEG files (target ratio >= 0.9).

Weights: IACA-Lite uses the embedded model when it is installed (else random); the paper variant is random
unless ``--resnext-weights`` names a converted release folder. Random networks get BatchNorm statistics
calibrated on random images, so activations have realistic magnitudes; score differences are then
indicative of, not identical to, those of trained weights (the JSON says which weights were used).

    python benchmarks/gpu_check.py --out-dir "$OUT"          # writes $OUT/gpu_check.json
    python benchmarks/gpu_check.py --cpu-dry-run --out-dir /tmp/x   # tiny sizes on CPU, tests the script
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (benchmarks/speed.py: timing, models, folder check)

from iaca_metric import IACALoss, IACAMetric  # noqa: E402
from iaca_metric.correlation import spearman  # noqa: E402


def _lite_weights(choice: str) -> str | None:
    """'embedded' if the packaged model is installed and asked for (default), a folder, or None (random)."""
    if choice == "random":
        return None
    if choice == "embedded":
        try:
            from iaca_metric.hub import default_model_dir

            default_model_dir()
            return "embedded"
        except Exception:  # noqa: BLE001 - not installed in this checkout: fall back to random weights
            return None
    return choice


def _images(sizes: list[tuple[int, int]], seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(enhanced, low-light) pairs, (1, 3, H, W) in [0, 1], photo-like (smooth colour fields + noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for w, h in sizes:
        arr = speed._synthetic_photo(rng, w, h)
        img = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
        out.append((img, (img * 0.2).round(decimals=3)))
    return out


def _score_all(model: IACAMetric, pairs, device: str, dtype: str = "fp32") -> np.ndarray:
    vals = []
    with torch.inference_mode(), speed.autocast_ctx(device, dtype):
        for img, low in pairs:
            s = model(img.to(device), low.to(device) if model.uses_ref else None)
            vals.append(float(s.float().cpu()[0]))
    return np.asarray(vals)


def _compare(ref: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    d = np.abs(other - ref)
    spread = float(np.std(ref)) or 1.0
    finite = bool(np.isfinite(other).all())
    return {"max_abs_diff": float(np.nanmax(d)) if finite else None,
            "mean_abs_diff": float(np.nanmean(d)) if finite else None,
            "max_abs_diff_over_score_std": float(np.nanmax(d) / spread) if finite else None,
            "score_std": spread, "all_finite": finite,
            "spearman_vs_reference": spearman(ref, other) if finite and len(ref) > 2 else None,
            "same_ranking": bool(finite and (np.argsort(ref) == np.argsort(other)).all())}


def _g(v: Any) -> str:
    return "n/a (non-finite)" if v is None else f"{v:.4g}"


class _Args(argparse.Namespace):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=Path(os.environ.get("OUT") or "docs/results"),
                    help="folder for gpu_check.json (default: $OUT, else docs/results)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--time-limit", type=float, default=240, help="seconds; later parts are skipped after it")
    ap.add_argument("--lite-weights", default="embedded", help="embedded | random | weights folder")
    ap.add_argument("--resnext-weights", default="random", help="random | converted release weights folder")
    ap.add_argument("--variants", default="lite,resnext")
    ap.add_argument("--parts", default="target,precision,cpu_vs_gpu,folder",
                    help="comma list of the parts to run (default: all four, in priority order)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="run every part on the CPU at tiny sizes (checks the script, measures nothing useful)")
    args = ap.parse_args(argv)
    dry = args.cpu_dry_run
    parts = set(speed._csv(args.parts))
    unknown = parts - {"target", "precision", "cpu_vs_gpu", "folder"}
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}: choose from target, precision, cpu_vs_gpu, folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cpu" if dry else args.device
    if not dry and (not device.startswith("cuda") or not torch.cuda.is_available()):
        raise SystemExit(f"gpu_check needs a CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}); "
                         "use --cpu-dry-run to test the script on a CPU")
    t0 = time.time()
    deadline = speed.Deadline(args.time_limit)
    if not dry:
        torch.backends.cudnn.benchmark = True
    w, h, batch = (64, 64, 2) if dry else (600, 400, 32)
    out_path = args.out_dir / "gpu_check.json"
    report: dict[str, Any] = {
        "benchmark": "gpu_check", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "device": device, "dry_run": dry,
        "machine": speed.machine_info(device), "target": {"resolution": f"{w}x{h}", "batch": batch},
        "weights": {}, "throughput": [], "loss": [], "precision": {}, "cpu_vs_gpu": {}, "folder": None,
        "checks": [], "skipped": [],
    }

    def save() -> None:
        report["wall_s"] = round(time.time() - t0, 1)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(speed._finite(report), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, out_path)

    def skip(what: str) -> bool:
        if deadline.passed():
            report["skipped"].append({"what": what, "reason": f"--time-limit {args.time_limit:g} s reached"})
            print(f"skipped {what}: time limit")
            save()
            return True
        return False

    variants = speed._csv(args.variants)
    weights = {"lite": _lite_weights(args.lite_weights),
               "resnext": None if args.resnext_weights == "random" else args.resnext_weights}
    models = {}
    for v in variants:
        models[v] = speed.build_model(v, device, weights=weights.get(v))
        report["weights"][v] = weights.get(v) or "random, BatchNorm calibrated on random images"
    print(f"gpu_check on {report['machine'].get('gpu') or report['machine']['cpu']}, torch {torch.__version__}; "
          f"weights {report['weights']}")
    save()

    # 1. target settings ---------------------------------------------------------------------------
    targs = _Args(warmup=1 if dry else 3, reps=3 if dry else 20, min_reps=2 if dry else 5,
                  setting_budget=1.0 if dry else 6.0, memory=True, no_skips=True)
    amp = "fp32" if dry else "bf16"  # CPUs without native bf16 run it emulated, far too slowly for a dry run
    inf_settings = [speed.setting_dict(w, h, batch, amp, "channels_last"),
                    speed.setting_dict(w, h, batch, amp, "contiguous"),
                    speed.setting_dict(w, h, batch, "fp32", "contiguous")]
    loss_settings = [speed.setting_dict(w, h, batch, amp, "channels_last"),
                     speed.setting_dict(w, h, batch, "fp32", "contiguous")]
    for kind, settings, key in (("inference", inf_settings, "throughput"), ("loss", loss_settings, "loss")) \
            if "target" in parts else ():
        for s in settings:
            if skip(f"{kind} {speed.setting_name(s)}"):
                continue
            rec = speed.measure_setting(s, models, device, targs, kind)
            report[key].append(rec)
            speed.print_setting(rec, kind)
            save()
    first = report["throughput"][0] if report["throughput"] else None
    if first and "ratios" in first:
        for v in models:
            r = first["ratios"].get(f"iaca_{v}/backbone_{v}")
            if r is not None:
                report["checks"].append({"name": f"{v}: IACA / bare backbone throughput, {speed.setting_name(first['setting'])}",
                                         "value": r})

    # 2. reduced precision vs strict fp32 on the device -----------------------------------------------
    if "precision" in parts and not skip("precision"):
        n_same = 4 if dry else 32
        sizes = [(w, h)] * n_same + ([(96, 64), (64, 80)] if dry else [(1024, 768), (517, 333), (256, 256)])
        pairs = _images(sizes, seed=2)
        low_dtypes = ["bf16", "fp16"]
        for v, m in models.items():
            if device.startswith("cuda"):
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            ref = _score_all(m, pairs, device, "fp32")
            if device.startswith("cuda"):
                torch.backends.cudnn.allow_tf32 = True
            res = {"n_images": len(pairs), "reference": "fp32, TF32 off", "scores_fp32": ref.tolist()}
            for dt in low_dtypes:
                res[dt] = _compare(ref, _score_all(m, pairs, device, dt))
            # IACALoss input gradient, bf16 autocast vs fp32
            img = torch.cat([p[0] for p in pairs[: min(8, n_same)]]).to(device)
            low = torch.cat([p[1] for p in pairs[: min(8, n_same)]]).to(device)
            grads = {}
            for dt in ("fp32", "bf16"):
                x = img.clone().requires_grad_(True)
                with speed.autocast_ctx(device, dt):
                    loss = IACALoss(model=m)(x, low)
                loss.backward()
                grads[dt] = x.grad.flatten().double()
            cos = torch.nn.functional.cosine_similarity(grads["fp32"], grads["bf16"], dim=0)
            res["loss_grad_cosine_bf16_vs_fp32"] = float(cos)
            report["precision"][v] = res
            print(f"\n[precision {v}] " + "; ".join(
                f"{dt}: max |d| {_g(res[dt]['max_abs_diff'])} ({_g(res[dt]['max_abs_diff_over_score_std'])} x score "
                f"std), spearman {_g(res[dt]['spearman_vs_reference'])}" for dt in low_dtypes)
                  + f"; IACALoss grad cosine bf16/fp32 {res['loss_grad_cosine_bf16_vs_fp32']:.5f}")
            save()

    # 3. CPU vs GPU fp32 -------------------------------------------------------------------------------
    if "cpu_vs_gpu" in parts and not skip("cpu_vs_gpu"):
        sizes = [(96, 64), (64, 80), (64, 64)] if dry else [(600, 400), (517, 333), (1024, 768), (256, 256),
                                                           (400, 600), (333, 517)]
        pairs = _images(sizes, seed=3)
        for v, m in models.items():
            cpu_model = copy.deepcopy(m).to("cpu")
            cpu_scores = _score_all(cpu_model, pairs, "cpu")
            res = {"n_images": len(pairs), "sizes": [f"{a}x{b}" for a, b in sizes], "scores_cpu": cpu_scores.tolist()}
            res["gpu_default_tf32"] = _compare(cpu_scores, _score_all(m, pairs, device))
            if device.startswith("cuda"):
                torch.backends.cudnn.allow_tf32 = False
                res["gpu_tf32_off"] = _compare(cpu_scores, _score_all(m, pairs, device))
                torch.backends.cudnn.allow_tf32 = True
            del cpu_model
            report["cpu_vs_gpu"][v] = res
            print(f"\n[cpu vs {device} {v}] default: max |d| {_g(res['gpu_default_tf32']['max_abs_diff'])}"
                  + (f"; TF32 off: max |d| {_g(res['gpu_tf32_off']['max_abs_diff'])}" if "gpu_tf32_off" in res else ""))
            save()

    # 4. folder CLI vs model only -----------------------------------------------------------------------
    if "lite" in models and "folder" in parts and not skip("folder"):
        fargs = _Args(folder_size=f"{w}x{h}", folder_n=6 if dry else 256, folder_batch=batch,
                      folder_workers=1 if dry else min(8, os.cpu_count() or 1), folder_reps=2 if dry else 3,
                      folder_ref=True)
        f = speed.run_folder(models["lite"], device, fargs)
        report["folder"] = f
        report["checks"].append({"name": "folder CLI images/s / model-only images/s", "value": f["ratio"],
                                 "target": f">= {speed.FOLDER_TARGET}", "pass": f["pass"]})
        print(f"\n[folder] score_files {f['cli_images_per_s']:.1f} img/s vs model {f['model_images_per_s']:.1f} img/s "
              f"-> {f['ratio']:.3f} ({'PASS' if f['pass'] else 'FAIL'})")
        save()

    report["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    save()
    print(f"\ntotal {report['wall_s']} s; wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
