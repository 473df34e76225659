"""`odai-store export NAME DEST --link MODE` (issue 4): the model's files under their own names, with
their bytes, read-only so no app can corrupt the store through a shared inode; auto says which way it
took; a way that cannot work here fails cleanly; nothing is ever overwritten. The default makes files
of their own (a reflink, else a copy), so even root's edit of one leaves the store alone (issue 13,
item 2); reflinks are tested for real on a loop-mounted XFS.

Whether this filesystem can reflink is asked of coreutils (`cp --reflink=always`), an implementation
independent of ours, so the reflink expectations follow the machine the tests run on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import assert_error
from tests.support.privileges import bound_by_permissions
from tests.support.requirements import unavailable
from tests.support.trees import read_tree, sample_model, write_tree

FILES = sample_model(9)


@pytest.fixture
def model(tmp_path: Path, run_cli) -> str:
    code, out, err = run_cli("--json", "add", "llama:v1", write_tree(tmp_path / "src", FILES))
    assert code == 0, err
    return json.loads(out)["digest"]


def _can_reflink(directory: Path) -> bool:
    source, clone = directory / ".reflink-probe", directory / ".reflink-probe-clone"
    source.write_bytes(b"probe")
    try:
        return subprocess.run(["cp", "--reflink=always", str(source), str(clone)], capture_output=True).returncode == 0
    finally:
        source.unlink()
        clone.unlink(missing_ok=True)


def _filesystem(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout.strip()


def _check_exported(dest: Path, store_dir: Path, how: str) -> None:
    """Names and bytes of the model; each file made ``how``; none writable."""
    assert read_tree(dest) == FILES
    blobs = store_dir / "blobs" / "sha256"
    for rel in FILES:
        path = dest / rel
        info = os.lstat(path)
        if how == "symlink":
            assert stat.S_ISLNK(info.st_mode)
            target = Path(os.readlink(path))
            assert target.parent == blobs
            assert os.stat(target).st_mode & 0o777 == 0o444
            continue
        assert stat.S_ISREG(info.st_mode) and info.st_mode & 0o777 == 0o444, f"{rel}: {stat.filemode(info.st_mode)}"
        blob = os.stat(blobs / _digest_of(FILES[rel]))
        shares_inode = (info.st_dev, info.st_ino) == (blob.st_dev, blob.st_ino)
        assert shares_inode == (how == "hardlink"), rel
    # Nothing but the model's files: no temporary file left behind.
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()) == sorted(FILES)


def _digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("mode", ["hardlink", "symlink", "copy"])
def test_each_link_mode(mode: str, model: str, tmp_path: Path, store_dir: Path, run_cli) -> None:
    dest = tmp_path / "out" / mode
    code, out, err = run_cli("--json", "export", "--link", mode, "llama:v1", dest)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == mode and {f["method"] for f in doc["files"]} == {mode}
    assert sorted(f["path"] for f in doc["files"]) == sorted(FILES)
    _check_exported(dest, store_dir, mode)
    assert run_cli("verify").code == 0


def test_auto_on_one_filesystem_clones_else_copies_and_says_how(model: str, tmp_path: Path, store_dir: Path, run_cli) -> None:
    """Issue 13, item 2: auto never makes a hardlink, whose edit would reach the blob."""
    expected = "reflink" if _can_reflink(store_dir) else "copy"
    dest = tmp_path / "out"
    code, out, err = run_cli("export", "llama:v1", dest)
    assert code == 0, err
    assert out == f"{dest}\n"
    assert err == f"exported {len(FILES)} files to {dest} by {expected}\n", _filesystem(store_dir)
    _check_exported(dest, store_dir, expected)
    # By digest too, and the default mode is auto.
    code, out, err = run_cli("--json", "export", f"llama@{model}", tmp_path / "by-digest")
    assert code == 0, err
    assert json.loads(out)["method"] == expected


def test_reflink_where_this_filesystem_allows_it_and_a_clean_failure_where_not(model: str, tmp_path: Path, store_dir: Path, run_cli) -> None:
    dest = tmp_path / "out"
    result = run_cli("export", "--link", "reflink", "llama:v1", dest)
    if _can_reflink(store_dir):
        assert result.code == 0, result.err
        _check_exported(dest, store_dir, "reflink")
    else:
        message = assert_error(result, 6)
        assert "reflink" in message, (_filesystem(store_dir), message)
        assert not dest.exists() or not any(p.is_file() or p.is_symlink() for p in dest.rglob("*"))


def test_export_never_overwrites(model: str, tmp_path: Path, run_cli) -> None:
    dest = tmp_path / "out"
    (dest / "tokenizer").mkdir(parents=True)
    mine = dest / "tokenizer" / "vocab.txt"
    mine.write_bytes(b"the app's own file\n")
    result = run_cli("export", "--link", "copy", "llama:v1", dest)
    message = assert_error(result, 2)
    assert str(mine) in message and "overwrite" in message
    assert mine.read_bytes() == b"the app's own file\n"
    assert [p for p in dest.rglob("*") if p.is_file()] == [mine]  # nothing else was made either
    # A second export to the same place is refused the same way.
    assert run_cli("export", "llama:v1", tmp_path / "again").code == 0
    assert_error(run_cli("export", "--link", "symlink", "llama:v1", tmp_path / "again"), 2)
    assert read_tree(tmp_path / "again") == FILES


@pytest.mark.parametrize("mode", ["hardlink", "copy", "symlink"])
def test_a_file_another_process_puts_at_a_target_meanwhile_is_not_overwritten(mode: str, model: str, store_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The check that no target exists comes before the files are made; a file that appears at
    a target after it (another export, the app) must still win: naming goes by link(2), which
    fails where rename(2) would replace."""
    import store.export as export_module
    from store import Store, UsageError

    dest = tmp_path / "out"
    make = export_module._MAKERS[mode]

    def make_then_race(src: Path, dir_fd: int, name: str) -> None:
        make(src, dir_fd, name)
        target = name[1:].rsplit(".", 2)[0]  # .<name>.<pid>-<hex>.tmp
        with contextlib.suppress(FileExistsError):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
            os.write(fd, b"theirs")
            os.close(fd)

    monkeypatch.setitem(export_module._MAKERS, mode, make_then_race)
    with pytest.raises(UsageError, match="exists; export never overwrites"):
        Store(store_dir).export("llama:v1", dest, link=mode)
    [theirs] = [p for p in dest.rglob("*") if p.is_file() or p.is_symlink()]
    assert theirs.read_bytes() == b"theirs"  # and no private file left behind


