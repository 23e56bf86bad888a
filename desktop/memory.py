"""Keep the allocator from hoarding: big buffers go back to the OS as soon as they are freed.

The pipeline allocates and frees multi-MiB segment buffers from several threads. glibc raises
its mmap threshold after every large free (up to 32 MiB), after which such buffers come from
per-thread heaps that fragment and rarely shrink. Fixing the threshold (which also disables the
dynamic adjustment) and capping the arenas keeps a long-running daemon's memory close to what
it uses. (An earlier note here blamed this for a 400 MiB peak in the 2 GiB test; that figure was
ru_maxrss inheriting pytest's own peak, see tests/core/large_file_child.py.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 * 1024
ARENA_MAX = 4


def bound_allocator() -> bool:
    """Apply the settings via mallopt; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_ARENA_MAX, ARENA_MAX))
    if not ok:
        logger.debug("mallopt refused the memory settings")
    return ok
