"""Keep freed memory in the process for the CPU plan's large temporaries (glibc only).

glibc serves blocks above its mmap threshold (128 KiB to 32 MiB, adaptive) with fresh mmaps and
trims the heap top back to the OS, so a batch whose temporaries are megabytes (a transformer at
batch 64) page-faults them in again on every call: measured, that was a third of its run time.
Raising the mmap and trim thresholds once keeps those pages mapped for reuse. Process-wide and
idempotent; a no-op where libc is not glibc (e.g. musl, macOS) or ctypes cannot load it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters (malloc.h)
_LIMIT = 1 << 30  # blocks up to 1 GiB come from the heap, which keeps up to 1 GiB freed
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse; True if it accepted."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the heap also grows in 64 MiB steps (fewer brk calls and first-touch faults)
    _done = all(mallopt(p, v) for p, v in ((_M_MMAP_THRESHOLD, _LIMIT),
                                           (_M_TRIM_THRESHOLD, _LIMIT), (_M_TOP_PAD, 1 << 26)))
    return _done
