"""The integer softmax: numpy reference vs the torch implementation used in QAT, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netfabric.models.int_softmax import (
    IntSoftmaxParams,
    build_lut,
    int_softmax_ref,
    int_softmax_ste,
    int_softmax_torch,
)

SCALES = [1e-3, 0.02, 0.0625, 0.11, 0.5, 3.0]


def _both(q: np.ndarray, mask: np.ndarray | None, p: IntSoftmaxParams):
    ref = int_softmax_ref(q, mask, p)
    tmask = None if mask is None else torch.from_numpy(np.broadcast_to(mask, q.shape).copy())
    got = int_softmax_torch(torch.from_numpy(q), tmask, p).numpy()
    return ref, got


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("row", [1, 2, 7, 14, 64])
def test_random_bit_exact(scale: float, row: int) -> None:
    rng = np.random.default_rng(row)
    p = IntSoftmaxParams(score_scale=scale)
    q = rng.integers(p.qmin, p.qmax + 1, size=(50, row))
    mask = rng.random((50, row)) < 0.8
    for m in (None, mask):
        ref, got = _both(q, m, p)
        np.testing.assert_array_equal(ref, got)
        assert ref.dtype == np.int64 and ref.min() >= 0 and ref.max() <= p.out_max


@pytest.mark.parametrize("bits", [(4, 8, 6, 20), (8, 15, 8, 31), (8, 16, 7, 33), (6, 10, 8, 24)])
def test_other_widths_bit_exact(bits: tuple[int, int, int, int]) -> None:
    sb, eb, ob, rb = bits
    p = IntSoftmaxParams(
        0.07, score_bits=sb, exp_bits=eb, out_bits=ob, out_frac_bits=ob, recip_bits=rb
    )
    rng = np.random.default_rng(sb)
    q = rng.integers(p.qmin, p.qmax + 1, size=(200, 9))
    ref, got = _both(q, rng.random(q.shape) < 0.7, p)
    np.testing.assert_array_equal(ref, got)


def test_adversarial_rows() -> None:
    p = IntSoftmaxParams(score_scale=0.05)
    lo, hi = p.qmin, p.qmax
    rows = np.array(
        [
            [5] * 8,  # all equal
            [hi] * 8,
            [lo] * 8,
            [hi] + [lo] * 7,  # the extremes: d = 255, LUT's last entry
            [lo] + [hi] * 7,
            [hi, lo, hi, lo, hi, lo, hi, lo],
            [0, 0, 0, 0, 0, 0, 0, 1],
        ]
    )
    masks = np.ones(rows.shape, bool)
    ref, got = _both(rows, masks, p)
    np.testing.assert_array_equal(ref, got)
    assert len(set(ref[0])) == 1 and ref[0, 0] == 32  # 1/8 = 32 / 256 exactly
    # A dominant element saturates at the top code; the far-below elements are exactly 0.
    assert ref[3, 0] == p.out_max and (ref[3, 1:] == 0).all()


def test_masking() -> None:
    p = IntSoftmaxParams(score_scale=0.1)
    q = np.array([[10, -20, 30, 127], [1, 2, 3, 4], [7, 7, 7, 7], [-128, 0, 0, 0]])
    mask = np.array(
        [
            [True, True, True, False],
            [False] * 4,
            [True, False, True, False],
            [True, False, False, False],
        ]
    )
    ref, got = _both(q, mask, p)
    np.testing.assert_array_equal(ref, got)
    assert (ref[~mask] == 0).all()  # masked positions contribute exactly 0
    assert (ref[1] == 0).all()  # a fully masked row is all zeros
    assert ref[2, 0] == ref[2, 2] == 128  # two valid equal scores: 1/2 each
    assert ref[3, 0] == p.out_max  # single valid element: probability 1, saturated to 255/256
    # masked scores do not influence valid outputs (the masked 127 is not the row max)
    alone = int_softmax_ref(q[:1, :3], None, p)
    np.testing.assert_array_equal(ref[:1, :3], alone)


def test_single_element_rows() -> None:
    p = IntSoftmaxParams(score_scale=0.3)
    q = np.arange(p.qmin, p.qmax + 1).reshape(-1, 1)
    ref, got = _both(q, None, p)
    np.testing.assert_array_equal(ref, got)
    assert (ref == p.out_max).all()
    wide = IntSoftmaxParams(score_scale=0.3, out_bits=9, out_frac_bits=8)
    assert (int_softmax_ref(q, None, wide) == 256).all()  # exactly 1.0 when the width allows


def test_lut_formula_and_close_to_float() -> None:
    p = IntSoftmaxParams(score_scale=0.04)
    lut = build_lut(p)
    assert lut.shape == (256,) and lut[0] == 2**15 - 1
    assert (np.diff(lut) <= 0).all()
    expected = np.floor((2**15 - 1) * np.exp(-np.arange(256) * 0.04) + 0.5)
    np.testing.assert_array_equal(lut, expected)
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(100, 14))
    probs = int_softmax_ref(q, None, p) / 256
    exact = torch.softmax(torch.from_numpy(q * 0.04), -1).numpy()
    assert np.abs(probs - exact).max() <= 1.01 / 256  # within about one output LSB


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="score_scale"):
        IntSoftmaxParams(score_scale=0.0)
    with pytest.raises(ValueError, match="recip_bits"):
        IntSoftmaxParams(score_scale=0.1, recip_bits=8, out_frac_bits=8)
    p = IntSoftmaxParams(score_scale=0.1)
    with pytest.raises(ValueError, match="range"):
        int_softmax_ref(np.array([[200, 0]]), None, p)
    with pytest.raises(TypeError, match="integers"):
        int_softmax_ref(np.array([[0.5, 0.0]]), None, p)
    with pytest.raises(TypeError, match="boolean"):
        int_softmax_ref(np.array([[1, 0]]), np.array([[1, 0]]), p)
    with pytest.raises(ValueError, match="broadcast"):
        int_softmax_ref(np.array([[1, 0]]), np.array([True, False, True]), p)
    with pytest.raises(ValueError, match="non-empty"):
        int_softmax_ref(np.zeros((2, 0), np.int64), None, p)


def test_ste_forward_is_integer_and_backward_is_float_softmax() -> None:
    p = IntSoftmaxParams(score_scale=0.125)
    rng = np.random.default_rng(3)
    q = torch.from_numpy(rng.integers(-128, 128, size=(4, 6, 7)))
    mask = torch.from_numpy(rng.random((4, 1, 7)) < 0.8)
    x = (q.double() * 0.125).float().requires_grad_(True)
    out = int_softmax_ste(x, torch.tensor(0.125), mask, p)
    np.testing.assert_array_equal(
        (out.detach().numpy() * 256).round().astype(np.int64),
        int_softmax_ref(q.numpy(), mask.numpy(), p),
    )
    w = torch.randn_like(out)
    (out * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    soft = torch.softmax(torch.where(mask, x2, torch.finfo(x2.dtype).min), -1) * mask
    (soft * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