def test_a_file_where_a_directory_of_the_model_goes_is_taken_too(model: str, tmp_path: Path, run_cli) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "tokenizer").write_bytes(b"a file, not the model's directory\n")
    message = assert_error(run_cli("export", "llama:v1", dest), 2)
    assert str(dest / "tokenizer") in message and "overwrite" in message
    assert sorted(p.name for p in dest.iterdir()) == ["tokenizer"]  # nothing was made


def test_a_dest_that_cannot_be_searched_is_a_storage_error(model: str, tmp_path: Path, run_cli) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0)
    try:
        message = assert_error(run_cli("export", "llama:v1", closed / "sub", prefix=bound_by_permissions()), 6)
    finally:
        closed.chmod(0o755)
    assert "Permission denied" in message and str(closed / "sub") in message


def test_an_unknown_model_or_mode(model: str, tmp_path: Path, run_cli) -> None:
    assert_error(run_cli("export", "mistral:v1", tmp_path / "out"), 3)
    assert_error(run_cli("export", "--link", "teleport", "llama:v1", tmp_path / "out"), 2)
    assert not (tmp_path / "out").exists()


# -- across filesystems ----------------------------------------------------------------


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted for the test: a DEST where no hardlink into the store can exist."""
    if os.geteuid() != 0:
        unavailable("the cross-filesystem export tests mount a tmpfs, which needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here for the cross-filesystem export tests: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_auto_across_filesystems_falls_back_to_copy(model: str, other_filesystem: Path, store_dir: Path, run_cli) -> None:
    assert os.stat(other_filesystem).st_dev != os.stat(store_dir).st_dev
    dest = other_filesystem / "out"
    code, out, err = run_cli("export", "llama:v1", dest)
    assert code == 0, err
    assert err == f"exported {len(FILES)} files to {dest} by copy\n"
    _check_exported(dest, store_dir, "copy")
    # A symlink crosses filesystems.
    code, _, err = run_cli("export", "--link", "symlink", "llama:v1", other_filesystem / "links")
    assert code == 0, err
    _check_exported(other_filesystem / "links", store_dir, "symlink")


@pytest.mark.parametrize("mode", ["hardlink", "reflink"])
def test_hardlink_or_reflink_across_filesystems_fails_cleanly(mode: str, model: str, other_filesystem: Path, store_dir: Path, run_cli) -> None:
    dest = other_filesystem / "out"
    message = assert_error(run_cli("export", "--link", mode, "llama:v1", dest), 6)
    assert mode in message and "cross-device" in message
    assert not any(p.is_file() or p.is_symlink() for p in other_filesystem.rglob("*"))
    assert run_cli("verify").code == 0


# -- links planted under DEST -------------------------------------------------------------

KEYS = {"README.md": b"model card\n", "keys/authorized_keys": b"ssh-ed25519 AAAA attacker\n", "keys/inner/x": b"x"}


@pytest.fixture
def keys_model(tmp_path: Path, run_cli) -> str:
    assert run_cli("add", "keys:v1", write_tree(tmp_path / "keys-src", KEYS)).code == 0
    return "keys:v1"


@pytest.mark.parametrize("planted", ["keys", "keys/inner"])
@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_a_link_planted_below_dest_is_never_followed(planted: str, mode: str, keys_model: str, tmp_path: Path, run_cli) -> None:
    # The attack: in a shared folder someone makes keys -> ~victim/.ssh; an
    # export of a model with keys/authorized_keys wrote into the victim's ~/.ssh.
    victim = tmp_path / "victim" / ".ssh"
    victim.mkdir(parents=True)
    dest = tmp_path / "shared" / "out"
    (dest / planted).parent.mkdir(parents=True, exist_ok=True)
    (dest / planted).symlink_to(victim)
    message = assert_error(run_cli("export", "--link", mode, keys_model, dest), 2)
    assert f"{dest / planted} is a symbolic link" in message
    assert list(victim.iterdir()) == []


def test_a_link_planted_during_the_export_is_never_followed(keys_model: str, store_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """After the check and before the directory is made: the directory is opened with O_NOFOLLOW from its parent."""
    import store.export as export_module
    from store import Store, UsageError

    victim = tmp_path / "victim" / ".ssh"
    victim.mkdir(parents=True)
    dest = tmp_path / "out"
    make = export_module._MAKERS["copy"]

    def make_then_plant(src: Path, dir_fd: int, name: str) -> None:
        make(src, dir_fd, name)
        with contextlib.suppress(FileExistsError):
            (dest / "keys").symlink_to(victim)

    monkeypatch.setitem(export_module._MAKERS, "copy", make_then_plant)
    with pytest.raises(UsageError, match="is a symbolic link"):
        Store(store_dir).export(keys_model, dest, link="copy")
    assert list(victim.iterdir()) == []


def test_dest_itself_may_be_a_link(keys_model: str, tmp_path: Path, run_cli) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "dest").symlink_to(real)
    assert run_cli("export", keys_model, tmp_path / "dest").code == 0
    assert read_tree(real) == KEYS


def test_a_dest_that_is_a_dangling_link_is_taken(keys_model: str, tmp_path: Path, run_cli) -> None:
    (tmp_path / "dest").symlink_to(tmp_path / "nowhere")
    assert "exists; export never overwrites" in assert_error(run_cli("export", keys_model, tmp_path / "dest"), 2)
    assert not (tmp_path / "nowhere").exists()


# -- an exported file edited (issue 13, item 2) ------------------------------------------

EDITED = b'{"architecture": "edited in place"}\n'


def _edit_in_place(path: Path) -> None:
    """What vim does to a file with several links, or an app to its config: write into the same inode.

    As root (containers, CI) no chmod is needed; anyone else makes it writable first, as a user would."""
    if os.geteuid() != 0:
        os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(EDITED)
        f.truncate()


def _blob_of(store_dir: Path, data: bytes) -> Path:
    return store_dir / "blobs" / "sha256" / _digest_of(data)


@pytest.fixture(params=["this-filesystem", "xfs"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the store and DEST live: the tests' own filesystem (a copy where it cannot clone), or an XFS (a reflink)."""
    return tmp_path if request.param == "this-filesystem" else request.getfixturevalue("xfs")


