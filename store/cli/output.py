"""Output: data to stdout (text or one JSON document), messages for people to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import StorageError, StoreError

__all__ = ["PEOPLE", "Output", "DocumentOut", "OutputFailed", "ReaderGone", "WithReport", "error_document", "escaped", "flush_stdout", "human_bytes", "files_count", "pins_count"]


class ReaderGone(Exception):
    """The reader of stdout went away (``| head``).

    Raised instead of BrokenPipeError, which click would turn into exit 1
    before the entry point could treat it as the success it is.
    """


class OutputFailed(StorageError):
    """stdout refused the command's output: a file on a full disk, a device that fails, a closed descriptor (spec/cli.md, "Output").

    Not a reader gone: that one read what it wanted. Here the output is lost,
    and a script that took it must know, so the command fails with exit 6.
    """

    def __init__(self, why: str) -> None:
        super().__init__(
            f"writing the output to stdout failed: {why}",
            "check where stdout goes (a file on a full disk?); what the command did stays done: run it again for its output",
        )


class WithReport(Exception):
    """``error``, raised by a command whose report comes before its failure (verify), with the report's ``document``.

    With --json the entry point prints the report's members and the error's
    in one document, so stdout still holds exactly one (spec/cli.md, "Errors").
    """

    def __init__(self, error: StoreError, document: dict[str, Any]) -> None:
        super().__init__(error)
        self.error = error
        self.document = document


class DocumentOut(Exception):
    """``error``, raised by a command after its output is out (serve, which prints its URL once it listens and then serves).

    The entry point reports it as any error, but never with a document of
    its own: with --json, stdout holds the command's one document already
    (spec/cli.md, "Errors").
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def error_document(err: StoreError, report: dict[str, Any] | None = None) -> None:
    """With --json, the one document of a failed command: ``report``'s members (verify's), then ``error``, ``hint``, ``exit_code``.

    The strings are exact: JSON escapes what the two lines on stderr write escaped.
    """
    _stdout(_encoded({**(report or {}), "error": err.message, "hint": err.hint, "exit_code": err.exit_code}))


def _encoded(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def _stdout(text: str) -> None:
    _to_stdout(lambda stream: stream.write(text))


def flush_stdout() -> None:
    """Flush stdout, which is buffered when it is no terminal: its failure is the command's (OutputFailed, ReaderGone)."""
    _to_stdout(lambda stream: stream.flush())


def _to_stdout(act: Callable[[TextIO], object]) -> None:
    if sys.stdout is None:  # started with stdout closed (>&-): Python leaves None there
        raise OutputFailed("it is closed")
    try:
        act(sys.stdout)
    except BrokenPipeError:
        raise ReaderGone() from None
    except OSError as err:
        raise OutputFailed(err.strerror or str(err)) from err


class _People:
    """stderr, for people: what cannot be written there (closed, a full disk, a reader gone) is dropped.

    A message for people is no result: the command goes on, and its exit
    code and stdout still tell a script what it did.
    """

    def write(self, text: str) -> None:
        try:
            if sys.stderr is not None:
                sys.stderr.write(text)
        except (OSError, ValueError):  # ValueError: stderr was closed (a reader of it went away, main closed it)
            pass

    def flush(self) -> None:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return sys.stderr is not None and sys.stderr.isatty()
        except ValueError:
            return False


PEOPLE = _People()


def escaped(text: str) -> str:
    """``text`` with every character that is not printable escaped as Python's repr writes it (``\\n``, ``\\x1b``).

    For text meant for people: a name or path from the store or a remote,
    printed raw, could move the cursor, rewrite the terminal's title or
    forge a line of output. --json output keeps the exact strings.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def human_bytes(n: int) -> str:
    """Bytes in IEC units, as people read them: 1.5 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def files_count(n: int) -> str:
    """'1 file', '4 files': how many files a model has, as a sentence says it."""
    return f"{n} file" if n == 1 else f"{n} files"


def pins_count(n: int) -> str:
    """'1 pin', '2 pins': how many models a lockfile pins."""
    return f"{n} pin" if n == 1 else f"{n} pins"


class Output:
    def __init__(self, json: bool = False, quiet: bool = False, verbose: bool = False) -> None:
        self.json = json
        self.quiet = quiet
        self.verbose = verbose

    def data(self, text: str) -> None:
        """One line of data on stdout (text mode only)."""
        if not self.json:
            _stdout(text + "\n")

    def document(self, doc: Any) -> None:
        """The one JSON document of a --json run."""
        if self.json:
            _stdout(_encoded(doc))

    def say(self, text: str) -> None:
        """A message for people, on stderr, escaped: it may quote a path, a remote or a lock holder's host. -q silences it."""
        if not self.quiet:
            # On a terminal a progress bar may be half drawn on the last line: clear it first; the bar's next redraw follows.
            PEOPLE.write(("\r\x1b[K" if PEOPLE.isatty() else "") + escaped(text) + "\n")
