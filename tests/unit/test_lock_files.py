"""A lock file just made still has its maker's private name for a moment; a hard link planted at it is never written.

Found by CI: a thread of test_app_api opened locks/index.lock between the
link(2) that gave a new lock file its name and the unlink of the maker's
private name, and was refused as if a link had been planted.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from store.fs.locks import hold


def test_a_lock_file_being_made_is_locked_and_its_holder_recorded_beside_it(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    private = tmp_path / ".index.lock.1-0123456789abcdef.tmp"
    private.write_bytes(b"")
    os.link(private, lock)  # the maker's state between link(2) and unlink(2)
    threading.Timer(0.05, private.unlink).start()
    with hold(lock):
        assert json.loads((tmp_path / "index.lock.held").read_bytes())["pid"] == os.getpid()
    assert lock.read_bytes() == b"" and not (tmp_path / "index.lock.held").exists()


def test_a_hard_link_planted_at_a_lock_name_has_its_file_left_alone(tmp_path: Path) -> None:
    """Nothing is written into a lock file (the record has its own), so the planted file only gets locked."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock = tmp_path / "gc.lock"
    os.link(victim, lock)
    with hold(lock):
        pass
    assert victim.read_bytes() == b"precious"
