"""One store shared by many apps and many users (issue 4, Tests).

Apps are separate processes with their own working directories and
lockfiles, finding the store through $ODAI_STORE_HOME, as an app would. The
remote is a store served by our `serve` handler in a thread that counts
requests, which is how "no request at all" is proven. The users are two
unprivileged uids of one group, as root sets them up.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store
from store.local.roots import read_lockfile
from store.lockfile import parse_lockfile
from store.oci.digest import Digest
from store.oci.reference import Reference
from tests.support.apps import App, publish
from tests.support.cli import CliResult, assert_error, run_cli, run_cli_many
from tests.support.counting_server import Served, serve_counting
from tests.support.privileges import without_capabilities
from tests.support.requirements import unavailable
from tests.support.roots import DAY, age_root
from tests.support.trees import read_tree, write_tree

SHARED = random.Random(4).randbytes(256 * 1024)
V1 = {"config.json": b'{"version": 1}\n', "weights/shared.bin": SHARED}
LATEST = {"config.json": b'{"version": 2}\n', "weights/shared.bin": SHARED, "tokenizer.json": b'{"vocab": []}\n'}


def _gc(app: App) -> dict:
    code, out, err = app.run("--json", "gc")
    assert code == 0, err
    return json.loads(out)


def _requests(served: Served) -> list[str]:
    with served.lock:
        return list(served.requests)


def test_two_apps_pin_two_versions_of_one_model_in_one_store(tmp_path: Path) -> None:
    remote, store = tmp_path / "remote", tmp_path / "store"
    d1, m1 = publish(remote, "llama:v1", V1)
    d2, m2 = publish(remote, "llama:latest", LATEST)
    app1, app2 = App(tmp_path / "app1", store), App(tmp_path / "app2", store)
    with serve_counting(remote) as served:
        assert app1.run("lock", "--remote", served.url, "llama:v1") == (0, f"{app1.lockfile}\n", "locked llama:v1 at %s\n" % d1.short)
        assert app2.run("lock", "--remote", served.url, "llama:latest").code == 0

        # Both apps sync at once; the file both versions share crosses the wire once.
        synced = run_cli_many(None, [("sync",), ("sync",)], env=app1.env, cwds=[app1.dir, app2.dir])
        for result in synced:
            assert result.code == 0, result.err
        view1, view2 = (Path(r.out.strip()) for r in synced)
        assert (view1, view2) == (store / "views" / "sha256" / d1.hex, store / "views" / "sha256" / d2.hex)
        assert read_tree(view1) == V1 and read_tree(view2) == LATEST
        shared_blob = f"GET /blobs/sha256/{hashlib.sha256(SHARED).hexdigest()} "
        assert len([r for r in _requests(served) if r.startswith(shared_blob)]) == 1, _requests(served)

        code, out, err = app1.run("roots")
        assert code == 0, err
        assert sorted(out.splitlines()) == sorted([f"{app1.lockfile}  1 pin", f"{app2.lockfile}  1 pin"])

        # gc keeps both versions: both lockfiles pin them, though no name does; list shows them as pinned.
        listed = [(line.split()[0], line.split()[1], line.partition("  pinned in ")[2]) for line in app1.run("list").out.splitlines()]
        assert listed == [("llama:latest", d2.short, str(app2.lockfile)), ("llama:v1", d1.short, str(app1.lockfile))]
        before = sorted(os.listdir(store / "blobs" / "sha256"))
        assert _gc(app1)["blobs"] == []
        assert sorted(os.listdir(store / "blobs" / "sha256")) == before

        # With every pin present, sync sends no request at all.
        seen = len(_requests(served))
        assert app1.run("sync") == (0, f"{view1}\n", "llama:v1: up to date\n")
        assert app2.run("sync") == (0, f"{view2}\n", "llama:latest: up to date\n")
        assert _requests(served)[seen:] == []

        # App 2 goes away: its root keeps its model for the grace period, and gc says so.
        app2.lockfile.unlink()
        entry2 = store / "roots" / Store(store).layout.root_entry(app2.lockfile).name
        until = json.loads(entry2.read_bytes())["refreshed"] + 30 * DAY
        assert f"{app2.lockfile}  stale: it is gone; keeps 1 pin until {time.strftime('%Y-%m-%d', time.gmtime(until))}" in app1.run("roots").out
        report = _gc(app1)
        assert report["blobs"] == [] and report["freed"] == []
        assert report["kept"] == [{"name": "llama:latest", "digest": str(d2), "lockfile": str(app2.lockfile), "why": "it is gone", "until": until}]
        assert sorted(os.listdir(store / "blobs" / "sha256")) == before

        # After the grace period, gc frees exactly what only app 2 used, and names the model.
        age_root(entry2, 30 * DAY + 60)
        only_app2 = ({d2} | m2.blob_digests()) - ({d1} | m1.blob_digests())
        assert len(only_app2) == 3  # its manifest, its config.json, its tokenizer.json
        report = _gc(app1)
        assert set(report["blobs"]) == {str(d) for d in only_app2}
        assert report["views"] == [str(d2)]
        assert report["kept"] == []
        assert report["freed"] == [{"name": "llama:latest", "digest": str(d2), "lockfile": str(app2.lockfile), "why": "it is gone", "until": until - 30 * DAY - 60}]
        assert sorted(os.listdir(store / "blobs" / "sha256")) == sorted(set(before) - {d.hex for d in only_app2})
        assert app1.run("roots").out == f"{app1.lockfile}  1 pin\n"

        # App 1 is untouched, and still needs nothing from the remote.
        seen = len(_requests(served))
        assert app1.run("sync") == (0, f"{view1}\n", "llama:v1: up to date\n")
        assert read_tree(view1) == V1
        assert _requests(served)[seen:] == []
        assert app1.run("verify").code == 0


def test_relocking_is_byte_identical_and_check_names_the_tag_that_moved(tmp_path: Path) -> None:
    remote, store = tmp_path / "remote", tmp_path / "store"
    publish(remote, "llama:v1", V1)
    publish(remote, "llama:latest", LATEST)
    publish(remote, "phi:v1", {"phi.bin": b"phi\n"})
    app = App(tmp_path / "app", store)
    with serve_counting(remote) as served:
        assert app.run("lock", "--remote", served.url, "llama:latest", "phi:v1", "llama:v1").code == 0
        first = app.lockfile.read_bytes()
        code, out, err = app.run("--json", "lock", "--remote", served.url, "phi:v1", "llama:v1", "llama:latest")
        assert code == 0, err
        assert json.loads(out)["changed"] is False
        assert app.lockfile.read_bytes() == first

        assert app.run("lock", "--check") == (0, f"{app.lockfile}\n", "3 pins hold in odai.lock\n")
        # Check resolves again: it asks the remote each time, unlike sync.
        seen = len(_requests(served))
        assert app.run("lock", "--check", "phi:v1").code == 0
        assert _requests(served)[seen:] != []

        # The remote's llama:latest moves; the pins of llama:v1 and phi:v1 still hold.
        moved, _ = publish(remote, "llama:latest", {**LATEST, "config.json": b'{"version": 3}\n'})
        result = app.run("lock", "--check")
        message = assert_error(result, 7)
        assert "llama:latest" in message and moved.short in message
        assert "llama:v1" not in message and "phi" not in message
        assert "odai-store lock" in result.err.splitlines()[1]
        assert app.lockfile.read_bytes() == first  # check never writes
        assert app.run("lock", "--check", "llama:v1", "phi:v1").code == 0

        # Taking the new version changes only its entry.
        assert app.run("lock", "--remote", served.url, "llama:latest").code == 0
        assert app.lockfile.read_bytes() != first
        assert app.run("lock", "--check").code == 0
        old, new = parse_lockfile(first), read_lockfile(app.lockfile)
        assert [p for p in new.pins if p.ref_name != "llama:latest"] == [p for p in old.pins if p.ref_name != "llama:latest"]
        assert new.select(Reference("llama", "latest"))[0].digest == moved


# -- a store shared by the members of a group ------------------------------------------

_MUTABLE = ("index.json", "locks/", "roots/", "ingest/", "meta/history")  # files other members must be able to rewrite, or append to


def _check_shared_modes(root: Path) -> list[Path]:
    """Every directory setgid and group-writable; mutable files group-writable; blobs and records group-readable.
    Returns the files seen."""
    files = []
    for directory, _dirnames, filenames in os.walk(root):
        mode = os.stat(directory).st_mode
        assert mode & stat.S_ISGID and mode & 0o070 == 0o070, f"{directory}: {stat.filemode(mode)}"
        for name in filenames:
            path = Path(directory, name)
            if path.is_symlink():
                continue
            files.append(path)
            mode = os.stat(path).st_mode
            rel = path.relative_to(root).as_posix()
            assert mode & 0o040, f"{rel} is not group-readable: {stat.filemode(mode)}"
            if rel.startswith(_MUTABLE) or rel == "index.json":
                assert mode & 0o020, f"{rel} is not group-writable: {stat.filemode(mode)}"
            if rel.startswith(("blobs/", "meta/xxh3/")):
                assert mode & 0o777 == 0o444, f"{rel}: {stat.filemode(mode)}"
    return files


@pytest.mark.parametrize("how", ["init --shared DIR", "global --shared on first use"])
def test_a_shared_store_is_setgid_and_group_writable(how: str, tmp_path: Path, model_tree: Path) -> None:
    store = tmp_path / "shared"
    remote = tmp_path / "remote"
    publish(remote, "llama:v1", V1)
    env = {"ODAI_STORE_HOME": str(store)}
    if how == "init --shared DIR":
        assert run_cli(None, "init", "--shared", store, env=env) == (0, f"{store}\n", "")
        assert run_cli(None, "add", "m:v1", model_tree, env=env).code == 0
    else:
        assert run_cli(None, "--shared", "add", "m:v1", model_tree, env=env).code == 0
    assert json.loads((store / "odai-layout").read_bytes())["shared"] is True
    app = App(tmp_path / "app", store)
    for args in (("lock", "--remote", remote.as_uri(), "llama:v1"), ("sync",), ("rm", "m:v1"), ("gc",), ("verify",)):
        code, _, err = app.run(*args)
        assert code == 0, (args, err)
    seen = {p.relative_to(store).parts[0] for p in _check_shared_modes(store)}
    # Each kind of file was there to be checked.
    assert {"index.json", "blobs", "meta", "locks", "roots"} <= seen, seen


def test_init_shared_reports_what_the_store_is(tmp_path: Path) -> None:
    """An existing store is never changed by opening it, so init --shared cannot make it shared: it says so."""
    plain, shared = tmp_path / "plain", tmp_path / "shared"
    assert run_cli(None, "init", plain).code == 0
    before = sorted(p.name for p in plain.iterdir()), (plain / "odai-layout").read_bytes(), stat.S_IMODE(plain.stat().st_mode)
    result = run_cli(None, "--json", "init", "--shared", plain)
    assert_error(result, 2, json=True)
    assert "exists and is not shared" in result.err
    assert (sorted(p.name for p in plain.iterdir()), (plain / "odai-layout").read_bytes(), stat.S_IMODE(plain.stat().st_mode)) == before
    assert json.loads(run_cli(None, "--json", "init", plain).out) == {"store": str(plain), "shared": False}
    # A shared store stays shared, with or without the option.
    assert json.loads(run_cli(None, "--json", "init", "--shared", shared).out) == {"store": str(shared), "shared": True}
    assert json.loads(run_cli(None, "--json", "init", "--shared", shared).out) == {"store": str(shared), "shared": True}
    assert json.loads(run_cli(None, "--json", "init", shared).out) == {"store": str(shared), "shared": True}


@pytest.mark.parametrize("how", ["cli", "api"])
def test_a_partial_download_in_a_shared_store_is_group_writable(how: str, tmp_path: Path) -> None:
    """Whatever the umask of the program: an app using the API keeps its own (022 here), and the store still
    gives the group write access to its partials, explicitly (spec/locking.md#shared-stores)."""
    store = tmp_path / "shared"
    remote = tmp_path / "remote"
    publish(remote, "big:v1", {"big.bin": random.Random(5).randbytes(2 << 20)})
    assert run_cli(None, "init", "--shared", store).code == 0
    with serve_counting(remote, rate=1 << 20) as served:
        if how == "cli":
            proc = _start(store, "fetch", "--remote", served.url, "--connections", "1", "big:v1")
        else:
            app = f"import os; os.umask(0o022); from store import Store; Store({str(store)!r}).fetch('big:v1', remotes=[{served.url!r}], connections=1)"
            proc = subprocess.Popen([sys.executable, "-c", app], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            partial = _wait_for(lambda: [p for p in (store / "ingest").iterdir() if p.suffix == ".tmp"], proc)
        finally:
            proc.kill()
            proc.wait()
    assert os.stat(partial[0]).st_mode & 0o777 == 0o664


def _start(store: Path, *args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("ODAI_STORE_HOME", "ODAI_STORE_REMOTE", "XDG_CACHE_HOME")}
    full_env.update(env or {})
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "store", "--store", str(store), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=cwd,
    )


def _wait_for(found, proc: subprocess.Popen[bytes], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        if proc.poll() is not None:
            raise AssertionError(f"the command ended ({proc.returncode}) first: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.02)
    raise AssertionError("timed out")


# -- two users of one group --------------------------------------------------------------
#
# As root: two uids that exist nowhere else, sharing one gid, run odai-store
# through setpriv. Their store and sources live under a 0777 directory in
# /tmp, since pytest's temporary directories are 0700 to everyone but root.

GROUP = 47300
USERS = (47301, 47302)


@pytest.fixture(scope="module")
def as_user() -> Iterator:
    if os.geteuid() != 0:
        unavailable("the tests of two users sharing a store need root, to run commands as two users of one group")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"

    def prefix(uid: int, read_search: bool) -> tuple[str, ...]:
        base = (setpriv, f"--reuid={uid}", f"--regid={GROUP}", f"--groups={GROUP}")
        # The interpreter may live where only root may look (a pyenv under
        # /root): then the users get CAP_DAC_READ_SEARCH, which lets them read
        # and search anywhere but grants no write. Writes are what sharing is
        # about, and every file's mode is checked on its own.
        return (*base, "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search") if read_search else base

    probe = subprocess.run([*prefix(USERS[0], False), sys.executable, "-c", "import store"], capture_output=True, cwd="/")
    read_search = probe.returncode != 0
    yield lambda uid: prefix(uid, read_search)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="odai-shared-", dir="/tmp"))
    base.chmod(0o777)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_two_users_of_one_group_add_remove_collect_and_fetch_in_one_store(as_user, shared_tmp: Path) -> None:
    store, homes, run, ok, _ = _two_users(as_user, shared_tmp)
    remote = shared_tmp / "remote"
    a, b = USERS
    src_a = write_tree(shared_tmp / "src-a", {"a.txt": b"from a\n", "both.bin": SHARED})
    src_b = write_tree(shared_tmp / "src-b", {"b.txt": b"from b\n", "both.bin": SHARED})
    big = random.Random(6).randbytes(3 << 20)
    publish(remote, "big:v1", {"big.bin": big})
    publish(remote, "llama:v1", V1)

    ok(a, "init", "--shared", store)
    assert os.stat(store).st_gid == GROUP
    ok(a, "add", "a:v1", src_a)
    b_model = json.loads(ok(b, "--json", "add", "b:v1", src_b))  # both.bin is a's blob: b reuses it
    ok(b, "add", "a:v2", src_a)
    ok(a, "rm", "b:v1")
    ok(b, "rm", "a:v1")
    report = json.loads(ok(a, "--json", "gc"))  # a deletes what b wrote
    b_txt = "sha256:" + hashlib.sha256(b"from b\n").hexdigest()
    assert sorted(report["blobs"]) == sorted([b_model["digest"], b_txt])
    assert report["views"] == [b_model["digest"]]
    assert sorted(e.split()[0] for e in ok(b, "list").splitlines()) == ["a:v2"]

    with serve_counting(remote, rate=1 << 20) as served:
        ok(b, "fetch", "--remote", served.url, "llama:v1")
        ok(a, "fetch", "--remote", served.url, "llama:v1")
        # a's download dies half-way; b's fetch of the same blob must still succeed.
        proc = _start(store, "fetch", "--remote", served.url, "--connections", "1", "big:v1", prefix=as_user(a), env={"HOME": str(homes[a])}, cwd=homes[a])
        try:
            _wait_for(lambda: any(p.suffix == ".journal" for p in (store / "ingest").iterdir()), proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        left = [p for p in (store / "ingest").iterdir() if p.suffix == ".tmp"]
        assert left and all(p.stat().st_uid == a for p in left)
        path = ok(b, "fetch", "--remote", served.url, "--connections", "1", "big:v1").strip()
    assert (Path(path) / "big.bin").read_bytes() == big
    ok(b, "gc")  # a's dead partial goes once the blob is present
    assert list((store / "ingest").iterdir()) == []
    ok(a, "verify")
    ok(b, "rm", "big:v1", "llama:v1")
    ok(a, "gc")

    owners = {p.stat().st_uid for p in _check_shared_modes(store)}
    assert owners == {a, b}  # both users' files are there, and each was usable by the other
    # One history, made by a and appended to by b (a's second fetch of llama:v1 was up to date: no record).
    history = [json.loads(line) for line in (store / "meta" / "history.jsonl").read_bytes().splitlines() if line]
    assert [(r["command"], r["name"], r["uid"]) for r in history if r["outcome"] == "ok"] == [
        ("add", "a:v1", a), ("add", "b:v1", b), ("add", "a:v2", b), ("fetch", "llama:v1", b), ("fetch", "big:v1", b)
    ]


# -- what a member can do unnoticed, and what --verify notices (spec/locking.md#trust) ----


def _rewrite_in_place(blob: Path, data: bytes) -> None:
    """What the blob's owner can do (any member, for a blob they published): chmod, write the same inode, chmod back."""
    blob.chmod(0o644)
    with open(blob, "r+b") as f:
        f.write(data)
    blob.chmod(0o444)


def test_path_and_sync_verify_find_a_blob_rewritten_in_place_and_a_planted_view(tmp_path: Path) -> None:
    store, remote = tmp_path / "store", tmp_path / "remote"
    digest, manifest = publish(remote, "llama:v1", V1)
    app = App(tmp_path / "app", store)
    assert app.run("lock", "--remote", remote.as_uri(), "llama:v1").code == 0
    view = app.run("sync").out.strip()
    assert app.run("path", "--verify", "llama@" + str(digest)) == (0, f"{view}\n", "")
    assert app.run("sync", "--verify") == (0, f"{view}\n", "llama:v1: up to date\n")

    weights = next(f for f in manifest.files if f.path == "weights/shared.bin")
    blob = store / "blobs" / "sha256" / weights.digest.hex
    _rewrite_in_place(blob, b"\0" * 16)  # same size, same inode, same mode: only the bytes changed
    # path checks presence only: the rewritten file is served as the model's.
    assert app.run("path", "llama@" + str(digest)).code == 0
    message = assert_error(app.run("path", "--verify", "llama@" + str(digest)), 5)
    assert "1 file changed since published: weights/shared.bin" in message
    assert_error(app.run("path", "--verify", "--file", "weights/shared.bin", "llama@" + str(digest)), 5)
    assert app.run("path", "--verify", "--file", "config.json", "llama@" + str(digest)) == (0, f"{view}/config.json\n", "")
    # Without its xxh3 record, a file is checked by its SHA-256; no record is written (a read-only store works).
    config_digest = next(f.digest for f in manifest.files if f.path == "config.json")
    (store / "meta" / "xxh3" / config_digest.hex).unlink()
    assert app.run("path", "--verify", "--file", "config.json", "llama@" + str(digest)).code == 0
    assert not (store / "meta" / "xxh3" / config_digest.hex).exists()
    assert_error(app.run("sync", "--verify"), 5)
    assert blob.exists(), "--verify reads only: the blob stays for 'verify' to set aside"

    # A blob left writable may change after any check: --verify refuses it too.
    _rewrite_in_place(blob, SHARED[:16])
    assert app.run("path", "--verify", "llama@" + str(digest)).code == 0
    blob.chmod(0o664)
    assert_error(app.run("path", "--verify", "llama@" + str(digest)), 5)
    blob.chmod(0o444)

    # A planted view: the link points at a file of the planter's.
    planted = tmp_path / "planted.json"
    planted.write_bytes(b'{"version": 666}\n')
    link = Path(view) / "config.json"
    link.unlink()
    link.symlink_to(planted)
    assert app.run("path", "llama@" + str(digest)).code == 0
    message = assert_error(app.run("sync", "--verify"), 5)
    assert "config.json" in message


def _two_users(as_user, shared_tmp: Path):
    """(store, homes, run, ok, python) for two users of one group, each with a home of their own."""
    store = shared_tmp / "store"
    homes = {}
    for uid in USERS:
        homes[uid] = shared_tmp / f"home-{uid}"
        homes[uid].mkdir()
        os.chown(homes[uid], uid, GROUP)

    def run(uid: int, *args: str | os.PathLike[str]) -> CliResult:
        return run_cli(store, *args, env={"HOME": str(homes[uid])}, prefix=as_user(uid), cwd=homes[uid])

    def ok(uid: int, *args: str | os.PathLike[str]) -> str:
        code, out, err = run(uid, *args)
        assert code == 0, f"uid {uid}: {args}: exit {code}: {err}"
        return out

    def python(uid: int, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user(uid), sys.executable, "-c", code], capture_output=True, text=True, cwd=homes[uid])

    return store, homes, run, ok, python


def test_a_member_cannot_delete_another_members_gc_root_or_lock_file(as_user, shared_tmp: Path) -> None:
    """roots/ and locks/ are sticky: deleting a's root would let b's gc free a's pinned model."""
    a, b = USERS
    store, homes, run, ok, python = _two_users(as_user, shared_tmp)
    remote = shared_tmp / "remote"
    publish(remote, "llama:v1", V1)
    ok(a, "init", "--shared", store)
    lockfile = homes[a] / "odai.lock"
    ok(a, "lock", "--remote", remote.as_uri(), "--lockfile", lockfile, "llama:v1")
    view = ok(a, "sync", "--lockfile", lockfile).strip()
    [entry] = list((store / "roots").iterdir())
    assert entry.stat().st_uid == a

    attack = python(b, f"import os; os.unlink({str(entry)!r})")
    assert attack.returncode != 0 and "PermissionError" in attack.stderr, attack
    attack = python(b, f"import os; os.unlink({str(store / 'locks' / 'gc.lock')!r})")
    assert attack.returncode != 0 and "PermissionError" in attack.stderr, attack
    ok(b, "gc")
    assert ok(a, "sync", "--lockfile", lockfile).strip() == view  # still present: no request, nothing fetched

    # A root whose lockfile is gone keeps its pins for the grace period; past it, it keeps
    # nothing: b's gc leaves a's entry (only a may delete it), a's gc drops it.
    lockfile.unlink()
    ok(b, "gc")
    assert Path(view).exists()
    age_root(entry, 31 * DAY)
    ok(b, "gc")
    assert entry.exists()
    assert not Path(view).exists()
    ok(a, "gc")
    assert not entry.exists()
    for name in ("locks", "roots", "quarantine"):
        assert os.stat(store / name).st_mode & stat.S_ISVTX, name
    for name in ("blobs/sha256", "ingest", "leases", "meta/xxh3", "views/sha256"):
        assert not os.stat(store / name).st_mode & stat.S_ISVTX, name

    # A store made before the sticky bits: only the directory's owner can add one; another member is told whom to ask.
    (store / "locks").chmod(0o2775)
    code, out, err = run(b, "init", "--shared", store)
    assert (code, out) == (0, f"{store}\n")
    assert err == f"cannot set the sticky bit of {store / 'locks'}: only its owner (uid {a}) may; ask them to run 'odai-store init --shared {store}'\n"
    ok(a, "init", "--shared", store)
    assert stat.S_IMODE(os.stat(store / "locks").st_mode) == 0o3775


def test_a_members_lockfile_in_a_private_folder_stops_no_other_members_gc(as_user, shared_tmp: Path) -> None:
    """Issue 13, item 3: b's gc, du and roots used to exit 6 once a synced a lockfile in a chmod 700 folder."""
    a, b = USERS
    store, homes, run, ok, _ = _two_users(as_user, shared_tmp)
    remote = shared_tmp / "remote"
    digest, manifest = publish(remote, "llama:v1", V1)
    ok(a, "init", "--shared", store)
    private = homes[a] / "private"
    private.mkdir()
    os.chown(private, a, GROUP)
    private.chmod(0o700)
    lockfile = private / "odai.lock"
    ok(a, "lock", "--remote", remote.as_uri(), "--lockfile", lockfile, "llama:v1")
    ok(a, "sync", "--lockfile", lockfile)
    blobs = sorted(os.listdir(store / "blobs" / "sha256"))
    entry = store / "roots" / Store(store).layout.root_entry(lockfile).name
    until = json.loads(entry.read_bytes())["refreshed"] + 30 * DAY

    def b_runs(*args: str | os.PathLike[str]) -> CliResult:
        """b, with no capability at all: not even the read-search one the interpreter may need (privileges.without_capabilities)."""
        proc = subprocess.run(
            [*as_user(b), sys.executable, *without_capabilities(), "--store", str(store), *map(str, args)], capture_output=True, text=True, cwd=homes[b]
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    assert b_runs("path", "--lockfile", lockfile, "llama:v1").code != 0, "b must not be able to read a's private lockfile"
    stale = f"stale: it cannot be read (permission denied); keeps 1 pin until {time.strftime('%Y-%m-%d', time.gmtime(until))}"
    assert b_runs("roots") == (0, f"{lockfile}  {stale}\n", "")
    code, out, err = b_runs("--json", "gc")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["blobs"] == []
    assert report["kept"] == [{"name": "llama:v1", "digest": str(digest), "lockfile": str(lockfile), "why": "it cannot be read (permission denied)", "until": until}]
    assert b_runs("du").code == 0
    assert b_runs("list").out.rstrip().endswith(f"pinned in {lockfile}")
    assert sorted(os.listdir(store / "blobs" / "sha256")) == blobs
    # b may not prune a's root (sticky roots/): it stays, and is listed.
    assert b_runs("roots", "--prune") == (0, f"{lockfile}  {stale}\n", "")
    assert entry.exists()
    # To a, its owner, the root is not stale.
    assert ok(a, "roots") == f"{lockfile}  1 pin\n"
    assert json.loads(ok(a, "--json", "gc"))["kept"] == []

    # A root of the first format records no pins: b's gc cannot tell what it keeps, stops, and says whom to ask.
    entry.write_text(f"{lockfile}\n")
    message = assert_error(b_runs("gc"), 6)
    assert f"gc root {lockfile} cannot be read (permission denied)" in message
    assert "ask its owner to run 'odai-store sync' in its project once" in b_runs("gc").err
    ok(a, "sync", "--lockfile", lockfile)  # migrates it
    assert json.loads(entry.read_bytes())["pins"][0]["digest"] == str(digest)
    assert b_runs("gc").code == 0
    assert sorted(os.listdir(store / "blobs" / "sha256")) == blobs
    assert {f.digest for f in manifest.files} <= {Digest(h) for h in os.listdir(store / "blobs" / "sha256")}


def test_a_member_syncing_a_project_another_registered_leaves_their_root(as_user, shared_tmp: Path) -> None:
    """One lockfile, one root, owned by whoever registered it first: another member's sync cannot refresh it (sticky roots/), and need not."""
    a, b = USERS
    store, homes, run, ok, _ = _two_users(as_user, shared_tmp)
    remote = shared_tmp / "remote"
    publish(remote, "llama:v1", V1)
    ok(a, "init", "--shared", store)
    project = shared_tmp / "project"
    project.mkdir()
    os.chown(project, a, GROUP)
    project.chmod(0o2775)
    lockfile = project / "odai.lock"
    ok(a, "lock", "--remote", remote.as_uri(), "--lockfile", lockfile, "llama:v1")
    view = ok(a, "sync", "--lockfile", lockfile)
    [entry] = list((store / "roots").iterdir())
    age_root(entry, 2 * DAY)  # due for a refresh
    aged = entry.read_bytes()
    assert ok(b, "sync", "--lockfile", lockfile) == view
    assert entry.read_bytes() == aged and entry.stat().st_uid == a
    assert ok(b, "roots") == f"{lockfile}  1 pin\n"
    ok(a, "sync", "--lockfile", lockfile)
    assert entry.read_bytes() != aged  # its owner refreshes it


def test_init_shared_gives_an_existing_shared_store_its_sticky_bits(tmp_path: Path) -> None:
    """A shared store made before the sticky bits: init --shared adds them, and changes nothing else."""
    store = tmp_path / "shared"
    assert run_cli(None, "init", "--shared", store).code == 0
    for name in ("locks", "roots", "quarantine"):
        (store / name).chmod(0o2775)
    before = {p: p.stat().st_mode for p in store.rglob("*") if p.name not in ("locks", "roots", "quarantine")}
    assert run_cli(None, "init", "--shared", store) == (0, f"{store}\n", "")
    for name in ("locks", "roots", "quarantine"):
        assert stat.S_IMODE((store / name).stat().st_mode) == 0o3775, name
    assert {p: p.stat().st_mode for p in store.rglob("*") if p.name not in ("locks", "roots", "quarantine")} == before


def _remotes(remote: Path) -> str:
    return f'remotes = ["{remote.as_uri()}"]\n'


def test_a_config_toml_another_member_wrote_is_not_honoured(as_user, shared_tmp: Path) -> None:
    a, b = USERS
    store, homes, run, ok, python = _two_users(as_user, shared_tmp)
    mirror, planted = shared_tmp / "mirror", shared_tmp / "planted"
    publish(mirror, "llama:v1", V1)
    publish(planted, "llama:v1", {"config.json": b'{"planted": true}\n'})
    ok(a, "init", "--shared", store)
    config = store / "config.toml"
    # b, a member, replaces the config (the store's root is group-writable) to send everyone to b's remote.
    wrote = python(b, f"import os; os.umask(0o022); open({str(config)!r}, 'w').write({_remotes(planted)!r})")
    assert wrote.returncode == 0, wrote.stderr
    message = assert_error(run(a, "fetch", "llama:v1"), 2)
    assert f"is owned by uid {b}, neither the store's owner (uid {a}) nor you" in message
    assert "llama" not in ok(a, "list")
    ok(b, "fetch", "llama:v1")  # b's own file, for b: honoured

    # The store's owner writes it, group-writable: refused too, since any member may have changed it since.
    config.unlink()
    wrote = python(a, f"import os; os.umask(0o002); open({str(config)!r}, 'w').write({_remotes(mirror)!r})")
    assert wrote.returncode == 0, wrote.stderr
    message = assert_error(run(b, "fetch", "llama:v1"), 2)
    assert "may be written by group or others (-rw-rw-r--)" in message
    config.chmod(0o644)
    ok(b, "fetch", "llama:v1")


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_member_cannot_have_anothers_fetch_write_through_a_planted_partial(link: str, as_user, shared_tmp: Path) -> None:
    """Issue 11, finding 1a: ingest/ is group-writable without the sticky bit, so member a
    may plant a dead writer's partial name that links to member b's ~/.profile; b's fetch
    of that blob must neither write into the file, chmod it, nor publish the link."""
    a, b = USERS
    store, homes, run, ok, python = _two_users(as_user, shared_tmp)
    remote = shared_tmp / "remote"
    profile = homes[b] / ".profile"
    profile.write_bytes(b"export PATH=$HOME/bin:$PATH\n")
    os.chown(profile, b, GROUP)
    profile.chmod(0o644)
    publish(remote, "llama:v1", V1)

    assert run(a, "init", "--shared", store).code == 0
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    hexdigest = hashlib.sha256(SHARED).hexdigest()
    planted = store / "ingest" / f"{hexdigest}-{dead.pid}-{os.urandom(8).hex()}.tmp"
    if link == "symlink":
        planted.symlink_to(profile)
        os.lchown(planted, a, GROUP)  # a's own link: a may create it in ingest/
    else:
        os.link(profile, planted)  # as a can where fs.protected_hardlinks is 0, or the file is group-writable

    with serve_counting(remote) as served:
        code, _, err = run(b, "fetch", "--remote", served.url, "llama:v1")
    assert code == 0, err
    assert profile.read_bytes() == b"export PATH=$HOME/bin:$PATH\n"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o644
    blob = store / "blobs" / "sha256" / hexdigest
    assert stat.S_ISREG(os.lstat(blob).st_mode) and os.lstat(blob).st_ino != profile.stat().st_ino
    assert blob.read_bytes() == SHARED
