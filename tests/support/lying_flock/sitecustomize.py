"""Makes fcntl.flock a no-op that always succeeds, in every Python process started with this directory on PYTHONPATH.

It stands for a filesystem whose locks lie (NFS with local locking, some FUSE
and container filesystems: spec/locking.md, When flock lies). Test-only: the
"flock lies" runs of the concurrency tests put it on the children's
PYTHONPATH (tests/support/flock.py); nothing in store/ knows of it.
"""

import fcntl


def _lying_flock(fd: object, operation: int) -> None:
    return None


fcntl.flock = _lying_flock
