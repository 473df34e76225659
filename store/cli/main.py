"""Entry point: global options, and the one place errors become exit codes and two lines of text (with --json, a document too)."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any, NoReturn

from ..errors import Interrupted, StoreError, UsageError
from . import quick
from .actions import Context
from .declarations import BY_NAME
from .output import PEOPLE, DocumentOut, OutputFailed, ReaderGone, WithReport, error_document, escaped, flush_stdout

__all__ = ["main"]


def _report(err: StoreError, given: set[str], report: dict[str, Any] | None = None) -> int:
    """The error's two lines on stderr, and with --json (before or after the command) its document on stdout.

    ``given``: the global flags of the command line (quick.flags); ``report``: what verify reported before failing.
    """
    if "verbose" in given and err.__cause__ is not None:
        import traceback

        traceback.print_exception(err.__cause__, file=PEOPLE)
    # Escaped: a file name with a newline (or a terminal escape) in a message must not break the two-line form.
    PEOPLE.write(f"odai-store: error: {escaped(err.message)}\nhint: {escaped(err.hint)}\n")
    if "as_json" in given and not isinstance(err, OutputFailed):  # a document would go where the output failed
        try:
            error_document(err, report)
            flush_stdout()
        except ReaderGone:
            _reader_gone()
        except OutputFailed:
            pass  # the two lines are out, and the exit code is the error's: the lost document adds nothing a script can act on
    return err.exit_code


def _reader_gone() -> None:
    """The reader of stdout went away (| head): what is still buffered goes to /dev/null, so the last flush cannot fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run_click(args: list[str]) -> int:
    import click

    from .commands import cli

    try:
        # Not cli.main(): it prints a blank line before our two on Ctrl-C, and
        # turns a reader that went away (--version | true) into exit 1. This
        # way every error reaches the handlers of main().
        # A copy: click takes the arguments it parses out of the list, which the error's form reads again (quick.flags).
        with cli.make_context("odai-store", list(args)) as ctx:
            cli.invoke(ctx)
        return 0
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx else "odai-store"
        raise UsageError(err.format_message(), f"see '{command} --help'") from None
    except click.exceptions.Exit as err:  # --help, --version
        return err.exit_code


def _run(args: list[str]) -> int:
    """Run the command: by the quick path when it reads the arguments (quick.py), else by click."""
    call = quick.parse(args)
    if call is None:
        return _run_click(args)
    command, options, params = call
    BY_NAME[command].body(Context(options), SimpleNamespace(**params))
    return 0


def _failed(err: BaseException, given: set[str]) -> int:
    """The exit code of a command that raised ``err``, reported as spec/cli.md says; ``given``: the global flags (quick.flags)."""
    if isinstance(err, KeyboardInterrupt):
        return _report(Interrupted("interrupted; data already downloaded is kept", "run the same command again to resume"), given - {"verbose"})
    if isinstance(err, StoreError):
        return _report(err, given)
    if isinstance(err, WithReport):
        return _report(err.error, given, err.document)
    if isinstance(err, (BrokenPipeError, ReaderGone)):
        # The reader of stdout went away (| head): not an error of ours.
        _reader_gone()
        if sys.stderr is not None:
            sys.stderr.close()
        return 0
    # A bug: say so in the same two-line form.
    if "verbose" in given:
        import traceback

        traceback.print_exception(err, file=PEOPLE)
    return _report(StoreError(f"internal error: {type(err).__name__}: {err}"), given - {"verbose"})


def main(argv: list[str] | None = None) -> NoReturn:
    """Run one command, print its output or its error, and exit with its code.

    As the program (the odai-store script, ``python -m store``: no ``argv``)
    it leaves by os._exit; given ``argv``, as a function of its caller, it
    raises SystemExit as sys.exit does, and the caller's process lives on.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _run(args)
        # Output to a pipe is buffered: flush here, so a reader that went away
        # or a full disk is noticed by the handlers below, not at interpreter exit (exit 120).
        flush_stdout()
    except DocumentOut as out:
        # stdout holds the command's one document already: the error is its two lines on stderr only.
        code = _failed(out.error, quick.flags(args) - {"as_json"})
    except (KeyboardInterrupt, Exception) as err:
        code = _failed(err, quick.flags(args))
    if argv is None:
        _exit(code)
    sys.exit(code)


def _exit(code: int) -> NoReturn:
    """End the process without the interpreter's teardown (spec/cli.md, "Start-up").

    Freeing every module costs a tenth of a quick command, and nothing on disk
    waits for it: the store is safe against kill -9 at any instant, and every
    file a command writes is closed before it returns. Only the output is.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with it closed
                stream.flush()
        except (OSError, ValueError):  # the reader went away, the output failed (said already); stderr closed above
            pass
    os._exit(code)
