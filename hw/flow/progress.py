"""Step progress for the CLI: one line per step, with a spinner while it runs under rich."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO


@dataclass
class StepNote:
    """Filled in by the step body; printed at the end of the step's line."""

    detail: str = ""


class Progress:
    """Silent progress: the API default."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.index = 0

    @contextmanager
    def step(self, label: str) -> Iterator[StepNote]:
        self.index += 1
        note = StepNote()
        start = time.monotonic()
        try:
            yield note
        except BaseException:
            self._finish(label, time.monotonic() - start, "failed", ok=False)
            raise
        self._finish(label, time.monotonic() - start, note.detail, ok=True)

    def _finish(self, label: str, seconds: float, detail: str, ok: bool) -> None:
        pass

    def _prefix(self, label: str) -> str:
        return f"[{self.index}/{self.total}] {label}"


class ConsoleProgress(Progress):
    """Prints ``[i/n] step ... 12.3 s  detail`` per step; uses rich's spinner when available."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        super().__init__(total)
        self.stream = stream or sys.stderr
        self._console = _rich_console(self.stream)

    @contextmanager
    def step(self, label: str) -> Iterator[StepNote]:
        if self._console is not None:
            from rich.markup import escape

            with self._console.status(escape(f"{self._prefix_next(label)} ...")):
                with super().step(label) as note:
                    yield note
        else:
            print(f"{self._prefix_next(label)} ...", end="", file=self.stream, flush=True)
            with super().step(label) as note:
                yield note

    def _prefix_next(self, label: str) -> str:
        return f"[{self.index + 1}/{self.total}] {label}"

    def _finish(self, label: str, seconds: float, detail: str, ok: bool) -> None:
        tail = f"{seconds:6.1f} s  {detail}".rstrip()
        if self._console is not None:
            from rich.markup import escape

            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            text = escape(f"{self._prefix(label):<36} {tail}")
            self._console.print(f"{mark} {text}", highlight=False, soft_wrap=True)
        else:
            print(f" {tail}", file=self.stream, flush=True)


def _rich_console(stream: TextIO):  # -> rich.console.Console | None
    # rich is optional (the compile extra has it); only worth it on a terminal.
    if not stream.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream)
