"""Tests for the PyTorch re-implementation of Zhang et al.'s self-supervised DecomNet.

The TF 'SAME' helpers are checked against direct numpy computations; the whole network is checked
against a numpy forward pass written in TF's NHWC layout with TF kernels (so the layout conversion,
the (max, R, G, B) input order and the concatenation orders are all checked); the real weights are
checked on LOL eval15 when ../shared/data is present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from iaca_metric.inputs import InputError
from iaca_metric.training import self_supervised as ss

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "selfsup_retinex_decom_6000.npz"
LOL = DATA / "lowlight" / "LOL_eval15_full"

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- numpy references
def tf_pad_total(n: int, k: int, s: int) -> int:
    """TF's documented SAME rule: out = ceil(n / s), pad_along = max((out - 1) * s + k - n, 0)."""
    out = (n + s - 1) // s
    return max((out - 1) * s + k - n, 0)


def np_conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray, s: int) -> np.ndarray:
    """Direct TF conv2d SAME. x (H, W, Cin), k (kh, kw, Cin, Cout) HWIO; zero outside the image."""
    H, W, _ = x.shape
    kh, kw, _, cout = k.shape
    top = tf_pad_total(H, kh, s) // 2
    left = tf_pad_total(W, kw, s) // 2
    oh, ow = (H + s - 1) // s, (W + s - 1) // s
    y = np.zeros((oh, ow, cout), np.float64)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for c in range(kw):
                    r, q = i * s + a - top, j * s + c - left
                    if 0 <= r < H and 0 <= q < W:
                        y[i, j] += x[r, q] @ k[a, c]
    return y + b


def np_deconv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray, s: int, out: tuple[int, int]) -> np.ndarray:
    """Direct TF conv2d_transpose SAME: scatter every input sample through the kernel into the output,
    offset by the SAME 'before' padding of the output size. k is TF's (kh, kw, Cout, Cin)."""
    h, w, _ = x.shape
    kh, kw, cout, _ = k.shape
    H, W = out
    top = tf_pad_total(H, kh, s) // 2
    left = tf_pad_total(W, kw, s) // 2
    y = np.zeros((H, W, cout), np.float64)
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for c in range(kw):
                    r, q = i * s + a - top, j * s + c - left
                    if 0 <= r < H and 0 <= q < W:
                        y[r, q] += k[a, c] @ x[i, j]
    return y + b


def fast_np_conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray, s: int) -> np.ndarray:
    """Vectorised np_conv_same (same rule, loops over kernel taps only) for the network reference."""
    H, W, _ = x.shape
    kh, kw, _, _ = k.shape
    ph, pw = tf_pad_total(H, kh, s), tf_pad_total(W, kw, s)
    xp = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    oh, ow = (H + s - 1) // s, (W + s - 1) // s
    y = sum(xp[a:a + (oh - 1) * s + 1:s, c:c + (ow - 1) * s + 1:s] @ k[a, c] for a in range(kh) for c in range(kw))
    return y + b


