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

Resumable (the training run resumes from its folder). Needs the SICE build, its feature cache (the one
``reproduce`` made) and ``../shared/data`` (photos and network weights).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from iaca_metric.evaluation.correlation import psnr_ssim_rank  # noqa: E402


def write_fidelity_index(index: Path, out: Path) -> int:
    """Copy ``index`` to ``out`` with every score replaced by its group's PSNR+SSIM rank (0 worst, 1 best)
    and paths made absolute. Returns the number of groups."""
    rows = [json.loads(ln) for ln in index.read_text(encoding="utf-8").splitlines() if ln.strip()]
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["group"]].append(r)
    base = index.parent.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for group in by.values():
            rank = psnr_ssim_rank([r["m_psnr"] for r in group], [r["m_ssim_rgb"] for r in group])
            for r, v in zip(group, rank):
                r = {**r, "score": float(v)}
                for k in ("path", "low", "ref"):
                    if r.get(k):
                        r[k] = str(base / r[k])
                fh.write(json.dumps(r) + "\n")
    return len(by)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sice", type=Path, required=True, help="index.jsonl of the SICE build")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache of the default recipe")
    ap.add_argument("--work", type=Path, required=True, help="folder for the relabelled index and the run")
    ap.add_argument("--labels-model", type=Path, required=True, help="a model trained on the labels, same recipe")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--outputs-cache", type=Path, default=None,
                    help="torch file of the networks' outputs of the photos, as benchmarks/accuracy.py's option")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    a = ap.parse_args(argv)

    import torch

    from accuracy import NetworkOutputCache, method_preference_check
    from iaca_metric.model import IACAMetric
    from iaca_metric.training import train
    from iaca_metric.training.reproduce import TRAIN_ARGS

    n = write_fidelity_index(a.sice, a.work / "data" / "index.jsonl")
    run = a.work / "run"
    train.main(["--data", str(a.work / "data"), "--run", str(run), "--cache", str(a.cache),
                "--threads", str(a.threads), *TRAIN_ARGS])
    log = [json.loads(ln) for ln in (run / "train.log").read_text().splitlines() if ln.startswith("{")]
    torch.set_num_threads(a.threads)
    res = {"groups": n, "train_args": TRAIN_ARGS}
    fid_model = IACAMetric.from_pretrained(str(run / "best")).eval()
    labels_model = IACAMetric.from_pretrained(str(a.labels_model)).eval()
    with torch.no_grad():  # one pass of both networks over the photos, both models scoring the same images
        pref = method_preference_check(a.data, fid_model, others={"labels": labels_model},
                                      outputs_cache=NetworkOutputCache(a.outputs_cache))
    for name, folder, key in (("trained_on_psnr_ssim_rank", run / "best", ""), ("trained_on_labels", a.labels_model,
                                                                                "labels_")):
        by_set = {}
        for r in pref["rows"]:
            w = by_set.setdefault(r["set"], [0, 0])
            w[0] += r[f"{key}zero_dce"] > r[f"{key}self_supervised"]
            w[1] += 1
        res[name] = {"model": str(folder),
                     "photos_zero_dce_above_self_supervised": pref["lowlight_labels" if key else "lowlight"],
                     "by_set": {k: f"{w}/{n}" for k, (w, n) in by_set.items()}}
    res["trained_on_psnr_ssim_rank"]["val_srcc_vs_psnr_ssim_rank"] = max(r["val_srcc"] for r in log)
    print(f"{'model':28s} {'val SRCC vs PSNR+SSIM rank':>28s} {'photos Zero-DCE > Self_Supervised':>36s}")
    for name in ("trained_on_psnr_ssim_rank", "trained_on_labels"):
        p = res[name]["photos_zero_dce_above_self_supervised"]
        v = res[name].get("val_srcc_vs_psnr_ssim_rank")
        print(f"{name:28s} {('%.3f' % v) if v is not None else '-':>28s} "
              f"{p['zero_dce_wins']:>25d}/{p['n']} = {100 * p['share']:.1f} %  {res[name]['by_set']}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
