"""``iaca-metric compare`` on real data: DICM, LIME and LOL eval15 with published and generated outputs.

Builds a comparison layout outside the repository (default ``/work/cache/compare_demo``)::

    low/{DICM,LIME,LOL_eval15_full}      -> links to ../shared/data/lowlight/<dataset>
    methods/ZeroDCE_published/{DICM,LIME} -> links to ../shared/data/enhanced/ZeroDCE/<dataset>
    methods/<name>/<dataset>/<stem>.png   generated here:
        LIME, ExposureFusion, AdaptiveGamma   classical enhancers (iaca_metric.training.enhancers)
        fail_noise_amplified                  a deliberate failure (noise added, then a strong gain)
        ZeroDCE_official                      the official Zero-DCE snapshot (Epoch99.pth)
        Self_Supervised                       Zhang et al.'s self-supervised Retinex DecomNet

then runs :func:`iaca_metric.compare.compare_methods` on it and writes the report there
(``report/``), and copies the tables (numbers only, no images) to ``docs/results/compare_demo/``.

The two networks need ``iaca_metric.zero_dce.load_official_zero_dce`` and
``iaca_metric.training.self_supervised``. Where this checkout does not have them yet, ``--nets DIR``
names a checkout that does: generation then runs in a subprocess with ``PYTHONPATH=DIR`` (only the
generation; scoring always uses this checkout). Without either, those two methods are skipped with a
message.

Usage (2 cores shared: one intra-op thread is fastest under load)::

    python benchmarks/compare_demo.py --data ../shared/data --out /work/cache/compare_demo --threads 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("DICM", "LIME", "LOL_eval15_full")
CLASSICAL = {"LIME": "lime", "ExposureFusion": "exposure_fusion", "AdaptiveGamma": "adaptive_gamma",
             "fail_noise_amplified": "fail_noise_amplified"}
NETS = ("ZeroDCE_official", "Self_Supervised")
TABLES = ("tables.md", "tables.tex", "summary.csv", "winrates.csv")
# Same list as iaca_metric.compare.IMAGE_SUFFIXES; repeated because generation may run on a checkout
# (--nets) that has no compare module.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.is_symlink() and Path(os.readlink(dst)) == src:
            return
        raise SystemExit(f"{dst} exists and is not a link to {src}; remove it or choose another --out")
    dst.symlink_to(src, target_is_directory=True)


def _inputs(data: Path) -> list[tuple[str, Path]]:
    out = []
    for ds in DATASETS:
        d = data / "lowlight" / ds
        out += [(ds, p) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return out


def _save_png(arr, path: Path, truncate: bool = False) -> None:
    """(H, W, 3) float [0, 1] -> 8-bit PNG (rounded; ``truncate`` mimics ``uint8(x * 255)``)."""
    import numpy as np
    from PIL import Image

    x = np.clip(np.asarray(arr, dtype=np.float64), 0, 1) * 255.0
    x = np.floor(x) if truncate else np.round(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(x.astype(np.uint8)).save(tmp)
    tmp.replace(path)  # a run killed mid-write leaves no half file that would be skipped next time


def generate(data: Path, out: Path, nets: bool, force: bool) -> list[str]:
    """Write every generated method's outputs (skipping files already there unless ``force``).
    Returns the methods generated or already present."""
    import numpy as np
    import torch

    from iaca_metric.inputs import load_image
    from iaca_metric.training.enhancers import ENHANCERS

    fns = {name: (lambda low, key=key: ENHANCERS[key](low, np.random.default_rng(0))) for name, key in CLASSICAL.items()}
    truncate = {}
    if nets:
        from iaca_metric.training.self_supervised import load_self_supervised
        from iaca_metric.zero_dce import load_official_zero_dce

        zdce = load_official_zero_dce(data / "weights" / "zero_dce_official_Epoch99.pth")
        selfsup = load_self_supervised(data / "weights" / "selfsup_retinex_decom_6000.npz")

        def run_zdce(low: np.ndarray) -> np.ndarray:  # official forward, full resolution, no clamping
            with torch.inference_mode():
                y = zdce(torch.from_numpy(low).permute(2, 0, 1)[None].contiguous())
            return y[0].permute(1, 2, 0).numpy()

        def run_selfsup(low: np.ndarray) -> np.ndarray:  # the reflectance R, saved truncated like the original
            with torch.inference_mode():
                y = selfsup.enhance(torch.from_numpy(low).permute(2, 0, 1)[None].contiguous())
            return y[0].permute(1, 2, 0).numpy()

        fns["ZeroDCE_official"], fns["Self_Supervised"] = run_zdce, run_selfsup
        truncate["Self_Supervised"] = True
    items = _inputs(data)
    t0, done = time.time(), 0
    for i, (ds, path) in enumerate(items):
        todo = [m for m in fns if force or not (out / "methods" / m / ds / f"{path.stem}.png").is_file()]
        if not todo:
            continue
        low = load_image(path).permute(1, 2, 0).numpy()
        for m in todo:
            _save_png(fns[m](low), out / "methods" / m / ds / f"{path.stem}.png", truncate=truncate.get(m, False))
            done += 1
        print(f"\rgenerated {done} outputs ({i + 1}/{len(items)} inputs, {time.time() - t0:.0f} s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return list(fns)


def _have_nets() -> bool:
    try:
        from iaca_metric.training import self_supervised  # noqa: F401
        from iaca_metric.zero_dce import load_official_zero_dce  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    ap.add_argument("--out", default="/work/cache/compare_demo", help="work folder (outside the repository)")
    ap.add_argument("--nets", default=None, help="a checkout providing the Zero-DCE/Self_Supervised loaders")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--skip-nets", action="store_true", help="leave out ZeroDCE_official and Self_Supervised")
    ap.add_argument("--force", action="store_true", help="regenerate outputs that already exist")
    ap.add_argument("--no-docs", action="store_true", help="do not copy the tables into docs/results/")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--with-nets", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    if out == REPO or REPO in out.parents:
        raise SystemExit("--out must be outside the repository (generated images are never committed)")
    if args.generate_only:  # the subprocess started below, importing the --nets checkout
        generate(data, out, nets=args.with_nets, force=args.force)
        return 0

    for ds in DATASETS:
        _link(data / "lowlight" / ds, out / "low" / ds)
    for ds in ("DICM", "LIME"):
        _link(data / "enhanced" / "ZeroDCE" / ds, out / "methods" / "ZeroDCE_published" / ds)

    nets_here = _have_nets() and not args.skip_nets
    if nets_here or not args.nets or args.skip_nets:
        if not nets_here and not args.skip_nets:
            print("note: iaca_metric.zero_dce.load_official_zero_dce / training.self_supervised not in this "
                  "checkout and no --nets given: ZeroDCE_official and Self_Supervised are skipped", file=sys.stderr)
        generate(data, out, nets=nets_here, force=args.force)
        with_nets = nets_here
    else:
        env = dict(os.environ, PYTHONPATH=str(Path(args.nets).resolve()))
        cmd = [sys.executable, __file__, "--generate-only", "--with-nets", "--data", str(data), "--out", str(out),
               "--threads", str(args.threads)] + (["--force"] if args.force else [])
        subprocess.run(cmd, env=env, check=True)
        with_nets = True

    from iaca_metric.compare import compare_methods

    methods = ["ZeroDCE_published", *(NETS if with_nets else ()), *CLASSICAL]
    t0 = time.time()
    result = compare_methods([out / "methods" / m for m in methods], out / "low", batch_size=args.batch_size)
    elapsed = time.time() - t0
    paths = result.write(out / "report")
    n = sum(r.iaca is not None for r in result.rows)
    print(result.to_markdown())
    for line in result.problem_summary():
        print(f"warning: {line}", file=sys.stderr)
    print(f"scored {n} outputs in {elapsed:.0f} s ({n / max(elapsed, 1e-9):.2f} img/s, {args.threads} thread(s)); "
          f"report: {paths['report.html']}", file=sys.stderr)
    if not args.no_docs:
        dst = REPO / "docs" / "results" / "compare_demo"
        dst.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            shutil.copyfile(paths[name], dst / name)
        print(f"copied {', '.join(TABLES)} to {dst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
