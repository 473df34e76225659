"""store.cli.output: byte and file counts as people read them."""

from __future__ import annotations

import io
import sys

import pytest

from store.cli.output import Output, files_count, human_bytes


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2, "1.0 MiB"),
        (3 * 1024**3 // 2, "1.5 GiB"),
        (1024**4, "1.0 TiB"),
        (5000 * 1024**4, "5000.0 TiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(("n", "text"), [(0, "0 files"), (1, "1 file"), (2, "2 files"), (11, "11 files")])
def test_files_count(n: int, text: str) -> None:
    assert files_count(n) == text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_on_a_terminal_clears_the_progress_line_first(monkeypatch) -> None:
    terminal = _Terminal("[####....] 40%")
    terminal.seek(0, io.SEEK_END)
    monkeypatch.setattr(sys, "stderr", terminal)
    Output().say("m:v1: retrying")
    assert terminal.getvalue() == "[####....] 40%\r\x1b[Km:v1: retrying\n"
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    Output().say("m:v1: retrying")
    assert piped.getvalue() == "m:v1: retrying\n"  # a log file gets no control sequence
