"""Big files from olah as it is (issue 15): it answers a Range request with 200 and the whole file, chunked, without Content-Length.

A 64 MiB LFS file is above the 32 MiB threshold of parallel segments
(spec/fetching.md#parallel-segments), so the engine asks for its first segment
with a Range and must take the whole-file answer as one stream; and a fetch
killed midway must come back whole on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import cli_command, run_cli
from tests.support.olah import Olah
from tests.support.trees import read_tree

pytestmark = pytest.mark.usefixtures("olah")

BIG = 64 << 20


def _env(olah: Olah) -> dict[str, str]:
    return {"HF_ENDPOINT": olah.endpoint}


def _gets(olah: Olah, path: str, at_least: int = 1) -> int:
    """How many GETs of ``path`` olah's access log shows (it reaches the log a moment after the answer)."""
    pattern = re.compile(rf'"GET {re.escape(path)} HTTP/1\.1" \d+')
    deadline = time.monotonic() + 5
    while True:
        count = len(pattern.findall((olah.base / "console.log").read_text(errors="replace")))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def _journaled(store: Path) -> bool:
    """Whether a download journal in the store's ingest/ lists some bytes done."""
    for journal in (store / "ingest").glob("*.journal") if (store / "ingest").is_dir() else ():
        try:
            if json.loads(journal.read_bytes()).get("done"):
                return True
        except (OSError, ValueError):
            continue  # replaced as it was read
    return False


def test_a_64_mib_lfs_file_comes_whole_in_one_request_with_8_connections(olah: Olah, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    repo = olah.model("acme/big-one", {"model.safetensors": data, "config.json": b"{}"}, lfs={"model.safetensors"})
    result = run_cli(tmp_path / "store", "fetch", "--connections", "8", "hf://acme/big-one", env=_env(olah))
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {path: f.data for path, f in repo.files("main").items()}
    # olah's 200 to the first segment's Range is the whole file: no other segment is asked for it.
    path = f"/acme/big-one/resolve/{repo.branches['main']}/model.safetensors"
    time.sleep(0.5)  # a late log line of a second request would show now
    assert _gets(olah, path) == 1


def test_a_fetch_killed_midway_comes_back_whole_on_the_next_run(olah: Olah, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    repo = olah.model("acme/big-cut", {"model.safetensors": data}, lfs={"model.safetensors"})
    store = tmp_path / "store"
    command, env = cli_command(store, ["fetch", "--connections", "8", "hf://acme/big-cut"], _env(olah), ())
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed once a journal lists bytes on disk, at no instant of its own choosing.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not _journaled(store):
            time.sleep(0.005)
        assert proc.poll() is None, "the fetch ended before its journal listed a byte"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    again = run_cli(store, "fetch", "--progress", "json", "--connections", "8", "hf://acme/big-cut", env=_env(olah))
    assert again.code == 0, again.err
    assert read_tree(Path(again.out.strip())) == {path: f.data for path, f in repo.files("main").items()}
    # olah answers the resume's Range with the whole file: the bytes kept are dropped and fetched again, not mixed in.
    last = json.loads(again.err.strip().splitlines()[-1])
    assert last["refetched"] > 0 and last["done"] == last["total"] == BIG, last
    assert (store / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).is_file()
