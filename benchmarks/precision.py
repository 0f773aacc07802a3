"""Half-precision agreement: autocast bf16 (and fp16 on CUDA) vs fp32, for the metric and for IACALoss.

Images: the golden PNGs (../shared/golden, scored with themselves as the low-light input) and real
low-light photos (../shared/data/lowlight/{LIME,DICM}; each photo is the low-light input and a gamma-0.5
brightening of it is the image scored). Variants:
  lite   the embedded IACA-Lite model;
  paper  the paper's ResNeXt-101 32x8d IACA with the golden formula weights (needs --golden; the
         authors' trained weights are not available here).
Reported per variant and dtype: max |score - fp32 score| in raw-score units and on the model's MOS scale,
max |IACALoss - fp32 IACALoss|, and the cosine between the loss's input gradients.

    python benchmarks/precision.py [--device cpu|cuda] [--variants lite,paper] [--fp32-blocks bf16:N,fp16:M]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
from pathlib import Path

import torch

from iaca_metric import IACALoss, IACAMetric
from iaca_metric.inputs import load_image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def images(golden: Path | None, photo_dirs: list[Path], limit: int, max_pixels: int
           ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, image, low-light input) triples, (1, 3, H, W) float32 in [0, 1]."""
    out = []
    if golden is not None and golden.is_dir():
        for p in sorted(golden.glob("*.png")):
            x = load_image(p)[None]
            out.append((f"golden/{p.name}", x, x))
    for folder in photo_dirs:
        if not folder.is_dir():
            print(f"skipping {folder}: not found")
            continue
        taken = 0
        for p in sorted(folder.iterdir()):
            if taken >= limit:
                break
            low = load_image(p)[None]
            if low.shape[-2] * low.shape[-1] > max_pixels:
                continue  # keeps the CPU run of the ResNeXt variant short
            out.append((f"{folder.name}/{p.name}", low.clamp_min(0) ** 0.5, low))
            taken += 1
    return out


