"""Training code: norm-in-norm loss, dataset readers (SICE index, SQUARE-LOL layout), and short
end-to-end runs of both recipes on small generated datasets (with resume)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iaca_metric import IACAMetric
from iaca_metric.training.datasets import read_sice_index, read_squarelol
from iaca_metric.training.norm_in_norm import iaca_training_loss, norm_in_norm
from iaca_metric.training.train import build_parser, spearman, train, within_group_srcc

from synthetic_data import write_sice_like, write_squarelol_like


# ------------------------------------------------------------------------------------------ loss
def test_norm_in_norm_zero_for_increasing_affine_prediction():
    y = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert float(norm_in_norm(3.0 * y - 2.0, y)) == pytest.approx(0.0, abs=1e-6)


def test_norm_in_norm_maximal_for_reversed_prediction():
    y = torch.tensor([0.1, 0.5, 0.3, 0.9])
    # reversed normalised vectors: ||-t - t||_1 / (2 * N^(1/2)) = 2 ||t||_1 / (2 sqrt(N)) with ||t||_2 = 1
    t = (y - y.mean()) / torch.linalg.vector_norm(y - y.mean())
    expected = float(2 * t.abs().sum() / (2 * math.sqrt(4)))
    assert float(norm_in_norm(-y, y)) == pytest.approx(expected, rel=1e-5)
    assert 0 < expected <= 1


def test_norm_in_norm_p2_matches_plcc_relation():
    # for p = q = 2 the first term equals (1 - PLCC) / 2
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    plcc = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert float(norm_in_norm(a, b, p=2, q=2)) == pytest.approx((1 - plcc) / 2, rel=1e-4)


def test_group_loss_ignores_between_group_offsets():
    y = torch.tensor([0.2, 0.8, 0.5, 0.1, 0.9, 0.5])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    pred = y + torch.tensor([0, 0, 0, 10.0, 10, 10])  # per-group offset: still perfect within scenes
    loss = iaca_training_loss((pred, pred, pred), y, groups=groups)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert float(iaca_training_loss((pred, pred, pred), y)) > 0.05  # batch-level loss sees the offset


def test_spearman_and_within_group_srcc():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)  # ties: mean ranks
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    pred = [1, 2, 3, 4, 4, 3, 2, 1, 1, 2, 4, 3]
    tgt = [1, 2, 3, 4] * 3
    assert within_group_srcc(pred, tgt, groups) == pytest.approx(0.8)  # median of 1, -1, 0.8


# ------------------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def sice_like(tmp_path_factory) -> Path:
    return write_sice_like(tmp_path_factory.mktemp("sice_like"))


@pytest.fixture(scope="module")
def squarelol_like(tmp_path_factory) -> Path:
    """A small dataset in the SQUARE-LOL layout: 4 scenes x 5 methods, win-rate-like scores."""
    return write_squarelol_like(tmp_path_factory.mktemp("squarelol_like"))


def test_read_sice_index(sice_like):
    recs = read_sice_index(sice_like / "index.jsonl", split="train")
    assert len(recs) == 20 and {r.split for r in recs} == {"train"}
    assert recs[0].image == sice_like / "s0" / "c0.png" and recs[0].low == sice_like / "s0" / "low.png"
    assert recs[0].ref is None and recs[3].score == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no records"):
        read_sice_index(sice_like / "index.jsonl", split="test")


def test_read_squarelol_layout_and_release_split(squarelol_like):
    train = read_squarelol(squarelol_like, split="train", train_rows=15, val_rows=5)
    val = read_squarelol(squarelol_like, split="val", train_rows=15, val_rows=5)
    test = read_squarelol(squarelol_like, split="test", train_rows=15, val_rows=5)
    assert (len(train), len(val), len(test)) == (10, 5, 5)
    r = train[0]
    assert r.group == "low00001" and r.name == "low00001_M0_0.png"
    assert r.ref == squarelol_like / "normal" / "normal00001.png"
    assert r.low == squarelol_like / "low" / "low00001.png"
    assert test[0].group == "low00004"
    with pytest.raises(ValueError, match="unknown split"):
        read_squarelol(squarelol_like, split="nope")


def test_read_squarelol_reports_missing_images(tmp_path):
    (tmp_path / "name_mos.txt").write_text("low00001_X_0.png 0.5\n")
    with pytest.raises(FileNotFoundError, match="low00001_X_0.png"):
        read_squarelol(tmp_path, split="all")


# ------------------------------------------------------------------------------------------ runs
def _args(**kw):
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return build_parser().parse_args(argv)


def test_cached_recipe_learns_and_resumes(sice_like, tmp_path):
    run = tmp_path / "run"
    args = _args(data=sice_like, run=run, epochs=2, freeze="stride16", lr=3e-3, groups_per_batch=2, seed=0,
                 threads=2)
    best = train(args)
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    assert (best / "model.safetensors").is_file() and (best / "config.json").is_file()
    model = IACAMetric.from_pretrained(best)
    assert model.arch == "efficientnet_lite0" and model.illumination == "reference_or_image"
    # resume: asking for 3 epochs continues at epoch 2, it does not start over
    args.epochs = 3
    train(args)
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1, 2]
    assert all(np.isfinite(e["train_loss"]) for e in log)
    # cached features were reused (one file per scene)
    assert len(list((run / "cache").glob("*.pt"))) == 6


def test_cached_recipe_is_seeded(sice_like, tmp_path):
    logs = []
    for name in ("a", "b"):
        args = _args(data=sice_like, run=tmp_path / name, epochs=1, freeze="stride32", seed=3, threads=2,
                     cache=tmp_path / "shared_cache")
        train(args)
        logs.append(json.loads((tmp_path / name / "train.log").read_text().splitlines()[0]))
    assert logs[0]["train_loss"] == logs[1]["train_loss"]
    assert logs[0]["val_srcc"] == logs[1]["val_srcc"]


def test_bf16_exact_trunk_trains_what_the_release_ships(sice_like, tmp_path):
    """--bf16-exact-trunk rounds the frozen trunk before caching, caches under its own file names (a
    plain run sharing the folder never reads them), and the release's rounding then changes nothing:
    the released model scores exactly like the trained one."""
    from iaca_metric.training.release import write_release

    cache = tmp_path / "cache"
    common = dict(data=sice_like, epochs=1, freeze="stride32", seed=0, threads=2, cache=cache)
    plain = train(_args(run=tmp_path / "plain", **common))
    argv = ["--bf16-exact-trunk"] + sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in
                                          dict(run=tmp_path / "b16", **common).items()), [])
    best = train(build_parser().parse_args(argv))
    files = sorted(f.name for f in cache.glob("*.pt"))
    assert len(files) == 12 and sum("_bf16_" in f for f in files) == 6  # 6 scenes, once per trunk
    model = IACAMetric.from_pretrained(best)
    convs = [m.weight for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.equal(w, w.to(torch.bfloat16).float()) for w in convs)
    unrounded = IACAMetric.from_pretrained(plain)
    w0 = next(m.weight for m in unrounded.features.modules() if isinstance(m, torch.nn.Conv2d))
    assert not torch.equal(w0, w0.to(torch.bfloat16).float())  # the ImageNet trunk is not on the grid
    write_release(best, tmp_path / "rel", None, None, bf16_exact_trunk=True)
    released = IACAMetric.from_pretrained(tmp_path / "rel")
    x, low = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).split(1)
    with torch.no_grad():
        assert torch.equal(released(x, low * 0.2), model(x, low * 0.2))
    with pytest.raises(SystemExit, match="stride32"):
        train(build_parser().parse_args(["--bf16-exact-trunk", "--data", str(sice_like), "--run",
                                         str(tmp_path / "bad"), "--freeze", "stride16"]))


def test_finetune_recipe_on_squarelol_layout(squarelol_like, tmp_path, monkeypatch):
    import iaca_metric.training.datasets as ds

    monkeypatch.setattr(ds, "SQUARELOL_TRAIN_ROWS", 15)
    monkeypatch.setattr(ds, "SQUARELOL_VAL_ROWS", 5)
    args = _args(data=squarelol_like, data_format="squarelol", run=tmp_path / "ft", recipe="finetune",
                 epochs=1, crop=48, batch_size=5, seed=0, threads=2, illumination="image")
    # the reader's defaults are bound at definition time; pass the small split sizes explicitly
    monkeypatch.setattr("iaca_metric.training.train.read_squarelol",
                        lambda root, split: ds.read_squarelol(root, split=split, train_rows=15, val_rows=5))
    best = train(args)
    entry = json.loads((tmp_path / "ft" / "train.log").read_text().splitlines()[0])
    assert np.isfinite(entry["train_loss"]) and -1 <= entry["val_srcc"] <= 1
    assert IACAMetric.from_pretrained(best).illumination == "image"


def test_hash_subset_always_keeps_the_input_and_both_networks() -> None:
    from iaca_metric.training.train import ALWAYS_KEEP, subset_by_name

    names = [f"gamma_{i}" for i in range(30)] + ["zero_dce", "self_supervised", "input"] + [f"log_{i}" for i in range(9)]
    for g in ("s001/10", "s002/20", "s100/7_night"):
        idx = subset_by_name(g, names, 12)
        assert len(idx) == 12 and idx == sorted(set(idx))
        assert set(ALWAYS_KEEP) <= {names[i] for i in idx}
        assert idx == subset_by_name(g, names, 12)  # deterministic
    # the rest depends on the group (a hash), not on the order of the kept ones
    assert subset_by_name("s001/10", names, 12) != subset_by_name("s002/20", names, 12)
    assert subset_by_name("s001/10", names, None) == list(range(len(names)))
    assert subset_by_name("s001/10", names[:5], 2) != []  # none of ALWAYS_KEEP present: hash only


# ------------------------------------------------------------------------------ cached augmentation
def _fake_items(shapes, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for h, w in shapes:
        items.append({"f16": torch.randn(n, 8, h, w, generator=g).half(),
                      "f32": torch.randn(n, 16, (h + 1) // 2, (w + 1) // 2, generator=g).half(),
                      "illum_img": torch.rand(n, 1, h, w, generator=g),
                      "illum_low": torch.rand(n, 1, h, w, generator=g), "score": torch.rand(n, generator=g)})
    return items


def test_feature_crop_takes_one_aligned_window_per_scene():
    from iaca_metric.training.train import crop_cached_items

    # mark every stride-16 cell with its own (row, col) so the window can be read back
    items = _fake_items([(32, 22), (33, 24)])
    for it in items:
        H, W = it["f16"].shape[-2:]
        it["illum_img"] = (torch.arange(H)[:, None] * 1000 + torch.arange(W)[None]).float().expand(3, 1, H, W)
        H2, W2 = it["f32"].shape[-2:]
        it["f32"] = (torch.arange(H2)[:, None] * 1000 + torch.arange(W2)[None]).float().expand(3, 16, H2, W2)
    gen = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(20):
        out = crop_cached_items(items, 0.75, gen)
        assert {tuple(o["f16"].shape[-2:]) for o in out} == {(24, 16)}  # even, same for the batch
        for o in out:
            assert o["illum_img"].shape[-2:] == o["illum_low"].shape[-2:] == (24, 16)
            assert o["f32"].shape[-2:] == (12, 8)
            y0, x0 = divmod(int(o["illum_img"][0, 0, 0, 0]), 1000)
            assert y0 % 2 == 0 and x0 % 2 == 0
            # the stride-32 window covers the same part of the image: it starts at half the offset
            assert float(o["f32"][0, 0, 0, 0]) == (y0 // 2) * 1000 + x0 // 2
            # every candidate of a scene sees the same window
            assert torch.equal(o["illum_img"][0], o["illum_img"][2])
            seen.add((y0, x0))
        assert torch.equal(out[0]["score"], items[0]["score"])
    assert len(seen) > 3  # the window moves
    assert crop_cached_items(items, 1.0, gen) is items


def test_feature_dropout_zeroes_whole_channels_and_keeps_the_mean():
    from iaca_metric.training.train import drop_feature_channels

    items = [{"f16": torch.ones(64, 32, 4, 4), "f32": torch.ones(64, 32, 2, 2), "score": torch.zeros(64)}]
    out = drop_feature_channels(items, 0.25, torch.Generator().manual_seed(0))[0]
    for k in ("f16", "f32"):
        per_channel = out[k].flatten(2)
        assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))  # a channel is dropped whole
        vals = per_channel[..., 0].unique()
        assert torch.allclose(vals, torch.tensor([0.0, 1 / 0.75]))
        frac = float((per_channel[..., 0] == 0).float().mean())
        assert 0.2 < frac < 0.3
        assert abs(float(out[k].mean()) - 1.0) < 0.08
    assert torch.equal(items[0]["f16"], torch.ones(64, 32, 4, 4))  # the cache itself is untouched
    assert drop_feature_channels(items, 0.0, torch.Generator()) is items


def test_head_ema_averages_and_swaps():
    from iaca_metric.training.train import HeadEMA

    lin = torch.nn.Linear(2, 1)
    frozen = torch.nn.Linear(2, 1)
    frozen.requires_grad_(False)
    model = torch.nn.Sequential(lin, frozen)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = HeadEMA(model, 0.5)
    assert set(ema.shadow) == {"0.weight", "0.bias"}  # frozen parameters are not averaged
    with torch.no_grad():
        lin.weight.fill_(4.0)
    ema.update(model)  # 0.5 * 0 + 0.5 * 4
    with torch.no_grad():
        lin.weight.fill_(8.0)
    ema.update(model)  # 0.5 * 2 + 0.5 * 8
    ema.swap(model)
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, 5.0))
    ema.swap(model)
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, 8.0))
    with pytest.raises(ValueError, match="decay"):
        HeadEMA(model, 1.0)


def test_cached_recipe_with_ema_and_feature_augmentation_resumes(sice_like, tmp_path):
    run = tmp_path / "run"
    common = dict(data=sice_like, run=run, freeze="stride32", seed=0, threads=2, cache=tmp_path / "cache",
                  groups_per_batch=2, ema=0.9, feature_crop=0.75, feature_dropout=0.1)
    train(_args(epochs=1, **common))
    best = train(_args(epochs=2, **common))
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1] and all(np.isfinite(e["train_loss"]) for e in log)
    state = torch.load(run / "last.pt", weights_only=True)
    # the checkpoint keeps the raw weights (the optimiser's) and the averages apart
    raw = state["model"]["regression.weight"]
    assert not torch.equal(raw, state["ema"]["regression.weight"])
    # the exported best model holds averaged weights, not the raw ones
    exported = IACAMetric.from_pretrained(best).state_dict()["regression.weight"]
    assert not torch.equal(exported, raw) or log[1]["best"] == log[0]["val_srcc"]
    # resuming an EMA run without its averages is refused, as is EMA outside the cached recipe
    no_ema = tmp_path / "plain"
    train(_args(data=sice_like, run=no_ema, freeze="stride32", seed=0, threads=2, cache=tmp_path / "cache", epochs=1))
    with pytest.raises(SystemExit, match="without --ema"):
        train(_args(data=sice_like, run=no_ema, freeze="stride32", seed=0, threads=2, cache=tmp_path / "cache",
                    epochs=2, ema=0.9))
    with pytest.raises(SystemExit, match="feature-crop"):
        train(_args(data=sice_like, run=tmp_path / "bad", epochs=1, feature_crop=1.5))


def test_augmentation_off_keeps_the_random_stream(sice_like, tmp_path):
    """Runs without the new options draw exactly what they drew before (the augmentation generator is only
    created when an augmentation is on), so old recipes reproduce bit for bit."""
    logs = []
    for name, extra in (("a", {}), ("b", {"feature_crop": 1.0, "feature_dropout": 0.0})):
        train(_args(data=sice_like, run=tmp_path / name, epochs=1, freeze="stride32", seed=3, threads=2,
                    cache=tmp_path / "c", **extra))
        logs.append(json.loads((tmp_path / name / "train.log").read_text().splitlines()[0]))
    assert logs[0]["train_loss"] == logs[1]["train_loss"]
    aug = tmp_path / "aug"
    train(_args(data=sice_like, run=aug, epochs=1, freeze="stride32", seed=3, threads=2, cache=tmp_path / "c",
                feature_dropout=0.3))
    assert json.loads((aug / "train.log").read_text().splitlines()[0])["train_loss"] != logs[0]["train_loss"]


def test_warmup_ramps_the_learning_rate_and_leaves_the_schedule_alone(monkeypatch):
    import argparse

    import iaca_metric.training.train as T

    w = torch.nn.Parameter(torch.zeros(1))
    monkeypatch.setattr(T, "cached_forward", lambda model, items, freeze, use_low:
                        (None, None, w * T._stack(items, "score")))
    monkeypatch.setattr(T, "iaca_training_loss", lambda outs, score, groups, p, q: ((outs[2] - score) ** 2).mean())
    opt = torch.optim.SGD([w], lr=0.5)
    seen = []
    step = opt.step
    opt.step = lambda: (seen.append(opt.param_groups[0]["lr"]), step())[1]
    cache = {f"g{i}": {"score": torch.tensor([0.2, 0.8])} for i in range(8)}
    args = argparse.Namespace(groups_per_batch=2, p_no_ref=0.3, p=1.0, q=2.0, freeze="stride32", warmup_epochs=2.0,
                              feature_crop=1.0, feature_dropout=0.0)
    for epoch in (0, 1, 2):
        T._epoch_cached(None, opt, cache, args, None, epoch)
        assert opt.param_groups[0]["lr"] == 0.5  # the scheduler's value is restored after the epoch
    # 4 steps per epoch, warm-up over 8 steps, then the scheduled rate
    assert seen == pytest.approx([0.5 * k / 8 for k in range(1, 9)] + [0.5] * 4)
    args.warmup_epochs = 0.0
    seen.clear()
    T._epoch_cached(None, opt, cache, args, None, 0)
    assert seen == [0.5] * 4


def test_illumination_bias_init_keeps_the_weight_maps_alive():
    """The illumination nets end in a ReLU: a negative output everywhere zeroes every pooled moment and
    the score becomes a constant (the collapse seen in training). A positive starting bias keeps the
    weight maps positive from the first step."""
    from iaca_metric.training.train import set_illumination_bias

    torch.manual_seed(0)
    model = IACAMetric(arch="efficientnet_lite0")
    g = torch.Generator().manual_seed(1)
    f16, f32 = torch.randn(4, 112, 8, 8, generator=g), torch.randn(4, 320, 4, 4, generator=g)
    illum = torch.rand(4, 1, 8, 8, generator=g)
    with torch.no_grad():
        set_illumination_bias(model, -10.0)  # a dead net: what the collapse leaves behind
        w16, w32 = model.illumination_weights(illum, (8, 8), (4, 4))
        assert float(w16.abs().max()) == 0.0 and float(w32.abs().max()) == 0.0
        dead = model.features_to_output(f16, f32, illum).score
        assert torch.all(dead == dead[0])  # a constant score, whatever the image
        set_illumination_bias(model, 1.0)
        w16, w32 = model.illumination_weights(illum, (8, 8), (4, 4))
        assert float(w16.min()) > 0.5 and float(w32.min()) > 0.5
        alive = model.features_to_output(f16, f32, illum).score
        assert float(alive.std()) > 0
    assert set(model.state_dict()) == set(IACAMetric(arch="efficientnet_lite0").state_dict())  # same architecture


def test_cached_recipe_trains_a_detail_branch(sice_like, tmp_path):
    """--detail-branch: the cache holds the detail moments of each image (the same numbers the model
    computes when scoring), the fixed standardisation is set from the training images, and the exported
    folder scores like the trained model on a fresh image."""
    from iaca_metric.training.train import build_cache, cached_forward
    from iaca_metric.training.datasets import read_sice_index
    from iaca_metric.training.train import load_rgb

    cache = tmp_path / "cache"
    args = _args(data=sice_like, run=tmp_path / "d", epochs=2, freeze="stride32", seed=0, threads=2, cache=cache,
                 lr=3e-3)
    args.detail_branch = True
    best = train(args)
    log = [json.loads(line) for line in (tmp_path / "d" / "train.log").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(e["train_loss"]) for e in log)
    model = IACAMetric.from_pretrained(best)
    assert model.detail_branch
    recs = read_sice_index(sice_like / "index.jsonl", split="train")
    items = build_cache(model, recs, cache, "stride32", None, "train")
    # standardisation = mean / std over the training images' [means, stds]
    z = torch.cat([torch.cat([it["d_mean"], torch.sqrt(torch.relu(it["d_sq"] - it["d_mean"] ** 2))], 1)
                   for it in items.values()]).double()
    torch.testing.assert_close(model.detail_shift.double(), z.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.detail_scale.double(), z.std(0).clamp_min(1e-6), atol=1e-5, rtol=1e-4)
    # the cached moments are the model's own, and cached scoring equals whole-image scoring
    g, it = next(iter(items.items()))
    idx = [i for i, r in enumerate(recs) if r.group == g]
    img = load_rgb(recs[idx[0]].image)[None]
    with torch.no_grad():
        mean, sq = model.detail_moments(model.backbone_taps(img))
        torch.testing.assert_close(it["d_mean"][:1], mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(it["d_sq"][:1], sq, atol=1e-5, rtol=1e-5)
        cached = cached_forward(model, [it], "stride32", torch.zeros(it["score"].numel(), dtype=torch.bool))[2]
        direct = model(img)
    # the cache stores the taps in float16, hence the tolerance
    assert abs(float(cached[0]) - float(direct[0])) < 1e-2 * max(1.0, abs(float(direct[0])))
    # a cache from before detail branches existed is refused with the fix
    old = {k: v for k, v in it.items() if not k.startswith("d_")}
    with pytest.raises(SystemExit, match="new folder"):
        cached_forward(model, [old], "stride32", torch.zeros(old["score"].numel(), dtype=torch.bool))


def test_a_validation_tie_keeps_the_later_epoch(sice_like, tmp_path, monkeypatch):
    """Median SRCC over few scenes ties often; the exported model must then be the later epoch's, and a
    worse epoch must not replace a better one."""
    from iaca_metric.training import train as T

    per_epoch = iter([0.5, 0.5, 0.4])  # epoch 0, epoch 1 ties it, epoch 2 is worse
    monkeypatch.setattr(T, "evaluate_cached",
                        lambda model, cache, freeze, with_low=True: ((next(per_epoch) if with_low else 0.0), {}))
    exports: list[torch.Tensor] = []
    real_export = T.export

    def recording_export(model, folder, args):
        exports.append(model.regression.weight.detach().clone())
        real_export(model, folder, args)

    monkeypatch.setattr(T, "export", recording_export)
    run = tmp_path / "run"
    best = train(_args(data=sice_like, run=run, epochs=3, freeze="stride32", seed=0, threads=2, groups_per_batch=2))
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [e["val_srcc"] for e in log] == [0.5, 0.5, 0.4]
    assert len(exports) == 2  # epochs 0 and 1 (the tie); not epoch 2
    exported = IACAMetric.from_pretrained(best).state_dict()["regression.weight"]
    assert torch.equal(exported, exports[1]) and not torch.equal(exported, exports[0])
