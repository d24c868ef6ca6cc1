"""Host side of the PYNQ accelerator's DMA stream: pack, transfer, unpack (numpy + stdlib only).

One module shared by the runtime's ``pynq`` backend and the deployment package's
``run_on_board.py`` (``netfabric deploy`` copies this file next to it as ``pynq_stream.py``),
so the board needs nothing but numpy and pynq. Everything it needs to know comes from the
package's ``manifest.json`` (``netfabric.deploy`` writes it).

Stream format (the generated ``netfabric_accel`` wrapper around the stitched accelerator):
32-bit AXI-Stream words to and from the AXI DMA. One accelerator beat (``beat_bits`` wide,
``elems_per_beat`` elements of ``bits`` bits, LSB first) travels as ``words_per_beat`` words,
low word first, unused high bits zero. A transfer is a whole number of frames; the wrapper
asserts TLAST on the last output word of the frame whose input carried TLAST, which ends the
DMA's S2MM transfer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

WORD_BITS = 32


def apply_host_steps(x: np.ndarray, steps: list[dict]) -> np.ndarray:
    """The layout steps recorded at compile time (Transpose / Reshape; batch first)."""
    for step in steps:
        if step["op"] == "Transpose":
            x = np.transpose(x, step["perm"])
        elif step["op"] == "Reshape":
            x = x.reshape([x.shape[0], *step["shape"][1:]])
        else:
            raise ValueError(f"unknown host layout step {step}")
    return x


def prepare_input(x: np.ndarray, man: dict) -> np.ndarray:
    """Validate a batch in the model's input layout; return it as [N, elements] int64 in the
    accelerator's element order (host pre-steps applied)."""
    inp = man["input"]
    x = np.asarray(x)
    want = list(inp["host_shape"][1:])
    if x.ndim == len(want):
        x = x[None]
    if list(x.shape[1:]) != want:
        raise ValueError(f"input shape {list(x.shape)} does not match the model's "
                         f"[N, {', '.join(map(str, want))}]")
    if not np.issubdtype(x.dtype, np.integer) and not np.array_equal(x, np.round(x)):
        raise ValueError("input must hold integers (raw pixel values), not scaled floats")
    lo, hi = inp["min"], inp["max"]
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"input values must lie in [{lo}, {hi}]")
    x = apply_host_steps(x.astype(np.int64), man.get("host_pre", []))
    return np.ascontiguousarray(x.reshape(x.shape[0], -1))


