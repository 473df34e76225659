"""What the benchmarks in scripts/bench share: running processes, timing them, tables and test data.

The scripts (store, fetch, lockfile) put this folder on sys.path and import
from here. This module imports only the standard library at load time, so a
script can import it before it re-executes itself under the venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000
ROUND = 5  # runs of each command per hyperfine call in wall_times


class BenchError(Exception):
    """A step of a benchmark failed; the scripts print it and exit."""


def in_venv() -> None:
    """Run the calling script under the repository's venv, where odai-store is installed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        sys.exit("bench: error: no .venv in the repository\nhint: run scripts/test or scripts/demo first")
    os.execv(python, [str(python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def say(text: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"-- {text}", file=sys.stderr, flush=True)


# Commands run without PYTHONDONTWRITEBYTECODE (set on some machines), so
# that bytecode is kept once compiled, as an installed package has it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


class Installed(NamedTuple):
    odai: str  # the odai-store command
    python: str  # its Python: the one to time `python -c "import click"` with


def install(work: Path) -> Installed:
    """A regular install of this tree (as it is now, edits included) in a venv of its own under ``work``.

    That is what users run. The development install in .venv is editable,
    and setuptools' import hook for it runs in every process of that Python,
    at a start-up cost an installed odai-store does not pay. pip writes the
    bytecode as it installs.
    """
    venv = work / "installed"
    say(f"installing odai-store into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)], check=True, env=ENV)
    return Installed(str(venv / "bin" / "odai-store"), str(python))


@contextlib.contextmanager
def workspace(parent: Path | None, prefix: str, keep: bool) -> Iterator[Path]:
    """A new directory for a run's data, under ``parent`` (made if missing) or else $TMPDIR.

    It is removed afterwards unless ``keep``. A BenchError inside ends the
    script with its message.
    """
    if parent:
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    except BenchError as err:
        sys.exit(f"bench: error: {err}")
    finally:
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def describe(work: Path) -> tuple[str, str]:
    """(the type of the filesystem ``work`` is on, the commit measured), also said on stderr.

    The commit is HEAD's short hash ("?" where git cannot tell), marked when
    store/ has uncommitted changes, since those are what runs.
    """
    fstype = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "store"], capture_output=True, text=True).stdout.strip():
        commit += "+uncommitted changes in store/"
    say(f"data in {work} ({fstype}); {os.cpu_count()} cores; Python {sys.version.split()[0]}; commit {commit}")
    return fstype, commit


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of a command that must succeed; ``env`` defaults to ENV."""
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} exited {done.returncode}\n{done.stderr.strip()}")
    return elapsed, done.stdout


def wall_times(
    commands: dict[str, list[str]], runs: int, work: Path, env: dict[str, str] | None = None, prepare: dict[str, list[str]] | None = None
) -> dict[str, float]:
    """Median wall seconds of each command over ``runs`` runs of it, the commands taking turns.

    hyperfine runs all of one command, then all of the next; on a shared
    machine the load changes in between. So it is called in rounds of ROUND
    runs of each, and the median is over the runs of every round. Without
    hyperfine, a loop takes turns one run at a time. ``prepare`` maps a
    command's name to a command run, untimed, before each of its runs (and
    its warm-ups).
    """
    prepare = prepare or {}
    # Earlier parts of a run leave gigabytes of dirty pages; their writeback
    # is not the cost of the commands timed here.
    os.sync()
    times: dict[str, list[float]] = {name: [] for name in commands}
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        export = work / "hyperfine.json"
        for first in range(0, runs, ROUND):
            cmd = [hyperfine, "-N", "--warmup", "2", "--runs", str(min(ROUND, runs - first)), "--export-json", str(export), "--style", "none"]
            if prepare:  # hyperfine takes one --prepare per command, or one for all
                for name in commands:
                    cmd += ["--prepare", shlex.join(prepare.get(name, ["true"]))]
            for name, argv in commands.items():
                cmd += ["--command-name", name, shlex.join(argv)]
            run(cmd, env)
            for result in json.loads(export.read_text())["results"]:
                times[result["command"]] += result["times"]
        return {name: statistics.median(t) for name, t in times.items()}
    say("hyperfine not found: timing with a loop")
    for i in range(runs + 5):
        for name, argv in commands.items():
            if name in prepare:
                run(prepare[name], env)
            seconds, _ = run(argv, env)
            if i >= 5:  # warm-up rounds
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def instructions(commands: dict[str, list[str]], env: dict[str, str] | None = None) -> dict[str, int] | None:
    """Instructions each command executes, counted by valgrind's callgrind; None without valgrind.

    Unlike wall time this does not move with the load of a shared machine,
    so it cross-checks the start-up ratios (it leaves out the kernel's work,
    page faults and process creation, which wall time includes).
    """
    valgrind = shutil.which("valgrind")
    if not valgrind:
        say("valgrind not found: no instruction counts")
        return None
    counts = {}
    for name, argv in commands.items():
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or ENV,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or not found:
            raise BenchError(f"valgrind {shlex.join(argv)} exited {done.returncode}\n{done.stderr.strip()[-2000:]}")
        counts[name] = int(found.group(1))
    return counts


def add_instructions(table: Table, counts: dict[str, int] | None, command: str, reference: str = "import-click") -> None:
    """A context row: ``command``'s instructions against ``reference``'s (see ``instructions``)."""
    if counts is None:
        return
    table.add(
        f"  {command}, instructions (callgrind)",
        f"{counts[command] / 1e6:.0f} M",
        f"{reference.replace('-', ' ')} {counts[reference] / 1e6:.0f} M",
        counts[command] / counts[reference],
        "context",
        None,
    )


def random_file(path: Path, size: int, seed: bytes) -> None:
    """``size`` bytes that ``seed`` determines: distinct per seed, incompressible."""
    # BLAKE3's extendable output, at several times the speed of os.urandom.
    import blake3

    stream = blake3.blake3(seed)
    with open(path, "wb") as f:
        for offset in range(0, size, 4 * MiB):
            f.write(stream.digest(length=min(4 * MiB, size - offset), seek=offset))


def warm(path: Path) -> None:
    """Read a file once, so that it is in the page cache."""
    buf = bytearray(16 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def gbps(size: int, seconds: float) -> float:
    return size / seconds / 1e9


class Table:
    """The Markdown table a benchmark prints: measure, value, reference, ratio, target, result."""

    HEAD = ("measure", "value", "reference", "ratio", "target", "result")

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, measure: str, value: str, reference: str, ratio: float | str, target: str, ok: bool | None) -> None:
        """A row. ``ratio`` a number (printed as 1.23x), or text: preformatted, or "" for none.
        ``ok`` None for a row that is there for context, with no target of its own ("info")."""
        ratio_text = ratio if isinstance(ratio, str) else f"{ratio:.2f}x"
        self.row(measure, value, reference, ratio_text, target, "info" if ok is None else "PASS" if ok else "FAIL")

    def row(self, *cells: str) -> None:
        """A row of the six cells as given."""
        assert len(cells) == len(self.HEAD)
        self.rows.append(cells)

    def print(self) -> None:
        widths = [max(len(r[i]) for r in [self.HEAD, *self.rows]) for i in range(len(self.HEAD))]
        line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
        print(line(self.HEAD))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in self.rows:
            print(line(row))
