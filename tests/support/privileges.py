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

__all__ = ["bound_by_permissions"]

_CAPS = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def bound_by_permissions() -> tuple[str, ...]:
    """The prefix (for run_cli's ``prefix``) that makes a command obey mode bits."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None or subprocess.run([setpriv, _CAPS, "true"]).returncode != 0:
        unavailable("running as root without a working setpriv (util-linux): root ignores mode bits")
    return (setpriv, _CAPS)
