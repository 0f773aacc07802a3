"""IACA-Lite 2's labels: measured artefacts, utilities, Thurstone win rates, and the label checks."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from iaca_metric.training import labels as L
from iaca_metric.training.label_checks import check_labels, format_report


@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    img = np.stack([0.45 + 0.3 * np.sin(xx / 6), 0.45 + 0.3 * np.cos(yy / 4), 0.4 + 0.25 * np.sin((xx - yy) / 8)], -1)
    img[30:60, 20:70] = [0.8, 0.5, 0.25]
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _jpeg(x: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255


def _variants(ref: np.ndarray) -> dict[str, np.ndarray]:
    from scipy import ndimage

    rng = np.random.default_rng(1)
    return {
        "clean": ref,
        "noisy": np.clip(ref + rng.normal(0, 0.06, ref.shape), 0, 1).astype(np.float32),
        "dark": (ref * 0.35).astype(np.float32),
        "bright": np.clip(ref * 1.9, 0, 1).astype(np.float32),
        "cast": np.clip(ref * np.array([1.25, 1.0, 0.7], np.float32), 0, 1),
        "blocky": _jpeg(ref, 5),
        "blurred": ndimage.gaussian_filter(ref, (2.5, 2.5, 0)).astype(np.float32),
    }


def test_measures_are_zero_for_the_reference_itself(ref: np.ndarray) -> None:
    m = L.measure(ref[None], ref)
    assert set(m) == set(L.MEASURES)
    for k in ("exposure", "cast", "chroma_err", "colourfulness", "noise", "detail", "block", "halo", "spectrum",
              "gms"):
        assert abs(m[k][0]) < 1e-4, k
    assert m["ssim"][0] == pytest.approx(1.0, abs=1e-5)


def test_each_artefact_is_measured_and_loses(ref: np.ndarray) -> None:
    v = _variants(ref)
    names = list(v)
    m = L.measure(np.stack(list(v.values())), ref)
    col = {n: {k: m[k][i] for k in m} for i, n in enumerate(names)}
    assert col["noisy"]["noise"] > 0.05 and col["clean"]["noise"] == pytest.approx(0, abs=1e-6)
    assert col["dark"]["exposure"] < -1.0 and col["bright"]["exposure"] > 0.4
    assert col["cast"]["cast"] > 5.0
    assert col["blocky"]["block"] > 0.002
    assert col["blurred"]["spectrum"] < -0.3 and col["blurred"]["detail"] < -0.2
    u = L.utilities(m)
    for i, n in enumerate(names[1:], start=1):
        assert u[0] > u[i], n  # the clean image beats every damaged copy


def test_win_rates_form_and_pairwise(ref: np.ndarray) -> None:
    m = L.measure(np.stack(list(_variants(ref).values())), ref)
    w = L.win_rates(m)
    n = len(w)
    assert w.sum() == pytest.approx(n / 2) and (w >= 0).all() and (w <= 1).all()
    p = L.pairwise(L.utilities(m))
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose((p + p.T)[off], 1.0)
    assert np.diag(p).tolist() == [0.0] * n
    with pytest.raises(ValueError):
        L.win_rates({k: v[:1] for k, v in m.items()})
    with pytest.raises(ValueError):
        L.measure(ref[None, :50], ref)


def test_relabel_weights_change_order(ref: np.ndarray) -> None:
    v = _variants(ref)
    m = L.measure(np.stack([v["noisy"], v["dark"]]), ref)
    assert L.utilities(m, {**L.WEIGHTS, "noise": 1e3})[0] < L.utilities(m, {**L.WEIGHTS, "noise": 1e3})[1]
    # noise is charged by three measures (luma noise, colour speckle, unexplained fine structure)
    free = {**L.WEIGHTS, "noise": 0.0, "chroma_noise": 0.0, "artefact": 0.0}
    assert L.utilities(m, free)[0] > L.utilities(m, free)[1]


def _rows(scores: dict[str, list[float]]) -> list[dict]:
    from iaca_metric.training.families import family_of

    kinds = {"adaptive_0": "method", "gamma_0": "method", "fail_noise_0": "failure", "zero_dce": "network",
             "self_supervised": "network", "input": "input"}
    rows = []
    for g in range(len(next(iter(scores.values())))):
        for name, s in scores.items():
            rows.append({"group": f"s/{g}", "split": "train", "candidate": name, "kind": kinds[name],
                         "family": family_of(name), "score": s[g]})
    return rows


def test_label_checks_pass_and_fail() -> None:
    good = {"adaptive_0": [0.9] * 20, "gamma_0": [0.7] * 20, "fail_noise_0": [0.3] * 20, "zero_dce": [0.6] * 20,
            "self_supervised": [0.4] * 20, "input": [0.1] * 20}
    rep = check_labels(_rows(good))
    assert rep["passed"] and rep["failure_vs_base"]["fail_noise"]["share"] == 1.0
    assert rep["zero_dce_vs_self_supervised"]["wins"] == 20
    assert rep["method_vs_input"]["gamma"]["share"] == 1.0
    assert "fail_noise | 20/20" in format_report(rep)
    bad = {**good, "fail_noise_0": [0.95] * 2 + [0.3] * 18}  # noise beats its base in 2 of 20 groups: 90 %
    rep = check_labels(_rows(bad))
    assert not rep["passed"] and rep["failure_vs_base"]["fail_noise"]["share"] == 0.9
    json.dumps(rep)  # serialisable as the CLI writes it


def test_chroma_measures_do_not_charge_darkness_as_colour_error(ref: np.ndarray) -> None:
    from iaca_metric.training.night import linear_to_srgb, srgb_to_linear

    # the same colours one and two stops darker in linear light (as a shorter exposure renders them)
    darker = [linear_to_srgb(srgb_to_linear(ref) * f).astype(np.float32) for f in (0.5, 0.25)]
    tinted = np.clip(ref * np.array([1.15, 1.0, 0.8], np.float32), 0, 1)
    v = L.measure(np.stack([*darker, tinted]), ref)
    assert max(v["cast"][:2]) < 0.3 * v["cast"][2]
    assert max(v["chroma_err"][:2]) < 0.5 * v["chroma_err"][2] + 0.5
    assert abs(v["colourfulness"][:2]).max() < 0.05
    assert max(v["false_colour"][:2]) < 0.3 * v["false_colour"][2]
    # a colour the scene does not have, painted into its darker half (Self_Supervised's green shadows)
    painted = ref.copy()
    painted[48:] = np.clip(0.5 * ref[48:] + np.array([0.0, 0.25, 0.05], np.float32), 0, 1)
    assert L.measure(painted[None], ref)["false_colour"][0] > 2 * max(v["false_colour"][:2])
    assert v["exposure"][0] < -0.3 and v["exposure"][1] < v["exposure"][0] - 0.3  # the darkness itself is measured, by the exposure measure


def test_veil_rises_when_shadows_are_lifted_not_when_exposure_changes(ref: np.ndarray) -> None:
    from iaca_metric.training.night import linear_to_srgb, srgb_to_linear

    darker = linear_to_srgb(srgb_to_linear(ref) * 0.4).astype(np.float32)
    lifted = (0.25 + 0.75 * ref).astype(np.float32)  # a grey veil over the same image
    v = L.measure(np.stack([ref, darker, lifted]), ref)
    assert abs(v["veil"][0]) < 1e-6 and abs(v["veil"][1]) < 0.15
    assert v["veil"][2] > L.VEIL_TOLERANCE + 0.05
    assert L.penalties(v)["veil"][2] > 0 and L.penalties(v)["veil"][1] == 0


def test_fidelity_measures_match_the_reference_metrics(ref: np.ndarray) -> None:
    import torch

    from iaca_metric.reference_metrics import psnr, ssim

    x = np.clip(ref * 0.8 + 0.05, 0, 1).astype(np.float32)
    v = L.measure(x[None], ref)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    assert v["psnr"][0] == pytest.approx(float(psnr(t(x), t(ref))), abs=1e-4)
    assert v["ssim_rgb"][0] == pytest.approx(float(ssim(t(x), t(ref))), abs=1e-5)


def test_label_checks_split_by_input_kind_and_report_the_fidelity_truth() -> None:
    good = {"adaptive_0": [0.9] * 10, "fail_noise_0": [0.3] * 10, "zero_dce": [0.6] * 10,
            "self_supervised": [0.4] * 10, "input": [0.1] * 10}
    rows = _rows(good)
    # fidelity measures: PSNR/SSIM order adaptive > zero_dce > fail_noise > self_supervised > input,
    # except that in 4 of the 10 groups Self_Supervised is the more faithful one
    order = {"adaptive_0": 5, "zero_dce": 4, "fail_noise_0": 3, "self_supervised": 2, "input": 1}
    for r in rows:
        g = int(r["group"].split("/")[1])
        k = order[r["candidate"]]
        if g < 4 and r["candidate"] in ("zero_dce", "self_supervised"):
            k = 6 - k
        r["m_psnr"], r["m_ssim_rgb"] = 10.0 + k, 0.1 * k
        r["input_kind"] = "night" if g >= 7 else "real"
    rep = check_labels(rows)
    by = rep["zero_dce_vs_self_supervised_by_input"]
    assert (by["real"]["n"], by["night"]["n"]) == (7, 3) and by["real"]["share"] == 1.0
    f = rep["psnr_ssim_rank_truth"]
    assert f["zero_dce_above_self_supervised"]["wins"] == 6
    assert f["base_above_failure"]["fail_noise"]["share"] == 1.0
    # labels rank Self_Supervised above fail_noise, the fidelity truth the other way round: one adjacent
    # swap of five (SRCC 0.9) in the 6 groups where Zero-DCE is also the more faithful, worse in the 4 others
    assert f["labels_within_srcc_median"] == pytest.approx(0.9)
    assert "PSNR+SSIM-rank truth" in format_report(rep) and "night inputs: 3/3" in format_report(rep)
    assert "psnr_ssim_rank_truth" in check_labels(_rows(good)) and \
        check_labels(_rows(good))["psnr_ssim_rank_truth"]["labels_within_srcc_median"] is None


def test_artefact_colour_and_colour_noise_measures_do_not_reward_darkness(ref: np.ndarray) -> None:
    """A linear-light darker copy keeps its artefacts' visibility: JPEG blocks, noise, over-saturation
    and colour speckle are measured (nearly) the same one and two stops darker, so darkening a damaged
    result never makes it win (fail_under, fail_jpeg and fail_smooth lost to their base for that)."""
    from iaca_metric.training.night import linear_to_srgb, srgb_to_linear

    rng = np.random.default_rng(3)
    vivid = np.clip(0.5 + (ref - ref.mean(axis=-1, keepdims=True)) * 2.0 + (ref.mean(axis=-1, keepdims=True) - 0.5), 0, 1)
    damaged = {
        "jpeg": _jpeg(ref, 8),
        "speckle": np.clip(ref + rng.normal(0, 0.04, ref.shape), 0, 1).astype(np.float32),
        "vivid": vivid.astype(np.float32),
    }
    for name, img in damaged.items():
        darker = [linear_to_srgb(srgb_to_linear(img) * f).astype(np.float32) for f in (0.5, 0.25)]
        v = L.measure(np.stack([img, *darker]), ref)
        for k, floor in (("artefact", 1e-3), ("colourfulness", 0.02), ("chroma_noise", 0.5), ("false_colour", 0.5)):
            scale = max(abs(v[k][0]), floor)
            assert abs(v[k][1] - v[k][0]) < 0.15 * scale, (name, k, v[k])
            assert abs(v[k][2] - v[k][0]) < 0.25 * scale, (name, k, v[k])
    v = L.measure(np.stack([ref, damaged["vivid"]]), ref)
    assert v["colourfulness"][1] > L.OVERSAT_TOLERANCE + 0.1  # and the over-saturation itself is measured


def test_colour_speckle_and_blotches_are_measured_in_flat_regions() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    ref = np.stack([0.45 + 0.3 * np.sin(xx / 6), 0.45 + 0.3 * np.cos(yy / 4), 0.4 + 0.25 * np.sin((xx - yy) / 8)], -1)
    ref[:, :64] = [0.5, 0.45, 0.4]  # a flat wall, where a real scene has no colour texture
    ref = np.clip(ref + rng.normal(0, 0.005, ref.shape), 0, 1).astype(np.float32)
    speckle = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1).astype(np.float32)
    blotch = np.clip(ref + ndimage.gaussian_filter(rng.normal(0, 0.5, ref.shape), (2.5, 2.5, 0)), 0, 1)
    grey_noise = np.clip(ref + rng.normal(0, 0.05, ref.shape[:2])[..., None], 0, 1).astype(np.float32)
    v = L.measure(np.stack([ref, speckle, blotch.astype(np.float32), grey_noise]), ref)
    assert abs(v["chroma_noise"][0]) < 1e-3 and abs(v["chroma_blotch"][0]) < 1e-3
    assert v["chroma_noise"][1] > 50 and v["chroma_noise"][1] > 2 * v["chroma_noise"][3]  # colour, not luma, noise
    assert v["chroma_blotch"][2] > 5 and v["chroma_blotch"][2] > 1.5 * v["chroma_blotch"][1]
    assert v["chroma_noise"][2] < 0.1 * v["chroma_noise"][1]  # blotches are not speckle


def test_chroma_split_tells_a_wrong_hue_from_faded_or_boosted_colour(ref: np.ndarray) -> None:
    """The v8 colour measures: a tint is a hue error, a greyed copy lost chroma, a boosted copy gained
    it, and the region-scale false colour ignores pixel noise that the pixel-scale one counts."""
    rng = np.random.default_rng(5)
    grey = ref.mean(axis=-1, keepdims=True)
    variants = {
        "clean": ref,
        "tint": np.clip(ref * np.array([1.0, 1.2, 0.75], np.float32), 0, 1),
        "faded": (grey + 0.3 * (ref - grey)).astype(np.float32),
        "boosted": np.clip(grey + 1.8 * (ref - grey), 0, 1).astype(np.float32),
        "noisy": np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1).astype(np.float32),
    }
    v = L.measure(np.stack(list(variants.values())), ref)
    col = {n: {k: float(v[k][i]) for k in v} for i, n in enumerate(variants)}
    for k in ("false_colour_coarse", "hue_error", "chroma_loss", "chroma_gain"):
        assert abs(col["clean"][k]) < 1e-3, k
    assert col["tint"]["hue_error"] > 3 * max(col["faded"]["hue_error"], col["boosted"]["hue_error"], 0.5)
    assert col["faded"]["chroma_loss"] > 3 * max(col["tint"]["chroma_loss"], col["boosted"]["chroma_loss"], 0.5)
    assert col["boosted"]["chroma_gain"] > 3 * max(col["faded"]["chroma_gain"], 0.5)
    assert col["faded"]["chroma_gain"] < 0.5 and col["boosted"]["chroma_loss"] < 0.3 * col["boosted"]["chroma_gain"]
    # pixel noise: large at the pixel scale, small between 16 px regions' mean colours
    assert col["noisy"]["false_colour_coarse"] < 0.35 * col["noisy"]["false_colour"]
    assert col["tint"]["false_colour_coarse"] > 0.7 * col["tint"]["false_colour"]


def test_a_derived_failure_is_charged_at_least_its_base_colour_error(ref: np.ndarray) -> None:
    """A tinted base and a noisy copy of it whose coarse false colour measures lower (noise mixed into
    the base's wrong shadow colours, as in the v8 build's failing groups) and whose hue error measures
    higher. With ``derived_from`` the copy is charged the base's false colour, keeps its own higher hue
    error, and nothing else changes."""
    rng = np.random.default_rng(5)
    base = np.clip(ref * np.array([1.0, 1.08, 0.9], np.float32), 0, 1).astype(np.float32)
    noisy = np.clip(base + rng.normal(0, 0.05, ref.shape), 0, 1).astype(np.float32)
    m = L.measure(np.stack([base, noisy]), ref)
    m["false_colour_coarse"] = np.array([3.0, 1.0])
    m["hue_error"] = np.array([2.0, 2.5])
    assert set(L.BASE_FLOORED) == {"false_colour_coarse", "hue_error"}
    p = L.penalties(m)
    lower = ["false_colour_coarse"]
    plain = L.utilities(m)
    floored = L.utilities(m, derived_from=[-1, 0])
    assert floored[0] == plain[0]  # the base itself is not touched
    charged = sum(L.WEIGHTS[k] * (p[k][0] - p[k][1]) for k in lower)
    assert floored[1] == pytest.approx(plain[1] - charged, rel=1e-9, abs=1e-12)
    # win rates use the same rule, and a copy's higher colour error is kept as measured
    assert L.win_rates(m, derived_from=[-1, 0])[1] <= L.win_rates(m)[1]
    assert L.utilities(m, derived_from=[1, -1])[0] <= plain[0]
    for bad in ([0, 0], [-1, 2], [-1], [[-1, 0]] * 2):
        with pytest.raises(ValueError, match="derived_from|itself"):
            L.utilities(m, derived_from=bad)


def test_label_rows_floor_failures_at_the_base_they_name() -> None:
    from iaca_metric.training.sice import label_rows

    zero = {k: 0.0 for k in L.MEASURES}
    common = {**zero, "luma": 0.4, "luma_ref": 0.4, "ssim": 1.0, "ssim_rgb": 1.0, "psnr": 40.0}
    # the base has a large coarse false-colour error; its JPEG copy measures less of it and a little blocking
    rows = [
        {"group": "g", "candidate": "adaptive_0", "kind": "method", "params": {"target": 0.4},
         **{f"m_{k}": v for k, v in {**common, "false_colour_coarse": 3.0}.items()}},
        {"group": "g", "candidate": "fail_jpeg_0", "kind": "failure", "params": {"quality": 8, "base": "adaptive_0"},
         **{f"m_{k}": v for k, v in {**common, "false_colour_coarse": 1.0, "block": 0.05}.items()}},
        {"group": "g", "candidate": "gamma_0", "kind": "method", "params": {"gamma": 0.5},
         **{f"m_{k}": v for k, v in {**common, "false_colour_coarse": 2.0}.items()}},
    ]
    label_rows(rows)
    s = {r["candidate"]: r["score"] for r in rows}
    assert s["adaptive_0"] > s["fail_jpeg_0"]
    # without the base in the group (a partial build) the copy is labelled from its own measures
    label_rows(rows[1:])
    s = {r["candidate"]: r["score"] for r in rows[1:]}
    assert s["fail_jpeg_0"] > s["gamma_0"]


def test_the_unenhanced_input_is_kept_below_every_clean_enhancement() -> None:
    """A dark input whose measured penalties (darkness only) are smaller than those of a noisy, washed-out
    enhancement: with the masks the input's utility drops to the worst enhancement's minus INPUT_MARGIN,
    failures and other candidates are untouched, and an input already below keeps its own utility."""
    zero = {k: 0.0 for k in L.MEASURES}
    common = {**zero, "luma_ref": 0.45, "ssim": 1.0, "ssim_rgb": 1.0, "psnr": 40.0}
    cands = [
        {**common, "luma": 0.10},                                        # the input: dark, clean
        {**common, "luma": 0.42, "noise": 7.0, "colourfulness": -0.5},   # a noisy, dull enhancement
        {**common, "luma": 0.44},                                        # a clean enhancement
        {**common, "luma": 0.44, "block": 1.0},                          # a synthetic failure
    ]
    m = {k: np.array([c[k] for c in cands]) for k in L.MEASURES}
    plain = L.utilities(m)
    assert plain[0] > plain[1]  # the measured penalties alone rank the dark input above the noisy result
    low, enh = [True, False, False, False], [False, True, True, False]
    u = L.utilities(m, unenhanced=low, enhanced=enh)
    assert u[0] == pytest.approx(plain[1] - L.INPUT_MARGIN, abs=1e-12)
    np.testing.assert_array_equal(u[1:], plain[1:])
    w = L.win_rates(m, unenhanced=low, enhanced=enh)
    assert w[0] < w[1] and w[0] < w[2]
    assert w.sum() == pytest.approx(len(w) / 2)
    # an input already far below every enhancement keeps its measured utility
    very_dark = {k: v.copy() for k, v in m.items()}
    very_dark["luma"][0] = 0.005
    assert L.utilities(very_dark, unenhanced=low, enhanced=enh)[0] == L.utilities(very_dark)[0]
    with pytest.raises(ValueError, match="both"):
        L.utilities(m, unenhanced=low)
    with pytest.raises(ValueError, match="4 booleans"):
        L.utilities(m, unenhanced=low[:3], enhanced=enh[:3])
    with pytest.raises(ValueError, match="both the unenhanced"):
        L.utilities(m, unenhanced=[True, True, False, False], enhanced=enh)


def test_label_rows_rank_the_input_below_methods_and_networks_only() -> None:
    from iaca_metric.training.sice import ENHANCED_KINDS, label_rows

    assert set(ENHANCED_KINDS) == {"method", "network"}
    zero = {k: 0.0 for k in L.MEASURES}
    common = {**zero, "luma_ref": 0.45, "ssim": 1.0, "ssim_rgb": 1.0, "psnr": 40.0}
    spec = [("input", "input", {"luma": 0.10}),
            ("self_supervised", "network", {"luma": 0.42, "noise": 7.0, "colourfulness": -0.5}),
            ("gamma_0", "method", {"luma": 0.44}),
            ("fail_over_0", "failure", {"luma": 0.95, "clip": 0.5}),
            ("real_rank0", "real_capture", {"luma": 0.40, "noise": 9.0})]
    rows = [{"group": "g", "candidate": n, "kind": k, "params": {}, **{f"m_{q}": v for q, v in {**common, **d}.items()}}
            for n, k, d in spec]
    label_rows(rows)
    s = {r["candidate"]: r["score"] for r in rows}
    assert s["input"] < s["self_supervised"] < s["gamma_0"]
    # a failure or another capture may still rank below the input: the rule covers clean enhancements only
    assert s["fail_over_0"] < s["input"]
