"""The `fpga` backend: an open board (ULX3S, iCEBreaker) running the host-link bitstream.

Same contract as the CPU engine: ``run(x)`` takes raw integer inputs and returns the graph's
integer outputs (after its host-side steps). Frames travel over the board's USB-serial port
with the protocol of :mod:`netfabric.host.link_protocol`; ``transport`` replaces the serial
port (the full-system simulation passes its simulated UART). The frame format comes from the
stitched project of the graph, exactly what the bitstream was built from.

    netfabric program --board ulx3s-85f            # load the bitstream
    FpgaBackend("hw/hw_graph.onnx", port="/dev/ttyUSB0").run(images)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from netfabric.errors import BackendFailure, BackendUnavailable

from .cpu_engine import CpuEngine
from .hwgraph import apply_host_steps
from .link_protocol import WINDOW, FrameFormat, HostLink, Transport

DEFAULT_BAUD = 3_000_000  # both open boards' host link (hw/flow/boards.py link_baud)


class SerialTransport:
    """:class:`~netfabric.host.link_protocol.Transport` over a pyserial port (8N1, no flow
    control)."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD) -> None:
        try:
            import serial
        except ImportError:
            raise BackendUnavailable(
                "the fpga backend needs pyserial: pip install 'netfabric[link]' "
                "(or pyserial==3.5)") from None
        self._serial_error: type[Exception] = serial.SerialException
        self.port = port
        try:
            self._ser = serial.Serial(port, baud, timeout=0.1, write_timeout=5.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"no board on {port}: {exc} (is the board plugged in, and is PORT its "
                "USB-serial device, e.g. /dev/ttyUSB0 or COM3?)") from None
        self._ser.reset_input_buffer()

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except (self._serial_error, OSError) as exc:
            raise BackendFailure(f"lost the board on {self.port}: {exc}") from None

    def read(self, n: int, timeout: float) -> bytes:
        try:
            self._ser.timeout = timeout
            return bytes(self._ser.read(n))
        except (self._serial_error, OSError) as exc:
            raise BackendFailure(f"lost the board on {self.port}: {exc}") from None

    def flush(self) -> None:
        try:
            self._ser.flush()
        except (self._serial_error, OSError) as exc:
            raise BackendFailure(f"lost the board on {self.port}: {exc}") from None

    def close(self) -> None:
        self._ser.close()


def frame_format(graph_path: str | Path) -> FrameFormat:
    """The accelerator's stream packing for ``graph_path``, from the stitcher's manifest (the
    stitcher is the one place that decides it; stitching takes well under a second)."""
    from netfabric.hw.stitch import stitch

    with tempfile.TemporaryDirectory(prefix="nf-fpga-") as tmp:
        project = stitch(graph_path, Path(tmp) / "rtl")
        return FrameFormat.from_manifest(project.manifest)


class FpgaBackend:
    name = "fpga"

    def __init__(self, graph_path: str | Path, port: str | None = None,
                 baud: int = DEFAULT_BAUD, transport: Transport | None = None, *,
                 reply_timeout_s: float = 1.0, resync_s: float = 0.05, window: int = WINDOW) -> None:
        self.baud = baud
        self._owned: SerialTransport | None = None
        if transport is None:  # the port first: without a board, fail before any work
            if not port:
                raise BackendUnavailable(
                    "the fpga backend needs the board's serial port: --port /dev/ttyUSB0 "
                    "(Linux), /dev/tty.usbserial-* (macOS) or COMn (Windows)")
            transport = self._owned = SerialTransport(port, baud)
        try:
            # input validation and host-side layout steps are shared with the CPU engine
            self._checker = CpuEngine(graph_path)
            self.graph = self._checker.graph
            self.format = frame_format(graph_path)
        except BaseException:
            self.close()
            raise
        where = f"the board on {port}" if port else "the board"
        self.link = HostLink(transport, self.format, reply_timeout_s=reply_timeout_s,
                             resync_s=resync_s, window=window, where=where)

    def run(self, x: np.ndarray) -> np.ndarray:
        xs = self._checker.check_input(x)
        out = self.link.run(xs.reshape(xs.shape[0], -1).astype(np.int64))
        shape = [len(xs), *self.graph.output_shape[1:]]
        return apply_host_steps(out.reshape(shape), self.graph.host_steps("host_post"))

    def link_limit(self) -> float:
        """Frames/s the UART can carry at ``baud`` (the link, not the accelerator, is the limit
        on these boards)."""
        return self.format.link_limit(self.baud)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
