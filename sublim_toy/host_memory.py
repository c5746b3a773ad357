"""Handing the host memory a run has freed back to the operating system.

On the CPU, XLA takes every buffer of a compiled epoch (its state, outputs and temporaries,
hundreds of MB at 8 seeds) from the C allocator and frees them when the epoch ends. glibc keeps
what was freed in its arenas for reuse, and after each epoch they hold more pages that are free
but still resident: the process's peak memory grew epoch after epoch, with no more live data.
`malloc_trim` returns those pages; `train.run_phase` calls it between epochs, where it costs
milliseconds against seconds of training (docs/performance.md has the peak memory before and
after it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the C allocator's free pages to the OS (glibc's malloc_trim(0)). True if that
    released any; False where nothing was released or the C library cannot do it."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
