"""The crash campaign (issue 16, Tests): add, fetch (from real nginx), gc, rm, lock, sync and export, each a child process
killed with SIGKILL at a seeded instant of its measured duration; after every kill nothing verified is lost, no blob is
corrupt, every name resolves to the same bytes, and a rerun of the killed command succeeds.

This default run kills 42 children; ``scripts/torture --kills N`` runs as many as asked and prints the figures the
README's Reliability section shows (tests/support/crash.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash import COMMANDS, PHASES, World, run_campaign
from tests.support.nginx import Nginx

KILLS = 42
SEED = 16


def _made(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.slow
def test_every_command_survives_kill_minus_9_anywhere(tmp_path: Path, nginx: Nginx) -> None:
    world = World(_made(tmp_path / "world"), nginx)
    tally = run_campaign(world, KILLS, SEED)
    print(tally.markdown())
    problems = {kind: found for kind, found in tally.problems.items() if found}
    assert problems == {}, f"seed {SEED}:\n{tally.markdown()}\n{problems}"
    assert tally.total == KILLS
    assert set(tally.kills) == set(COMMANDS), "every command was killed at least once"
    # Kills land in the middle of writing too, not only in start-up: the instants are drawn over the whole run.
    assert sum(counts[phase] for counts in tally.kills.values() for phase in PHASES[1:4]) > 0, tally.markdown()
