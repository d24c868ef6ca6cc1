"""What the kernels share: the fused threshold count, block sizes, dtypes, threshold tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from netfabric.errors import GraphError

INT32_SAFE = 2**31 - 2  # |values| up to this keep int32 (2^31 - 1 is the "never" threshold)


@triton.jit
def threshold_count(acc, thr_ptr, chan, LOG2P: tl.constexpr):
    """FINN's ``count_k(acc >= T[c, k])`` by binary search in a sorted row padded to 2^LOG2P
    entries with a value no accumulator reaches; ``thr_ptr + chan`` points at each element's
    row (``chan`` = channel * 2^LOG2P, broadcast against ``acc``). A count is order-free, so
    sorting the rows on the host keeps the definition exact for any table."""
    base = thr_ptr + chan
    last = tl.zeros(acc.shape, tl.int32) - 1  # index of the last threshold known <= acc
    for i in tl.static_range(LOG2P):
        probe = last + (1 << (LOG2P - 1 - i))
        last = tl.where(tl.load(base + probe) <= acc, probe, last)
    return last + 1


def pow2(n: int, lo: int = 1, hi: int | None = None) -> int:
    """The power of two >= n, clamped to [lo, hi]."""
    p = max(lo, triton.next_power_of_2(max(int(n), 1)))
    return min(p, hi) if hi else p


def torch_dtype(bound: int) -> torch.dtype:
    """int32 when every value lies within +-INT32_SAFE, else int64."""
    return torch.int32 if bound <= INT32_SAFE else torch.int64


def type_dtype(int_type) -> torch.dtype:
    """The stream dtype for a FINN integer type (int64 when the type is unknown)."""
    if int_type is None:
        return torch.int64
    return torch_dtype(max(-int_type.min, int_type.max))


def threshold_table(thr: np.ndarray, channels: int, dtype: torch.dtype, what: str
                    ) -> tuple[np.ndarray, int]:
    """Thresholds [C or 1, K] (floats compare as their ceiling) -> sorted rows, one per
    channel, padded to 2^LOG2P - 1 entries and one more (the search never reads it), clipped to
    ``dtype`` (exact: values beyond the accumulator range never / always count). Returns the
    table [channels, 2^LOG2P] and LOG2P."""
    thr = np.asarray(thr, dtype=np.float64)
    if thr.ndim != 2 or thr.shape[0] not in (1, channels):
        raise GraphError(f"{what}: threshold table {list(thr.shape)} does not fit {channels} "
                         "channels")
    if not np.all(np.isfinite(thr)):
        raise GraphError(f"{what}: thresholds must be finite")
    info = torch.iinfo(dtype)
    rows = np.clip(np.sort(np.ceil(thr), axis=1), info.min, info.max).astype(np.int64)
    rows = np.broadcast_to(rows, (channels, rows.shape[1]))
    log2p = int(rows.shape[1]).bit_length()  # 2^log2p >= steps + 1
    table = np.full((channels, 1 << log2p), info.max, dtype=np.int64)
    table[:, : rows.shape[1]] = rows
    return table, log2p


@dataclass
class RequantPlan:
    """Every channel's thresholds as one proven requantizer (``host/requant.py``):
    count = clip((acc * mult + add) >> shift, 0, levels), exactly, on the accumulator range."""

    mult: torch.Tensor  # int64 [C]
    add: torch.Tensor  # int64 [C]
    shift: int
    levels: int


def fit_requant(thr: np.ndarray, channels: int, acc_min: int, acc_max: int, device
                ) -> RequantPlan | None:
    """The requantizer equal to the table for *every* channel on [acc_min, acc_max], or None
    (a kernel then searches the table). Evaluating it costs two loads per output column
    instead of a log2(levels)-step search per element. Shared rows are fitted once."""
    from netfabric.host.requant import fit_requantizer

    thr = np.asarray(thr, dtype=np.float64)
    if thr.ndim != 2 or thr.shape[1] == 0 or not np.all(np.isfinite(thr)):
        return None
    # a count is order-free; clipping one past the range keeps every count the same
    rows = np.clip(np.sort(np.ceil(thr), axis=1), acc_min, acc_max + 1).astype(np.int64)
    fitted = fit_requantizer(rows, acc_min, acc_max)
    if fitted is None or not fitted[1].all():
        return None
    rq = fitted[0]
    mult = np.broadcast_to(rq.mult, (channels,)) if len(rq.mult) == 1 else rq.mult
    add = np.broadcast_to(rq.add, (channels,)) if len(rq.add) == 1 else rq.add
    if len(mult) != channels:
        return None
    as_dev = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64,  # noqa: E731
                                       device=device)
    return RequantPlan(as_dev(mult), as_dev(add), int(rq.shift), int(rq.levels))


@triton.jit
def requantize(acc, mult_ptr, add_ptr, cols, cols_ok, SHIFT: tl.constexpr, levels):
    """clip((acc * M[c] + B[c]) >> S, 0, levels) with the column index ``cols`` broadcast
    against ``acc`` (floor shift on int64, as ``host/requant.Requantizer`` defines it)."""
    mult = tl.load(mult_ptr + cols, mask=cols_ok, other=1)
    add = tl.load(add_ptr + cols, mask=cols_ok, other=0)
    y = (acc.to(tl.int64) * mult + add) >> SHIFT
    return tl.minimum(tl.maximum(y, 0), levels)
