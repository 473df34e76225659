"""Files another member of a shared store puts where odai-store reads or writes its own (issue 11).

Every member may create, rename and delete entries of a shared store. Each
test here is one such attack, run by root on a store root owns (root stands
in for the member and for the victim alike: what matters is what odai-store
does with what it finds): a link from a lock file to a file of the victim,
a FIFO where metadata is read, a blob name linked to a private file that
`serve` would publish, a view tree renamed away while it is built.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from store import StorageError, Store
from store.fs.locks import this_holder
from store.local.layout import StoreLayout
from store.local.views import Views
from store.oci.index import MAX_INDEX_BYTES
from store.serve import make_server
from tests.support.cli import assert_error, run_cli
from tests.support.trees import write_tree

# Long enough for a loaded machine to start Python several times over; the old
# code did not come back at all.
HANG = 60


def refused(result, code: int, text: str) -> None:
    """The error contract (exit ``code``, two lines), with ``text`` in the message."""
    message = assert_error(result, code)
    assert text in message, message


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user who runs the next command, outside the store."""
    path = tmp_path / "victim" / "notes.txt"
    path.parent.mkdir()
    path.write_text("the victim's own notes\n")
    return path


@pytest.fixture
def added(store: Store, model_tree: Path) -> Store:
    store.add("m:v1", [model_tree])
    return store


# -- 1b: lock files --------------------------------------------------------------------


@pytest.mark.parametrize(("lock", "command"), [("index", ("add", "m:v2")), ("gc", ("gc",))])
@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_lock_file_planted_as_a_link_to_a_file_is_not_truncated(
    added: Store, store_dir: Path, model_tree: Path, victim: Path, lock: str, command: tuple[str, ...], plant: str
) -> None:
    planted = added.layout.lock(lock)
    planted.unlink(missing_ok=True)
    (os.symlink if plant == "symlink" else os.link)(victim, planted)
    args = (*command, model_tree) if command[0] == "add" else command
    result = run_cli(store_dir, *args)
    assert victim.read_text() == "the victim's own notes\n"
    if plant == "hardlink":  # a regular file: locked, never written (its holder's record has a file of its own)
        assert result.code == 0, result.err
        return
    refused(result, 6, str(planted))
    assert f"remove {planted}" in result.err


def test_a_fifo_as_a_lock_file_is_refused_at_once(added: Store, store_dir: Path, model_tree: Path) -> None:
    planted = added.layout.lock("index")
    planted.unlink(missing_ok=True)
    os.mkfifo(planted)
    result = run_cli(store_dir, "add", "m:v2", model_tree, timeout=HANG)
    refused(result, 6, "is a FIFO, not a regular file")


# -- 1c: view trees ----------------------------------------------------------------------


