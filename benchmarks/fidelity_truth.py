"""Can one model follow both truths of issue 12? Train on the PSNR+SSIM rank and ask the human fact.

The accuracy benchmark scores a model against two truths: our labels (a model of people, validated on
the human facts) and the label-free PSNR+SSIM rank of each candidate against the scene's well-exposed
capture. This script trains the default recipe's heads (``iaca_metric.training.reproduce.TRAIN_ARGS``,
same feature cache, same groups) with the PSNR+SSIM rank as the training target, then measures, side by
side with a model trained on the labels:

* the validation scenes' median within-scene SRCC against the PSNR+SSIM rank (is the architecture able
  to follow that truth at all?), and
* how often each model prefers official Zero-DCE to Self_Supervised on the 152 low-light photos, the
  human fact of SQUARE-LOL (287 of 290 scenes).

    python benchmarks/fidelity_truth.py --sice WORK/sice/index.jsonl --cache WORK/feat \\
        --work WORK/fidelity_truth --labels-model WORK/run/best --data ../shared/data

With ``--rank-weight W`` below 1 the target is a blend of the two truths instead: within each group,
``(1 - W) * z(labels) + W * z(rank)`` (``z``: standardised within the group), with the human facts the label
checks test imposed as rules afterwards (every synthetic failure at least ``--gap`` below its clean base, the
unenhanced input ``--gap`` below every clean enhancement, Self_Supervised ``--self-supervised-gap`` below
official Zero-DCE). The result then also holds the validation scenes' median within-scene SRCC of that
model against the labels and against the rank: can a model between the two truths meet both targets and
the human fact?

Resumable (the training run resumes from its folder). Needs the SICE build, its feature cache (the one
``reproduce`` made) and ``../shared/data`` (photos and network weights).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from iaca_metric.evaluation.correlation import spearman  # noqa: E402
from iaca_metric.training.target_blend import group_rank, read_groups, write_target_index  # noqa: E402


def val_agreement(models: dict[str, object], index: Path, cache: Path) -> dict[str, dict]:
    """For each named ``IACAMetric`` of the default recipe: median within-scene SRCC against the labels and
    against the PSNR+SSIM rank on the validation scenes of ``index``, every candidate, and how often it puts
    Zero-DCE above Self_Supervised there. The features come from the recipe's cache (bf16-exact trunk,
    shared by all the models, so they are loaded once)."""
    from iaca_metric.training import train

    by = read_groups(index, "val")
    recs = train.read_sice_index(index, split="val")
    feats = train.build_cache(next(iter(models.values())), recs, cache, "stride32", None, "val",
                              max_candidates=None, trunk_tag="bf16")
    truths = {g: ([r["score"] for r in group], group_rank(group)) for g, group in by.items()}
    out = {}
    for name, model in models.items():
        _, per = train.evaluate_cached(model, feats, "stride32", with_low=True)
        vs_labels, vs_rank, zdce = [], [], 0
        for g, pred in per.items():
            group = by[g]  # the cache holds every candidate in index order (checked by length)
            if len(group) != len(pred):
                raise RuntimeError(f"group {g}: {len(pred)} cached candidates, {len(group)} in the index")
            vs_labels.append(spearman(pred, truths[g][0]))
            vs_rank.append(spearman(pred, truths[g][1]))
            names = [r["candidate"] for r in group]
            zdce += bool(pred[names.index("zero_dce")] > pred[names.index("self_supervised")])
        out[name] = {"groups": len(per), "val_srcc_vs_labels": float(np.median(vs_labels)),
                     "val_srcc_vs_psnr_ssim_rank": float(np.median(vs_rank)),
                     "val_zero_dce_above_self_supervised": f"{zdce}/{len(per)}"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sice", type=Path, required=True, help="index.jsonl of the SICE build")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache of the default recipe")
    ap.add_argument("--work", type=Path, required=True, help="folder for the relabelled index and the run")
    ap.add_argument("--labels-model", type=Path, required=True, help="a model trained on the labels, same recipe")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank-weight", type=float, default=1.0,
                    help="1: train on the PSNR+SSIM rank; below 1: on the rule-bound blend with the labels")
    ap.add_argument("--gap", type=float, default=0.1, help="blend rules' margin (within-group standard deviations)")
    ap.add_argument("--self-supervised-gap", type=float, default=None,
                    help="margin of Self_Supervised below Zero-DCE in the blend (default: --gap)")
    ap.add_argument("--outputs-cache", type=Path, default=None,
                    help="torch file of the networks' outputs of the photos, as benchmarks/accuracy.py's option")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    a = ap.parse_args(argv)

    import torch

    from accuracy import NetworkOutputCache, method_preference_check
    from iaca_metric.model import IACAMetric
    from iaca_metric.training import train
    from iaca_metric.training.reproduce import TRAIN_ARGS

    n = write_target_index(a.sice, a.work / "data" / "index.jsonl", a.rank_weight, a.gap, a.self_supervised_gap)
    run = a.work / "run"
    train.main(["--data", str(a.work / "data"), "--run", str(run), "--cache", str(a.cache),
                "--threads", str(a.threads), *TRAIN_ARGS])
    log = [json.loads(ln) for ln in (run / "train.log").read_text().splitlines() if ln.startswith("{")]
    torch.set_num_threads(a.threads)
    res = {"groups": n, "train_args": TRAIN_ARGS, "rank_weight": a.rank_weight}
    if a.rank_weight < 1.0:
        res.update(gap=a.gap, self_supervised_gap=a.gap if a.self_supervised_gap is None else a.self_supervised_gap)
    trained = "trained_on_psnr_ssim_rank" if a.rank_weight >= 1.0 else "trained_on_blend"
    fid_model = IACAMetric.from_pretrained(str(run / "best")).eval()
    labels_model = IACAMetric.from_pretrained(str(a.labels_model)).eval()
    with torch.no_grad():  # one pass of both networks over the photos, both models scoring the same images
        pref = method_preference_check(a.data, fid_model, others={"labels": labels_model},
                                      outputs_cache=NetworkOutputCache(a.outputs_cache))
    agreement = val_agreement({trained: fid_model, "trained_on_labels": labels_model}, a.sice, a.cache)
    for name, folder, key in ((trained, run / "best", ""), ("trained_on_labels", a.labels_model, "labels_")):
        by_set: dict[str, list[int]] = {}
        for r in pref["rows"]:
            w = by_set.setdefault(r["set"], [0, 0])
            w[0] += r[f"{key}zero_dce"] > r[f"{key}self_supervised"]
            w[1] += 1
        res[name] = {"model": str(folder),
                     "photos_zero_dce_above_self_supervised": pref["lowlight_labels" if key else "lowlight"],
                     "by_set": {k: f"{w}/{m}" for k, (w, m) in by_set.items()},
                     **agreement[name]}
    res[trained]["val_srcc_vs_own_target"] = max(r["val_srcc"] for r in log)
    print(f"{'model':26s} {'val SRCC: labels':>17s} {'rank':>6s} {'own target':>11s} {'photos Zero-DCE > Self_Supervised':>36s}")
    for name in (trained, "trained_on_labels"):
        r = res[name]
        p, v = r["photos_zero_dce_above_self_supervised"], r.get("val_srcc_vs_own_target")
        print(f"{name:26s} {r['val_srcc_vs_labels']:17.3f} {r['val_srcc_vs_psnr_ssim_rank']:6.3f} "
              f"{('%.3f' % v) if v is not None else '-':>11s} "
              f"{p['zero_dce_wins']:>25d}/{p['n']} = {100 * p['share']:.1f} %  {r['by_set']}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
