"""What to do when a test needs a tool or privilege this machine lacks: skip, or fail under CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(reason: str) -> NoReturn:
    """Skip the test because ``reason`` (what is missing, and how to get it); under ``CI=true``, fail instead.

    On a developer's machine a missing nginx, skopeo or root is a fact of that
    machine, and a skip says so without hiding anything. CI is set up (as root,
    by scripts/test) to have everything, so there a skip would only mean a test
    silently stopped running: every test must run in CI, and one that cannot is
    a broken CI, reported as a failure.
    """
    __tracebackhide__ = True  # the skip or failure is reported at the caller, which knows what it needs
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run every test: {reason}")
    pytest.skip(reason)
