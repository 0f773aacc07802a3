"""Accuracy benchmark: IACA vs PSNR/SSIM/MS-SSIM/LPIPS and no-reference baselines (incl. NIQE, BRISQUE).

Datasets (any combination):
  --sice INDEX.jsonl       the SICE-built dataset (``python -m iaca_metric.training.sice``); its test split
  --squarelol ROOT         a dataset in the SQUARE-LOL layout (name_mos.txt + enhanced/ + normal/ [+ low/])
  --zerodce DATA_ROOT      ../shared/data: Zero-DCE outputs vs their unenhanced DICM/LIME inputs

For each metric: SRCC, KRCC, PLCC (raw, after the model's fixed MOS map, after a 4-parameter logistic
fit), RMSE, overall and median within scene. Writes a JSON file (``--out``) that ``benchmarks/plots.py``
and ``docs/benchmarks.md`` use, and prints a table. Example:

    python benchmarks/accuracy.py --sice /work/cache/sice_iqa/index.jsonl --zerodce ../shared/data \
        --out docs/results/accuracy_sice.json
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from iaca_metric import IACAMetric
from iaca_metric.baselines import BASELINES
from iaca_metric.correlation import per_family_srcc, summarize
from iaca_metric.inputs import load_image
from iaca_metric.no_reference_metrics import nr_baselines_or_reason
from iaca_metric.reference_metrics import lpips_or_reason, ms_ssim, psnr, ssim
from iaca_metric.training.datasets import Record, read_sice_index, read_squarelol
from iaca_metric.training.enhancers import luma
from iaca_metric.training.sice import INPUT_MAX_LUMA

# The darkest inputs IACA-Lite was trained on: mean luma below INPUT_MAX_LUMA (0-255 scale), ~0.196.
DARK_INPUT_LUMA = round(INPUT_MAX_LUMA / 255.0, 3)


def _progress(it, **kw):
    try:
        from tqdm.auto import tqdm

        return tqdm(it, file=sys.stderr, dynamic_ncols=True, **kw)
    except ImportError:
        return it


class BaselineCache:
    """NIQE/BRISQUE values of image files, keyed by (metric, sha256 of the file's bytes), in a JSON Lines
    file: they cost ~0.4 s per image on a CPU and do not depend on the model or the labels, so reruns of
    the benchmark on the same build reuse them. A changed image has another hash, so it is recomputed."""

    def __init__(self, path: Path | None):
        self.path, self.values = path, {}
        if path is not None and path.is_file():
            for ln in path.read_text(encoding="utf-8").splitlines():
                if ln.strip():
                    d = json.loads(ln)
                    self.values[(d["metric"], d["sha256"])] = float(d["value"])

    def get(self, metric: str, file: Path, compute) -> float:
        if self.path is None:
            return float(compute())
        import hashlib

        key = (metric, hashlib.sha256(Path(file).read_bytes()).hexdigest())
        if key not in self.values:
            self.values[key] = float(compute())
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"metric": key[0], "sha256": key[1], "value": self.values[key]}) + "\n")
        return self.values[key]


@torch.no_grad()
def score_records(records: list[Record], model: IACAMetric, with_ref_metrics: bool = True,
                  others: dict[str, IACAMetric] | None = None,
                  baseline_cache: BaselineCache | None = None) -> dict[str, list]:
    """Every metric on every record. IACA with the low-light input ("iaca") and without ("iaca_no_ref");
    ``others`` ({name: model}, e.g. the previous default) are scored on the same records, with ref.
    ``baseline_cache`` reuses NIQE/BRISQUE values of unchanged image files."""
    others = others or {}
    baseline_cache = baseline_cache or BaselineCache(None)
    lpips_fn, lpips_reason = lpips_or_reason() if with_ref_metrics else (None, "not requested")
    # NIQE and BRISQUE (lower is better, negated here like every baseline); (None, reason) when their
    # model files can be neither found nor fetched
    nr_fns = nr_baselines_or_reason()
    out: dict[str, list] = {k: [] for k in ["iaca", "iaca_no_ref", *others, "psnr", "ssim", "ms_ssim", "lpips",
                                            *BASELINES, *nr_fns]}
    cache: dict[Path, torch.Tensor] = {}

    def load(p: Path) -> torch.Tensor:
        if p not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[p] = load_image(p)[None]
        return cache[p]

    for r in _progress(records, desc="scoring"):
        img = load_image(r.image)[None]
        low = load(r.low) if r.low is not None else None
        # the trunk does not see ref, so run it once and only repeat the heads for the two illumination maps
        t = model.backbone_taps(img)
        f16, f32 = t[16], t[32]
        detail = model.detail_moments(t) if model.detail_branch else None
        illum = model.illumination_map(img, low if model.uses_ref else None)
        out["iaca"].append(float(model.features_to_output(f16, f32, illum, detail=detail).score))
        out["iaca_no_ref"].append(float(model.features_to_output(f16, f32, model.illumination_map(img, None),
                                                                 detail=detail).score)
                                  if not model.requires_ref else float("nan"))
        for name, m in others.items():
            out[name].append(float(m(img, low if m.uses_ref else None)))
        ref = load(r.ref) if (r.ref is not None and with_ref_metrics) else None
        if ref is not None and ref.shape == img.shape:
            out["psnr"].append(float(psnr(img, ref)))
            out["ssim"].append(float(ssim(img, ref)))
            out["ms_ssim"].append(float(ms_ssim(img, ref)) if min(img.shape[-2:]) >= 176 else float("nan"))
            out["lpips"].append(-float(lpips_fn(img * 2 - 1, ref * 2 - 1)) if lpips_fn else float("nan"))
        else:
            for k in ("psnr", "ssim", "ms_ssim", "lpips"):
                out[k].append(float("nan"))
        base_low = low if low is not None else img
        for name, fn in BASELINES.items():
            out[name].append(float(fn(img, base_low)))
        for name, (fn, _) in nr_fns.items():
            out[name].append(baseline_cache.get(name, r.image, lambda fn=fn: fn(img, None)) if fn is not None
                             else float("nan"))
    out["_lpips_reason"] = [lpips_reason]
    out.update({f"_{name}_reason": [reason] for name, (_, reason) in nr_fns.items()})
    return out


def psnr_ssim_rank_truth(psnr_v: list[float], ssim_v: list[float], groups: list[str]) -> list[float]:
    """A second, label-free truth: within each group, the mean of a candidate's PSNR rank and SSIM
    rank against the scene's reference (0 = worst, 1 = best). PSNR and SSIM themselves are part of
    it, so their agreement with it is high by construction; it matters for every other metric."""
    from iaca_metric.correlation import psnr_ssim_rank

    out = np.full(len(groups), np.nan)
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    for idx in by.values():
        p, q = np.asarray([psnr_v[i] for i in idx]), np.asarray([ssim_v[i] for i in idx])
        if np.isnan(p).any() or np.isnan(q).any() or len(idx) < 2:
            continue
        out[idx] = psnr_ssim_rank(p, q)
    return out.tolist()


def _summaries(scores: dict[str, list], target: list[float], groups: list[str], model: IACAMetric) -> dict:
    results = {}
    t = np.asarray(target, float)
    for name, vals in scores.items():
        if name.startswith("_"):
            continue
        v = np.asarray(vals, float)
        if np.isnan(v).all():
            results[name] = {"unavailable": (scores.get(f"_{name}_reason") or ["no data"])[0] or "no data"}
            continue
        keep = ~np.isnan(v) & ~np.isnan(t)
        lm = (model.mos_scale, model.mos_offset) if name in ("iaca", "iaca_no_ref") else None
        results[name] = summarize(v[keep], t[keep], [g for g, k in zip(groups, keep) if k], linear_map=lm)
    return results


def evaluate(records: list[Record], model: IACAMetric, others: dict[str, IACAMetric] | None = None,
             baseline_cache: BaselineCache | None = None) -> dict:
    t0 = time.time()
    scores = score_records(records, model, others=others, baseline_cache=baseline_cache)
    target = [r.score for r in records]
    groups = [r.group for r in records]
    results = _summaries(scores, target, groups, model)
    truth2 = psnr_ssim_rank_truth(scores["psnr"], scores["ssim"], groups)
    results2 = _summaries(scores, truth2, groups, model) if not np.isnan(truth2).all() else {}
    fams = _families(records)
    return {"n_images": len(records), "n_groups": len(set(groups)), "seconds": round(time.time() - t0, 1),
            "metrics": results, "metrics_vs_psnr_ssim_rank": results2,
            "per_family": {"labels": per_family_srcc(scores["iaca"], target, groups, fams),
                           "psnr_ssim_rank": per_family_srcc(scores["iaca"], truth2, groups, fams)}
            if fams else {},
            "per_image": {"target": target, "group": groups, "name": [str(r.image) for r in records],
                          "iaca": scores["iaca"], "iaca_no_ref": scores["iaca_no_ref"],
                          "psnr": scores["psnr"], "ssim": scores["ssim"], "psnr_ssim_rank": truth2,
                          "family": fams}}


def _families(records: list[Record]) -> list[str]:
    """Candidate family of each record of a SICE build (empty when the records have no names)."""
    if not all(r.name for r in records):
        return []
    from iaca_metric.training.families import family_of

    try:
        return [family_of(r.name) for r in records]
    except KeyError:  # a build made with the first, fixed enhancer list
        return []


@torch.no_grad()
def zerodce_check(data_root: Path, model: IACAMetric) -> dict:
    """Does the published Zero-DCE output score above its unenhanced input (DICM, LIME)?"""
    rows = []
    for sub in ("DICM", "LIME"):
        for enh in sorted((data_root / "enhanced" / "ZeroDCE" / sub).iterdir()):
            low_path = data_root / "lowlight" / sub / enh.name
            if not low_path.is_file():
                continue
            img, low = load_image(enh)[None], load_image(low_path)[None]
            if img.shape != low.shape:
                continue
            s_enh = float(model(img, low if model.uses_ref else None))
            s_low = float(model(low, low if model.uses_ref else None))
            rows.append({"set": sub, "name": enh.name, "enhanced": s_enh, "input": s_low,
                         "input_mean_luma": float(luma(low[0].permute(1, 2, 0).numpy()).mean())})
    wins = sum(r["enhanced"] > r["input"] for r in rows)
    # Split by how dark the input is: IACA-Lite's training inputs all have mean luma below
    # DARK_INPUT_LUMA; many DICM photos are much brighter than any of them.
    dark = [r for r in rows if r["input_mean_luma"] < DARK_INPUT_LUMA]
    bright = [r for r in rows if r["input_mean_luma"] >= DARK_INPUT_LUMA]
    by_luma = {f"input_mean_luma_below_{DARK_INPUT_LUMA}": _wins(dark),
               f"input_mean_luma_at_least_{DARK_INPUT_LUMA}": _wins(bright)}
    return {"n": len(rows), "enhanced_wins": wins, "win_rate": wins / max(len(rows), 1), "by_input_luma": by_luma,
            "rows": rows}


#: Low-light photo sets of ../shared/data/lowlight used for the method-preference check
#: (LOL_eval15_low is a crop of LOL_eval15_full, so it is not counted twice).
LOWLIGHT_SETS = ("DICM", "LIME", "LOL_eval15_full", "ZeroDCEpp_real")
#: Longer side the networks and the model see in the method-preference check (DICM/LIME/LOL are at most
#: ~1000 px; the Zero-DCE++ 1080p/4K photos would take minutes each through Self_Supervised on a CPU);
#: preference between two outputs of the same input does not hinge on full resolution.
PREF_MAX_SIDE = 800


def _downscale(x: torch.Tensor, max_side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    return torch.nn.functional.interpolate(x, size=(max(32, round(h * s)), max(32, round(w * s))), mode="area")


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    """sha256 of a file's bytes; memoised by (path, size, mtime) so the two weight files are read once per
    run, not once per photo, while a rewritten file is hashed again."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).digest()


class NetworkOutputCache:
    """Zero-DCE and Self_Supervised outputs of the low-light photos, as 8-bit (3, H, W) uint8 tensors in one
    torch file, keyed by photo and by the sha256 of the photo, of both weight files and the longer side:
    the two networks take ~20 minutes of CPU on the 152 photos and do not depend on the model scored, so
    reruns of the benchmark reuse them. Exact: the outputs are rounded to 8 bits before scoring anyway."""

    def __init__(self, path: Path | None):
        self.path, self.values, self.dirty = path, {}, False
        if path is not None and path.is_file():
            self.values = torch.load(path, weights_only=True)

    @staticmethod
    def key(photo: Path, weights: tuple[Path, ...], max_side: int) -> str:
        import hashlib

        h = hashlib.sha256()
        for f in (photo, *weights):
            st = Path(f).stat()
            h.update(_file_digest(str(f), st.st_size, st.st_mtime_ns))
        return f"{photo.parent.name}/{photo.name}/{max_side}/{h.hexdigest()}"

    def get(self, key: str, compute) -> tuple[torch.Tensor, torch.Tensor]:
        """(zero_dce, self_supervised) as (1, 3, H, W) float in [0, 1], 8-bit values."""
        if key not in self.values:
            a, b = compute()
            self.values[key] = torch.stack([torch.round(a[0] * 255), torch.round(b[0] * 255)]).to(torch.uint8)
            self.dirty = True
        ab = self.values[key].float() / 255
        return ab[0:1], ab[1:2]

    def save(self) -> None:
        if self.path is not None and self.dirty:
            tmp = self.path.with_suffix(".tmp")
            torch.save(self.values, tmp)
            tmp.replace(self.path)
            self.dirty = False


@torch.no_grad()
def method_preference_check(data_root: Path, model: IACAMetric, records: list[Record] | None = None,
                            max_side: int = PREF_MAX_SIDE, others: dict[str, IACAMetric] | None = None,
                            outputs_cache: NetworkOutputCache | None = None) -> dict:
    """Human fact: SQUARE-LOL's observers prefer Zero-DCE to Self_Supervised in 287 of 290 scenes.

    Runs the official Zero-DCE snapshot and the Self_Supervised network (``../shared/data/weights``)
    on every low-light photo of :data:`LOWLIGHT_SETS` and counts how often the model scores Zero-DCE's
    output higher (both scored against the same low-light input). With ``records`` (the SICE test
    split of a build that has both networks as candidates), the same on the test scenes' dark inputs.
    """
    from iaca_metric.training.self_supervised import load_self_supervised
    from iaca_metric.zero_dce import load_official_zero_dce

    weights = data_root / "weights"
    wfiles = (weights / "zero_dce_official_Epoch99.pth", weights / "selfsup_retinex_decom_6000.npz")
    zdce = load_official_zero_dce(wfiles[0])
    selfsup = load_self_supervised(wfiles[1])
    cache = outputs_cache or NetworkOutputCache(None)
    rows = []
    for sub in LOWLIGHT_SETS:
        folder = data_root / "lowlight" / sub
        if not folder.is_dir():
            continue
        for f in _progress(sorted(folder.iterdir()), desc=f"Zero-DCE vs Self_Supervised {sub}"):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            low = _downscale(load_image(f)[None], max_side)
            # 8-bit, as both would be saved and published
            a, b = cache.get(cache.key(f, wfiles, max_side),
                             lambda low=low: (zdce.enhance(low).clamp(0, 1), selfsup.enhance(low).clamp(0, 1)))
            if a.shape != low.shape:
                raise RuntimeError(f"cached network outputs of {f} have shape {tuple(a.shape)}, the photo "
                                   f"{tuple(low.shape)}: delete the outputs cache")
            ref = low if model.uses_ref else None
            row = {"set": sub, "name": f.name, "zero_dce": float(model(a, ref)), "self_supervised": float(model(b, ref)),
                   "input_mean_luma": float(luma(low[0].permute(1, 2, 0).numpy()).mean())}
            for name, m in (others or {}).items():
                r2 = low if m.uses_ref else None
                row[f"{name}_zero_dce"], row[f"{name}_self_supervised"] = float(m(a, r2)), float(m(b, r2))
            rows.append(row)
        cache.save()
    out = {"lowlight": _pref(rows), "lowlight_by_set": {s: _pref([r for r in rows if r["set"] == s])
                                                         for s in LOWLIGHT_SETS},
           "max_side": max_side, "rows": rows}
    for name in others or {}:
        alt = [{"zero_dce": r[f"{name}_zero_dce"], "self_supervised": r[f"{name}_self_supervised"]} for r in rows]
        out[f"lowlight_{name}"] = _pref(alt)
    if records:
        by: dict[str, dict[str, Record]] = {}
        for r in records:
            by.setdefault(r.group, {})[r.name] = r
        trows = []
        for g, c in sorted(by.items()):
            if "zero_dce" in c and "self_supervised" in c:
                low = load_image(c["zero_dce"].low)[None] if model.uses_ref else None
                trows.append({"group": g, "zero_dce": float(model(load_image(c["zero_dce"].image)[None], low)),
                              "self_supervised": float(model(load_image(c["self_supervised"].image)[None], low)),
                              "label_zero_dce": c["zero_dce"].score,
                              "label_self_supervised": c["self_supervised"].score})
        out["test_scenes"] = _pref(trows)
        out["test_scene_rows"] = trows
    return out


def _pref(rows: list[dict]) -> dict:
    w = sum(r["zero_dce"] > r["self_supervised"] for r in rows)
    return {"n": len(rows), "zero_dce_wins": w, "share": w / len(rows) if rows else None}


def _wins(rows: list[dict]) -> dict:
    w = sum(r["enhanced"] > r["input"] for r in rows)
    return {"n": len(rows), "enhanced_wins": w, "win_rate": w / len(rows) if rows else None}


def _table(name: str, res: dict) -> str:
    lines = [f"\n{name}: {res['n_images']} images, {res['n_groups']} scenes",
             f"{'metric':<14}{'within SRCC':>12}{'within KRCC':>12}{'within PLCC':>12}{'SRCC':>8}{'KRCC':>8}"
             f"{'PLCC':>8}{'PLCC log':>9}{'RMSE log':>9}"]
    for m, r in res["metrics"].items():
        if "unavailable" in r:
            lines.append(f"{m:<14} {r['unavailable']}")
            continue
        lines.append(f"{m:<14}{r['within_srcc_median']:>12.3f}{r['within_krcc_median']:>12.3f}"
                     f"{r['within_plcc_median']:>12.3f}{r['srcc']:>8.3f}{r['krcc']:>8.3f}{r['plcc']:>8.3f}"
                     f"{r.get('plcc_logistic', float('nan')):>9.3f}{r.get('rmse_logistic', float('nan')):>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="weights folder / hub repo (default: embedded IACA-Lite)")
    ap.add_argument("--sice", type=Path, help="index.jsonl of the SICE-built dataset")
    ap.add_argument("--sice-split", default="test")
    ap.add_argument("--squarelol", type=Path, help="root of a dataset in the SQUARE-LOL layout")
    ap.add_argument("--squarelol-split", default="test")
    ap.add_argument("--zerodce", type=Path, help="data root holding lowlight/ and enhanced/ZeroDCE/")
    ap.add_argument("--preference", type=Path, default=None,
                    help="data root with lowlight/ and weights/: Zero-DCE (official) vs Self_Supervised check")
    ap.add_argument("--out", type=Path, default=Path("docs/results/accuracy.json"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--baseline-cache", type=Path, default=None,
                    help="JSON Lines file of NIQE/BRISQUE values by image sha256, reused and extended across runs")
    ap.add_argument("--outputs-cache", type=Path, default=None,
                    help="torch file of the Zero-DCE/Self_Supervised outputs of the low-light photos, reused and "
                         "extended across runs (the networks cost ~20 CPU minutes on the 152 photos)")
    ap.add_argument("--previous-on-sice", action="store_true", help="also score --previous on the SICE split")
    ap.add_argument("--previous", default=None, help="weights folder of the previous default model: scored on the "
                    "same records as 'iaca_previous' for comparison")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = IACAMetric() if args.model is None else IACAMetric.from_pretrained(args.model)
    others = {"iaca_previous": IACAMetric.from_pretrained(args.previous).eval()} if args.previous else {}
    # weights_info's "_" keys are in-process bookkeeping (tensor ids), not facts about the weights
    info = {k: v for k, v in model.weights_info.items() if not k.startswith("_")}
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} "
              f"{platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
              "command": "python " + " ".join(sys.argv), "model": {"arch": model.arch, **info},
              "datasets": {}}
    if args.sice:
        recs = read_sice_index(args.sice, split=args.sice_split)
        # The previous model is compared on the cheap human-fact checks below; on the SICE test split its
        # numbers are in its own accuracy report (old labels), which the docs keep beside the new ones.
        report["datasets"]["sice_" + args.sice_split] = evaluate(recs, model, others if args.previous_on_sice else None,
                                                                 baseline_cache=BaselineCache(args.baseline_cache))
    if args.squarelol:
        recs = read_squarelol(args.squarelol, split=args.squarelol_split)
        report["datasets"]["squarelol_" + args.squarelol_split] = evaluate(recs, model)
    if args.zerodce:
        report["zerodce_vs_input"] = zerodce_check(args.zerodce, model)
        for name, m in others.items():
            report[f"zerodce_vs_input_{name}"] = {k: v for k, v in zerodce_check(args.zerodce, m).items() if k != "rows"}
    if args.preference:
        test_recs = read_sice_index(args.sice, split=args.sice_split) if args.sice else None
        report["zero_dce_vs_self_supervised"] = method_preference_check(
            args.preference, model, test_recs, others=others, outputs_cache=NetworkOutputCache(args.outputs_cache))
    for name, res in report["datasets"].items():
        print(_table(name, res))
        iaca = res["metrics"]["iaca"]["within_srcc_median"]
        nr = {k: res["metrics"][k]["within_srcc_median"] for k in [*BASELINES, "niqe", "brisque"]
              if "within_srcc_median" in res["metrics"].get(k, {})}
        best_nr = max(nr, key=nr.get)
        print(f"IACA within-scene SRCC {iaca:.3f}; best no-reference baseline {best_nr} {nr[best_nr]:.3f} "
              f"(margin {iaca - nr[best_nr]:+.3f})")
    for name, res in report["datasets"].items():
        m2 = res.get("metrics_vs_psnr_ssim_rank") or {}
        if m2:
            iaca2 = m2["iaca"]["within_srcc_median"]
            nr2 = {k: m2[k]["within_srcc_median"] for k in BASELINES if "within_srcc_median" in m2.get(k, {})}
            b2 = max(nr2, key=nr2.get)
            print(f"{name} vs PSNR+SSIM rank truth: IACA {iaca2:.3f}; best no-reference {b2} {nr2[b2]:.3f} "
                  f"(margin {iaca2 - nr2[b2]:+.3f})")
        for truth, fam in res.get("per_family", {}).items():
            print(f"per family ({truth}): " + ", ".join(
                f"{f} {v['within_family_srcc_median']:.2f}/{v['pairwise_agreement_vs_others']:.2f}"
                for f, v in fam.items() if v["within_family_srcc_median"] is not None))
    if "zero_dce_vs_self_supervised" in report:
        z = report["zero_dce_vs_self_supervised"]
        print(f"\nZero-DCE (official) above Self_Supervised on the low-light photos: "
              f"{z['lowlight']['zero_dce_wins']}/{z['lowlight']['n']} = {z['lowlight']['share']:.1%}")
        for k, v in z["lowlight_by_set"].items():
            if v["n"]:
                print(f"  {k}: {v['zero_dce_wins']}/{v['n']} = {v['share']:.1%}")
        if "test_scenes" in z and z["test_scenes"]["n"]:
            t = z["test_scenes"]
            print(f"  test scenes' dark inputs: {t['zero_dce_wins']}/{t['n']} = {t['share']:.1%}")
    if "zerodce_vs_input" in report:
        z = report["zerodce_vs_input"]
        print(f"\nZero-DCE output above its unenhanced input: {z['enhanced_wins']}/{z['n']} = {z['win_rate']:.1%}")
        for k, v in z["by_input_luma"].items():
            if v["n"]:
                print(f"  {k}: {v['enhanced_wins']}/{v['n']} = {v['win_rate']:.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
