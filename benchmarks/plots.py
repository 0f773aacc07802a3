"""Regenerate every benchmark plot and the tables of docs/benchmarks.md from the JSON results.

One command, no arguments needed:

    python benchmarks/plots.py

reads ``docs/results/accuracy*.json`` (benchmarks/accuracy.py), ``docs/results/speed_*.json``
(benchmarks/speed.py; ``--quick`` runs are left out) and ``docs/results/gpu_check*.json``
(benchmarks/gpu_check.py), writes PNGs to ``docs/plots/`` and rewrites the generated sections of
``docs/benchmarks.md`` between their marker comments (``<!-- accuracy-table:start -->`` ...
``<!-- accuracy-table:end -->``, and the same for ``speed-table``, ``gpu-check``, ``precision``,
``autocast-policy`` and ``plots``), so the
doc always shows what the JSON files say. Text outside the markers is kept; a missing doc is created; a
missing or unreadable JSON file leaves a note in its section instead of a stale table.

Plots: median within-scene SRCC per metric (bars), predicted vs target scores (scatter, one colour per
scene), and throughput vs resolution (with the IACA / bare backbone ratio). Needs matplotlib for the PNGs
(``pip install matplotlib``); without it the tables are still written.

Options: ``--results DIR``, ``--plots DIR``, ``--doc FILE``, or explicit ``--accuracy/--speed/--gpu-check
FILE...`` (explicit files are used as given, quick runs included).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

SECTIONS = [  # (marker name, heading, explanation written when the doc is created)
    ("accuracy-table", "Accuracy",
     "Agreement of each metric with the subjective scores, from `benchmarks/accuracy.py`. The first column, the "
     "median over scenes of the Spearman correlation between a metric and the subjective scores of the enhanced "
     "versions of one scene, is the number that matters for comparing enhancement methods; the overall "
     "SRCC/KRCC/PLCC pool all scenes, and the logistic columns are after the usual 4-parameter fit. PSNR/SSIM/"
     "MS-SSIM/LPIPS need the ground truth; LPIPS is reported negated (higher = better). The line above each table "
     "gives the data set, model weights, machine, date and the exact command, from the JSON file."),
    ("speed-table", "Speed",
     "From `benchmarks/speed.py`. Contenders of one setting are measured interleaved in the same run; img/s = "
     "batch / median latency (median latency per call in parentheses). \"ratio\" = IACA img/s / its bare "
     "backbone's img/s (the backbone alone is `model.features`: below 1 means the IACA heads cost 1/ratio - 1 "
     "extra). Loss rows time `IACALoss(img, low).backward()` against the backbone's forward+backward with frozen "
     "weights. IACA-Lite uses the shipped weights (random CPU weights can hit slow float32 denormals); the "
     "paper variant has random weights with calibrated BatchNorm statistics. Skipped settings and why are listed under each "
     "table. Machine, date and command come from the JSON file."),
    ("gpu-check", "GPU check",
     "From `benchmarks/gpu_check.sh` (run once on a lent GPU): the GPU target setting (600x400, batch 32, bf16), "
     "reduced-precision score differences against strict fp32, CPU vs GPU score agreement and the folder CLI "
     "check. Score differences are in raw score units and relative to the spread (std) of the scores."),
    ("precision", "Half precision",
     "From `benchmarks/precision.py` (on CUDA as part of `benchmarks/gpu_check.sh`): max |autocast - fp32| of the "
     "scores and of `IACALoss` on the golden images and real low-light photos, in raw-score units and on the "
     "model's MOS scale, and the smallest cosine between the loss's input gradients. Target: scores within 1e-2 "
     "of fp32 (raw units)."),
    ("autocast-policy", "Cost of IACA-Lite's autocast precision policy",
     "From `benchmarks/autocast_policy.py` (on a lent GPU): IACA-Lite scoring and `IACALoss` forward+backward "
     "throughput in fp32 (TF32), under bf16/fp16 autocast with the default policy (float32 trunk blocks: "
     "all under bf16, 3 under fp16), and with fewer float32 blocks. See docs/scale_out.md."),
    ("plots", "Plots", "PNG files written by `benchmarks/plots.py` into `docs/plots/`."),
]

LABELS = {"iaca": "IACA (with low-light input)", "iaca_no_ref": "IACA (image only)", "psnr": "PSNR",
          "ssim": "SSIM", "ms_ssim": "MS-SSIM", "lpips": "LPIPS (negated)",
          "iaca_lite": "IACA-Lite", "backbone_lite": "EfficientNet-Lite0 backbone",
          "iaca_resnext": "IACA (ResNeXt-101)", "backbone_resnext": "ResNeXt-101 backbone",
          "iaca_resnet50": "IACA (ResNet-50)", "backbone_resnet50": "ResNet-50 backbone"}
LABELS.update(niqe="NIQE (negated)", brisque="BRISQUE (negated)")  # lower-is-better scores, negated
VARIANT_LABELS = {"paper": "paper IACA (ResNeXt-101, golden formula weights)", "lite": "IACA-Lite", "resnext": "IACA (ResNeXt-101)", "resnet50": "IACA (ResNet-50)"}


def lab(key: str) -> str:
    return LABELS.get(key, key)


def num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def rate(v: Any) -> str:
    """images/s, 3-4 significant figures without scientific notation."""
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def load(path: Path, notes: list[str]) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"could not read {path}: {exc}")
        print(f"skipping {path}: {exc}", file=sys.stderr)
        return None


def header(d: dict, path: Path, doc_dir: Path) -> str:
    m = d.get("machine") or {}
    if isinstance(m, dict):
        parts = [m.get("cpu"), f"{m['cores']} cores" if m.get("cores") else None,
                 f"{m['torch_threads']} torch threads" if m.get("torch_threads") else None,
                 f"torch {m['torch']}" if m.get("torch") else None, f"GPU {m['gpu']}" if m.get("gpu") else None]
        load_avg = m.get("loadavg_start")
        if load_avg:
            parts.append(f"load average at start {load_avg[0]:.1f}")
        machine = ", ".join(p for p in parts if p)
    else:
        machine = str(m)
    rel = Path(os.path.relpath(path, doc_dir)).as_posix()
    lines = [f"Source: `{rel}` · date {d.get('date', 'n/a')} · machine: {machine or 'n/a'}"]
    if d.get("command"):
        lines.append(f"Command: `{d['command']}`")
    return "  \n".join(lines)


# --------------------------------------------------------------------------------------------- accuracy
def accuracy_rows(ds: dict) -> list[tuple[str, dict]]:
    metrics = ds.get("metrics", {})
    avail = [(k, v) for k, v in metrics.items() if "unavailable" not in v]
    avail.sort(key=lambda kv: -kv[1]["within_srcc_median"] if _finite(kv[1].get("within_srcc_median")) else math.inf)
    return avail + [(k, v) for k, v in metrics.items() if "unavailable" in v]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def accuracy_table(files: list[tuple[Path, dict]], doc_dir: Path) -> str:
    out = []
    for path, d in files:
        model = d.get("model") or {}
        for name, ds in (d.get("datasets") or {}).items():
            out.append(f"**{name}**: {ds.get('n_images', '?')} images, {ds.get('n_groups', '?')} scenes; model "
                       f"{model.get('arch', 'n/a')} ({model.get('source', 'n/a')})  \n" + header(d, path, doc_dir))
            out.append("")
            out.append("| metric | within-scene SRCC (median) | within KRCC | within PLCC | SRCC | KRCC | PLCC "
                       "| PLCC (logistic) | RMSE (logistic) |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for k, r in accuracy_rows(ds):
                if "unavailable" in r:
                    out.append(f"| {lab(k)} | n/a: {r['unavailable']} |  |  |  |  |  |  |  |")
                    continue
                out.append(f"| {lab(k)} | {num(r.get('within_srcc_median'))} | {num(r.get('within_krcc_median'))} | "
                           f"{num(r.get('within_plcc_median'))} | {num(r.get('srcc'))} | {num(r.get('krcc'))} | "
                           f"{num(r.get('plcc'))} | {num(r.get('plcc_logistic'))} | {num(r.get('rmse_logistic'))} |")
            out.append("")
        z = d.get("zerodce_vs_input")
        if z:
            out.append(f"Zero-DCE output scored above its unenhanced input ({path.name}): {z.get('enhanced_wins')}/"
                       f"{z.get('n')} = {100 * (z.get('win_rate') or 0):.1f}%")
            parts = [f"{k.replace('input_mean_luma_', 'input mean luma ').replace('_', ' ')}: "
                     f"{v['enhanced_wins']}/{v['n']}" for k, v in (z.get("by_input_luma") or {}).items() if v.get("n")]
            if parts:
                out[-1] += " (" + "; ".join(parts) + ")"
            out.append("")
        if not d.get("datasets") and not z:
            out.append(f"`{path.name}` holds no data set results.")
            out.append("")
    return "\n".join(out).strip()


def plot_accuracy(plt, files: list[tuple[Path, dict]], plot_dir: Path) -> list[Path]:
    written = []
    for path, d in files:
        for name, ds in (d.get("datasets") or {}).items():
            rows = [(k, r["within_srcc_median"]) for k, r in accuracy_rows(ds)
                    if "unavailable" not in r and _finite(r.get("within_srcc_median"))]
            if rows:
                rows = rows[::-1]  # best at the top
                fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
                colours = ["tab:red" if k.startswith("iaca") else "tab:gray" for k, _ in rows]
                ax.barh([lab(k) for k, _ in rows], [v for _, v in rows], color=colours)
                for i, (_, v) in enumerate(rows):
                    ax.text(v + (0.01 if v >= 0 else -0.01), i, f"{v:.3f}", va="center",
                            ha="left" if v >= 0 else "right", fontsize=8)
                ax.axvline(0, color="black", lw=0.8)
                lo = min(0.0, min(v for _, v in rows) - 0.1)
                ax.set_xlim(lo, max(1.0, max(v for _, v in rows) + 0.1))
                ax.set_xlabel("median within-scene SRCC (higher is better)")
                ax.set_title(f"{name}: {ds.get('n_images', '?')} images, {ds.get('n_groups', '?')} scenes",
                             fontsize=10)
                fig.tight_layout()
                written.append(_save(fig, plt, plot_dir / f"{path.stem}_{name}_srcc.png"))
            pi = ds.get("per_image") or {}
            pred, target = pi.get("iaca"), pi.get("target")
            if pred and target and len(pred) == len(target):
                pts = [(p, t, g) for p, t, g in zip(pred, target, pi.get("group") or [""] * len(pred))
                       if _finite(p) and _finite(t)]
                if pts:
                    groups = sorted({g for _, _, g in pts})
                    gi = {g: i for i, g in enumerate(groups)}
                    fig, ax = plt.subplots(figsize=(6, 5))
                    if len(groups) <= 20:
                        # tab20 comes in light/dark pairs: take the dark ones first, for distinct neighbours
                        cols = [plt.get_cmap("tab20")((2 * gi[g]) % 20 + (gi[g] >= 10)) for _, _, g in pts]
                    else:
                        cols = [plt.get_cmap("viridis")(gi[g] / (len(groups) - 1)) for _, _, g in pts]
                    ax.scatter([p for p, _, _ in pts], [t for _, t, _ in pts], c=cols, s=12, alpha=0.8)
                    r = (ds.get("metrics") or {}).get("iaca", {})
                    ax.set_xlabel("IACA score (raw)")
                    # Say what the truth is: SICE-built labels are modelled win rates, not human ratings;
                    # only a SQUARE-LOL-layout dataset carries human ones.
                    ax.set_ylabel("label (human win rate)" if name.startswith("squarelol")
                                  else "label (modelled win rate)")
                    ax.set_title(f"{name}: SRCC {num(r.get('srcc'))}, within-scene SRCC median "
                                 f"{num(r.get('within_srcc_median'))}\n{len(pts)} images, one colour per scene "
                                 f"({len(groups)} scenes)", fontsize=9)
                    fig.tight_layout()
                    written.append(_save(fig, plt, plot_dir / f"{path.stem}_{name}_scatter.png"))
    return written


# --------------------------------------------------------------------------------------------- speed
def _contender_columns(records: list[dict]) -> list[str]:
    order = ["iaca_lite", "backbone_lite", "iaca_resnext", "backbone_resnext", "iaca_resnet50", "backbone_resnet50",
             "psnr", "ssim"]
    present = {k for r in records for k in (r.get("results") or {})}
    return [k for k in order if k in present] + sorted(present - set(order))


def _setting_cells(s: dict) -> str:
    return f"| {s.get('resolution')} | {s.get('batch')} | {s.get('dtype')} | {s.get('memory_format')} "


def throughput_table(records: list[dict]) -> list[str]:
    if not records:
        return ["No throughput settings measured."]
    cols = _contender_columns(records)
    head = ["resolution", "batch", "dtype", "format"]
    for c in cols:
        head.append(f"{lab(c)} img/s (ms)")
        if c.startswith("backbone_"):
            head.append(f"{VARIANT_LABELS.get(c[len('backbone_'):], c)} / backbone")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    for r in records:
        res = r.get("results") or {}
        row = _setting_cells(r.get("setting", {}))
        for c in cols:
            x = res.get(c)
            if x:
                row += f"| {rate(x.get('images_per_s'))} ({num(x.get('latency_ms_median'), 1)}) "
            else:
                row += "| skipped " if c in (r.get("skipped") or {}) or c.replace("backbone_", "iaca_") in (
                    r.get("skipped") or {}) else "| n/a "
            if c.startswith("backbone_"):
                v = c[len("backbone_"):]
                row += f"| {num((r.get('ratios') or {}).get(f'iaca_{v}/backbone_{v}'))} "
        if r.get("error"):
            row = _setting_cells(r.get("setting", {})) + f"| {r['error']} " + "| " * (len(head) - 5)
        out.append(row + "|")
    return out


def loss_table(records: list[dict]) -> list[str]:
    if not records:
        return []
    variants = sorted({k[len("iaca_loss_"):] for r in records for k in (r.get("results") or {})
                       if k.startswith("iaca_loss_")})
    head = ["resolution", "batch", "dtype", "format"]
    for v in variants:
        head += [f"IACALoss fwd+bwd, {VARIANT_LABELS.get(v, v)} img/s (ms)", "its backbone fwd+bwd img/s (ms)",
                 "ratio"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    for r in records:
        res = r.get("results") or {}
        row = _setting_cells(r.get("setting", {}))
        for v in variants:
            for k in (f"iaca_loss_{v}", f"backbone_fwd_bwd_{v}"):
                x = res.get(k)
                row += (f"| {rate(x.get('images_per_s'))} ({num(x.get('latency_ms_median'), 1)}) " if x
                        else "| skipped ")
            row += f"| {num((r.get('ratios') or {}).get(f'iaca_loss_{v}/backbone_fwd_bwd_{v}'))} "
        if r.get("error"):
            row = _setting_cells(r.get("setting", {})) + f"| {r['error']} " + "| " * (len(head) - 5)
        out.append(row + "|")
    return out


def memory_tables(d: dict) -> list[str]:
    out = []
    mem = d.get("memory") or []
    if mem:
        out += ["", "CPU peak RSS (fresh process per contender; batch 1, fp32, contiguous):", "",
                "| resolution | contender | peak RSS (MB) | during the calls, over the RSS before them (MB) |",
                "|---|---|---:|---:|"]
        for m in mem:
            s = m.get("setting", {})
            if m.get("error"):
                out.append(f"| {s.get('resolution')} | {lab(m.get('contender', '?'))} | {m['error']} |  |")
            else:
                out.append(f"| {s.get('resolution')} | {lab(m.get('contender', '?'))} | {num(m.get('peak_rss_mb'), 0)} "
                           f"| {num(m.get('call_rss_mb'), 0)} |")
    cuda_rows = []
    for kind in ("throughput", "loss"):
        for r in d.get(kind) or []:
            for k, m in (r.get("cuda_memory") or {}).items():
                s = r.get("setting", {})
                cuda_rows.append(f"{_setting_cells(s)}| {lab(k)} | {num(m.get('peak_mb'), 0)} | {num(m.get('call_mb'), 0)} |"
                                 if "peak_mb" in m else f"{_setting_cells(s)}| {lab(k)} | {m.get('error')} |  |")
    if cuda_rows:
        out += ["", "GPU memory (`torch.cuda.max_memory_allocated` during one call):", "",
                "| resolution | batch | dtype | format | contender | peak (MB) | call, over what was allocated before (MB) |",
                "|---|---|---|---|---|---:|---:|"] + cuda_rows
    return out


def checks_and_skips(d: dict) -> list[str]:
    out = []
    f = d.get("folder")
    if f:
        out += ["", f"Folder CLI (`score_files`, {f.get('n_images')} generated {f.get('resolution')} PNG/JPEG files, "
                f"batch {f.get('batch')}, {f.get('workers')} decoding workers, low-light inputs "
                f"{'paired' if f.get('with_ref') else 'not used'}): {rate(f.get('cli_images_per_s'))} img/s vs the "
                f"model on pre-decoded tensors {rate(f.get('model_images_per_s'))} img/s, ratio "
                f"**{num(f.get('ratio'))}** (target >= {f.get('target')})."]
    checks = d.get("checks") or []
    if checks:
        out += ["", "Checks:", ""]
        for c in checks:
            val = c.get("value_mb", c.get("value"))
            status = "" if "pass" not in c else ("PASS " if c["pass"] else "FAIL ")
            unit = " MB" if "value_mb" in c else ""
            note = f" ({c['note']})" if c.get("note") else ""
            out.append(f"- {status}{c.get('name')}: {num(val, 0 if unit else 3)}{unit}"
                       + (f", target {c['target']}" if c.get("target") else "") + note)
    skipped = d.get("skipped") or []
    if skipped:
        out += ["", f"<details><summary>{len(skipped)} skipped items</summary>", ""]
        out += [f"- {s.get('what')}: {s.get('reason')}" for s in skipped]
        out += ["", "</details>"]
    return out


def speed_table(files: list[tuple[Path, dict]], doc_dir: Path) -> str:
    out = []
    for path, d in files:
        wall = d.get("wall_s")
        out.append(f"**{d.get('device', '?')}**{' (quick smoke run)' if d.get('quick') else ''}"
                   f"{f', {wall:.0f} s in total' if _finite(wall) else ''}; weights: {_weights_text(d.get('weights'))}  \n"
                   + header(d, path, doc_dir))
        out.append("")
        out += throughput_table(d.get("throughput") or [])
        lt = loss_table(d.get("loss") or [])
        if lt:
            out += ["", "IACALoss forward+backward vs the bare backbone's forward+backward:", ""] + lt
        out += memory_tables(d)
        out += checks_and_skips(d)
        out.append("")
    return "\n".join(out).strip()


def pick_curve_group(records: list[dict]) -> tuple | None:
    """(batch, dtype, format) with the most resolutions; ties prefer batch 1, fp32, contiguous."""
    groups: dict[tuple, set] = {}
    for r in records:
        s = r.get("setting", {})
        if r.get("results"):
            groups.setdefault((s.get("batch"), s.get("dtype"), s.get("memory_format")), set()).add(s.get("resolution"))
    if not groups:
        return None
    return max(groups, key=lambda g: (len(groups[g]), g[0] == 1, g[1] == "fp32", g[2] == "contiguous"))


def plot_speed(plt, files: list[tuple[Path, dict]], plot_dir: Path) -> list[Path]:
    written = []
    for path, d in files:
        recs = d.get("throughput") or []
        g = pick_curve_group(recs)
        if g is None:
            continue
        sel = [r for r in recs if r.get("results") and (r["setting"].get("batch"), r["setting"].get("dtype"),
                                                        r["setting"].get("memory_format")) == g]
        sel.sort(key=lambda r: r["setting"]["width"] * r["setting"]["height"])
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for c in _contender_columns(sel):
            pts = [(r["setting"]["width"] * r["setting"]["height"] / 1e6, r["results"][c]["images_per_s"])
                   for r in sel if c in r["results"]]
            style = "-" if c.startswith("iaca") else "--" if c.startswith("backbone") else ":"
            ax.plot([p for p, _ in pts], [v for _, v in pts], style, marker="o", label=lab(c))
        any_ratio = False
        for v in [c[len("iaca_"):] for c in _contender_columns(sel) if c.startswith("iaca_")]:
            pts = [(r["setting"]["width"] * r["setting"]["height"] / 1e6, r["ratios"][f"iaca_{v}/backbone_{v}"])
                   for r in sel if f"iaca_{v}/backbone_{v}" in (r.get("ratios") or {})]
            if pts:
                any_ratio = True
                ax2.plot([p for p, _ in pts], [x for _, x in pts], "-o", label=VARIANT_LABELS.get(v, v))
        ticks = sorted({r["setting"]["width"] * r["setting"]["height"] / 1e6 for r in sel})
        names = {r["setting"]["width"] * r["setting"]["height"] / 1e6: r["setting"]["resolution"] for r in sel}
        for a in (ax, ax2):
            a.set_xscale("log")
            a.set_xticks(ticks)
            a.set_xticklabels([names[t] for t in ticks], rotation=20, fontsize=8)
            a.minorticks_off()
            a.grid(alpha=0.3)
        ax.set_yscale("log")
        ax.set_ylabel("images / s")
        ax.set_title(f"throughput, batch {g[0]}, {g[1]}, {g[2]}", fontsize=10)
        ax.legend(fontsize=7)
        ax2.axhline(1.0, color="black", lw=0.8)
        ax2.set_ylabel("IACA img/s / bare backbone img/s")
        ax2.set_title("cost of the IACA heads", fontsize=10)
        if any_ratio:
            ax2.legend(fontsize=7)
        m = d.get("machine") or {}
        fig.suptitle(f"{d.get('device', '?')}: {m.get('gpu') or m.get('cpu', '?')}, {d.get('date', '')}", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, plt, plot_dir / f"throughput_{path.stem}.png"))
    return written


def _weights_text(w: Any) -> str:
    """The JSON's weights field: a dict per variant (current) or one string (older files)."""
    if isinstance(w, dict):
        return "; ".join(f"{VARIANT_LABELS.get(k, k)}: {v}" for k, v in w.items())
    return str(w or "n/a")


