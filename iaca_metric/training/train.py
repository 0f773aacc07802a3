"""Training IACA models: ``iaca-metric train`` (or ``python -m iaca_metric.training.train``).

Two recipes:

``cached`` (CPU, the recipe of the shipped IACA-Lite): the ImageNet backbone is frozen up to its
stride-16 tap (``--freeze stride16``; the late stage and all heads train) or up to both taps
(``--freeze stride32``; heads only). Frozen features of every image are computed once and cached on disk
per scene, so each epoch only runs the trainable part. Batches hold whole scenes; the norm-in-norm loss
(p=1, q=2, head weights 0.1/0.1/1) is taken within each scene, because scores are within-scene win rates.
The low-light input feeds the illumination map; with probability ``--p-no-ref`` it is withheld and the
image's own max-RGB map is used, so the model also scores without it.

``finetune`` (GPU, e.g. the paper's ResNeXt-101 on SQUARE-LOL): the whole network trains on random
224x224 crops with horizontal flips, batch-level norm-in-norm, as in the release.

Both are seeded and resumable (``RUN/last.pt`` after each epoch; rerunning the same command continues),
log one JSON line per epoch to ``RUN/train.log``, keep the best validation model (median within-scene
SRCC) in ``RUN/best/`` as a hub-ready folder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..correlation import spearman, within_group_srcc
from ..model import IACAMetric
from .datasets import Record, group_indices, read_sice_index, read_squarelol
from .norm_in_norm import HEAD_WEIGHTS, iaca_training_loss, norm_in_norm

__all__ = ["main", "train", "within_group_srcc", "spearman", "cache_group_features"]


def _progress(iterable: Iterable, **kw):
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kw)
    except ImportError:  # tqdm is in the train extra; without it, no bar
        return iterable


# --------------------------------------------------------------------------------------------- images
def load_rgb(path: Path, size: int | None = None) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; optional resize of the shorter side to ``size`` (antialiased)."""
    from ..inputs import load_image

    x = load_image(path)
    if size is not None and min(x.shape[-2:]) != size:
        h, w = x.shape[-2:]
        s = size / min(h, w)
        x = F.interpolate(x[None], size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    return x


# --------------------------------------------------------------------------------------------- caching
def _group_key(group: str) -> str:
    return hashlib.sha1(group.encode()).hexdigest()[:16]


@torch.no_grad()
def cache_group_features(model: IACAMetric, records: list[Record], indices: list[int], freeze: str,
                         size: int | None) -> dict[str, torch.Tensor]:
    """Frozen features of one scene. Returns float16 ``f16`` (n, C16, h, w) and, for freeze='stride32',
    ``f32``; float32 illumination maps at the stride-16 resolution: ``illum_img`` (n, 1, h, w) from each
    image and ``illum_low`` (n, 1, h, w) from its low-light input (the image's own map when it has none);
    and float32 ``d_mean``/``d_sq`` (n, cd): the detail moments (:meth:`IACAMetric.detail_moments` of the
    stride-4 and stride-8 maps, which the trunk computes on the way; what a detail-branch model needs)."""
    imgs = torch.stack([load_rgb(records[i].image, size) for i in indices])
    taps = model.features.forward_taps(imgs, detail=True)
    f16 = taps[16]
    out = {"f16": f16.half()}
    if freeze == "stride32":
        out["f32"] = taps[32].half()
    out["d_mean"], out["d_sq"] = model.detail_moments(taps)
    del taps
    hw = f16.shape[-2:]
    out["illum_img"] = F.adaptive_max_pool2d(imgs.amax(1, keepdim=True), hw)
    lows = []
    for k, i in enumerate(indices):
        low = records[i].low
        src = load_rgb(low, size)[None] if low is not None else imgs[k:k + 1]
        if src.shape[-2:] != imgs.shape[-2:]:
            raise ValueError(f"{low}: low-light input size {tuple(src.shape[-2:])} differs from "
                             f"{records[i].image} {tuple(imgs.shape[-2:])}")
        lows.append(F.adaptive_max_pool2d(src.amax(1, keepdim=True), hw))
    out["illum_low"] = torch.cat(lows)
    out["score"] = torch.tensor([records[i].score for i in indices], dtype=torch.float32)
    return out


def subset_positions(scores: Sequence[float], k: int | None) -> list[int]:
    """Deterministic subset of a scene's candidates: ``k`` evenly spaced score ranks (best and worst
    always kept), in their original order. Halves feature caching cost on CPU while keeping the
    scene's full quality range; None or k >= n keeps all."""
    n = len(scores)
    if k is None or k >= n:
        return list(range(n))
    order = np.argsort(np.asarray(scores), kind="mergesort")
    picks = {int(order[int(round(r))]) for r in np.linspace(0, n - 1, k)}
    return sorted(picks)


#: Candidates every subset keeps: the dark input (darkness must lose) and the two networks whose human
#: ordering is known (Zero-DCE above Self_Supervised); a hash subset would pair them in only ~1 group
#: in 4. Chosen by name, so the subset still does not depend on the labels.
ALWAYS_KEEP = ("input", "zero_dce", "self_supervised")


def subset_by_name(group: str, names: Sequence[str], k: int | None) -> list[int]:
    """Deterministic, label-independent subset of a scene's candidates: :data:`ALWAYS_KEEP` (those
    present), then the ones whose hash of ``group/name`` is smallest, ``k`` in all, in their original
    order. Unlike :func:`subset_positions` it does not change when the labels are recomputed, so a
    feature cache survives relabelling."""
    n = len(names)
    if k is None or k >= n:
        return list(range(n))
    keep = [i for i, nm in enumerate(names) if nm in ALWAYS_KEEP][:k]
    h = [hashlib.sha1(f"{group}/{nm}".encode()).hexdigest() for nm in names]
    rest = sorted((i for i in range(n) if i not in keep), key=lambda i: h[i])[:k - len(keep)]
    return sorted(keep + rest)


def build_cache(model: IACAMetric, records: list[Record], cache_dir: Path, freeze: str, size: int | None,
                desc: str, max_candidates: int | None = None,
                exclude_families: Sequence[str] = (), trunk_tag: str = "") -> dict[str, dict[str, torch.Tensor]]:
    """Cache every group's frozen features under ``cache_dir`` (resumable: existing files are reused;
    a subset is cut from a full-group file when one exists). A ``stride32`` file (which holds the
    stride-16 features too) also serves ``freeze='stride16'``.

    Scores always come from ``records`` (not from the cache), so relabelled data reuses the cache.
    When records carry candidate names (the SICE build), the subset is :func:`subset_by_name`, else
    :func:`subset_positions`. ``exclude_families`` drops those families' candidates after loading
    (leave-one-family-out training). ``trunk_tag`` names a trunk other than the ImageNet one in the file
    names (``"bf16"``: convolution weights rounded to the bfloat16 grid), so features of two trunks
    sharing one folder can never be mixed up."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    groups = group_indices(records)
    excluded = set(exclude_families)
    out = {}
    for g, idx in _progress(groups.items(), desc=f"cache {desc}", total=len(groups)):
        names = [records[i].name for i in idx]
        if all(names):
            pos = subset_by_name(g, names, max_candidates)
            tag = "" if len(pos) == len(idx) else f"_h{len(pos)}"
        else:
            pos = subset_positions([records[i].score for i in idx], max_candidates)
            tag = "" if len(pos) == len(idx) else f"_k{len(pos)}"
        trunk = f"_{trunk_tag}" if trunk_tag else ""
        full = cache_dir / f"{_group_key(g)}{trunk}_{freeze}_{size}.pt"
        f = cache_dir / f"{_group_key(g)}{trunk}_{freeze}_{size}{tag}.pt"
        alts = [f, full]
        if freeze == "stride16":
            alts = [cache_dir / f"{_group_key(g)}{trunk}_stride32_{size}{tag}.pt", *alts,
                    cache_dir / f"{_group_key(g)}{trunk}_stride32_{size}.pt"]
        item = None
        for cand in dict.fromkeys(alts):
            if cand.is_file():
                try:
                    item = torch.load(cand, weights_only=True)
                except Exception:  # a file cut short by an interrupted run: rebuild it
                    cand.unlink()
                    continue
                if int(item["score"].numel()) != len(pos):  # a full-group file: cut the subset
                    if int(item["score"].numel()) != len(idx):
                        item = None
                        continue
                    sel = torch.tensor(pos)
                    item = {k: v[sel] for k, v in item.items()}
                break
        if item is None:
            item = cache_group_features(model, records, [idx[p] for p in pos], freeze, size)
            tmp = f.with_suffix(".tmp")
            torch.save(item, tmp)
            os.replace(tmp, f)  # atomic: a killed run never leaves a half-written cache file
        item = dict(item)
        item["score"] = torch.tensor([records[idx[p]].score for p in pos], dtype=torch.float32)
        if excluded:
            from .families import family_of

            keep = torch.tensor([family_of(records[idx[p]].name) not in excluded for p in pos])
            if int(keep.sum()) < 2:
                continue
            item = {k: v[keep] for k, v in item.items()}
        out[g] = item
    return out


# --------------------------------------------------------------------------------------------- model
def build_model(arch: str, illumination: str, imagenet_init: bool = True, detail_branch: bool = False) -> IACAMetric:
    model = IACAMetric(arch=arch, illumination=illumination, mos_scale=1.0, mos_offset=0.0,
                       detail_branch=detail_branch)
    if imagenet_init:
        if arch == "efficientnet_lite0":
            from ..backbones import load_efficientnet_lite0_imagenet

            load_efficientnet_lite0_imagenet(model.features)
        else:
            print(f"note: no ImageNet weights for {arch} are available offline; pass --init-from a converted "
                  "checkpoint folder to start from trained weights", file=sys.stderr)
    return model


def set_illumination_bias(model: IACAMetric, bias: float) -> None:
    """Start both illumination-weight nets (``getw5``/``getw6``: conv, ReLU, conv, ReLU) with the last
    convolution's bias at ``bias``. The nets end in a ReLU: with PyTorch's default initialisation their
    output starts near 0, and one large step that makes it negative everywhere zeroes every weight map,
    hence every pooled moment; the fused score is then a constant and no gradient reaches the nets
    again (the collapse measured in docs/training_data.md). A positive bias starts them at a uniform,
    positive weighting. Initialisation only: the architecture (and parity with the release) is unchanged."""
    with torch.no_grad():
        for net in (model.getw5, model.getw6):
            convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
            convs[-1].bias.fill_(bias)


@torch.no_grad()
def set_detail_standardisation(model: IACAMetric, items: Iterable[dict[str, torch.Tensor]]) -> None:
    """Set the detail branch's fixed standardisation (``detail_shift``/``detail_scale``) to the mean and
    std of its inputs, [per-channel mean, per-channel std] of the stride-4/8 maps, over the cached training
    images, so the layer after it starts on unit-scale inputs (the heads keep BatchNorm frozen, so nothing
    else would rescale them)."""
    z = torch.cat([model.detail_features(it["d_mean"].double(), it["d_sq"].double()) for it in items])
    model.detail_shift.copy_(z.mean(0).to(model.detail_shift.dtype))
    model.detail_scale.copy_(z.std(0).clamp_min(1e-6).to(model.detail_scale.dtype))


def trainable_parameters(model: IACAMetric, freeze: str) -> list[torch.nn.Parameter]:
    frozen = set()
    if freeze in ("stride16", "stride32"):
        trunk = model.features
        keep = set(map(id, _late_stage_params(trunk))) if freeze == "stride16" else set()
        frozen = {id(p) for p in trunk.parameters() if id(p) not in keep}
    params = []
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
        if p.requires_grad:
            params.append(p)
    return params


def _late_stage_params(trunk: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters of the part between the stride-16 and the stride-32 taps."""
    if hasattr(trunk, "blocks"):
        return [p for b in trunk.blocks[trunk.TAP16_BLOCK + 1:] for p in b.parameters()]
    return list(trunk[7].parameters())


def _stack(items: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    return torch.cat([it[key] for it in items])


def cached_forward(model: IACAMetric, items: list[dict[str, torch.Tensor]], freeze: str, use_low: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heads (and, for freeze='stride16', the late stage) on cached features. ``use_low`` (N,) bool:
    illumination from the low-light input (True) or the image itself (False)."""
    f16 = _stack(items, "f16").float()
    f32 = _stack(items, "f32").float() if freeze == "stride32" else model.features.stride16_to_stride32(f16)
    illum = torch.where(use_low[:, None, None, None], _stack(items, "illum_low"), _stack(items, "illum_img"))
    detail = None
    if model.detail_branch:
        if "d_mean" not in items[0]:
            raise SystemExit("this feature cache has no detail moments (written before detail branches existed): "
                             "give --cache a new folder so they are computed")
        detail = (_stack(items, "d_mean"), _stack(items, "d_sq"))
    out = model.features_to_output(f16, f32, illum, detail=detail)
    return out.regr6, out.regr7, out.score


@torch.no_grad()
def evaluate_cached(model: IACAMetric, cache: dict[str, dict[str, torch.Tensor]], freeze: str,
                    with_low: bool = True) -> tuple[float, dict[str, np.ndarray]]:
    """Median within-scene SRCC of the fused score; also returns per-group predictions."""
    model.eval()
    preds, targets, groups, per = [], [], [], {}
    for g, item in cache.items():
        n = item["score"].numel()
        s = cached_forward(model, [item], freeze, torch.full((n,), with_low))[2]
        per[g] = s.numpy()
        preds += s.tolist()
        targets += item["score"].tolist()
        groups += [g] * n
    return within_group_srcc(preds, targets, groups), per


# --------------------------------------------------------------------------------------------- loop
def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_records(args: argparse.Namespace, split: str) -> list[Record]:
    if args.data_format == "sice":
        return read_sice_index(Path(args.data) / "index.jsonl", split=split)
    return read_squarelol(args.data, split=split)


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) a training run; returns the folder of the best model."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    _set_seed(args.seed)
    model = build_model(args.arch, args.illumination, imagenet_init=not args.init_from,
                        detail_branch=args.detail_branch)
    if args.init_from:
        src = IACAMetric.from_pretrained(args.init_from)
        model.load_state_dict(src.state_dict(), strict=True)
    elif args.illum_bias_init is not None:
        set_illumination_bias(model, args.illum_bias_init)
    if args.bf16_exact_trunk:
        if args.recipe != "cached" or args.freeze != "stride32":
            raise SystemExit("--bf16-exact-trunk needs --recipe cached --freeze stride32: a trunk that trains "
                             "leaves the bfloat16 grid, and the release would round it again")
        from .release import round_trunk_to_bfloat16

        # Train the heads on the trunk that ships: the release rounds the trunk's convolution weights to
        # the bfloat16 grid, which moves the features a little; heads fitted to the unrounded features
        # then see slightly different inputs, which flips near ties between candidates.
        round_trunk_to_bfloat16(model)
    train_recs = _load_records(args, args.train_split)
    val_recs = _load_records(args, args.val_split)
    log = open(run / "train.log", "a", encoding="utf-8")
    params = trainable_parameters(model, args.freeze if args.recipe == "cached" else "none")
    head_ids = {id(p) for n, p in model.named_parameters() if not n.startswith("features.")}
    opt = torch.optim.AdamW([
        {"params": [p for p in params if id(p) in head_ids], "lr": args.lr},
        {"params": [p for p in params if id(p) not in head_ids], "lr": args.lr * args.backbone_lr_scale},
    ], weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.epochs, 1))
    if args.recipe != "cached" and (args.ema or args.warmup_epochs or _augments(args)):
        raise SystemExit("--ema, --warmup-epochs, --feature-crop and --feature-dropout belong to the cached recipe")
    if not 0.0 < args.feature_crop <= 1.0 or not 0.0 <= args.feature_dropout < 1.0:
        raise SystemExit(f"--feature-crop must be in (0, 1] and --feature-dropout in [0, 1); got "
                         f"{args.feature_crop} and {args.feature_dropout}")
    ema = HeadEMA(model, args.ema) if args.ema else None
    start_epoch, best = 0, -math.inf
    ckpt = run / "last.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best"])
        if ema is not None:
            if "ema" not in state:
                raise SystemExit(f"{ckpt} was written without --ema; resume it without the option or start a new run")
            ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(_decode_np_rng(state["np_rng"]))
        random.setstate(_decode_py_rng(state["py_rng"]))
        print(f"resuming {run} at epoch {start_epoch} (best val SRCC so far {best:.4f})", file=sys.stderr)

    if args.recipe == "cached":
        cache_dir = Path(args.cache or (run / "cache"))
        # features must come from the frozen ImageNet trunk, whatever the heads' state
        trunk_model = build_model(args.arch, args.illumination, imagenet_init=not args.init_from,
                                  detail_branch=args.detail_branch)
        if args.init_from or args.bf16_exact_trunk:
            trunk_model.load_state_dict(model.state_dict())
        excl = [f for f in args.exclude_families.split(",") if f]
        tag = "bf16" if args.bf16_exact_trunk else ""
        train_cache = build_cache(trunk_model, train_recs, cache_dir, args.freeze, args.size, "train",
                                  max_candidates=args.max_candidates, exclude_families=excl, trunk_tag=tag)
        # Model selection must not see the held-out family either.
        val_cache = build_cache(trunk_model, val_recs, cache_dir, args.freeze, args.size, "val",
                                max_candidates=args.val_max_candidates, exclude_families=excl, trunk_tag=tag)
        del trunk_model
        if model.detail_branch and start_epoch == 0 and not args.init_from:
            set_detail_standardisation(model, train_cache.values())
    elif model.detail_branch and start_epoch == 0 and not args.init_from:
        raise SystemExit("--detail-branch is trained with the cached recipe (its standardisation comes from "
                         "the cached training features); use --recipe cached or --init-from a detail model")
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        model.train()
        if args.recipe == "cached":
            train_loss = _epoch_cached(model, opt, train_cache, args, ema, epoch)
            if ema is not None:
                ema.swap(model)  # validate (and export) the averaged heads
            val_srcc, _ = evaluate_cached(model, val_cache, args.freeze, with_low=True)
            val_srcc_self, _ = evaluate_cached(model, val_cache, args.freeze, with_low=False)
        else:
            train_loss = _epoch_finetune(model, opt, train_recs, args)
            val_srcc = evaluate_records(model, val_recs, args.size)
            val_srcc_self = float("nan")
        sched.step()
        # A tie goes to the later epoch. The median within-scene SRCC of ~70 validation scenes moves in
        # steps of one scene's rank pairs and ties often; where it cannot tell two epochs apart, the one
        # trained and averaged (EMA) longer on the annealed schedule is kept, not an early, under-fitted one.
        improved = val_srcc >= best
        if improved:
            best = val_srcc
            export(model, run / "best", args)
        if ema is not None:
            ema.swap(model)  # back to the raw weights, which the optimiser state belongs to
        entry = {"epoch": epoch, "train_loss": train_loss, "val_srcc": val_srcc, "val_srcc_no_ref": val_srcc_self,
                 "best": best, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
        log.write(json.dumps(entry) + "\n")
        log.flush()
        print(json.dumps(entry), file=sys.stderr)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch, "best": best, "torch_rng": torch.get_rng_state(),
                    "np_rng": _encode_np_rng(np.random.get_state()), "py_rng": _encode_py_rng(random.getstate()),
                    **({"ema": ema.state_dict()} if ema is not None else {})}, tmp)
        os.replace(tmp, ckpt)
    log.close()
    return run / "best"


def _encode_np_rng(state: tuple) -> list:
    # numpy arrays cannot pass torch.load(weights_only=True); a tensor can
    return [state[0], torch.from_numpy(state[1].astype(np.int64)), state[2], state[3], state[4]]


def _decode_np_rng(state: list) -> tuple:
    return (state[0], state[1].numpy().astype(np.uint32), state[2], state[3], state[4])


def _encode_py_rng(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _decode_py_rng(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def crop_cached_items(items: list[dict[str, torch.Tensor]], frac: float, gen: torch.Generator
                      ) -> list[dict[str, torch.Tensor]]:
    """Random crops of cached scenes, the feature-map counterpart of cropping the images: one window per
    scene (all its candidates see the same content, so the within-scene comparison stays fair), the same
    size for every scene of the batch (they are concatenated), covering ``frac`` of the smallest scene's
    height and width. Windows start on even stride-16 cells and have even sizes so the stride-32 window
    (half of it) covers the same part of the image. ``frac >= 1`` returns the items unchanged."""
    if frac >= 1.0:
        return items
    h = min(int(it["f16"].shape[-2]) for it in items)
    w = min(int(it["f16"].shape[-1]) for it in items)
    ch, cw = max(2, int(h * frac) // 2 * 2), max(2, int(w * frac) // 2 * 2)
    out = []
    for it in items:
        H, W = it["f16"].shape[-2:]
        y = 2 * int(torch.randint(0, (H - ch) // 2 + 1, (1,), generator=gen))
        x = 2 * int(torch.randint(0, (W - cw) // 2 + 1, (1,), generator=gen))
        c = dict(it)
        for k in ("f16", "illum_img", "illum_low"):
            c[k] = it[k][..., y:y + ch, x:x + cw]
        if "f32" in it:
            c["f32"] = it["f32"][..., y // 2:(y + ch) // 2, x // 2:(x + cw) // 2]
        out.append(c)
    return out


def drop_feature_channels(items: list[dict[str, torch.Tensor]], p: float, gen: torch.Generator
                          ) -> list[dict[str, torch.Tensor]]:
    """Channel dropout on the cached feature maps (each image's channels zeroed with probability ``p``,
    the rest scaled by 1/(1-p)): the heads (1.3 M parameters on a few thousand images) otherwise fit
    the training scenes within 3 epochs. Training only; ``p == 0`` returns the items unchanged."""
    if p <= 0:
        return items
    out = []
    for it in items:
        c = dict(it)
        for k in ("f16", "f32"):
            if k in it:
                n, ch = it[k].shape[:2]
                keep = (torch.rand(n, ch, 1, 1, generator=gen) >= p).to(it[k].dtype)
                c[k] = it[k] * keep / (1 - p)
        out.append(c)
    return out


class HeadEMA:
    """Exponential moving average of the trainable parameters (frozen ones and buffers are left alone),
    updated after every optimiser step: ``ema = decay * ema + (1 - decay) * param``. Evaluating and
    exporting the average instead of the last step smooths the step-to-step noise of small-batch
    training on a few hundred scenes."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's trainable parameters with the averages (call twice to undo)."""
        for n, p in model.named_parameters():
            if n in self.shadow:
                tmp = p.detach().clone()
                p.copy_(self.shadow[n])
                self.shadow[n].copy_(tmp)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the trainable parameters of this run")
        for n, v in state.items():
            self.shadow[n].copy_(v)


def _epoch_cached(model: IACAMetric, opt: torch.optim.Optimizer, cache: dict[str, dict[str, torch.Tensor]],
                  args: argparse.Namespace, ema: HeadEMA | None = None, epoch: int = 0) -> float:
    keys = list(cache)
    random.shuffle(keys)
    losses = []
    steps = math.ceil(len(keys) / args.groups_per_batch)
    warm = args.warmup_epochs * steps  # warm-up length in optimiser steps
    scheduled = [g["lr"] for g in opt.param_groups]  # the epoch's cosine learning rates
    # augmentation draws from its own generator, seeded from the global one, so runs without it keep
    # exactly the random stream (and the results) they had before the option existed
    gen = torch.Generator().manual_seed(random.randrange(2 ** 62)) if _augments(args) else None
    bar = _progress(range(0, len(keys), args.groups_per_batch), desc="train", leave=False)
    for b in bar:
        items = [cache[k] for k in keys[b:b + args.groups_per_batch]]
        if gen is not None:
            items = drop_feature_channels(crop_cached_items(items, args.feature_crop, gen), args.feature_dropout, gen)
        gid = torch.cat([torch.full((it["score"].numel(),), j) for j, it in enumerate(items)])
        # withhold the low-light input per scene, so the no-reference path is trained on whole scenes
        scene_low = torch.rand(len(items)) >= args.p_no_ref
        use_low = scene_low[gid]
        outs = cached_forward(model, items, args.freeze, use_low)
        loss = iaca_training_loss(outs, _stack(items, "score"), groups=gid, p=args.p, q=args.q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if warm > 0:
            # linear warm-up over the first steps, so the first updates from a random head are small
            # (measured: it does not prevent the illumination nets' collapse; --illum-bias-init does)
            step = epoch * steps + b // args.groups_per_batch
            for g, lr in zip(opt.param_groups, scheduled):
                g["lr"] = lr * min(1.0, (step + 1) / warm)
        opt.step()
        if ema is not None:
            ema.update(model)
        losses.append(float(loss.detach()))
    for g, lr in zip(opt.param_groups, scheduled):  # the cosine schedule steps from its own values
        g["lr"] = lr
    return float(np.mean(losses)) if losses else float("nan")


def _augments(args: argparse.Namespace) -> bool:
    return args.feature_crop < 1.0 or args.feature_dropout > 0.0


class _CropDataset(torch.utils.data.Dataset):
    """Random ``crop`` crops (same window on image and low-light input) with horizontal flips."""

    def __init__(self, records: list[Record], crop: int, size: int | None) -> None:
        self.records, self.crop, self.size = records, crop, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        img = load_rgb(r.image, self.size)
        low = load_rgb(r.low, self.size) if r.low is not None else img
        h, w = img.shape[-2:]
        c = min(self.crop, h, w)
        y, x = random.randint(0, h - c), random.randint(0, w - c)
        img, low = img[:, y:y + c, x:x + c], low[:, y:y + c, x:x + c]
        if random.random() < 0.5:
            img, low = img.flip(-1), low.flip(-1)
        return img, low, torch.tensor(r.score, dtype=torch.float32), torch.tensor(r.low is not None)


def _epoch_finetune(model: IACAMetric, opt: torch.optim.Optimizer, records: list[Record],
                    args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    model.to(device)
    loader = torch.utils.data.DataLoader(_CropDataset(records, args.crop, args.size), batch_size=args.batch_size,
                                         shuffle=True, num_workers=args.workers, drop_last=len(records) > args.batch_size)
    losses = []
    for img, low, score, has_low in _progress(loader, desc="train", leave=False):
        img, low, score = img.to(device), low.to(device), score.to(device)
        keep = (torch.rand(len(img), device=device) >= args.p_no_ref) & has_low.to(device)
        illum = torch.where(keep[:, None, None, None], low, img).amax(1, keepdim=True)
        t = model.backbone_taps(img)
        out = model.features_to_output(t[16], t[32], illum,
                                       detail=model.detail_moments(t) if model.detail_branch else None)
        loss = iaca_training_loss((out.regr6, out.regr7, out.score), score, p=args.p, q=args.q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.cpu()
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def evaluate_records(model: IACAMetric, records: list[Record], size: int | None) -> float:
    model.eval()
    preds = []
    for r in records:
        img = load_rgb(r.image, size)[None]
        low = load_rgb(r.low, size)[None] if r.low is not None else None
        preds.append(float(model(img, low if model.uses_ref else None)))
    return within_group_srcc(preds, [r.score for r in records], [r.group for r in records])


def export(model: IACAMetric, folder: Path, args: argparse.Namespace) -> None:
    """Save a hub-ready folder (model.safetensors + config.json); the model card is written by
    ``benchmarks/accuracy.py`` / the release step, which know the measured results."""
    model.save_pretrained(folder)
    (folder / "training_args.json").write_text(json.dumps(vars(args), indent=2, sort_keys=True, default=str))


# --------------------------------------------------------------------------------------------- CLI
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="iaca-metric train", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root (SICE build output or SQUARE-LOL layout)")
    p.add_argument("--data-format", choices=["sice", "squarelol"], default="sice")
    p.add_argument("--run", required=True, help="run folder (checkpoints, log, best model); rerun to resume")
    p.add_argument("--recipe", choices=["cached", "finetune"], default="cached")
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--illumination", default="reference_or_image",
                   choices=["image", "reference", "reference_or_image"])
    p.add_argument("--init-from", default=None, help="start from this weights folder/repo instead of ImageNet")
    p.add_argument("--freeze", choices=["stride16", "stride32"], default="stride16")
    p.add_argument("--detail-branch", action="store_true",
                   help="add the detail head (mean and std of the trunk's stride-4 and stride-8 maps) to the model")
    p.add_argument("--bf16-exact-trunk", action="store_true",
                   help="round the frozen trunk's convolution weights to the bfloat16 grid before caching and "
                        "training (what the release ships), so the released model scores exactly like the "
                        "trained one; needs --freeze stride32")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--cache", default=None, help="feature cache folder (default RUN/cache)")
    p.add_argument("--size", type=int, default=None, help="resize the shorter side to this (default: native)")
    p.add_argument("--max-candidates", type=int, default=None,
                   help="cached recipe: train on this many candidates per scene (evenly spaced score ranks)")
    p.add_argument("--val-max-candidates", type=int, default=None,
                   help="cached recipe: validate on this many candidates per scene (default: all)")
    p.add_argument("--exclude-families", default="",
                   help="comma-separated candidate families left out of training and validation "
                        "(leave-one-family-out evaluation; SICE build only)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--groups-per-batch", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16, help="finetune recipe")
    p.add_argument("--crop", type=int, default=224, help="finetune recipe")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the heads")
    p.add_argument("--backbone-lr-scale", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--ema", type=float, default=0.0,
                   help="cached recipe: validate and export an exponential moving average of the trainable "
                        "weights with this per-step decay (e.g. 0.99); 0 = off")
    p.add_argument("--illum-bias-init", type=float, default=None,
                   help="start the illumination-weight nets' last bias at this value (e.g. 1.0) instead of "
                        "PyTorch's default; guards against their ReLU output dying (a constant score)")
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="cached recipe: raise the learning rate linearly from 0 over this many epochs (0 = off)")
    p.add_argument("--feature-crop", type=float, default=1.0,
                   help="cached recipe: train on random crops of each scene's cached feature maps covering this "
                        "fraction of height and width (1 = whole maps)")
    p.add_argument("--feature-dropout", type=float, default=0.0,
                   help="cached recipe: channel dropout probability on the cached feature maps while training")
    p.add_argument("--p-no-ref", type=float, default=0.3, help="probability of withholding the low-light input")
    p.add_argument("--p", type=float, default=1.0, help="norm-in-norm p")
    p.add_argument("--q", type=float, default=2.0, help="norm-in-norm q")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    best = train(args)
    print(f"best model: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