def pack_beats(elems: np.ndarray, per_beat: int, bits: int, beat_bytes: int) -> np.ndarray:
    """Flat elements -> [beats, beat_bytes] uint8: element i of a beat at bits
    [i*bits, (i+1)*bits), LSB first, little-endian bytes, unused high bits zero. The one
    packer of the stream format: the RTL harness's words and the UART link's bytes use it too."""
    flat = np.asarray(elems, dtype=np.int64).reshape(-1)
    if flat.size % per_beat:
        raise ValueError(f"{flat.size} elements do not fill beats of {per_beat}")
    if per_beat * bits > 8 * beat_bytes:
        raise ValueError(f"{per_beat} x {bits}-bit elements do not fit in {beat_bytes} bytes")
    vals = (flat.reshape(-1, per_beat) & ((1 << bits) - 1)).astype(np.uint64)
    if bits == 8 and per_beat == beat_bytes:  # bytes already are the beat (8-bit pixels)
        return np.ascontiguousarray(vals.astype(np.uint8))
    bit_rows = ((vals[:, :, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    padded = np.zeros((len(vals), beat_bytes * 8), dtype=np.uint8)
    padded[:, : per_beat * bits] = bit_rows.reshape(len(vals), per_beat * bits)
    return np.packbits(padded, axis=1, bitorder="little")


def unpack_beats(raw: np.ndarray, per_beat: int, bits: int, signed: bool) -> np.ndarray:
    """[beats, beat_bytes] uint8 -> flat int64 elements (inverse of :func:`pack_beats`;
    sign-extended when ``signed``)."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    bit_rows = np.unpackbits(raw, axis=1, bitorder="little")[:, : per_beat * bits]
    weights = np.left_shift(np.uint64(1), np.arange(bits, dtype=np.uint64))
    vals = (bit_rows.reshape(-1, per_beat, bits).astype(np.uint64) * weights).sum(
        axis=2, dtype=np.uint64).reshape(-1)
    if signed and bits < 64:
        top = np.uint64(1 << (bits - 1))
        return (vals ^ top).astype(np.int64) - np.int64(1 << (bits - 1))
    return vals.astype(np.int64)


def pack_words(frames: np.ndarray, port: dict) -> np.ndarray:
    """[N, elements] ints -> the uint32 words the accelerator takes (see module doc)."""
    raw = pack_beats(frames, port["elems_per_beat"], port["bits"], 4 * port["words_per_beat"])
    return raw.view("<u4").reshape(-1).astype(np.uint32)


def unpack_words(words: np.ndarray, port: dict) -> np.ndarray:
    """uint32 words from the accelerator -> flat element array (inverse of pack_words)."""
    raw = np.ascontiguousarray(np.asarray(words, dtype="<u4").reshape(-1, port["words_per_beat"]))
    return unpack_beats(raw.view(np.uint8), port["elems_per_beat"], port["bits"], port["signed"])


def finish_output(elems: np.ndarray, n: int, man: dict) -> np.ndarray:
    """Flat output elements of ``n`` frames -> the graph's output (host post-steps applied)."""
    out = elems.reshape([n, *man["output"]["shape"][1:]])
    return apply_host_steps(out, man.get("host_post", []))


def predictions(out: np.ndarray, man: dict) -> np.ndarray:
    """Class per frame: the label itself (top-1 label select) or the argmax of the logits."""
    if man["output_kind"] == "label":
        return out.reshape(len(out), -1)[:, 0]
    return out.reshape(len(out), -1).argmax(axis=1)


def frames_per_transfer(man: dict, batch: int) -> int:
    """Frames per DMA transfer: ``batch``, capped by the DMA's transfer-length register."""
    per_frame = 4 * max(man["input"]["words_per_frame"], man["output"]["words_per_frame"])
    return max(1, min(batch, man["dma"]["max_transfer_bytes"] // per_frame))


def stream(dma: Any, allocate: Callable[..., Any], frames: np.ndarray, man: dict,
           batch: int = 100) -> tuple[np.ndarray, list[float]]:
    """Send [N, elements] frames through the DMA in transfers of up to ``batch`` frames;
    returns (the graph's output, seconds per transfer). ``dma`` is the overlay's AXI DMA and
    ``allocate`` pynq's (or cocotbpynq's) allocate."""
    inp, outp = man["input"], man["output"]
    step = frames_per_transfer(man, batch)
    n = len(frames)
    words_out = np.empty(n * outp["words_per_frame"], dtype=np.uint32)
    in_buf = allocate(shape=(step * inp["words_per_frame"],), dtype=np.uint32)
    out_buf = allocate(shape=(step * outp["words_per_frame"],), dtype=np.uint32)
    seconds: list[float] = []
    try:
        for start in range(0, n, step):
            k = min(step, n - start)
            n_in, n_out = k * inp["words_per_frame"], k * outp["words_per_frame"]
            in_buf[:n_in] = pack_words(frames[start:start + k], inp)
            t0 = time.perf_counter()
            # receive first, so the accelerator's output never waits for the S2MM channel
            dma.recvchannel.transfer(out_buf, nbytes=4 * n_out)
            dma.sendchannel.transfer(in_buf, nbytes=4 * n_in)
            dma.sendchannel.wait()
            dma.recvchannel.wait()
            seconds.append(time.perf_counter() - t0)
            words_out[start * outp["words_per_frame"]:][:n_out] = out_buf[:n_out]
    finally:
        for buf in (in_buf, out_buf):
            if hasattr(buf, "freebuffer"):  # pynq buffers hold contiguous memory: give it back
                buf.freebuffer()
    return finish_output(unpack_words(words_out, outp), n, man), seconds
