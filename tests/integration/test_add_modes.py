"""How `add` brings bytes in (issue 13, item 11): a clone where the filesystem can (for real, on a
loop-mounted XFS), else a copy; `--move` takes a file the user gives up without copying it on one
filesystem, and a file is never a hardlink of a blob while its user keeps it; progress on a terminal.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from store import InvalidManifest, Store
from tests.support.cli import assert_error, cli_command, run_cli
from tests.support.trees import read_tree, sample_model, write_tree

FILES = sample_model(13)


def _blob(store_dir: Path, data: bytes) -> Path:
    return store_dir / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()


def _free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bfree * info.f_frsize


def _clean(store_dir: Path) -> None:
    result = run_cli(store_dir, "verify")
    assert result.code == 0, result.out + result.err


# -- clone --------------------------------------------------------------------------------------


def test_add_on_xfs_clones_and_the_clone_is_what_is_hashed(xfs: Path) -> None:
    weights = os.urandom(32 << 20)
    source = write_tree(xfs / "src", {"weights.bin": weights, "config.json": b"{}\n"})
    store_dir = xfs / "store"
    before = _free(xfs)
    code, out, err = run_cli(store_dir, "--json", "add", "big:v1", source)
    assert code == 0, err
    # 32 MiB imported, and no data block taken: the blob shares the source's.
    assert before - _free(xfs) < 4 << 20, (before, _free(xfs))
    blob = _blob(store_dir, weights)
    assert json.loads(out)["files"][1]["digest"] == f"sha256:{hashlib.sha256(weights).hexdigest()}"
    assert not os.path.samestat(os.stat(blob), os.stat(source / "weights.bin"))  # a file of its own
    # The user keeps the source and edits it: the blob keeps its bytes.
    with open(source / "weights.bin", "r+b") as f:
        f.write(b"edited")
    assert blob.read_bytes() == weights
    _clean(store_dir)


def test_add_where_the_filesystem_cannot_clone_copies(tmp_path: Path, store_dir: Path) -> None:
    """Where the filesystem cannot clone (ext4, tmpfs; or the source on another filesystem): a copy, the source untouched."""
    source = write_tree(tmp_path / "src", FILES)
    code, _, err = run_cli(store_dir, "add", "m:v1", source)
    assert code == 0, err
    assert read_tree(source) == FILES
    for data in FILES.values():
        assert os.stat(_blob(store_dir, data)).st_nlink == 1
    _clean(store_dir)


# -- --move ---------------------------------------------------------------------------------------


def test_move_on_one_filesystem_takes_the_file_itself(tmp_path: Path, store_dir: Path) -> None:
    source = write_tree(tmp_path / "src", FILES)
    inode = os.stat(source / "model.bin").st_ino
    code, out, err = run_cli(store_dir, "--json", "add", "--move", "m:v1", source)
    assert code == 0, err
    blob = os.stat(_blob(store_dir, FILES["model.bin"]))
    assert blob.st_ino == inode and blob.st_nlink == 1 and blob.st_mode & 0o777 == 0o444  # no byte copied
    assert not source.exists()  # the files and the directories they emptied
    assert read_tree(Path(json.loads(out)["path"])) == FILES
    _clean(store_dir)


def test_move_with_the_python_api_and_a_directory_that_keeps_other_things(tmp_path: Path, store_dir: Path) -> None:
    source = write_tree(tmp_path / "src", {"a.txt": b"a\n", "sub/b.txt": b"b\n"})
    keep = tmp_path / "src" / "sub" / "not-added"
    keep.mkdir()
    (keep / "x").mkdir()
    model = Store(store_dir).add("m:v1", source / "sub", move=True)
    assert [f.path for f in model.files] == ["b.txt"]
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*")) == ["a.txt", "sub", "sub/not-added", "sub/not-added/x"]


def test_move_of_a_file_with_another_name_copies_it_and_leaves_that_name(tmp_path: Path, store_dir: Path) -> None:
    """A file the user keeps under another name is never made a blob: an edit of it would reach the blob."""
    data = os.urandom(1 << 20)
    source = write_tree(tmp_path / "src", {"w.bin": data})
    kept = tmp_path / "kept.bin"
    os.link(source / "w.bin", kept)
    assert run_cli(store_dir, "add", "--move", "m:v1", source / "w.bin").code == 0
    assert not (source / "w.bin").exists()
    blob = _blob(store_dir, data)
    assert not os.path.samestat(os.stat(blob), os.stat(kept)) and os.stat(kept).st_nlink == 1
    with open(kept, "r+b") as f:
        f.write(b"edited")
    assert blob.read_bytes() == data
    _clean(store_dir)


def test_move_across_filesystems_copies_then_removes_the_source(xfs: Path, store_dir: Path) -> None:
    source = write_tree(xfs / "src", FILES)
    code, _, err = run_cli(store_dir, "add", "--move", "m:v1", source)
    assert code == 0, err
    assert not source.exists()
    assert os.stat(_blob(store_dir, FILES["model.bin"])).st_dev != os.stat(xfs).st_dev
    _clean(store_dir)


def test_move_refuses_symbolic_links_and_moves_nothing(tmp_path: Path, store_dir: Path) -> None:
    source = write_tree(tmp_path / "src", FILES)
    (source / "alias.json").symlink_to("config.json")
    message = assert_error(run_cli(store_dir, "add", "--move", "m:v1", source), 2)
    assert f"{source / 'alias.json'} is a symbolic link" in message
    assert read_tree(source) == {**FILES, "alias.json": FILES["config.json"]}
    assert_error(run_cli(store_dir, "add", "--move", "m:v1", source / "alias.json"), 2)


def test_a_move_that_fails_late_leaves_every_source_in_place_and_its_own(tmp_path: Path, store_dir: Path) -> None:
    """The blobs are published and the name cannot be written (a damaged index.json): each file taken is
    back where it was, a file of its own again, with its mode; the names are unchanged. config.json,
    whose bytes the store held already, was taken and hashed but not published."""
    store = Store(store_dir)
    store.add("other:v1", write_tree(tmp_path / "other", {"x": FILES["config.json"]}))
    source = write_tree(tmp_path / "src", FILES)
    os.chmod(source / "model.bin", 0o640)
    os.chmod(source / "config.json", 0o600)
    for name in ("model.bin", "config.json"):
        os.utime(source / name, (1_000_000_000, 1_000_000_000))
    index = store_dir / "index.json"
    index.write_bytes(b"{damaged")
    with pytest.raises(InvalidManifest):
        store.add("m:v1", source, move=True)
    assert read_tree(source) == FILES
    assert os.stat(source / "model.bin").st_mode & 0o777 == 0o640
    assert os.stat(source / "config.json").st_mode & 0o777 == 0o600
    assert [os.stat(source / name).st_mtime for name in ("model.bin", "config.json")] == [1_000_000_000] * 2
    for rel, data in FILES.items():  # every blob was published before the name failed
        assert not os.path.samestat(os.stat(_blob(store_dir, data)), os.stat(source / rel)), rel
    assert index.read_bytes() == b"{damaged"


def test_a_gc_during_the_move_of_a_file_written_long_ago_leaves_it_be(tmp_path: Path, store_dir: Path, monkeypatch) -> None:
    """gc deletes a partial silent for a day; a file taken keeps the time it was last written, so taking
    it must make it look written now, else a gc while it is hashed takes it from ingest/ (and the move fails)."""
    from store.local.ingest import IngestWriter

    data = os.urandom(1 << 20)
    source = write_tree(tmp_path / "src", {"old.bin": data})
    os.utime(source / "old.bin", (1_000_000_000, 1_000_000_000))
    store = Store(store_dir)
    commit = IngestWriter.commit

    def gc_then_commit(self, *args, **kwargs):
        store.gc()
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(IngestWriter, "commit", gc_then_commit)
    model = store.add("m:v1", source, move=True)
    assert not source.exists()
    assert read_tree(model.path) == {"old.bin": data}
    _clean(store_dir)


# -- progress -------------------------------------------------------------------------------------


def _on_a_terminal(store_dir: Path, *args: str | os.PathLike[str]) -> tuple[int, str]:
    """Run the command with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    command, env = cli_command(store_dir, args, None, ())
    master, slave = pty.openpty()
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=slave) as proc:
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        code = proc.wait(60)
    os.close(master)
    return code, seen.decode()


