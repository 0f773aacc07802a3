"""Leave-one-family-out (LOFO) evaluation of IACA-Lite 2's training recipe.

For every candidate family of the SICE build (``iaca_metric.training.families``), train a model on
the training split **without any candidate of that family** (also withheld from validation, so model
selection never sees it), then measure on the held-out test scenes how well it orders that family's
candidates: the median within-scene SRCC among the family's own candidates, and the share of
(family candidate, other candidate) pairs of a scene it orders like the truth. A reference model
trained on every family gives the same numbers for comparison. Both truths are reported: the
validated labels and the label-free PSNR+SSIM rank against the reference.

The LOFO models use the cached heads-only recipe (``--freeze stride32``: the ImageNet trunk frozen,
features computed once), so the 19 trainings fit on a CPU; ``--freeze stride16`` trains the late
trunk stage too, as the shipped model's recipe may. Resumable: each family's run folder is reused.

    python benchmarks/lofo.py --data /work/cache/sice2 --cache /work/cache/feat2 --runs runs/lofo \
        --epochs 6 --out docs/results/lofo.json

``--shipped-recipe`` trains every model with the shipped recipe instead (``reproduce.TRAIN_ARGS``: its
trunk, epochs, seed, regularisers and every candidate of each group); the recipe flags above must then be
left out. ``--bf16-exact-trunk --train-args '...'`` composes another recipe by hand.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from iaca_metric import IACAMetric
from iaca_metric.correlation import per_family_srcc, within_group_srcc
from iaca_metric.training import train as T
from iaca_metric.training.datasets import read_sice_index
from iaca_metric.training.families import FAMILIES, family_of


def _psnr_ssim_truth(records, cache_path: Path) -> list[float]:
    """PSNR+SSIM rank truth of the test records (computed once, cached as JSON)."""
    if cache_path.is_file():
        return json.loads(cache_path.read_text())
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import psnr_ssim_rank_truth

    from iaca_metric.inputs import load_image
    from iaca_metric.reference_metrics import psnr, ssim

    p, s = [], []
    refs: dict = {}
    for r in records:
        img = load_image(r.image)[None]
        if r.ref not in refs:
            refs.clear()
            refs[r.ref] = load_image(r.ref)[None]
        p.append(float(psnr(img, refs[r.ref])))
        s.append(float(ssim(img, refs[r.ref])))
    t = psnr_ssim_rank_truth(p, s, [r.group for r in records])
    cache_path.write_text(json.dumps(t))
    return t


#: ``main``'s options that define the recipe; ``--shipped-recipe`` replaces them all.
RECIPE_OPTIONS = ("freeze", "epochs", "lr", "max_candidates", "seed", "bf16_exact_trunk", "train_args")


def _use_shipped_recipe(args: argparse.Namespace) -> None:
    """Set the options the rest of the script reads (trunk, freeze, epochs) from ``reproduce.TRAIN_ARGS``."""
    from iaca_metric.training.reproduce import TRAIN_ARGS

    args.freeze = TRAIN_ARGS[TRAIN_ARGS.index("--freeze") + 1]
    args.epochs = int(TRAIN_ARGS[TRAIN_ARGS.index("--epochs") + 1])
    args.bf16_exact_trunk = "--bf16-exact-trunk" in TRAIN_ARGS
    args.train_args_list = list(TRAIN_ARGS)


def _train(args: argparse.Namespace, run: Path, exclude: str) -> Path:
    if getattr(args, "train_args_list", None):
        return _train_argv(args, run, exclude, ["--data", str(args.data), "--run", str(run), "--cache", str(args.cache),
                                                "--threads", str(args.threads), *args.train_args_list])
    argv = ["--data", str(args.data), "--run", str(run), "--cache", str(args.cache), "--freeze", args.freeze,
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--groups-per-batch", "4",
            "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.max_candidates:  # 0: every candidate of each group (the shipped recipe since IACA-Lite 2.4)
        argv += ["--max-candidates", str(args.max_candidates), "--val-max-candidates", str(args.max_candidates)]
    if args.bf16_exact_trunk:
        argv.append("--bf16-exact-trunk")
    argv += shlex.split(args.train_args)
    return _train_argv(args, run, exclude, argv)


def _train_argv(args: argparse.Namespace, run: Path, exclude: str, argv: list[str]) -> Path:
    if exclude:
        argv += ["--exclude-families", exclude]
    if not (run / "best" / "model.safetensors").is_file() or _epochs_done(run) < args.epochs:
        T.main(argv)
    return run / "best"


def _epochs_done(run: Path) -> int:
    log = run / "train.log"
    return len(log.read_text().splitlines()) if log.is_file() else 0


@torch.no_grad()
def _predict(model: IACAMetric, cache: dict, freeze: str) -> dict[str, np.ndarray]:
    model.eval()
    return {g: T.cached_forward(model, [it], freeze, torch.ones(it["score"].numel(), dtype=torch.bool))[2].numpy()
            for g, it in cache.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="SICE build folder (index.jsonl)")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache folder (shared by all runs)")
    ap.add_argument("--runs", type=Path, default=Path("runs/lofo"))
    ap.add_argument("--freeze", default="stride32", choices=["stride16", "stride32"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-candidates", type=int, default=20,
                    help="candidates per training/validation group; 0: every candidate (the shipped recipe)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default="", help="comma-separated subset (default: every family)")
    ap.add_argument("--bf16-exact-trunk", action="store_true",
                    help="train and test on the bfloat16-rounded trunk that ships (as the shipped recipe does)")
    ap.add_argument("--train-args", default="",
                    help="further `iaca-metric train` options for every run, e.g. the shipped recipe's "
                         "'--ema 0.99 --feature-crop 0.75 --feature-dropout 0.1 --illum-bias-init 1.0'")
    ap.add_argument("--shipped-recipe", action="store_true",
                    help="train every model with iaca_metric.training.reproduce.TRAIN_ARGS (the shipped recipe); "
                         "leave out " + ", ".join("--" + o.replace("_", "-") for o in RECIPE_OPTIONS))
    ap.add_argument("--out", type=Path, default=Path("docs/results/lofo.json"))
    args = ap.parse_args(argv)
    if args.shipped_recipe:
        given = [o for o in RECIPE_OPTIONS if getattr(args, o) != ap.get_default(o)]
        if given:
            ap.error("--shipped-recipe sets the recipe itself; drop " + ", ".join("--" + o.replace("_", "-")
                                                                                  for o in given))
        _use_shipped_recipe(args)
    torch.set_num_threads(args.threads)
    fams = [f for f in args.families.split(",") if f] or [f.name for f in FAMILIES]

    test = read_sice_index(args.data / "index.jsonl", split="test")
    trunk = T.build_model("efficientnet_lite0", "reference_or_image")
    if args.bf16_exact_trunk:
        from iaca_metric.training.release import round_trunk_to_bfloat16

        round_trunk_to_bfloat16(trunk)
    test_cache = T.build_cache(trunk, test, args.cache, args.freeze, None, "test",
                               trunk_tag="bf16" if args.bf16_exact_trunk else "")
    del trunk
    by_group: dict[str, list[int]] = {}
    for i, r in enumerate(test):
        by_group.setdefault(r.group, []).append(i)
    order = [i for g in test_cache for i in by_group[g]]
    target = [test[i].score for i in order]
    groups = [test[i].group for i in order]
    families = [family_of(test[i].name) for i in order]
    truth2_all = _psnr_ssim_truth(test, args.data / "test_psnr_ssim_rank.json")
    truth2 = [truth2_all[i] for i in order]

    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {platform.processor()}",
              "command": "python " + " ".join(sys.argv), "recipe": vars(args) | {"data": str(args.data),
              "cache": str(args.cache), "runs": str(args.runs), "out": str(args.out)},
              "n_test_groups": len(test_cache), "families": {}}
    for held in ["", *fams]:
        t0 = time.time()
        best = _train(args, args.runs / (held or "_all"), held)
        model = IACAMetric.from_pretrained(best)
        pred_g = _predict(model, test_cache, args.freeze)
        pred = [float(v) for g in test_cache for v in pred_g[g]]
        res = {"labels": per_family_srcc(pred, target, groups, families),
               "psnr_ssim_rank": per_family_srcc(pred, truth2, groups, families),
               "within_srcc_all": within_group_srcc(pred, target, groups),
               "within_srcc_all_psnr_ssim": within_group_srcc(pred, truth2, groups),
               "seconds": round(time.time() - t0, 1)}
        key = held or "_all"
        report["families"][key] = res if not held else {
            "held_out": {t: res[t][held] for t in ("labels", "psnr_ssim_rank")},
            "within_srcc_all": res["within_srcc_all"], "within_srcc_all_psnr_ssim": res["within_srcc_all_psnr_ssim"],
            "seconds": res["seconds"]}
        if held:
            ref = report["families"]["_all"]
            h = report["families"][key]["held_out"]["labels"]
            a = ref["labels"][held]
            fmt = lambda v: "  n/a" if v is None else f"{v:5.3f}"  # noqa: E731
            print(f"{held:<16} held out: within-family SRCC {fmt(h['within_family_srcc_median'])} "
                  f"(all-family model {fmt(a['within_family_srcc_median'])}), pairwise vs others "
                  f"{fmt(h['pairwise_agreement_vs_others'])} ({fmt(a['pairwise_agreement_vs_others'])})", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
