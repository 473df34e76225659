"""Running the real command line in a subprocess, and the shape every error must have."""

from __future__ import annotations

import json as _json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from store.cli.output import escaped

__all__ = ["CliResult", "cli_command", "run_cli", "run_cli_many", "assert_error", "assert_nothing_named", "RETRY_NOTICE"]

# What a command says before each wait to retry (spec/fetching.md, Retrying): for assert_error's ``said``.
RETRY_NOTICE = r".+: retrying in \d+\.\d s \(attempt \d+ of \d+\)"

# Every test names its store explicitly; a developer's own store must never be touched.
# The user's own store, remotes and Hugging Face settings (a token, a mirror) never reach a test's command.
_STRIPPED_ENV = ("ODAI_STORE_HOME", "XDG_CACHE_HOME", "ODAI_STORE_REMOTE", "HF_ENDPOINT", "HF_TOKEN", "HF_HOME", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


def cli_command(store: Path | None, args, env: dict[str, str] | None, prefix: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    full_env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    full_env.update(env or {})
    command = [*prefix, sys.executable, "-m", "store"]
    if store is not None:
        command += ["--store", str(store)]
    return command + [os.fspath(a) for a in args], full_env


def _result(code: int, out: bytes, err: bytes) -> CliResult:
    return CliResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def run_cli(
    store: Path | None,
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    timeout: float = 60,
    cwd: Path | None = None,
) -> CliResult:
    """Run ``python -m store [--store STORE] ARGS...``; ``prefix`` wraps the command (e.g. setpriv).

    ``cwd`` must not hold a directory named ``store``: ``python -m`` would import it instead of ours.
    """
    command, full_env = cli_command(store, args, env, prefix)
    proc = subprocess.run(command, capture_output=True, env=full_env, timeout=timeout, cwd=cwd)
    return _result(proc.returncode, proc.stdout, proc.stderr)


def run_cli_many(
    store: Path | None,
    argvs: list[tuple[str, ...]],
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwds: list[Path] | None = None,
) -> list[CliResult]:
    """Run several independent commands at once (start-up dominates short commands); results in order.

    ``cwds``, if given, holds one working directory per command.
    """
    procs = []
    for i, args in enumerate(argvs):
        command, full_env = cli_command(store, args, env, ())
        cwd = cwds[i] if cwds is not None else None
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(_result(proc.returncode, out, err))
    return results


def assert_error(result: CliResult, code: int, *, stdout_empty: bool = True, said: str | None = None, json: bool = False) -> str:
    """Check the error contract: exit ``code``, the two lines ``odai-store: error:`` and ``hint:``
    last on stderr, no traceback, and (by default) nothing on stdout. Returns the message.

    Before those two lines the command may have said what it did while it ran (spec/cli.md,
    Errors): only lines that match the regular expression ``said`` whole, and none without it.
    With ``json`` (a run with --json), stdout must instead be exactly one JSON document,
    ``{"error", "hint", "exit_code"}``, holding the two lines' words unescaped and ``code``;
    with ``stdout_empty=False`` too (verify), a report's members may come before those three.
    """
    assert result.code == code, f"exit {result.code}, expected {code}\nstdout: {result.out!r}\nstderr: {result.err!r}"
    assert "Traceback" not in result.err
    *before, error, hint = result.err.splitlines() or ["", ""]
    for line in before:
        assert said is not None and re.fullmatch(said, line), f"stderr must end with exactly the two lines, got {result.err!r}"
    lines = [error, hint]
    assert lines[0].startswith("odai-store: error: ") and len(lines[0]) > len("odai-store: error: "), lines[0]
    assert lines[1].startswith("hint: ") and len(lines[1]) > len("hint: "), lines[1]
    assert result.err.endswith("\n")
    message = lines[0][len("odai-store: error: ") :]
    if json:
        doc = _json.loads(result.out)  # one document, and nothing else
        assert result.out == _json.dumps(doc, indent=2) + "\n", f"not the one document --json prints: {result.out!r}"
        members = ["error", "hint", "exit_code"]
        assert (list(doc) if stdout_empty else list(doc)[-3:]) == members, list(doc)
        assert (escaped(doc["error"]), escaped(doc["hint"]), doc["exit_code"]) == (message, lines[1][len("hint: ") :], code), doc
    elif stdout_empty:
        assert result.out == "", f"stdout must be empty on error, got {result.out!r}"
    return message


def assert_nothing_named(store: Path) -> None:
    """``store`` names no model and has no view: what a refused fetch must leave."""
    listed = run_cli(store, "--json", "list")
    assert listed.code == 0, listed.err
    assert _json.loads(listed.out)["models"] == []
    views = store / "views" / "sha256"
    assert not views.exists() or [p.name for p in views.iterdir() if not p.name.startswith(".")] == []
