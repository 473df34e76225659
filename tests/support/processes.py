"""Stopping the servers tests start: TERM, then KILL if it will not go."""

from __future__ import annotations

import subprocess

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """End ``process`` (TERM, KILL after ``grace`` seconds) and reap it; a process already gone is fine."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
