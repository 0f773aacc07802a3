"""The embedded default model (IACA-Lite): pinned weights, size limits, config, and behaviour on real
photos when ../shared/data is present."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from iaca_metric import IACAMetric, WeightsError
from iaca_metric.hub import DEFAULT_CONFIG_SHA256, DEFAULT_MODEL_SHA256, default_model_dir

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "weights" / "iaca-lite-sice"
DATA = ROOT.parent / "shared" / "data"
# Pinned here as well as in the package: changing the shipped weights must be a deliberate, visible edit.
PINNED = "a228cda342300903761b1d8b11fb1b6ba8c8e424991a62186637605f127dc892"

pytestmark = pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(),
                                reason="weights/iaca-lite-sice has not been trained yet")


def test_sha256_is_pinned():
    sha = hashlib.sha256((FOLDER / "model.safetensors").read_bytes()).hexdigest()
    assert sha == PINNED == DEFAULT_MODEL_SHA256


def test_shipped_files_match_the_pin_pair():
    """The package pins both shipped files (iaca_metric.hub.DEFAULT_MODEL_SHA256 / DEFAULT_CONFIG_SHA256);
    shipping a new model means updating that pair. Read the shipped files and check them."""
    assert hashlib.sha256((FOLDER / "model.safetensors").read_bytes()).hexdigest() == DEFAULT_MODEL_SHA256
    assert hashlib.sha256((FOLDER / "config.json").read_bytes()).hexdigest() == DEFAULT_CONFIG_SHA256
    model = IACAMetric()
    assert model.weights_info["config_sha256"] == DEFAULT_CONFIG_SHA256
    cfg = json.loads((FOLDER / "config.json").read_text())
    assert (model.mos_scale, model.mos_offset) == (cfg["mos_scale"], cfg["mos_offset"])


def test_size_limits_and_config():
    assert (FOLDER / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    cfg = json.loads((FOLDER / "config.json").read_text())
    assert cfg["arch"] == "efficientnet_lite0" and cfg["illumination"] == "reference_or_image"
    assert cfg["uses_ref"] is True and cfg["requires_ref"] is False
    assert cfg["detail_branch"] is True  # IACA-Lite 2.2: stride-4/8 statistics join the fused regression
    model = IACAMetric()
    assert model.num_parameters() <= 6_000_000
    assert model.weights_info["sha256"] == PINNED and default_model_dir().samefile(
        Path(model.weights_info["path"]).parent)
    card = (FOLDER / "README.md").read_text()
    assert PINNED in card and "SRCC" in card


def test_shipped_backbone_weights_are_bfloat16_exact():
    """The release rounds every backbone convolution weight to the bfloat16 grid, so bf16/fp16 autocast
    casts them exactly (see iaca_metric.training.release.round_trunk_to_bfloat16)."""
    model = IACAMetric()
    convs = [m.weight for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) > 40
    assert all(torch.equal(w, w.to(torch.bfloat16).float()) for w in convs)
    assert "bf16_exact_trunk" in json.loads((FOLDER / "config.json").read_text())


def test_corrupt_embedded_weights_are_refused(tmp_path, monkeypatch):
    import iaca_metric.hub as hub

    bad = tmp_path / "iaca-lite-sice"
    bad.mkdir()
    (bad / "config.json").write_text((FOLDER / "config.json").read_text())
    data = bytearray((FOLDER / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF  # flip bits inside a tensor: the file still parses, only the hash can tell
    (bad / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(hub, "default_model_dir", lambda: bad)
    with pytest.raises(WeightsError, match="sha256"):
        IACAMetric()


@pytest.mark.skipif(not (DATA / "enhanced" / "ZeroDCE" / "LIME").is_dir(), reason="../shared/data is absent")
def test_published_enhancement_beats_its_dark_input_on_real_photos():
    """Issue 12's real-photo target: the published Zero-DCE outputs of the DICM and LIME photos darker
    than the training inputs' rule (mean luma below INPUT_MAX_LUMA / 255) score above their input in
    >= 95 % of them. Brighter inputs (0.2-0.77, mostly DICM, many already at the exposure people
    prefer) are reported by benchmarks/accuracy.py, not asserted."""
    from iaca_metric import score
    from iaca_metric.inputs import load_image
    from iaca_metric.training.enhancers import luma
    from iaca_metric.training.sice import INPUT_MAX_LUMA

    wins = n = 0
    for sub in ("DICM", "LIME"):
        for enh in sorted((DATA / "enhanced" / "ZeroDCE" / sub).iterdir()):
            low = DATA / "lowlight" / sub / enh.name
            if not low.is_file():
                continue
            # the same input-luma rule as benchmarks/accuracy.py's split
            if float(luma(load_image(low).permute(1, 2, 0).numpy()).mean()) >= INPUT_MAX_LUMA / 255.0:
                continue
            n += 1
            wins += score(str(enh), str(low)) > score(str(low), str(low))
    assert n >= 20
    assert wins >= 0.95 * n, f"{wins}/{n}"


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_darker_is_worse_and_no_ref_path_is_sensible(name: str):
    """A well-exposed photo beats the same photo at 5 % exposure, with the dark version as ``ref`` and
    without any ``ref``; for the dark version scaled in sRGB values (mean luma ~0.02) and in linear
    light (~0.1, the training inputs' range). Photos from scikit-image's bundled data (no download).

    Natural photos, not a synthetic pattern: on smooth sinusoid test patterns IACA-Lite 2.3 and 2.4 both
    score a noiseless pattern below its 5 % copy (docs/default_model.md, "Known weaknesses"), so such a
    pattern would test the pattern's texture, not the model's sense of exposure. The smallest margin
    measured for 2.4 is 0.31 (coffee, linear light); the assertion asks for 0.1, far above arithmetic
    differences between machines."""
    pytest.importorskip("skimage")
    from iaca_metric import score
    from iaca_metric.research.demo import _photo

    scene = torch.from_numpy(_photo(name, 256).copy()).permute(2, 0, 1)[None]  # float32 in [0, 1]
    s_scene_no_ref = score(scene)  # the same for both dark versions: scored once
    for low in (scene * 0.05, (scene ** 2.2 * 0.05) ** (1 / 2.2)):
        assert float(score(scene, low) - score(low, low)) > 0.1
        assert float(s_scene_no_ref - score(low)) > 0.1  # without the low-light input too