def test_an_exported_file_edited_as_root_leaves_the_blob_alone(where: Path) -> None:
    """The default export, edited as root: the blob keeps its bytes and verify (both kinds) stays clean."""
    from tests.support.cli import run_cli

    store_dir, dest = where / "store", where / "out"
    assert run_cli(store_dir, "add", "llama:v1", write_tree(where / "src", FILES)).code == 0
    code, out, err = run_cli(store_dir, "--json", "export", "llama:v1", dest)
    assert code == 0, err
    method = json.loads(out)["method"]
    assert method == ("reflink" if _can_reflink(store_dir) else "copy"), _filesystem(store_dir)
    blob = _blob_of(store_dir, FILES["config.json"])
    assert not os.path.samestat(os.stat(dest / "config.json"), os.stat(blob))
    _edit_in_place(dest / "config.json")
    assert (dest / "config.json").read_bytes() == EDITED
    assert blob.read_bytes() == FILES["config.json"]
    for check in (("verify", "--fast"), ("verify",), ("path", "--verify", "llama:v1")):
        result = run_cli(store_dir, *check)
        assert result.code == 0, (check, result.err)
    assert run_cli(store_dir, "verify").out.startswith(f"checked {len(set(FILES.values())) + 2} blobs")
    # The Python API's default is the same.
    from store import Store

    again = Store(store_dir).export("llama:v1", where / "by-api")
    assert again.method == method
    _edit_in_place(where / "by-api" / "config.json")
    assert blob.read_bytes() == FILES["config.json"]