# --------------------------------------------------------------------------------------------- gpu check
def gpu_table(files: list[tuple[Path, dict]], doc_dir: Path) -> str:
    out = []
    for path, d in files:
        weights = "; ".join(f"{VARIANT_LABELS.get(k, k)}: {v}" for k, v in (d.get("weights") or {}).items())
        out.append(f"**{d.get('device', '?')}**{' (CPU dry run)' if d.get('dry_run') else ''}; weights: "
                   f"{weights or 'n/a'}  \n" + header(d, path, doc_dir))
        out.append("")
        out += throughput_table(d.get("throughput") or [])
        lt = loss_table(d.get("loss") or [])
        if lt:
            out += ["", "IACALoss forward+backward vs the bare backbone's forward+backward:", ""] + lt
        prec = d.get("precision") or {}
        if prec:
            out += ["", "Reduced precision vs fp32 (TF32 off), same device:", "",
                    "| variant | autocast | images | max abs diff | mean abs diff | max diff / score std | Spearman | "
                    "same ranking | IACALoss grad cosine (bf16 vs fp32) |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
            for v, r in prec.items():
                for dt in ("bf16", "fp16"):
                    c = r.get(dt)
                    if c:
                        out.append(f"| {VARIANT_LABELS.get(v, v)} | {dt} | {r.get('n_images')} | {num(c.get('max_abs_diff'), 4)} "
                                   f"| {num(c.get('mean_abs_diff'), 4)} | {num(c.get('max_abs_diff_over_score_std'), 4)} "
                                   f"| {num(c.get('spearman_vs_reference'), 4)} | {c.get('same_ranking')} "
                                   f"| {num(r.get('loss_grad_cosine_bf16_vs_fp32'), 5) if dt == 'bf16' else ''} |")
        cvg = d.get("cpu_vs_gpu") or {}
        if cvg:
            out += ["", "CPU vs GPU, fp32 scores of the same images:", "",
                    "| variant | GPU setting | images | max abs diff | max diff / score std | same ranking |",
                    "|---|---|---:|---:|---:|---|"]
            for v, r in cvg.items():
                for k, name in (("gpu_default_tf32", "default (TF32 convolutions)"), ("gpu_tf32_off", "TF32 off")):
                    c = r.get(k)
                    if c:
                        out.append(f"| {VARIANT_LABELS.get(v, v)} | {name} | {r.get('n_images')} | "
                                   f"{num(c.get('max_abs_diff'), 6)} | {num(c.get('max_abs_diff_over_score_std'), 6)} "
                                   f"| {c.get('same_ranking')} |")
        out += memory_tables({"throughput": d.get("throughput"), "loss": d.get("loss")})
        out += checks_and_skips(d)
        out.append("")
    return "\n".join(out).strip()


# --------------------------------------------------------------------------------------------- precision
def precision_table(files: list[tuple[Path, dict]], doc_dir: Path) -> str:
    out = ["| file | device | model | weights sha256 | autocast | float32 blocks | images | max abs diff, raw | "
           "max abs diff, MOS scale | IACALoss max abs diff | min grad cosine | within 1e-2 (raw) |",
           "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for path, d in files:
        if "variants" not in d:  # older single-model format: no loss, no MOS-scale column
            continue
        dev = d.get("gpu") or d.get("device", "?")
        rel = Path(os.path.relpath(path, doc_dir)).as_posix()
        for v, r in d["variants"].items():
            for dt, c in r.get("summary", {}).items():
                sha = r.get("weights_sha256") or ("golden formula weights" if v == "paper" else "not recorded")
                # IACA-Lite's autocast policy (trunk blocks kept in float32); files from before it: none.
                blocks = (r.get("fp32_blocks") or {}).get(dt, "none" if v == "lite" else "n/a")
                out.append(f"| [{path.name}]({rel}) | {dev} | {VARIANT_LABELS.get(v, v)} | `{sha[:8]}` | {dt} | {blocks} "
                           f"| {r.get('n_images')} "
                           f"| {num(c['max_abs_diff_raw'], 4)} | {num(c['max_abs_diff_mos'], 4)} "
                           f"| {num(c['max_abs_diff_loss'], 4)} | {num(c['min_grad_cosine'], 3)} "
                           f"| {'yes' if c['within_1e-2_raw'] else '**no**'} |")
    if len(out) == 2:
        return ""
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- autocast policy
def autocast_policy_table(files: list[tuple[Path, dict]], doc_dir: Path) -> str:
    out = []
    for path, d in files:
        rel = Path(os.path.relpath(path, doc_dir)).as_posix()
        out += [f"[{path.name}]({rel}): {d.get('gpu') or d.get('device')}, torch {d.get('torch')}, {d.get('date')}, "
                f"{d.get('setting')}, weights `{(d.get('weights_sha256') or '?')[:8]}`, default float32 blocks "
                f"{d.get('fp32_blocks_default')}, median of {d.get('reps')} interleaved calls.", "",
                "| mode | score ms | score img/s | score vs all-bf16 | loss fwd+bwd ms | loss img/s | loss vs all-bf16 |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for m, r in d.get("modes", {}).items():
            sc, lo = r.get("score", {}), r.get("loss", {})
            out.append(f"| {m} | {num(sc.get('ms'), 2)} | {num(sc.get('img_per_s'), 0)} | "
                       f"{num(sc.get('throughput_vs_bf16_all'), 3)} | {num(lo.get('ms'), 2)} | "
                       f"{num(lo.get('img_per_s'), 0)} | {num(lo.get('throughput_vs_bf16_all'), 3)} |")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- doc
def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def new_doc() -> str:
    parts = ["# Benchmarks", "",
             "Everything between `<!-- ...:start -->` and `<!-- ...:end -->` markers is generated by "
             "`python benchmarks/plots.py` from the JSON files in `docs/results/`; edit the text outside the markers. "
             "Regenerate after every benchmark run so the tables and the JSON never disagree.", ""]
    for name, title, text in SECTIONS:
        parts += [f"## {title}", "", text, "", f"<!-- {name}:start -->", f"<!-- {name}:end -->", ""]
    return "\n".join(parts)


def replace_section(doc: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    block = f"{start}\n{body.strip()}\n{end}"
    if pat.search(doc):
        return pat.sub(lambda _: block, doc, count=1)
    title, text = next((t, x) for n, t, x in SECTIONS if n == name)
    return doc.rstrip("\n") + f"\n\n## {title}\n\n{text}\n\n{block}\n"


def find(explicit: list[Path] | None, results: Path, pattern: str, skip_quick: bool,
         notes: list[str]) -> list[tuple[Path, dict]]:
    if explicit:
        paths = list(explicit)
    else:
        paths = sorted(p for p in results.glob(pattern) if not p.name.endswith(".tmp")) if results.is_dir() else []
    out = []
    for p in paths:
        if not p.is_file():
            notes.append(f"missing {p}")
            print(f"skipping {p}: no such file", file=sys.stderr)
            continue
        d = load(p, notes)
        if d is None:
            continue
        if skip_quick and not explicit and (d.get("quick") or d.get("dry_run")):
            print(f"leaving out {p}: a --quick / dry run (pass it with --speed/--gpu-check to include it)")
            continue
        out.append((p, d))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("docs/results"), help="folder of the JSON results")
    ap.add_argument("--plots", type=Path, default=Path("docs/plots"), help="folder for the PNGs")
    ap.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"), help="markdown file with the markers")
    ap.add_argument("--accuracy", type=Path, nargs="*", help="accuracy JSON files (default: RESULTS/accuracy*.json)")
    ap.add_argument("--speed", type=Path, nargs="*", help="speed JSON files (default: RESULTS/speed_*.json)")
    ap.add_argument("--gpu-check", type=Path, nargs="*", help="gpu_check JSON files (default: RESULTS/gpu_check*.json)")
    args = ap.parse_args(argv)
    doc_dir = args.doc.resolve().parent
    notes: list[str] = []
    acc = find(args.accuracy, args.results, "accuracy*.json", False, notes)
    spd = find(args.speed, args.results, "speed_*.json", True, notes)
    gpu = find(args.gpu_check, args.results, "gpu_check*.json", True, notes)
    prec = find(None, args.results, "precision_*.json", True, notes)
    pol = find(None, args.results, "autocast_policy_*.json", True, notes)
    abs_pairs = lambda fs: [(p.resolve(), d) for p, d in fs]  # noqa: E731 - paths relative to the doc

    def missing(kind: str, cmd: str) -> str:
        msg = f"No {kind} results found in `{os.path.relpath(args.results.resolve(), doc_dir)}/`; run `{cmd}`, " \
              "then `python benchmarks/plots.py`."
        print(f"{kind}: no results, section left with a note")
        return f"_{msg}_"

    bodies = {
        "accuracy-table": accuracy_table(abs_pairs(acc), doc_dir) if acc else missing(
            "accuracy", "python benchmarks/accuracy.py ... --out docs/results/accuracy_<name>.json"),
        "speed-table": speed_table(abs_pairs(spd), doc_dir) if spd else missing(
            "speed", "python benchmarks/speed.py --device cpu"),
        "gpu-check": gpu_table(abs_pairs(gpu), doc_dir) if gpu else missing(
            "GPU check", "bash benchmarks/gpu_check.sh docs/results"),
        "precision": (precision_table(abs_pairs(prec), doc_dir) if prec else "") or missing(
            "precision", "python benchmarks/precision.py --device cpu"),
        "autocast-policy": autocast_policy_table(abs_pairs(pol), doc_dir) if pol else missing(
            "autocast policy", "python benchmarks/autocast_policy.py --device cuda --out "
            "docs/results/autocast_policy_cuda.json"),
    }
    written: list[Path] = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        print("matplotlib is not installed: no plots (pip install matplotlib); tables are still written")
    if plt is not None:
        written += plot_accuracy(plt, acc, args.plots)
        written += plot_speed(plt, spd, args.plots)
    if written:
        bodies["plots"] = "\n\n".join(
            f"![{p.stem}]({Path(os.path.relpath(p.resolve(), doc_dir)).as_posix()})" for p in written)
    elif plt is None:
        bodies["plots"] = "_matplotlib was not installed when the tables were generated: no plots._"
    else:
        bodies["plots"] = "_No plots: no results with plottable data._"
    if notes:
        bodies["plots"] += "\n\n" + "\n".join(f"- note: {n}" for n in notes)
    doc = args.doc.read_text(encoding="utf-8") if args.doc.is_file() else new_doc()
    for name, body in bodies.items():
        doc = replace_section(doc, name, body)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(doc, encoding="utf-8")
    for p in written:
        print(f"wrote {p}")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
