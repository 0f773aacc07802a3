"""`iaca_metric.training.release`: a trained run folder -> a hub-ready release folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from iaca_metric import IACAMetric
from iaca_metric.hub import sha256_file
from iaca_metric.training.release import round_trunk_to_bfloat16, write_release

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iaca_test_models import make_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _on_bf16_grid(t: torch.Tensor) -> bool:
    return bool(torch.equal(t, t.to(torch.bfloat16).float()))


def test_round_trunk_to_bfloat16_rounds_only_backbone_convolutions() -> None:
    model = make_model(illumination="reference_or_image", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.features.modules())
    assert round_trunk_to_bfloat16(model) == n_convs > 0
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("features.") and k.endswith(".weight") for k in changed)
    for m in model.features.modules():
        if isinstance(m, torch.nn.Conv2d):
            assert _on_bf16_grid(m.weight)
            assert m.weight.dtype == torch.float32
    # BatchNorm and the heads run in float32 under autocast: untouched.
    assert not any(k.startswith(("regression", "att6", "dr6", "getw5")) for k in changed)
    assert not any("bn" in k for k in changed)
    # Nearest bf16 value: at most half a bf16 step (2^-8 relative) away.
    for k in changed:
        assert float(((after[k] - before[k]).abs() / before[k].abs().clamp_min(1e-30)).max()) <= 2 ** -8


def test_write_release_bf16_exact_trunk(tmp_path: Path) -> None:
    model = make_model(illumination="reference_or_image", seed=2)
    best = tmp_path / "best"
    model.save_pretrained(best)
    dst = tmp_path / "release"
    sha = write_release(best, dst, accuracy=None, log=None, bf16_exact_trunk=True)
    assert sha == sha256_file(dst / "model.safetensors")
    released = IACAMetric.from_pretrained(dst)  # strict key and shape check
    for name, m in released.features.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            assert _on_bf16_grid(m.weight), name
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["bf16_exact_trunk"].startswith(str(sum(isinstance(m, torch.nn.Conv2d)
                                                      for m in model.features.modules())))
    assert "(not measured yet)" in (dst / "README.md").read_text()
    # Rounding moves float32 scores a little, not a lot.
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x, x * 0.3), released(x, x * 0.3)
    assert 0 < float((a - b).abs().max()) < 0.05 * float(a.abs().max() + 1)
    # Without the flag the weights are copied byte for byte.
    plain = write_release(best, tmp_path / "plain", accuracy=None, log=None)
    assert plain == sha256_file(best / "model.safetensors") != sha


def test_card_lists_the_training_options_a_run_used(tmp_path: Path) -> None:
    """The model card's recipe line names the regularisers a run used and leaves out those it did not."""
    from iaca_metric.training.reproduce import TRAIN_ARGS
    from iaca_metric.training.train import build_parser

    args = vars(build_parser().parse_args(["--data", "D", "--run", "R", *TRAIN_ARGS]))
    model = make_model(illumination="reference_or_image", seed=3)
    best = tmp_path / "best"
    model.save_pretrained(best)
    (best / "training_args.json").write_text(json.dumps(args))
    write_release(best, tmp_path / "rel", accuracy=None, log=None)
    card = (tmp_path / "rel" / "README.md").read_text()
    assert "--ema 0.99" in card and "--feature-crop 0.75" in card and "--feature-dropout 0.1" in card
    assert "--illum-bias-init 1.0" in card and f"--seed {args['seed']}" in card
    assert "--warmup-epochs" not in card  # not used: not listed
    plain = vars(build_parser().parse_args(["--data", "D", "--run", "R", "--seed", "0"]))
    (best / "training_args.json").write_text(json.dumps(plain))
    write_release(best, tmp_path / "rel2", accuracy=None, log=None)
    card = (tmp_path / "rel2" / "README.md").read_text()
    assert "--ema" not in card and "--feature-crop" not in card and "--illum-bias-init" not in card


def test_card_names_the_latest_of_tied_best_epochs(tmp_path: Path) -> None:
    """train.py keeps the later of two epochs with the same validation SRCC; the card must name that one."""
    model = make_model(illumination="reference_or_image", seed=4)
    best = tmp_path / "best"
    model.save_pretrained(best)
    log = tmp_path / "train.log"
    log.write_text("".join(json.dumps({"epoch": e, "val_srcc": v}) + "\n"
                           for e, v in enumerate([0.70, 0.84, 0.83, 0.84, 0.80])))
    write_release(best, tmp_path / "rel", accuracy=None, log=log)
    assert "the later of tied epochs (epoch 3)" in (tmp_path / "rel" / "README.md").read_text()
