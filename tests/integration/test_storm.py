"""The storm (issue 16, Tests): 8 processes mixing fetch (from real nginx), add, rm, gc, sync and verify on one store for
about 10 s, with flock working and with it lying (tests/support/flock.py). Afterwards verify is clean, every name holds what the op that set it last left, every synced pin resolves,
and nginx sent each blob's bytes once. ``scripts/torture --storm`` runs the full one (16 processes, 60 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nginx import Nginx
from tests.support.storm import OPS, StormWorld, check_storm, run_storm


@pytest.mark.slow
def test_a_storm_of_processes_loses_nothing(tmp_path: Path, nginx: Nginx, flock: str) -> None:
    world = StormWorld(tmp_path, nginx)
    storm = run_storm(world, processes=8, seconds=10)
    problems = {kind: found for kind, found in check_storm(world, storm).items() if found}
    assert problems == {}, problems
    counts = storm.counts()
    assert set(counts) == set(OPS) and min(counts.values()) >= 2, counts
