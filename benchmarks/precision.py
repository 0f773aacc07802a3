"""Half-precision agreement of the embedded IACA-Lite: autocast bf16/fp16 scores vs fp32 on the golden
images (../shared/golden) and real low-light photos (../shared/data/lowlight), raw-score units.

    python benchmarks/precision.py [--device cpu|cuda] [--out docs/results/precision_<device>.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch

from iaca_metric import IACAMetric
from iaca_metric.inputs import load_image

ROOT = Path(__file__).resolve().parents[1]


def images(limit: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    golden = ROOT.parent / "shared" / "golden"
    for p in sorted(golden.glob("*.png")):
        out.append((f"golden/{p.name}", load_image(p)[None]))
    for sub in ("LIME", "DICM"):
        folder = ROOT.parent / "shared" / "data" / "lowlight" / sub
        if folder.is_dir():
            for p in sorted(folder.iterdir())[:limit]:
                out.append((f"{sub}/{p.name}", load_image(p)[None]))
    return out


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=3, help="photos per real set")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    model = IACAMetric().to(dev).eval()
    dtypes = [torch.bfloat16] + ([torch.float16] if dev.type == "cuda" else [])
    rows = []
    for name, x in images(args.limit):
        x = x.to(dev)
        ref = float(model(x, x))
        row = {"image": name, "size": list(x.shape[-2:]), "fp32": ref}
        for dt in dtypes:
            with torch.autocast(dev.type, dtype=dt):
                row[str(dt).split(".")[-1]] = float(model(x, x))
        rows.append(row)
        print(name, {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items() if k != "image"})
    summary = {}
    for dt in dtypes:
        k = str(dt).split(".")[-1]
        summary[k] = max(abs(r[k] - r["fp32"]) for r in rows)
        print(f"max |{k} - fp32| = {summary[k]:.4f}")
    out = args.out or ROOT / "docs" / "results" / f"precision_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                               "torch": torch.__version__, "device": str(dev), "max_abs_diff": summary,
                               "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