def test_a_hardlink_export_edited_reaches_the_blob_and_verify_fast_finds_it(model: str, tmp_path: Path, store_dir: Path, run_cli) -> None:
    """Why hardlink is only made when asked for, and what finds the damage it allows: verify --fast."""
    dest = tmp_path / "out"
    assert run_cli("export", "--link", "hardlink", "llama:v1", dest).code == 0
    _edit_in_place(dest / "config.json")
    assert _blob_of(store_dir, FILES["config.json"]).read_bytes() == EDITED  # the store's copy changed
    result = run_cli("verify", "--fast")
    assert_error(result, 5, stdout_empty=False)
    assert f"corrupt sha256:{_digest_of(FILES['config.json'])}" in result.out and "damaged model llama:v1" in result.out


def test_help_states_the_risk_of_hardlink_and_symlink(run_cli) -> None:
    code, out, _ = run_cli("export", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "an edit of an exported file never reaches the store" in text
    assert "hardlink and symlink give the store's blob itself" in text and "root" in text and "chmod u+w" in text
    assert "'odai-store verify --fast' finds such a change" in text


# -- reflinks for real, on XFS --------------------------------------------------------------


def _free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bfree * info.f_frsize


def test_export_on_xfs_clones_without_copying_a_byte(xfs: Path) -> None:
    from tests.support.cli import run_cli

    weights = os.urandom(32 << 20)
    store_dir = xfs / "store"
    assert run_cli(store_dir, "add", "big:v1", write_tree(xfs / "src", {"weights.bin": weights})).code == 0
    before = _free(xfs)
    for mode, dest in (("auto", xfs / "auto"), ("reflink", xfs / "reflink")):
        code, out, err = run_cli(store_dir, "--json", "export", "--link", mode, "big:v1", dest)
        assert code == 0, err
        assert json.loads(out)["method"] == "reflink", mode
        exported = os.stat(dest / "weights.bin")
        assert exported.st_mode & 0o777 == 0o444 and not os.path.samestat(exported, os.stat(_blob_of(store_dir, weights)))
        assert (dest / "weights.bin").read_bytes() == weights
    # Two exports of 32 MiB took no data blocks: the clones share the blob's.
    assert before - _free(xfs) < 4 << 20, (before, _free(xfs))
