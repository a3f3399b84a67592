"""Process tuning: the malloc arena cap really limits glibc's arenas, and an operator's own
MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from inspection.runtime import limit_malloc_arenas

# Starts 8 threads that each allocate, then asks glibc how many arenas it made (malloc_stats
# writes "Arena N:" per arena to stderr).
PROBE = """
import ctypes, threading, sys
from inspection.runtime import limit_malloc_arenas
capped = limit_malloc_arenas() if sys.argv[1] == "cap" else False
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    keep = [bytearray(64_000) for _ in range(50)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(capped, flush=True)
ctypes.CDLL("libc.so.6").malloc_stats()
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="malloc arenas are a glibc feature",
)


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
        timeout=60,
    )
    return done.stdout.strip(), len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE))


@glibc
def test_the_cap_limits_arenas_for_threads_started_after_it() -> None:
    capped, arenas = _arenas("cap")
    assert capped == "True"
    assert 1 <= arenas <= 2
    uncapped, more = _arenas("none")
    assert uncapped == "False" and more > 2  # what the cap saves: one arena per busy thread


@glibc
def test_an_operators_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
