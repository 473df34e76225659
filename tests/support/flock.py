"""Running the concurrency tests where flock lies: every process's fcntl.flock succeeds at once, locking nothing.

``lying(monkeypatch)`` puts lying_flock/ (a sitecustomize.py) first on the
PYTHONPATH that child processes inherit (run_cli, multiprocessing's spawn),
and makes flock lie in this process too, for tests whose threads race. The
store never knows: it is what NFS with local locking, some FUSE and
container filesystems do (spec/locking.md, When flock lies).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

__all__ = ["FLOCK", "lying", "lying_pythonpath"]

# The parameter of the flock fixture (tests/conftest.py): the two worlds every concurrency test runs in.
FLOCK = ["flock-works", "flock-lies"]

_LYING = Path(__file__).parent / "lying_flock"


def lying_pythonpath() -> str:
    """A PYTHONPATH under which every Python child finds flock lying (the inherited one after it)."""
    return os.pathsep.join(filter(None, [str(_LYING), os.environ.get("PYTHONPATH")]))


def lying(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on until the test ends, flock lies in this process and in every child it starts."""
    monkeypatch.setenv("PYTHONPATH", lying_pythonpath())
    monkeypatch.setattr(fcntl, "flock", lambda fd, operation: None)
