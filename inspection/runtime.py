"""Process-wide tuning the service applies once, before it starts any thread."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

# glibc gives each busy thread its own heap ("arena", up to 8 per core) and rarely hands their
# freed pages back. The server's threads (HTTP workers, decoders, ONNX Runtime) pass photo-sized
# buffers around, so memory spread over many arenas and crept up. Measured with the 5-minute
# soak (`benchmarks.soak --minutes 5`, 2 cores): default arenas RSS 383-479 MB, growth +8.5 %,
# 1046 gradings; 2 arenas RSS 337-395 MB, growth +7.7 %, 1097 gradings.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Caps glibc's malloc arenas for threads created from now on; True if it took effect.

    An operator's own `MALLOC_ARENA_MAX` wins (glibc has read it at start-up); other C
    libraries (musl, macOS) have no arenas to cap and are left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        done = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
    if done:
        log.debug("malloc arenas capped at %d", arenas)
    return done
