"""Property-based tests for iaca_metric.inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from iaca_metric.inputs import InputError, check_pair, to_tensor

# Small images and few examples: the whole file must stay fast on 2 CPU cores.
SETTINGS = settings(max_examples=50, deadline=None, database=None)

shapes_hwc = st.tuples(
    st.integers(1, 12), st.integers(1, 12), st.sampled_from([3])
)


def in_range_arrays(dtype=np.float32):
    return shapes_hwc.flatmap(
        lambda s: arrays(dtype, s, elements=st.floats(0.0, 1.0, width=32))
    )


@SETTINGS
@given(in_range_arrays())
def test_in_range_float_accepted_unchanged(a: np.ndarray) -> None:
    t = to_tensor(a)
    assert t.shape == (1, 3, a.shape[0], a.shape[1])
    assert torch.equal(t[0].permute(1, 2, 0), torch.from_numpy(a))


@SETTINGS
@given(
    in_range_arrays(),
    st.one_of(st.floats(-1e6, -1e-5), st.floats(1.0 + 1e-5, 1e6)),
    st.data(),
)
def test_any_value_outside_range_rejected(a: np.ndarray, bad: float, data) -> None:
    i = data.draw(st.integers(0, a.size - 1))
    a = a.copy()
    a.flat[i] = bad
    with pytest.raises(InputError, match="must lie in"):
        to_tensor(a)
    with pytest.raises(InputError, match="must lie in"):
        to_tensor(torch.from_numpy(a).permute(2, 0, 1))


@SETTINGS
@given(in_range_arrays(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_any_non_finite_rejected(a: np.ndarray, bad: float, data) -> None:
    i = data.draw(st.integers(0, a.size - 1))
    a = a.copy()
    a.flat[i] = bad
    with pytest.raises(InputError, match="NaN|Inf"):
        to_tensor(a)


@SETTINGS
@given(shapes_hwc.flatmap(lambda s: arrays(np.uint8, s)))
def test_uint8_roundtrip_exact(a: np.ndarray) -> None:
    t = to_tensor(a)
    assert torch.equal(t[0].permute(1, 2, 0), torch.from_numpy(a).float() / 255)
    back = (t * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(back, a)


@SETTINGS
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 10), st.integers(1, 10)),
    st.tuples(st.integers(1, 3), st.integers(1, 10), st.integers(1, 10)),
)
def test_shape_mismatch_always_rejected(sa: tuple, sb: tuple) -> None:
    a = torch.zeros(sa[0], 3, sa[1], sa[2])
    b = torch.zeros(sb[0], 3, sb[1], sb[2])
    if sa == sb:
        check_pair(a, b)
    else:
        with pytest.raises(InputError, match="shape"):
            check_pair(a, b)
