"""Numpy golden models of the hw/rtl modules (FINN hardware-layer integer semantics).

Also the helpers that turn tensors into what the RTL consumes: AXI-Stream beat packing
(element i of a beat at bits [i*BITS +: BITS], LSB first) and the ``$readmemh`` memory files
of ``mvau.v`` / ``thresholding.v`` (layouts documented in hw/rtl/README.md).

Everything is integer numpy (int64); values are the *logical* element values (signed where the
datatype is signed), packing applies the two's-complement masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------
# integer helpers


def wrap(x: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """Reduce to ``bits`` bits (two's complement when ``signed``), like a hardware register."""
    x = np.asarray(x, dtype=np.int64)
    m = x & ((1 << bits) - 1)
    if signed:
        m = np.where(m >= (1 << (bits - 1)), m - (1 << bits), m)
    return m


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive value range of a ``bits``-bit integer."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def random_ints(rng: np.random.Generator, shape: int | Sequence[int], bits: int,
                signed: bool) -> np.ndarray:
    lo, hi = int_range(bits, signed)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def axis_width(bits: int) -> int:
    """tdata width of a stream carrying ``bits`` payload bits (rounded up to bytes)."""
    return (bits + 7) // 8 * 8


# ---------------------------------------------------------------------------------------
# stream packing


def pack_beats(elems: np.ndarray, per_beat: int, bits: int) -> list[int]:
    """Flat element sequence -> list of beat integers, ``per_beat`` elements each."""
    flat = np.asarray(elems, dtype=np.int64).reshape(-1)
    if flat.size % per_beat:
        raise ValueError(f"{flat.size} elements do not fill beats of {per_beat}")
    mask = (1 << bits) - 1
    beats = []
    for b in flat.reshape(-1, per_beat):
        v = 0
        for i, e in enumerate(b.tolist()):
            v |= (e & mask) << (i * bits)
        beats.append(v)
    return beats


def unpack_beats(beats: Sequence[int], per_beat: int, bits: int, signed: bool) -> np.ndarray:
    """List of beat integers -> flat element array (inverse of :func:`pack_beats`)."""
    mask = (1 << bits) - 1
    out = np.empty(len(beats) * per_beat, dtype=np.int64)
    k = 0
    for v in beats:
        for i in range(per_beat):
            out[k] = (int(v) >> (i * bits)) & mask
            k += 1
    return wrap(out, bits, signed) if signed else out


def beat_words(width_bits: int) -> int:
    """32-bit words per beat of a ``width_bits`` tdata bus in a raw beat file."""
    return max(1, (width_bits + 31) // 32)


def pack_words(elems: np.ndarray, per_beat: int, bits: int, words: int) -> np.ndarray:
    """Flat element sequence -> [beats, words] uint32, each beat the :func:`pack_beats` integer
    as little-endian 32-bit words (the compiled harness's beat files); the stream packer of
    ``host/pynq_stream.py``, vectorised over beats."""
    from netfabric.host.pynq_stream import pack_beats as pack_bytes

    return pack_bytes(elems, per_beat, bits, 4 * words).view("<u4").astype(np.uint32)


def unpack_words(words: np.ndarray, per_beat: int, bits: int, signed: bool) -> np.ndarray:
    """[beats, words] uint32 -> flat element array (inverse of :func:`pack_words`)."""
    from netfabric.host.pynq_stream import unpack_beats as unpack_bytes

    w = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    return unpack_bytes(w.view(np.uint8).reshape(w.shape[0], -1), per_beat, bits, signed)


# ---------------------------------------------------------------------------------------
# layer models


def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MVAU accumulator: x [N, MW] times W [MH, MW] -> [N, MH] (exact int64)."""
    return np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T


def multithreshold(v: np.ndarray, thresholds: np.ndarray, act_bias: int = 0) -> np.ndarray:
    """FINN MultiThreshold: out[..., c] = #{k : v[..., c] >= T[c, k]} + act_bias (channels
    last; [1, NT] thresholds broadcast). One definition: ``netfabric.ops.kernels``."""
    from netfabric.ops.kernels import threshold_count

    return threshold_count(v, np.asarray(thresholds, dtype=np.int64), act_bias)


def xnor_popcount(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Binary MVAU accumulator: bits x [N, MW], W [MH, MW] -> [N, MH] counts of agreeing
    bits (XNOR-popcount; the bits stand for -1/+1)."""
    x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
    return x @ w.T + (1 - x) @ (1 - w).T


