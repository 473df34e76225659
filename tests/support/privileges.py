"""Running a command bound by file permissions, also as root.

Root reads and writes whatever the mode bits say (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH) and may chmod any file (CAP_FOWNER), and CI runs as
root. So as root the command runs under setpriv with those capabilities
dropped from its bounding set: still uid 0 and the owner of its files, but a
chmod 000 file is unreadable to it, as to anyone.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.requirements import unavailable

__all__ = ["bound_by_permissions", "without_capabilities"]

_CAPS = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def bound_by_permissions() -> tuple[str, ...]:
    """The prefix (for run_cli's ``prefix``) that makes a command obey mode bits."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None or subprocess.run([setpriv, _CAPS, "true"]).returncode != 0:
        unavailable("running as root without a working setpriv (util-linux): root ignores mode bits")
    return (setpriv, _CAPS)


# Run by a member in place of ``python -m store``: load every module of
# odai-store, then drop every capability, then run the command. The shared-store
# tests give their users CAP_DAC_READ_SEARCH when the interpreter lives where
# only root may look (a pyenv under /root); that would also let them read
# another member's private files, which some tests are about.
_WITHOUT_CAPABILITIES = """
import ctypes, importlib, pkgutil, sys
import store
for found in pkgutil.walk_packages(store.__path__, "store."):
    if not found.name.endswith("__main__"):
        importlib.import_module(found.name)

class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

libc = ctypes.CDLL(None, use_errno=True)
if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:  # _LINUX_CAPABILITY_VERSION_3: no capability at all
    raise OSError(ctypes.get_errno(), "capset")
from store.cli.main import main
main(sys.argv[1:])
"""


def without_capabilities() -> tuple[str, ...]:
    """The interpreter arguments (after ``python``) that run odai-store with no capability, once it is loaded, in place of ``-m store``."""
    return ("-c", _WITHOUT_CAPABILITIES)
