"""doctor's time bound (issue 16): under 2 s on a healthy store of 10,000 names and 50 GB, since it hashes no blob.

The store is built as odai-store lays it out, with sparse blobs
(tests/support/big_store.py). The whole store takes about 10 s to build, so
it runs with --big-store (and in scripts/bench/doctor); the default run
checks a tenth of it against a tenth of the bound. That scaling holds because
doctor's work is per name and per blob (index.json's entry, one manifest read
and parsed, one lstat per blob, one readlink per view link) and nothing else
grows with the store. The tenth is measured in this process, without the
interpreter's start-up (which the full run through the command line counts),
and in CPU time: doctor runs in one thread and reads only metadata the page
cache holds, so on an idle machine its wall time is its CPU time, and CPU
time is what a machine shared with other test runs does not inflate.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store.local.doctor import doctor
from tests.support.big_store import build_big_store

BOUND = 2.0  # seconds, for 10,000 names and 50 GB
NAMES, BYTES = 10_000, 50 * 10**9


def _apparent_size(blobs: Path) -> int:
    return sum(entry.stat(follow_symlinks=False).st_size for entry in os.scandir(blobs))


def test_a_tenth_of_the_store_takes_under_a_tenth_of_the_bound(tmp_path: Path) -> None:
    layout = build_big_store(tmp_path / "store", NAMES // 10, BYTES // 10)
    assert _apparent_size(layout.blobs) >= BYTES // 10
    times = []
    for _ in range(3):  # the fastest of three: the machine is shared
        start = time.process_time()
        report = doctor(layout)
        times.append(time.process_time() - start)
        assert report.healthy, report.remaining
    assert min(times) < BOUND / 10, times


def test_the_whole_store_takes_under_the_bound(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--big-store"):
        pytest.skip("builds a store of 10,000 names for about 10 s: run with --big-store")
    layout = build_big_store(tmp_path / "store", NAMES, BYTES)
    assert _apparent_size(layout.blobs) >= BYTES
    command = [sys.executable, "-m", "store", "--store", str(layout.root), "doctor"]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - start)
        assert (done.returncode, done.stdout) == (0, "healthy\n"), done.stderr
    assert min(times) < BOUND, times
