"""A lock file just made still has its maker's private name for a moment; a hard link planted at it never goes away.

Found by CI: a thread of test_app_api opened locks/index.lock between the
link(2) that gave a new lock file its name and the unlink of the maker's
private name, and was refused as if a link had been planted.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from store.fs.bounded import Refused
from store.local import locks
from store.local.locks import hold


def test_a_lock_file_being_made_is_waited_for(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    private = tmp_path / ".index.lock.1-0123456789abcdef.tmp"
    private.write_bytes(b"")
    os.link(private, lock)  # the maker's state between link(2) and unlink(2)
    threading.Timer(0.05, private.unlink).start()
    with hold(lock):
        assert lock.read_bytes().startswith(b'{"pid": ')


def test_a_hard_link_planted_at_a_lock_name_is_refused_and_its_file_left_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(locks, "_MADE_WITHIN", 0.05)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock = tmp_path / "gc.lock"
    os.link(victim, lock)
    with pytest.raises(Refused, match="has 2 names"):
        with hold(lock):
            pass
    assert victim.read_bytes() == b"precious"
