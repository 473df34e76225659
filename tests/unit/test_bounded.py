"""store.local.bounded: a small file is read only if it is a regular file, and never past its bound."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from store.fs.bounded import Refused, open_regular, read_bounded


def test_a_file_up_to_the_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100, "test file") == b"x" * 100


def test_a_file_past_the_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(Refused, match=r"\(test file\) holds 101 bytes, more than the 100 odai-store reads there"):
        read_bounded(path, 100, "test file")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    socket.socket(socket.AF_UNIX).bind(str(path))


def _link(path: Path) -> None:
    target = path.with_name("target")
    target.write_bytes(b"{}")
    os.symlink(target, path)


@pytest.mark.parametrize(("make", "kind"), [(_fifo, "a FIFO"), (_socket, "a socket"), (Path.mkdir, "a directory"), (_link, "a symbolic link")])
def test_anything_but_a_regular_file_is_refused_without_blocking(tmp_path: Path, make, kind: str) -> None:
    path = tmp_path / "planted"
    make(path)
    with pytest.raises(Refused, match=f"is {kind}"):
        read_bounded(path, 4096, "test file")


def test_a_directory_opened_for_writing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(Refused, match="is a directory"):
        open_regular(tmp_path / "d", "test file", os.O_RDWR)


def test_a_users_own_file_may_be_read_through_a_link(tmp_path: Path) -> None:
    _link(tmp_path / "odai.lock")
    assert read_bounded(tmp_path / "odai.lock", 4096, "lockfile", follow=True) == b"{}"


def test_a_missing_file_is_the_callers_to_handle(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "absent", 4096, "test file")