def paper_model(golden: Path) -> IACAMetric:
    """ResNeXt-101 32x8d IACA with the deterministic golden weights (strict load)."""
    spec = importlib.util.spec_from_file_location("iaca_golden_formula", golden / "formula.py")
    formula = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(formula)
    manifest = json.loads((golden / "manifest_resnext101_32x8d.json").read_text())
    state = formula.formula_state_dict(manifest)
    state.update(formula.load_overrides(golden / "overrides_resnext101_32x8d.json"))
    model = IACAMetric(arch="resnext101_32x8d", illumination="image",
                       mos_scale=0.09627324560431309, mos_offset=0.5154855778833177)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def measure(model: IACAMetric, imgs, dev: torch.device, dtypes: list[torch.dtype]) -> dict:
    rows = []
    loss_fn = IACALoss(model=model)
    for name, x, low in imgs:
        x, low = x.to(dev), low.to(dev)
        row = {"image": name, "size": list(x.shape[-2:])}
        for dt in [None, *dtypes]:
            key = "fp32" if dt is None else str(dt).split(".")[-1]
            with torch.no_grad(), torch.autocast(dev.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
                row[key] = float(model(x, low))
            xg = x.clone().requires_grad_(True)
            with torch.autocast(dev.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
                loss = loss_fn(xg, low)
            loss.backward()
            row[f"loss_{key}"] = float(loss.detach())
            row[f"_grad_{key}"] = xg.grad.detach().flatten().double().cpu()
        for dt in dtypes:
            key = str(dt).split(".")[-1]
            row[f"grad_cosine_{key}"] = float(torch.nn.functional.cosine_similarity(
                row[f"_grad_{key}"], row["_grad_fp32"], dim=0))
        for k in [k for k in row if k.startswith("_grad_")]:
            del row[k]
        rows.append(row)
        print(" ", name, {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items() if k != "image"},
              flush=True)
    summary = {}
    scale = abs(float(model.mos_scale))
    for dt in dtypes:
        k = str(dt).split(".")[-1]
        d = max(abs(r[k] - r["fp32"]) for r in rows)
        summary[k] = {"max_abs_diff_raw": d, "max_abs_diff_mos": d * scale,
                      "max_abs_diff_loss": max(abs(r[f"loss_{k}"] - r["loss_fp32"]) for r in rows),
                      "min_grad_cosine": min(r[f"grad_cosine_{k}"] for r in rows),
                      "within_1e-2_raw": d <= 1e-2, "within_1e-2_mos": d * scale <= 1e-2}
    return {"n_images": len(rows), "mos_scale": float(model.mos_scale), "summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="lite,paper")
    ap.add_argument("--golden", type=Path, default=SHARED / "golden")
    ap.add_argument("--photos", type=Path, nargs="*",
                    default=[SHARED / "data" / "lowlight" / "LIME", SHARED / "data" / "lowlight" / "DICM"])
    ap.add_argument("--limit", type=int, default=3, help="photos per folder")
    ap.add_argument("--max-pixels", type=int, default=1_000_000, help="skip larger photos")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtypes", default=None,
                    help="comma list of bf16, fp16 (default: bf16 and fp16 on CUDA, bf16 on CPU)")
    ap.add_argument("--lite-weights", default=None,
                    help="weights folder/hub repo for the lite variant (default: the embedded model)")
    ap.add_argument("--fp32-blocks", default=None, metavar="bf16:N,fp16:M",
                    help="override IACA-Lite's autocast policy (float32 blocks per dtype; default: the model's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        # fp32 reference without TF32, so the comparison measures bf16/fp16 and not TF32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    names = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if args.dtypes:
        unknown = [d for d in args.dtypes.split(",") if d not in names]
        if unknown:
            raise SystemExit(f"unknown --dtypes {unknown}: bf16, fp16")
        dtypes = [names[d] for d in args.dtypes.split(",")]
    else:
        dtypes = [torch.bfloat16] + ([torch.float16] if dev.type == "cuda" else [])
    imgs = images(args.golden, args.photos, args.limit, args.max_pixels)
    if not imgs:
        raise SystemExit("no images: pass --golden and/or --photos")
    result = {"benchmark": "precision", "date": datetime.date.today().isoformat(), "machine": platform.machine(),
              "torch": torch.__version__, "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "reference": "fp32" + (", TF32 off" if dev.type == "cuda" else ""), "variants": {}}
    for v in args.variants.split(","):
        if v == "lite":
            model = IACAMetric.from_pretrained(args.lite_weights) if args.lite_weights else IACAMetric()
            for item in (args.fp32_blocks.split(",") if args.fp32_blocks else []):
                name, _, n = item.partition(":")
                if name not in names or not n.isdigit():
                    raise SystemExit(f"--fp32-blocks: bad entry {item!r}; expected e.g. bf16:3,fp16:0")
                model.features.fp32_blocks[names[name]] = int(n)
        elif v == "paper":
            if not (args.golden / "formula.py").is_file():
                print(f"skipping paper: no golden formula weights in {args.golden}")
                continue
            model = paper_model(args.golden)
        else:
            raise SystemExit(f"unknown variant {v!r}: lite or paper")
        print(f"[{v}] {model.arch} on {dev}", flush=True)
        res = measure(model.to(dev).eval(), imgs, dev, dtypes)
        if v == "lite":
            res["fp32_blocks"] = {str(k).split(".")[-1]: n for k, n in model.features.fp32_blocks.items()}
        res["weights_sha256"] = model.weights_info.get("sha256") or ("golden formula weights" if v == "paper" else None)
        result["variants"][v] = res
        for k, s in res["summary"].items():
            print(f"[{v}] max |{k} - fp32| = {s['max_abs_diff_raw']:.4f} raw ({s['max_abs_diff_mos']:.4f} on the "
                  f"MOS scale); loss {s['max_abs_diff_loss']:.4f}; min grad cosine {s['min_grad_cosine']:.4f}")
    out = args.out or ROOT / "docs" / "results" / f"precision_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
