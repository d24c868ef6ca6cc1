"""Host side of the open boards' UART host link (device side: ``hw/rtl/host_link.v``).

One request per input frame, one response per request, in order::

    request:  0xA5, length (2 bytes, little endian) = payload bytes, payload
    response: status (1 byte); on 0x00 (ok) followed by the output frame

The payload is the accelerator's input stream, beat by beat, each beat's ``tdata`` (its width
rounded up to whole bytes) least significant byte first; the output frame is the output
stream in the same packing. Element packing inside a beat is the RTL library's (element i at
``tdata[i*BITS +: BITS]``; ``netfabric.sim.golden.pack_beats``). Error statuses (bad header,
bad length, overflow, timeout) are followed by a resync: the board discards bytes until the
line has been quiet for its inter-byte timeout, and :meth:`HostLink.resync` waits for that.

Everything here talks to a :class:`Transport`: a serial port on a board
(``host/fpga_backend.SerialTransport``) or the simulated UART of the full-system cocotb test
(``sim/tb/tb_board_link.py``), so the same code drives both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import numpy as np

from netfabric.errors import BackendFailure

from .pynq_stream import pack_beats, unpack_beats

# Requests in flight at once; the board's receive FIFO is sized for this many (hw/flow/shell.py).
WINDOW = 2
MAGIC = 0xA5
HEADER_BYTES = 3
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


class Status(IntEnum):
    OK = 0x00
    BAD_HEADER = 0xE1
    BAD_LENGTH = 0xE2
    OVERFLOW = 0xE3
    TIMEOUT = 0xE4


STATUS_TEXT = {
    Status.BAD_HEADER: "the board saw a request that did not start with 0xA5",
    Status.BAD_LENGTH: "the request's length does not match the accelerator's input frame "
                       "(is the bitstream built for this graph?)",
    Status.OVERFLOW: "the board lost a received byte (its input was not taken in time)",
    Status.TIMEOUT: "the request stopped in the middle (a gap longer than the board's "
                    "inter-byte timeout)",
}


class Transport(Protocol):
    """A byte pipe to the board: a serial port, or the simulated UART in tests."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; may return before it is on the line."""

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes; fewer (maybe none) when ``timeout`` seconds pass first."""

    def flush(self) -> None:
        """Wait until everything written has been sent."""


class LinkError(BackendFailure):
    """The board answered a request with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StreamFormat:
    """How one side of the accelerator's stream packs a frame."""

    elems_per_beat: int
    bits: int
    signed: bool
    beats: int
    beat_bytes: int  # tdata width in whole bytes

    @classmethod
    def from_manifest(cls, side: dict[str, Any], width_bits: int) -> StreamFormat:
        return cls(int(side["elems_per_beat"]), int(side["bits"]), bool(side["signed"]),
                   int(side["beats_per_frame"]), -(-int(width_bits) // 8))

    @property
    def frame_bytes(self) -> int:
        return self.beats * self.beat_bytes

    @property
    def frame_elems(self) -> int:
        return self.beats * self.elems_per_beat

    def pack(self, frame: np.ndarray) -> bytes:
        """One frame's elements (graph order) as the stream's bytes."""
        flat = np.asarray(frame, dtype=np.int64).reshape(-1)
        if flat.size != self.frame_elems:
            raise ValueError(f"a frame has {self.frame_elems} elements, got {flat.size}")
        return pack_beats(flat, self.elems_per_beat, self.bits, self.beat_bytes).tobytes()

    def unpack(self, data: bytes) -> np.ndarray:
        """The stream's bytes of one frame as its elements (int64, sign-extended if signed)."""
        if len(data) != self.frame_bytes:
            raise ValueError(f"a frame is {self.frame_bytes} bytes, got {len(data)}")
        raw = np.frombuffer(data, dtype=np.uint8).reshape(self.beats, self.beat_bytes)
        return unpack_beats(raw, self.elems_per_beat, self.bits, self.signed)


@dataclass(frozen=True)
class FrameFormat:
    """Both streams of a stitched accelerator, as its ``manifest.json`` describes them."""

    inp: StreamFormat
    out: StreamFormat

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> FrameFormat:
        return cls(StreamFormat.from_manifest(manifest["input"], manifest["in_width_bits"]),
                   StreamFormat.from_manifest(manifest["output"], manifest["out_width_bits"]))

    @property
    def request_bytes(self) -> int:
        return HEADER_BYTES + self.inp.frame_bytes

    @property
    def response_bytes(self) -> int:
        return 1 + self.out.frame_bytes

    def encode(self, frame: np.ndarray) -> bytes:
        """The request for one input frame."""
        n = self.inp.frame_bytes
        return bytes([MAGIC, n & 0xFF, n >> 8]) + self.inp.pack(frame)

    def link_limit(self, baud: float) -> float:
        """Frames/s the line can carry: requests and responses travel on separate wires, so
        the longer of the two (10 bits a byte) sets the rate when requests are pipelined."""
        return baud / (BITS_PER_BYTE * max(self.request_bytes, self.response_bytes))


@dataclass(frozen=True)
class Response:
    status: int
    payload: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


def status_text(status: int) -> str:
    try:
        return f"{Status(status).name}: {STATUS_TEXT[Status(status)]}"
    except (ValueError, KeyError):
        return f"unknown status byte 0x{status:02X} (the link is garbled: wrong baud rate?)"


class HostLink:
    """Runs frames through the board: requests pipelined ``window`` deep, answers in order.

    ``reply_timeout_s``: longest wait for an answer's next bytes; ``resync_s``: quiet time
    that ends a resync (longer than the board's inter-byte timeout, 10 ms on the boards).
    Times are the transport's (simulated seconds under cocotb).
    """

    def __init__(self, transport: Transport, fmt: FrameFormat, *, reply_timeout_s: float = 1.0,
                 resync_s: float = 0.05, window: int = WINDOW, where: str = "the board") -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.transport, self.fmt = transport, fmt
        self.reply_timeout_s, self.resync_s, self.window = reply_timeout_s, resync_s, window
        self.where = where
        self.last_seconds = 0.0

    def run(self, frames: np.ndarray) -> np.ndarray:
        """[N, input elements] -> [N, output elements]; raises BackendFailure subclasses."""
        frames = np.asarray(frames).reshape(len(frames), -1)
        out = np.empty((len(frames), self.fmt.out.frame_elems), dtype=np.int64)
        t0 = time.perf_counter()
        sent = 0
        for i in range(len(frames)):
            while sent < len(frames) and sent < i + self.window:
                self.transport.write(self.fmt.encode(frames[sent]))
                sent += 1
            resp = self.read_response()
            if not resp.ok:
                self.resync()
                raise LinkError(resp.status, f"{self.where} rejected frame {i}: "
                                             f"{status_text(resp.status)}")
            out[i] = self.fmt.out.unpack(resp.payload)
        self.last_seconds = time.perf_counter() - t0
        return out

    def exchange(self, request: bytes) -> Response:
        """Send raw request bytes and read one answer; after an error status, resync so the
        next request is understood. For diagnostics and tests (malformed requests)."""
        self.transport.write(request)
        resp = self.read_response()
        if not resp.ok:
            self.resync()
        return resp

    def read_response(self) -> Response:
        head = self._read_exactly(1, "an answer")
        status = head[0]
        if status != Status.OK:
            return Response(status)
        return Response(status, self._read_exactly(self.fmt.out.frame_bytes, "the output frame"))

    def resync(self) -> None:
        """Let the board drop what is left of a bad request: wait until everything is sent,
        then read until the line has been quiet for ``resync_s``."""
        self.transport.flush()
        while self.transport.read(4096, self.resync_s):
            pass

    def _read_exactly(self, n: int, what: str) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.transport.read(n - len(data), self.reply_timeout_s)
            if not chunk:
                raise BackendFailure(
                    f"no answer from {self.where} within {self.reply_timeout_s:g} s "
                    f"({len(data)} of {n} bytes of {what}): is the host-link bitstream loaded "
                    "(netfabric program) and the baud rate right?")
            data += chunk
        return data
