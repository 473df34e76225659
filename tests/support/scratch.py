"""Scratch directories for tests that build many stores (hypothesis examples).

Every publish in the store fsyncs, which costs milliseconds on a real disk; the
properties tested with many examples concern content, not durability. So
scratch directories live on tmpfs (/dev/shm) when the machine has a writable
one: a real filesystem, with fsync nearly free.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["scratch_dir"]

_SHM = "/dev/shm"


def _tmpfs() -> str | None:
    try:
        with open("/proc/self/mounts") as mounts:
            is_tmpfs = any(line.split()[1:3] == [_SHM, "tmpfs"] for line in mounts)
    except OSError:
        return None
    return _SHM if is_tmpfs and os.access(_SHM, os.W_OK | os.X_OK) else None


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A fresh temporary directory, on tmpfs when available; use as a context manager."""
    return tempfile.TemporaryDirectory(prefix="odai-test-", dir=_tmpfs())
