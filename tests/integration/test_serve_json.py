"""`odai-store --json serve`: stdout holds exactly one JSON document, its URL, however the server ends (spec/cli.md, serve and Errors).

The document is out once the server listens, so an error after that is its two lines on stderr and its exit code, with
no error document after the first. The server is made to fail by wrapping the real one in the real process: its loop
raises, as a failing socket would make it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from store import Store
from tests.support.cli import CliResult, assert_error, cli_command
from tests.support.processes import stop_process

# The entry point of `python -m store`, with the server's loop failing at once: after the URL is out.
_FAILING = """
import errno, sys
from store import errors, serve

FAILURE = sys.argv.pop()

def serve_forever(self, poll_interval=0.5):
    if FAILURE == "storage":
        raise errors.StorageError("serving failed: the disk went away", "check the store's disk")
    raise OSError(errno.EIO, "Input/output error")

serve._Server.serve_forever = serve_forever
from store.cli.main import main
main()
"""


def _one_document(out: str) -> dict:
    doc = json.loads(out)  # one document, and nothing else
    assert out == json.dumps(doc, indent=2) + "\n", out
    return doc


@pytest.mark.parametrize(
    ("failure", "code", "error"),
    [
        ("bug", 1, "internal error: OSError: [Errno 5] Input/output error"),
        ("storage", 6, "serving failed: the disk went away"),
    ],
)
def test_an_error_after_the_url_is_out_leaves_stdout_one_document(failure: str, code: int, error: str, store_dir: Path) -> None:
    Store(store_dir)
    for json_flag in (["--json"], []):
        command, env = cli_command(store_dir, [*json_flag, "serve", "--port", "0"], None, ())
        command[1:3] = ["-c", _FAILING]
        proc = subprocess.run([*command, failure], capture_output=True, env=env, timeout=60)
        result = CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        assert assert_error(result, code, stdout_empty=False) == error
        out = result.out
        if json_flag:
            assert list(_one_document(out)) == ["url"] and out.count('"url"') == 1
        else:
            assert out.startswith("http://127.0.0.1:") and out.count("\n") == 1


def test_a_stopped_server_leaves_stdout_one_document(store_dir: Path) -> None:
    Store(store_dir)
    command, env = cli_command(store_dir, ["--json", "serve", "--port", "0"], None, ())
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().decode() for _ in range(3)]  # the document, once the server listens
    finally:
        stop_process(process)  # SIGTERM: how a server is meant to stop
    assert process.stdout is not None and process.stderr is not None
    rest, err = process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, err
    doc = _one_document("".join(lines) + rest.decode())
    assert list(doc) == ["url"] and doc["url"].startswith("http://127.0.0.1:")
    assert err.decode() == "stopped\n"
