"""The garbage campaign's bookkeeping: how many examples to try, a command run in this process, and the tally of bad inputs tried.

The default run tries a few examples of each format, enough to catch a
regression in seconds; ``ODAI_STORE_HYPOTHESIS_PROFILE=long`` multiplies
them for a campaign (``scripts/test`` never sets it), and the session ends
by printing how many bad inputs of each format were tried and how each
ended (tests/conftest.py), the figures of the README's Reliability section.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import warnings
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

from tests.support.cli import CliResult

__all__ = ["LONG", "budget", "tally", "tallied", "report", "run_in_process"]

LONG = os.environ.get("ODAI_STORE_HYPOTHESIS_PROFILE") == "long"
_SCALE = 40

# (format, outcome) -> examples: outcome is "exit N" of the command that read the bad input.
tallied: Counter[tuple[str, str]] = Counter()


def budget(examples: int) -> settings:
    """Settings for a garbage test that tries ``examples`` in the default run, and 40 times as many in the long profile."""
    return settings(
        max_examples=examples * _SCALE if LONG else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def tally(form: str, code: int) -> None:
    """Count one bad input of format ``form`` and the exit code it ended in."""
    tallied[(form, f"exit {code}")] += 1


def report() -> list[str]:
    """The tally as lines: per format, the examples tried and the exit codes they ended in."""
    forms = sorted({form for form, _ in tallied})
    lines = []
    for form in forms:
        outcomes = sorted((outcome, n) for (f, outcome), n in tallied.items() if f == form)
        total = sum(n for _, n in outcomes)
        lines.append(f"{form:<24} {total:>7}  " + ", ".join(f"{outcome}: {n}" for outcome, n in outcomes))
    if forms:
        lines.append(f"{'total':<24} {sum(tallied.values()):>7}")
    return lines


def run_in_process(store: Path, *args: str | os.PathLike[str]) -> CliResult:
    """``odai-store --store STORE ARGS...`` run by the entry point in this process: its exit code, stdout and stderr.

    The same parsers, bodies and error form as the program, without the
    0.1-0.3 s of starting Python, so hypothesis can try hundreds of inputs;
    tests/support/cli.py's run_cli runs the real program. A command that
    writes installs a SIGTERM handler (cli/actions.py): put back afterwards.
    A warning the program would print (Python's default filters: all but the
    deprecations and resource warnings) is raised instead, an internal error:
    printed, it would be a line on stderr before the two error lines (urllib3's
    FutureWarning on a URL without a scheme was one), which pytest hides.
    """
    from store.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("error")
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", quiet)
            main(["--store", str(store), *(os.fspath(a) for a in args)])
    except SystemExit as done:
        code = done.code
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert isinstance(code, int), code
    return CliResult(code, out.getvalue(), err.getvalue())