def test_a_view_tree_renamed_to_a_link_while_it_is_built_writes_nothing_there(
    store_dir: Path, model_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The racer renames the builder's fresh tree away and puts a link to the victim's directory in its place."""
    store = Store(store_dir, shared=True)
    elsewhere = tmp_path / "victims-directory"
    elsewhere.mkdir()
    real_mkdir = os.mkdir

    def racing_mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if kwargs.get("dir_fd") is None and Path(path).name.startswith(".build-"):
            os.rename(path, tmp_path / "taken")
            os.symlink(elsewhere, path)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    with pytest.raises(StorageError):
        store.add("m:v1", [model_tree])
    monkeypatch.undo()
    assert list(elsewhere.iterdir()) == []
    assert Views(store.layout).walk() == []


def test_a_view_tree_is_private_until_it_is_complete(store_dir: Path, model_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(store_dir, shared=True)
    seen: list[int] = []
    real_symlink = os.symlink

    def watching_symlink(target, link, *args, **kwargs):
        for tree in store.layout.views.glob(".build-*"):
            seen.extend(os.lstat(d).st_mode & 0o777 for d in [tree, *(p for p in tree.rglob("*") if p.is_dir() and not p.is_symlink())])
        return real_symlink(target, link, *args, **kwargs)

    monkeypatch.setattr(os, "symlink", watching_symlink)
    model = store.add("m:v1", [model_tree])
    monkeypatch.undo()
    assert seen and all(mode == 0o700 for mode in seen), [oct(m) for m in seen]
    views_mode = os.stat(store.layout.views).st_mode & 0o7777
    for directory in [model.path, *(p for p in model.path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        assert os.stat(directory).st_mode & 0o7777 == views_mode, directory


# -- 5: serve ------------------------------------------------------------------------------


def test_serve_does_not_publish_a_file_linked_into_blobs(added: Store, tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    secret.chmod(0o600)
    name = "ab" * 32
    os.symlink(secret, added.layout.blobs / name)
    index = added.layout.index
    index.rename(tmp_path / "index.json")
    os.symlink(secret, index)
    server = make_server(added.layout, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path in (f"/blobs/sha256/{name}", "/index.json"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(base + path, timeout=HANG)
            assert caught.value.code == 404
            assert b"PRIVATE KEY" not in caught.value.read()
    finally:
        server.shutdown()
        server.server_close()


# -- 8: bounded reads of metadata ---------------------------------------------------------


def test_a_fifo_planted_as_a_journal_does_not_hang_a_fetch(added: Store, tmp_path: Path) -> None:
    """Every fetch that downloads reads every journal of ingest/ (the space check)."""
    mine = tmp_path / "mine"
    os.mkfifo(Store(mine).layout.ingest / f"{'cd' * 32}-1-{'0' * 16}.journal")
    result = run_cli(mine, "fetch", "m:v1", "--remote", added.root, timeout=HANG)
    assert result.code == 0, result.err


@pytest.mark.parametrize("where", ["index.json", "odai-layout"])
def test_a_fifo_planted_as_store_metadata_is_refused_at_once(added: Store, store_dir: Path, where: str) -> None:
    planted = store_dir / where
    planted.unlink()
    os.mkfifo(planted)
    result = run_cli(store_dir, "list", timeout=HANG)
    refused(result, 6, f"{planted} ({where}) is a FIFO, not a regular file")


def test_a_large_index_is_refused_without_reading_it(added: Store, store_dir: Path) -> None:
    with open(store_dir / "index.json", "r+b") as f:
        f.truncate(MAX_INDEX_BYTES + 1)  # sparse: a /dev/zero that ends
    refused(run_cli(store_dir, "list", timeout=HANG), 6, f"{store_dir / 'index.json'} (index.json) holds {MAX_INDEX_BYTES + 1} bytes, more than the {MAX_INDEX_BYTES}")


def test_a_fifo_planted_as_a_lease_does_not_hang_gc(added: Store, store_dir: Path) -> None:
    os.mkfifo(added.layout.leases / f"lease-1-{'0' * 16}.tmp")
    result = run_cli(store_dir, "gc", timeout=HANG)
    assert result.code == 0, result.err


@pytest.mark.parametrize("content", [b"[]", b'"a string"', b"{}", b"not json"])
def test_a_file_planted_in_leases_that_is_json_but_no_lease_does_not_stop_gc(added: Store, store_dir: Path, content: bytes) -> None:
    """A JSON list or string in leases/ is no lease: gc used to die on it with a traceback (AttributeError)."""
    planted = added.layout.leases / "planted"
    planted.write_bytes(content)
    result = run_cli(store_dir, "gc", timeout=HANG)
    assert result.code == 0, result.err
    # It holds no digests, and is young: gc leaves it (a later doctor reports it).
    assert planted.read_bytes() == content


def test_a_gc_root_naming_a_fifo_stops_gc_without_holding_its_lock(added: Store, store_dir: Path, tmp_path: Path, model_tree: Path) -> None:
    fifo = tmp_path / "app" / "odai.lock"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    entry = added.layout.root_entry(fifo)
    entry.write_text(f"{fifo}\n")
    refused(run_cli(store_dir, "gc", timeout=HANG), 2, f"gc root {fifo} cannot be read")
    refused(run_cli(store_dir, "roots", timeout=HANG), 2, str(fifo))
    # gc.lock is free again: an add (whose lease takes it) goes through.
    assert run_cli(store_dir, "--lock-timeout", "5", "add", "m:v2", model_tree, timeout=HANG).code == 0


def test_a_root_entry_that_is_a_fifo_stops_gc_naming_it(added: Store, store_dir: Path) -> None:
    entry = added.layout.roots / ("ef" * 16)
    os.mkfifo(entry)
    refused(run_cli(store_dir, "gc", timeout=HANG), 6, f"{entry} (gc root entry) is a FIFO")


def test_a_lockfile_that_is_a_fifo_is_refused(store_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "odai.lock"
    os.mkfifo(fifo)
    refused(run_cli(store_dir, "sync", "--lockfile", fifo, timeout=HANG), 2, f"{fifo} (lockfile) is a FIFO")


# -- 8: lock waits have a bound ---------------------------------------------------------------


def _held(layout: StoreLayout, name: str) -> Callable[[], None]:
    """Hold ``locks/<name>.lock`` exclusively in this process, as odai-store does (flock, and its record beside it); returns what releases it."""
    fd = os.open(layout.lock(name), os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held = Path(f"{layout.lock(name)}.held")
    held.write_text(json.dumps(this_holder().to_json()))

    def release() -> None:
        held.unlink()
        os.close(fd)

    return release


@pytest.mark.parametrize(("lock", "command"), [("index", ("rm", "m:v1")), ("gc", ("gc",))])
def test_a_lock_held_too_long_ends_the_wait_naming_its_holder(added: Store, store_dir: Path, lock: str, command: tuple[str, ...], flock: str) -> None:
    release = _held(added.layout, lock)
    try:
        began = time.monotonic()
        result = run_cli(store_dir, "-q", "--lock-timeout", "1", *command, timeout=HANG)
        waited = time.monotonic() - began
    finally:
        release()
    refused(result, 8, f"gave up after waiting 1s for {added.layout.lock(lock)}, held by process {os.getpid()} on {os.uname().nodename}")
    assert waited < HANG / 2


def test_a_blob_lock_held_without_progress_ends_the_fetch_naming_its_holder(added: Store, tmp_path: Path, flock: str) -> None:
    mine = Store(tmp_path / "mine")
    digest = max(added.resolve("m:v1")[1].files, key=lambda f: f.size).digest
    release = _held(mine.layout, f"blob-{digest.hex}")
    try:
        result = run_cli(mine.root, "-q", "--lock-timeout", "1", "fetch", "m:v1", "--remote", added.root, timeout=HANG)
    finally:
        release()
    refused(result, 8, f"for {mine.layout.lock(f'blob-{digest.hex}')}, held by process {os.getpid()}")


def test_a_wait_for_a_holder_that_makes_progress_outlasts_the_timeout(added: Store, flock: str) -> None:
    """A blob lock's holder downloads: while its journals grow, the waiter waits on (spec/locking.md)."""
    from store.fs.locks import hold

    threading.Timer(1.0, _held(added.layout, "blob-x")).start()
    ticks = iter(range(10**6))
    began = time.monotonic()
    with hold(added.layout.lock("blob-x"), poll=lambda holder: next(ticks), interval=0.05, timeout=0.3):
        waited = time.monotonic() - began
    assert waited >= 0.9


# -- 11: control characters in what people read -------------------------------------------

ESCAPE = "\x1b]0;pwned\x07\x1b[2J"  # retitles the terminal, then clears it
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J"


def test_show_escapes_control_characters_of_file_names(store_dir: Path, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "m", {f"a{ESCAPE}b.txt": b"x", "ok.txt": b"y"})
    Store(store_dir).add("m:v1", [source])
    text = run_cli(store_dir, "show", "m:v1")
    assert text.code == 0 and "\x1b" not in text.out and f"a{SHOWN}b.txt" in text.out
    doc = json.loads(run_cli(store_dir, "--json", "show", "m:v1").out)
    assert f"a{ESCAPE}b.txt" in [f["path"] for f in doc["files"]]


def test_list_escapes_control_characters_of_a_name_another_tool_wrote(store_dir: Path, model_tree: Path) -> None:
    """Issue 13, item 6: odai-store's names cannot hold one, but an index.json written by another tool is read as it is."""
    store = Store(store_dir)
    store.add("m:v1", [model_tree])
    doc = json.loads(store.layout.index.read_bytes())
    doc["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = f"m{ESCAPE}:v1"
    store.layout.index.write_text(json.dumps(doc, indent=1))
    text = run_cli(store_dir, "list")
    assert text.code == 0 and "\x1b" not in text.out and text.out.startswith(f"m{SHOWN}:v1  ")
    assert json.loads(run_cli(store_dir, "--json", "list").out)["models"][0]["name"] == f"m{ESCAPE}:v1"


def test_messages_on_stderr_escape_control_characters_and_data_on_stdout_stays_exact(store_dir: Path, model_tree: Path, tmp_path: Path) -> None:
    """Issue 13, item 6: export's and lock's messages quote a path the user chose; stdout, data for scripts, is the path itself."""
    Store(store_dir).add("m:v1", [model_tree])
    dest = tmp_path / f"out{ESCAPE}"
    exported = run_cli(store_dir, "export", "m:v1", dest)
    assert exported.code == 0 and exported.out == f"{dest}\n"
    assert "\x1b" not in exported.err and f"out{SHOWN} by " in exported.err
    lockfile = tmp_path / f"app{ESCAPE}.lock"
    locked = run_cli(store_dir, "lock", "--lockfile", lockfile, "--remote", store_dir, "m:v1")
    assert locked.code == 0, locked.err
    checked = run_cli(store_dir, "lock", "--check", "--lockfile", lockfile, "--remote", store_dir)
    assert checked.code == 0 and checked.out == f"{lockfile}\n"
    assert "\x1b" not in checked.err and f"app{SHOWN}.lock" in checked.err


def test_roots_escapes_control_characters_of_lockfile_paths(store: Store, store_dir: Path, tmp_path: Path) -> None:
    from store.local.roots import register_root

    lockfile = tmp_path / f"app{ESCAPE}" / "odai.lock"
    now = time.time()
    register_root(store.layout, lockfile, (), now)
    text = run_cli(store_dir, "roots")
    until = time.strftime("%Y-%m-%d", time.gmtime(int(now) + 30 * 86400))
    assert text.code == 0 and text.out == f"{tmp_path}/app{SHOWN}/odai.lock  stale: it is gone; keeps 0 pins until {until}\n"
    assert json.loads(run_cli(store_dir, "--json", "roots").out)["roots"][0]["lockfile"] == str(lockfile)
    # Refused, the lockfile's path is in why the root is stale too: escaped there as well.
    lockfile.parent.mkdir()
    lockfile.write_text("not toml [")
    text = run_cli(store_dir, "roots")
    assert text.code == 0 and "\x1b" not in text.out and text.out.count(f"app{SHOWN}") == 2, text.out


@pytest.mark.parametrize("plant", ["fifo", "directory", "symlink", "symlink loop"])
def test_an_entry_planted_under_a_blobs_name_is_set_aside_by_verify(added: Store, store_dir: Path, victim: Path, plant: str) -> None:
    """Not a blob: verify used to hang for ever on a FIFO (even past SIGTERM), stop at a directory (exit 6) and hash a link's target."""
    _, manifest = added.resolve("m:v1")
    blob = added.layout.blob(manifest.files[0].digest)
    blob.unlink()
    if plant == "fifo":
        os.mkfifo(blob)
    elif plant == "directory":
        blob.mkdir()
    elif plant == "symlink":
        blob.symlink_to(victim)
    else:
        blob.symlink_to(blob.name)
    result = run_cli(store_dir, "verify", timeout=HANG)
    assert_error(result, 5, stdout_empty=False)
    assert f"corrupt {manifest.files[0].digest} -> " in result.out and result.out.endswith("damaged model m:v1\n")
    assert not os.path.lexists(blob) and os.listdir(added.layout.quarantine)
    assert victim.read_text() == "the victim's own notes\n"
    # Every other blob was checked and is sound; the model lacks the file set aside.
    again = run_cli(store_dir, "verify", timeout=HANG)
    assert_error(again, 5, stdout_empty=False)
    assert again.out.splitlines()[0].endswith(": 0 corrupt") and again.out.splitlines()[1:] == [f"incomplete model m:v1 (1 of {len(manifest.files)} files missing)"]


def test_a_directory_planted_under_a_blobs_name_does_not_stop_gc(added: Store, store_dir: Path) -> None:
    """Any member may create entries in blobs/: one directory there used to stop every member's gc (exit 6, Is a directory)."""
    planted = added.layout.blobs / ("ab" * 32)
    (planted / "inside").mkdir(parents=True)
    garbage = write_tree(store_dir.parent / "garbage", {"g.bin": b"garbage" * 100})
    model = added.add("g:v1", [garbage])
    added.remove(["g:v1"])
    result = run_cli(store_dir, "gc", timeout=HANG)
    assert result.code == 0, result.err
    assert not added.layout.blob(model.files[0].digest).exists() and planted.is_dir()
    # verify sets it aside, as anything under a blob's name that is no blob.
    assert_error(run_cli(store_dir, "verify", timeout=HANG), 5, stdout_empty=False)
    assert not planted.exists()


@pytest.mark.parametrize("where", ["ingest/" + "c" * 64 + "-4000000-0123456789abcdef.tmp", "meta/xxh3/" + "d" * 64, "leases/lease-4000000-0123456789abcdef.tmp", ".index.json.4000000-0123456789abcdef.tmp"])
def test_a_directory_planted_where_gc_deletes_files_does_not_stop_gc(added: Store, store_dir: Path, where: str) -> None:
    """A stale partial, an orphan record, a stale lease, a dead writer's temporary: each a directory, a day old; each used to stop every gc (exit 6)."""
    planted = store_dir / where
    (planted / "inside").mkdir(parents=True)
    os.utime(planted, (time.time() - 3 * 24 * 3600,) * 2)
    result = run_cli(store_dir, "gc", timeout=HANG)
    assert result.code == 0, result.err
    assert planted.is_dir()


def test_verify_escapes_control_characters_of_paths(tmp_path: Path, model_tree: Path) -> None:
    store_dir = tmp_path / f"store{ESCAPE}"
    store = Store(store_dir)
    model = store.add("m:v1", [model_tree])
    blob = store.layout.blob(model.files[0].digest)
    blob.chmod(0o644)
    blob.write_bytes(b"damaged")
    text = run_cli(store_dir, "verify")
    assert text.code == 5 and "\x1b" not in text.out and f"store{SHOWN}/quarantine/" in text.out


# -- 11: the Python API leaves the process umask alone ------------------------------------


@pytest.mark.parametrize("existing", [False, True])
def test_opening_a_shared_store_leaves_the_umask_alone(tmp_path: Path, model_tree: Path, existing: bool) -> None:
    if existing:
        Store(tmp_path / "shared", shared=True)
    before = os.umask(0o022)
    try:
        store = Store(tmp_path / "shared", shared=True)
        model = store.add("m:v1", [model_tree])
        record = os.stat(store.layout.fast_record(model.files[0].digest)).st_mode & 0o777
        store.remove(["m:v1"])
        store.gc()
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    # Explicit modes instead: what other members must be able to write, they can.
    for path in (store.layout.lock("index"), store.layout.lock("gc"), store.layout.index):
        assert os.stat(path).st_mode & 0o060 == 0o060, path
    assert record == 0o444


# -- export: a blob name linked to the victim's file (found in review) ----------------


@pytest.mark.parametrize("link", ["copy", "reflink", "hardlink"])
def test_export_never_exports_what_a_planted_blob_name_points_to(added: Store, store_dir: Path, victim: Path, tmp_path: Path, link: str) -> None:
    model = added.model("m:v1")
    target = model.files[0]
    secret = b"the victim's secret ".ljust(target.size, b"#")[: target.size]  # the blob's size: presence checks pass
    victim.write_bytes(secret)
    blob = added.layout.blob(target.digest)
    blob.unlink()
    blob.symlink_to(victim)  # any member may replace a name in blobs/sha256/
    dest = tmp_path / "dest"
    result = run_cli(store_dir, "export", "--link", link, "m:v1", dest)
    refused(result, 6, "is a symbolic link" if link != "hardlink" else "is not a regular file")
    exported = dest / target.path
    assert not exported.exists() or exported.read_bytes() != secret
