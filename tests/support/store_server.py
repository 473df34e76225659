"""`odai-store serve` as a subprocess: start it on a free port, read the URL it prints, stop it."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_process

__all__ = ["StoreServer", "start_store_server"]


@dataclass
class StoreServer:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop_process(self.process)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def start_store_server(store: Path, *args: str, timeout: float = 20) -> StoreServer:
    """Run ``python -m store --store STORE serve --port 0 ARGS``; its first stdout line is the URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("ODAI_STORE_HOME", "ODAI_STORE_REMOTE")}
    process = subprocess.Popen(
        [sys.executable, "-m", "store", "--store", str(store), "serve", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
    line = process.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("http://"):
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"odai-store serve printed {line!r}; stderr: {err.decode(errors='replace')}")
    return StoreServer(process, line)