def test_add_shows_progress_on_a_terminal_only_and_q_silences_it(tmp_path: Path, store_dir: Path) -> None:
    source = write_tree(tmp_path / "src", {"weights.bin": os.urandom(8 << 20)})
    code, shown = _on_a_terminal(store_dir, "add", "big:v1", source)
    assert code == 0, shown
    assert "big:v1" in shown and "8.0 MiB/8.0 MiB 100.0%" in shown, shown
    code, shown = _on_a_terminal(store_dir, "-q", "add", "big:v2", source)
    assert (code, shown) == (0, "")
    result = run_cli(store_dir, "add", "big:v3", source)  # not a terminal: only the line that says what was added
    assert result.code == 0 and result.err == "added big:v3 (" + result.err.split("(", 1)[1]
    assert result.err.count("\n") == 1


def test_add_progress_as_json_counts_every_byte_once(tmp_path: Path, store_dir: Path) -> None:
    source = write_tree(tmp_path / "src", FILES)
    total = sum(map(len, FILES.values()))
    result = run_cli(store_dir, "add", "--progress", "json", "m:v1", source)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.err.splitlines()[:-1]]
    assert lines[-1]["done"] == lines[-1]["total"] == total and lines[-1]["label"] == "m:v1"
    assert [line["done"] for line in lines] == sorted(line["done"] for line in lines)
    seen = []
    Store(tmp_path / "api-store").add("m:v1", source, progress=seen.append)
    assert seen[-1].done == total


def test_a_tree_whose_manifest_would_be_over_4_mib_is_refused_and_nothing_is_named(tmp_path: Path) -> None:
    # 1,100 files at paths of about 3.7 KB: well within the path rules, but their manifest would be about 4.4 MB,
    # which every reader refuses unread (spec/manifest.md): named, the model would stop show and gc.
    deep = tmp_path / "tree" / Path(*(f"{'d' * 249}{i}" for i in range(14)))
    deep.mkdir(parents=True)
    for i in range(1100):
        (deep / f"{i:04d}{'f' * 245}").touch()
    store = tmp_path / "store"
    message = assert_error(run_cli(store, "add", "huge:v1", tmp_path / "tree"), 2)
    assert "more than the 4194304 a manifest may hold" in message
    assert run_cli(store, "list").out == ""
    assert run_cli(store, "gc").code == 0
