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


def _tmpfs(need: int) -> str | None:
    try:
        with open("/proc/self/mounts") as mounts:
            is_tmpfs = any(line.split()[1:3] == [_SHM, "tmpfs"] for line in mounts)
        fs = os.statvfs(_SHM) if is_tmpfs else None
    except OSError:
        return None
    # Containers often give /dev/shm only 64 MiB: use it only with room to spare.
    roomy = fs is not None and fs.f_bavail * fs.f_frsize >= 2 * need
    return _SHM if roomy and os.access(_SHM, os.W_OK | os.X_OK) else None


def scratch_dir(need: int = 16 << 20) -> tempfile.TemporaryDirectory[str]:
    """A fresh temporary directory for about ``need`` bytes, on tmpfs when it has room; use as a context manager."""
    return tempfile.TemporaryDirectory(prefix="odai-test-", dir=_tmpfs(need))
