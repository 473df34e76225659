"""A filesystem of a given kind, made in an image file and loop-mounted for the tests: XFS, to clone files for real.

The machine's own filesystem (ext4 here, tmpfs elsewhere) may not clone, and
the reflink paths of export and add must run somewhere that does. Making one
needs root, a loop device and mkfs of that kind (xfsprogs, which scripts/test
installs as root); without them, the tests that need it are unavailable, with
the reason. The mount is always undone and the loop device detached, also
when the tests fail; but a pytest killed by a signal runs no finalizer, and
leaves its mount under its basetemp (`umount` it, then `losetup -d` its
device, which `losetup -a` lists with the image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.requirements import unavailable

__all__ = ["loop_mounted"]

# mkfs per kind: the command, and options that make it clone.
_MKFS = {"xfs": ("mkfs.xfs", ["-q", "-f", "-m", "reflink=1"])}
_PACKAGES = {"xfs": "xfsprogs"}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


@contextlib.contextmanager
def loop_mounted(kind: str, work: Path, size: int = 512 << 20) -> Iterator[Path]:
    """A new ``kind`` filesystem of ``size`` bytes in a sparse image under ``work``, mounted at ``work/mnt``; unmounted after."""
    mkfs, options = _MKFS[kind]
    if os.geteuid() != 0:
        unavailable(f"the {kind} tests loop-mount a filesystem image, which needs root")
    if not os.path.exists("/dev/loop-control"):
        unavailable(f"the {kind} tests loop-mount a filesystem image, and this machine has no loop devices (/dev/loop-control)")
    binary = shutil.which(mkfs, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if binary is None:
        unavailable(f"{mkfs} is not installed (Debian package {_PACKAGES[kind]}; scripts/test installs it as root)")
    image, mount = work / f"{kind}.img", work / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(size)
    made = _run(binary, *options, str(image))
    if made.returncode != 0:
        unavailable(f"{mkfs} failed here: {made.stderr.strip()}")
    attached = _run("losetup", "--find", "--show", str(image))
    if attached.returncode != 0:
        unavailable(f"no loop device for the {kind} image: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        mounted = _run("mount", "-t", kind, device, str(mount))
        if mounted.returncode != 0:
            unavailable(f"cannot mount the {kind} image here: {mounted.stderr.strip()}")
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)
        image.unlink(missing_ok=True)