def np_decomnet(img: np.ndarray, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The original DecomNet graph in NHWC with TF kernels. img (H, W, 3) in [0, 1]."""
    def p(name):
        return arrays[f"DecomNet__{name}__kernel"].astype(np.float64), arrays[f"DecomNet__{name}__bias"]

    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    inp = np.concatenate([img.max(axis=2, keepdims=True), img], axis=2)
    conv_0 = relu(fast_np_conv_same(inp, *p("first_layer"), 1))
    conv = fast_np_conv_same(inp, *p("shallow_feature_extraction"), 1)
    conv1 = relu(fast_np_conv_same(conv, *p("activated_layer_1"), 1))
    conv2 = relu(fast_np_conv_same(conv1, *p("activated_layer_2"), 2))
    conv3 = relu(fast_np_conv_same(conv2, *p("activated_layer_3"), 1))
    conv4 = relu(np_deconv_same(conv3, *p("activated_layer_4"), 2, conv1.shape[:2]))
    conv5 = relu(fast_np_conv_same(np.concatenate([conv4, conv1], 2), *p("activated_layer_5"), 1))
    conv7 = fast_np_conv_same(np.concatenate([conv5, conv_0], 2), *p("activated_layer_7"), 1)
    conv8 = fast_np_conv_same(conv7, *p("recon_layer"), 1)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    return sig(conv8[..., :3]), sig(conv8[..., 3:4])


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random DecomNet arrays in TF layouts, He-scaled so activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, kind, cin, cout, k, _ in ss.LAYERS:
        shape = (k, k, cin, cout) if kind == "conv" else (k, k, cout, cin)
        out[f"DecomNet__{name}__kernel"] = (rng.standard_normal(shape) * np.sqrt(2.0 / (k * k * cin))).astype(np.float32)
        out[f"DecomNet__{name}__bias"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    return out


def to_t(a: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (1, C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]


# ----------------------------------------------------------------------------- SAME helpers
def test_same_pads_hand_values() -> None:
    # (size, kernel, stride) -> (before, after), worked out by hand from TF's rule.
    cases = {(4, 3, 2): (0, 1), (5, 3, 2): (1, 1), (6, 3, 1): (1, 1), (5, 9, 1): (4, 4),
             (7, 4, 2): (1, 2), (6, 4, 2): (1, 1), (1, 3, 2): (1, 1), (2, 3, 2): (0, 1)}
    for args, want in cases.items():
        assert ss.same_pads(*args) == want, args


@pytest.mark.parametrize("hw", [(5, 7), (6, 8), (7, 6), (1, 2)])
@pytest.mark.parametrize("stride,k", [(1, 3), (2, 3), (1, 9), (2, 4)])
def test_conv2d_same_matches_numpy(hw, stride, k) -> None:
    rng = np.random.default_rng(hw[0] * 100 + hw[1] * 10 + stride + k)
    x = rng.standard_normal((*hw, 3))
    kern = rng.standard_normal((k, k, 3, 2))
    b = rng.standard_normal(2)
    want = np_conv_same(x, kern, b, stride)
    got = ss.conv2d_same(to_t(x), torch.from_numpy(kern.transpose(3, 2, 0, 1)).float(), torch.from_numpy(b).float(), stride)
    assert tuple(got.shape) == (1, 2, -(-hw[0] // stride), -(-hw[1] // stride))
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw,out", [((3, 4), None), ((3, 4), (5, 7)), ((3, 4), (6, 7)), ((1, 1), (1, 2)), ((4, 4), None)])
@pytest.mark.parametrize("k", [3, 4])
def test_conv_transpose2d_same_matches_numpy(hw, out, k) -> None:
    rng = np.random.default_rng(hw[0] + 7 * k)
    x = rng.standard_normal((*hw, 3))
    kern = rng.standard_normal((k, k, 2, 3))  # TF transpose layout (h, w, out, in)
    b = rng.standard_normal(2)
    size = (hw[0] * 2, hw[1] * 2) if out is None else out
    want = np_deconv_same(x, kern, b, 2, size)
    got = ss.conv_transpose2d_same(to_t(x), torch.from_numpy(kern.transpose(3, 2, 0, 1)).float(),
                                   torch.from_numpy(b).float(), 2, out_size=out)
    assert tuple(got.shape[-2:]) == size
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("H,W", [(6, 8), (5, 7), (9, 4)])
def test_transpose_is_adjoint_of_strided_conv(H, W) -> None:
    """TF defines conv2d_transpose as the gradient of conv2d: <conv(u), v> == <u, conv^T(v)>."""
    g = torch.Generator().manual_seed(H * W)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)  # conv: 3 -> 4 channels
    u = torch.randn(1, 3, H, W, generator=g, dtype=torch.float64)
    v = torch.randn(1, 4, -(-H // 2), -(-W // 2), generator=g, dtype=torch.float64)
    lhs = (ss.conv2d_same(u, w, None, 2) * v).sum()
    # ConvTranspose2d layout (in=4, out=3, kh, kw) is the conv weight (out=4, in=3, kh, kw) itself.
    rhs = (u * ss.conv_transpose2d_same(v, w, None, 2, out_size=(H, W))).sum()
    assert abs(float(lhs - rhs)) < 1e-9 * max(1.0, abs(float(lhs)))


def test_transpose_rejects_impossible_output_size() -> None:
    x = torch.zeros(1, 2, 3, 4)
    w = torch.zeros(2, 1, 3, 3)
    with pytest.raises(InputError, match="output size"):
        ss.conv_transpose2d_same(x, w, None, 2, out_size=(7, 8))  # ceil(7/2) = 4 != 3


# ----------------------------------------------------------------------------- network
@pytest.mark.parametrize("hw", [(12, 16), (11, 9)])
def test_network_matches_numpy_tf_graph(hw) -> None:
    arrays = fake_arrays(1)
    m = ss.SelfSupervisedDecom()
    m.load_state_dict(ss.tf_arrays_to_state_dict(arrays), strict=True)
    rng = np.random.default_rng(2)
    img = rng.random((*hw, 3)) * 0.4
    R_np, L_np = np_decomnet(img, arrays)
    with torch.no_grad():
        R, L = m.eval()(to_t(img))
    assert R.shape == (1, 3, *hw) and L.shape == (1, 1, *hw)
    # The outputs vary (not saturated), so this comparison can detect wiring mistakes.
    assert R_np.std() > 0.01 and L_np.std() > 0.01
    np.testing.assert_allclose(R[0].permute(1, 2, 0).numpy(), R_np, atol=1e-4)
    np.testing.assert_allclose(L[0].permute(1, 2, 0).numpy(), L_np, atol=1e-4)
    np.testing.assert_allclose(m.enhance(to_t(img)).detach().numpy(), R.numpy(), atol=0)


def test_network_input_order_matters() -> None:
    """Channel max first, then RGB: feeding (R,G,B,max) would give a different result (guards the order)."""
    arrays = fake_arrays(3)
    img = np.random.default_rng(4).random((8, 8, 3))
    R_np, _ = np_decomnet(img, arrays)
    wrong = dict(arrays)
    k = arrays["DecomNet__first_layer__kernel"]
    wrong["DecomNet__first_layer__kernel"] = np.concatenate([k[:, :, 1:], k[:, :, :1]], axis=2)
    m = ss.SelfSupervisedDecom()
    m.load_state_dict(ss.tf_arrays_to_state_dict(wrong), strict=True)
    with torch.no_grad():
        R = m(to_t(img))[0][0].permute(1, 2, 0).numpy()
    assert np.abs(R - R_np).max() > 1e-3


def test_kernel_layout_conversion() -> None:
    arrays = fake_arrays(5)
    state = ss.tf_arrays_to_state_dict(arrays)
    k = arrays["DecomNet__activated_layer_2__kernel"]  # (3, 3, 64, 128) HWIO
    assert tuple(state["activated_layer_2.weight"].shape) == (128, 64, 3, 3)
    assert float(state["activated_layer_2.weight"][7, 5, 0, 2]) == float(k[0, 2, 5, 7])
    d = arrays["DecomNet__activated_layer_4__kernel"]  # (3, 3, 64 out, 128 in)
    assert tuple(state["activated_layer_4.weight"].shape) == (128, 64, 3, 3)  # ConvTranspose2d (in, out, h, w)
    assert float(state["activated_layer_4.weight"][9, 3, 2, 1]) == float(d[2, 1, 3, 9])


def test_strict_loading_errors(tmp_path) -> None:
    good = fake_arrays(0)
    missing = dict(good)
    missing.pop("DecomNet__recon_layer__bias")
    with pytest.raises(RuntimeError, match="missing keys \\['DecomNet__recon_layer__bias'\\]"):
        ss.tf_arrays_to_state_dict(missing)
    extra = dict(good, DecomNet__noise_layer_9__kernel=np.zeros((3, 3, 64, 3), np.float32))
    with pytest.raises(RuntimeError, match="unexpected keys \\['DecomNet__noise_layer_9__kernel'\\]"):
        ss.tf_arrays_to_state_dict(extra)
    # The transpose kernel given in the conv layout (in, out swapped) must be rejected, not reshaped.
    swapped = dict(good, DecomNet__activated_layer_4__kernel=np.zeros((3, 3, 128, 64), np.float32))
    with pytest.raises(RuntimeError, match="activated_layer_4__kernel: file \\(3, 3, 128, 64\\) vs expected \\(3, 3, 64, 128\\)"):
        ss.tf_arrays_to_state_dict(swapped)
    np.savez(tmp_path / "bad.npz", **missing)
    with pytest.raises(RuntimeError, match="bad.npz"):
        ss.load_self_supervised(tmp_path / "bad.npz")
    np.savez(tmp_path / "good.npz", **good)
    m = ss.load_self_supervised(tmp_path / "good.npz")
    assert not m.training
    assert sum(p.numel() for p in m.parameters()) == 485604


def test_missing_file_and_env_var(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="hitzhangyu"):
        ss.load_self_supervised(tmp_path / "nope.npz")
    monkeypatch.setenv(ss.WEIGHTS_ENV, str(tmp_path / "also_nope.npz"))
    assert ss.default_weights_path() == tmp_path / "also_nope.npz"
    with pytest.raises(FileNotFoundError, match="also_nope.npz"):
        ss.load_self_supervised()
    np.savez(tmp_path / "w.npz", **fake_arrays(0))
    monkeypatch.setenv(ss.WEIGHTS_ENV, str(tmp_path / "w.npz"))
    assert isinstance(ss.load_self_supervised(), ss.SelfSupervisedDecom)


def test_bad_inputs_raise() -> None:
    m = ss.SelfSupervisedDecom().eval()
    with pytest.raises(InputError, match="\\(N, 3, H, W\\)"):
        m.enhance(torch.rand(1, 4, 8, 8))
    with pytest.raises(InputError, match="\\(N, 3, H, W\\)"):
        m.enhance(torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8))
    with pytest.raises(InputError, match="Divide uint8 images by 255"):
        m.enhance(torch.rand(1, 3, 8, 8) * 255)


# ----------------------------------------------------------------------------- real weights
def _lol(name: str) -> torch.Tensor:
    from PIL import Image

    a = np.asarray(Image.open(LOL / name).convert("RGB"), dtype=np.float32) / 255.0
    return to_t(a)


@pytest.mark.skipif(not (WEIGHTS.is_file() and LOL.is_dir()),
                    reason=f"real weights or LOL eval15 not found under {DATA} (expected ../shared/data next to the repo)")
def test_real_weights_on_lol_eval15() -> None:
    m = ss.load_self_supervised(WEIGHTS)
    names = sorted(p.name for p in LOL.iterdir())[:3]
    assert names, "LOL_eval15_full is empty"
    for name in names:
        x = _lol(name)
        assert tuple(x.shape) == (1, 3, 400, 600)
        with torch.no_grad():
            R, L = m(x)
        assert R.shape == x.shape and L.shape == (1, 1, 400, 600)
        assert 0.0 < float(R.min()) and float(R.max()) < 1.0
        # The enhanced image is much brighter than the dark input (eval15 inputs have mean ~0.08-0.1).
        assert float(R.mean()) > 3.0 * float(x.mean()), name
        # Retinex: the network was trained so that R * L reconstructs the input.
        assert float((R * L - x).abs().mean()) < 0.015, name  # 0.004-0.008 measured
        # Odd crop (TF's own graph cannot run it): same shape, and away from the crop border the
        # result barely changes (receptive field is local).
        xo = x[..., :201, :301]
        with torch.no_grad():
            Ro = m.enhance(xo)
        assert Ro.shape == xo.shape
        assert float((Ro[..., 20:180, 20:280] - R[..., 20:180, 20:280]).abs().max()) < 0.05