def mvau(x: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None = None,
         act_bias: int = 0, accbits: int | None = None, xnor: bool = False) -> np.ndarray:
    """MatrixVectorActivation: [N, MW] -> [N, MH] accumulators (wrapped to ``accbits``
    signed when given) or, with thresholds, activation counts + bias. ``xnor``: 0/1 operands,
    XNOR-popcount accumulator (mvau.v XNOR=1)."""
    acc = xnor_popcount(x, w) if xnor else matmul(x, w)
    if accbits is not None:
        acc = wrap(acc, accbits, True)
    if thresholds is None:
        return acc
    return multithreshold(acc, thresholds, act_bias)


def swg(img: np.ndarray, k: int, stride: int) -> np.ndarray:
    """ConvolutionInputGenerator, NHWC without padding: [H, W, C] -> [OH*OW, K*K*C] with
    each row ordered (ky, kx, c), c fastest."""
    h, w, c = img.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((oh * ow, k * k * c), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            win = img[oy * stride:oy * stride + k, ox * stride:ox * stride + k, :]
            out[oy * ow + ox] = win.reshape(-1)
    return out


def maxpool(img: np.ndarray, k: int) -> np.ndarray:
    """Non-overlapping NHWC max pooling (kernel = stride = k): [H, W, C] -> [H/k, W/k, C]."""
    h, w, c = img.shape
    return np.asarray(img, dtype=np.int64).reshape(h // k, k, w // k, k, c).max(axis=(1, 3))


def label_select(x: np.ndarray) -> np.ndarray:
    """Index of the maximum per row; ties resolve to the lowest index (ONNX TopK, k=1)."""
    return np.argmax(np.asarray(x, dtype=np.int64), axis=-1).astype(np.int64)


# ---------------------------------------------------------------------------------------
# memory files ($readmemh, one hex word per line)


def write_hex(path: str | Path, words: Sequence[int], width: int) -> Path:
    """Write ``words`` (non-negative ints < 2**width) as ``$readmemh`` lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digits = max(1, (width + 3) // 4)
    with path.open("w") as f:
        for v in words:
            if v < 0 or v >> width:
                raise ValueError(f"word {v} does not fit {width} bits")
            f.write(f"{v:0{digits}x}\n")
    return path


def mvau_weight_words(w: np.ndarray, pe: int, simd: int, wbits: int) -> list[int]:
    """mvau.v weight memory: word nf*SF + sf holds W[nf*PE+p][sf*SIMD+s] at bit offset
    (p*SIMD + s)*WBITS (two's complement when signed)."""
    w = np.asarray(w, dtype=np.int64)
    mh, mw = w.shape
    nf, sf = mh // pe, mw // simd
    assert mh % pe == 0 and mw % simd == 0
    mask = (1 << wbits) - 1
    words = []
    for f in range(nf):
        for s_ in range(sf):
            blk = w[f * pe:(f + 1) * pe, s_ * simd:(s_ + 1) * simd]  # [PE, SIMD]
            v = 0
            for i, e in enumerate(blk.reshape(-1).tolist()):  # p-major, s-minor
                v |= (e & mask) << (i * wbits)
            words.append(v)
    return words


def write_mvau_weights(path: str | Path, w: np.ndarray, pe: int, simd: int,
                       wbits: int) -> Path:
    return write_hex(path, mvau_weight_words(w, pe, simd, wbits), pe * simd * wbits)


def bank_file_names(prefix: str | Path, nbank: int) -> list[Path]:
    """File names of a memory in banks (mvau.v weights, thresh_search.v deep stages):
    ``<prefix>_b<bbb>.hex``, b = 0 .. nbank-1 in three decimal digits."""
    if not 1 < nbank <= 1000:
        raise ValueError(f"{nbank} memory banks: the RTL names 2 to 1000")
    return [Path(f"{prefix}_b{b:03d}.hex") for b in range(nbank)]


def write_banks(prefix: str | Path, words: list[int], width: int,
                bank_words: int) -> list[Path]:
    """``words`` cut into banks of ``bank_words`` (the last one holding the rest), one
    ``bank_file_names`` file each; returns their paths."""
    names = bank_file_names(prefix, -(-len(words) // bank_words))
    return [write_hex(n, words[b * bank_words:(b + 1) * bank_words], width)
            for b, n in enumerate(names)]


def write_mvau_weight_banks(prefix: str | Path, w: np.ndarray, pe: int, simd: int, wbits: int,
                            bank_words: int) -> list[Path]:
    """The weight memory (``mvau_weight_words``) cut into banks of ``bank_words`` words, one
    file per bank (the last one holding the rest); returns their paths."""
    return write_banks(prefix, mvau_weight_words(w, pe, simd, wbits), pe * simd * wbits,
                       bank_words)


def pad_thresholds(thresholds: np.ndarray, obits: int, tbits: int) -> np.ndarray:
    """Make [C, NT] thresholds the [C, 2**obits - 1] table the RTL expects.

    Missing thresholds are appended as the largest ``tbits``-bit signed value (never reached
    if the accumulator range leaves that value unused -- choose tbits/ACCBITS with a spare
    bit). Values must be sorted per channel and fit ``tbits`` bits signed.
    """
    t = np.asarray(thresholds, dtype=np.int64)
    nt = (1 << obits) - 1
    lo, hi = int_range(tbits, True)
    if t.shape[1] > nt:
        raise ValueError(f"{t.shape[1]} thresholds > 2**{obits}-1")
    if t.size and (t.min() < lo or t.max() > hi):
        raise ValueError(f"thresholds outside the {tbits}-bit signed range; clip them first")
    if np.any(np.diff(t, axis=1) < 0):
        raise ValueError("thresholds must be sorted ascending per channel")
    pad = np.full((t.shape[0], nt - t.shape[1]), hi, dtype=np.int64)
    return np.concatenate([t, pad], axis=1)


def threshold_stage_words(thresholds: np.ndarray, pe: int, obits: int,
                          tbits: int) -> list[list[int]]:
    """Per binary-search stage j (0 = MSB of the count) the words of thresh_search.v's
    memory j: word nf*2**j + P holds, for lane p at bits [p*TBITS +: TBITS], the threshold
    T[nf*PE + p][P * 2**(OBITS-j) + 2**(OBITS-j-1) - 1] (P = count bits decided so far)."""
    t = pad_thresholds(thresholds, obits, tbits)
    c = t.shape[0]
    assert c % pe == 0
    nf = c // pe
    mask = (1 << tbits) - 1
    stages = []
    for j in range(obits):
        words = []
        for f in range(nf):
            for prefix in range(1 << j):
                idx = prefix * (1 << (obits - j)) + (1 << (obits - j - 1)) - 1
                v = 0
                for p in range(pe):
                    v |= (int(t[f * pe + p, idx]) & mask) << (p * tbits)
                words.append(v)
        stages.append(words)
    return stages


# thresh_search.v splits stages deeper than this into banks (its BANK_AW = 11)
THRESH_BANK_WORDS = 2048


def threshold_file_names(prefix: str | Path, obits: int, tables: int) -> list[Path]:
    """File names thresh_search.v reads for THRESH_FILE=prefix with ``tables`` tables per
    lane: stage j (``tables << j`` words) in ``<prefix>_s<j>.hex``, or when deeper than one
    bank in ``bank_file_names(<prefix>_s<j>, ...)``."""
    names: list[Path] = []
    for j in range(obits):
        depth = tables << j
        if depth > THRESH_BANK_WORDS:
            names += bank_file_names(f"{prefix}_s{j}", -(-depth // THRESH_BANK_WORDS))
        else:
            names.append(Path(f"{prefix}_s{j}.hex"))
    return names


def write_thresholds(prefix: str | Path, thresholds: np.ndarray, pe: int, obits: int,
                     tbits: int) -> list[Path]:
    """Write the stage files for THRESH_FILE=prefix (``threshold_file_names``); returns
    their paths."""
    paths: list[Path] = []
    for j, words in enumerate(threshold_stage_words(thresholds, pe, obits, tbits)):
        if len(words) > THRESH_BANK_WORDS:
            paths += write_banks(f"{prefix}_s{j}", words, pe * tbits, THRESH_BANK_WORDS)
        else:
            paths.append(write_hex(f"{prefix}_s{j}.hex", words, pe * tbits))
    return paths


def random_thresholds(rng: np.random.Generator, channels: int, nt: int, lo: int,
                      hi: int) -> np.ndarray:
    """Sorted random thresholds in [lo, hi] (with occasional duplicates, like real nets)."""
    t = rng.integers(lo, hi + 1, size=(channels, nt), dtype=np.int64)
    return np.sort(t, axis=1)
