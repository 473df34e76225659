"""lock --upgrade: the pins resolved again on the remotes they record, as `uv lock --upgrade` does (issue 13, item 8),
and the hint of lock --check, which names a command that works.

The remotes are stores used as file remotes; the app's store comes from $ODAI_STORE_HOME, so a hint's
command runs exactly as printed, with no --store and no remote configured.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from store import LockfileError, Store, UsageError
from store.local.roots import read_lockfile
from store.oci.digest import Digest
from store.oci.reference import Reference
from tests.support.apps import App, publish
from tests.support.cli import CliResult, assert_error

V1 = {"config.json": b'{"v": 1}\n', "weights.bin": b"one" * 1000}
V2 = {"config.json": b'{"v": 2}\n', "weights.bin": b"two" * 1000}
V3 = {"config.json": b'{"v": 3}\n', "weights.bin": b"three" * 1000}


def _publish(remote: Path, name: str, files: dict[str, bytes]) -> Digest:
    return publish(remote, name, files)[0]


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path / "app", tmp_path / "store")


def _run_hint(app: App, result: CliResult) -> CliResult:
    """Run the command the hint of ``result`` names, word for word."""
    hint = result.err.splitlines()[-1]
    assert hint.startswith("hint: run '"), hint
    quoted = hint[len("hint: run ") :].rsplit(" to ", 1)[0]
    argv = shlex.split(quoted[1:-1])
    assert argv[0] == "odai-store"
    return app.run(*argv[1:])


def test_the_hint_of_check_names_a_command_that_takes_the_new_versions(tmp_path: Path, app: App) -> None:
    remote = tmp_path / "remote"
    _publish(remote, "llama:v1", V1)
    _publish(remote, "llama:latest", V1)
    _publish(remote, "phi:v1", V1)
    assert app.run("lock", "--remote", remote, "llama:v1", "llama:latest", "phi:v1").code == 0
    before = app.pinned()
    moved = _publish(remote, "llama:latest", V2)

    checked = app.run("lock", "--check")
    assert "llama:latest" in assert_error(checked, 7)
    # The app runs the hint in its own directory, with no remote but the pinned one.
    upgraded = _run_hint(app, checked)
    assert upgraded.code == 0, upgraded.err
    assert upgraded.out == f"{app.lockfile}\n"
    assert upgraded.err == f"llama:latest: {before['llama:latest'].short} -> {moved.short}\n"
    assert app.pinned() == {**before, "llama:latest": moved}
    assert app.run("lock", "--check") == (0, f"{app.lockfile}\n", "3 pins hold in odai.lock\n")


def test_the_hint_of_a_check_on_another_remote_upgrades_from_that_remote(tmp_path: Path, app: App) -> None:
    pinned, mirror = tmp_path / "pinned", tmp_path / "mirror"
    _publish(pinned, "llama:latest", V1)
    _publish(mirror, "llama:latest", V1)
    assert app.run("lock", "--remote", pinned, "llama:latest").code == 0
    moved = _publish(mirror, "llama:latest", V2)  # only on the mirror

    checked = app.run("lock", "--check", "--remote", mirror)
    assert_error(checked, 7)
    assert _run_hint(app, checked).code == 0
    assert app.pinned() == {"llama:latest": moved}
    assert read_lockfile(app.lockfile).pins[0].remote == mirror.as_uri()  # where it now comes from


def test_upgrade_resolves_each_pin_on_its_own_remote_and_downloads_nothing(tmp_path: Path, app: App) -> None:
    one, two, default = tmp_path / "one", tmp_path / "two", tmp_path / "default"
    _publish(one, "llama:latest", V1)
    _publish(two, "phi:latest", V1)
    for name in ("llama:latest", "phi:latest"):
        _publish(default, name, V3)  # a default remote that would give other versions
    assert app.run("lock", "--remote", one, "llama:latest").code == 0
    assert app.run("lock", "--remote", two, "phi:latest").code == 0
    before, blobs, first = app.pinned(), app.blobs(), app.lockfile.read_bytes()

    # Nothing moved: each pin is up to date, and the lockfile keeps its bytes.
    result = app.run("lock", "--upgrade", env={"ODAI_STORE_REMOTE": str(default)})
    assert result == (0, f"{app.lockfile}\n", "llama:latest: up to date\nphi:latest: up to date\n")
    assert app.lockfile.read_bytes() == first

    llama = _publish(one, "llama:latest", V2)
    code, out, err = app.run("--json", "lock", "--upgrade", env={"ODAI_STORE_REMOTE": str(default)})
    assert code == 0, err
    assert err == f"llama:latest: {before['llama:latest'].short} -> {llama.short}\nphi:latest: up to date\n"
    doc = json.loads(out)
    assert doc["lockfile"] == str(app.lockfile) and doc["changed"] is True
    assert [(p["name"], p["tag"], p["remote"], p["previous"], p["digest"]) for p in doc["pins"]] == [
        ("llama", "latest", one.as_uri(), str(before["llama:latest"]), str(llama)),
        ("phi", "latest", two.as_uri(), str(before["phi:latest"]), str(before["phi:latest"])),
    ]
    assert app.pinned() == {"llama:latest": llama, "phi:latest": before["phi:latest"]}
    # lock only resolves: sync downloads.
    assert app.blobs() == blobs
    assert app.run("roots").out == f"{app.lockfile}  2 pins\n"


def test_upgrade_of_names_touches_only_their_pins(tmp_path: Path, app: App) -> None:
    remote = tmp_path / "remote"
    for name in ("llama:v1", "llama:latest", "phi:latest"):
        _publish(remote, name, V1)
    assert app.run("lock", "--remote", remote, "llama:v1", "llama:latest", "phi:latest").code == 0
    before = app.pinned()
    moved = {name: _publish(remote, name, V2) for name in ("llama:v1", "llama:latest", "phi:latest")}

    # NAME is every pin of NAME; NAME:TAG that pin only.
    result = app.run("lock", "--upgrade", "llama")
    assert result.code == 0, result.err
    assert app.pinned() == {**before, "llama:v1": moved["llama:v1"], "llama:latest": moved["llama:latest"]}
    assert app.run("lock", "--upgrade", "phi:latest", "phi").code == 0  # one pin, however often named
    assert app.pinned() == moved


def test_check_sync_and_upgrade_select_the_same_pins_of_a_name(tmp_path: Path, app: App) -> None:
    """NAME is every pin of NAME whatever the tag, NAME:TAG that pin only, each once in lockfile order (spec/cli.md, lock)."""
    remote = tmp_path / "remote"
    for name, files in (("llama:v1", V1), ("llama:v2", V2), ("phi:v1", V3)):
        _publish(remote, name, files)
    assert app.run("lock", "--remote", remote, "phi:v1", "llama:v2", "llama:v1").code == 0
    before = app.pinned()
    # sync prints one view per pin, in lockfile order whatever the order named.
    synced = app.run("--json", "sync", "phi", "llama", "llama:v2")
    assert synced.code == 0, synced.err
    assert [m["digest"] for m in json.loads(synced.out)["models"]] == [str(before[n]) for n in ("llama:v1", "llama:v2", "phi:v1")]
    moved = _publish(remote, "llama:v1", V3)  # no llama:latest is pinned: --check llama once read it as llama:latest

    checked = app.run("lock", "--check", "llama")
    assert "1 of 2 pins moved: llama:v1" in assert_error(checked, 7)
    assert app.run("lock", "--check", "llama:v2", "phi").code == 0
    code, out, err = app.run("--json", "lock", "--check", "llama:v2", "phi", "llama:v2")
    assert code == 0, err
    assert [(p["name"], p["tag"]) for p in json.loads(out)["pins"]] == [("llama", "v2"), ("phi", "v1")]
    not_pinned = app.run("lock", "--check", "mistral", "llama")
    assert assert_error(not_pinned, 7) == f"mistral is not pinned in {app.lockfile}"
    assert not_pinned.err.splitlines()[-1] == "hint: run 'odai-store lock mistral' first"
    assert assert_error(app.run("lock", "--check", "llama:latest"), 7) == f"llama:latest is not pinned in {app.lockfile}"

    upgraded = app.run("lock", "--upgrade", "llama")
    assert upgraded.err == f"llama:v1: {before['llama:v1'].short} -> {moved.short}\nllama:v2: up to date\n"
    assert app.run("lock", "--check", "llama").code == 0


def test_check_of_a_name_through_the_api(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    _publish(remote, "llama:v1", V1)
    _publish(remote, "llama:v2", V1)
    store = Store(tmp_path / "store")
    lockfile = tmp_path / "odai.lock"
    store.lock(["llama:v1", "llama:v2"], lockfile, remotes=str(remote))
    assert [p.ref_name for p in store.check_lock(lockfile, "llama").pins] == ["llama:v1", "llama:v2"]
    assert [p.ref_name for p in store.check_lock(lockfile, Reference("llama", "v2")).pins] == ["llama:v2"]
    _publish(remote, "llama:v2", V2)
    with pytest.raises(LockfileError, match="1 of 2 pins moved: llama:v2"):
        store.check_lock(lockfile, ["llama"])
    with pytest.raises(LockfileError, match="llama:latest is not pinned"):
        store.check_lock(lockfile, Reference("llama"))


def test_upgrade_refuses_what_is_no_pin_and_changes_nothing(tmp_path: Path, app: App) -> None:
    remote = tmp_path / "remote"
    _publish(remote, "llama:v1", V1)
    _publish(remote, "mistral:v1", V1)
    assert app.run("lock", "--remote", remote, "llama:v1").code == 0
    first = app.lockfile.read_bytes()
    digest = app.pinned()["llama:v1"]

    not_pinned = app.run("lock", "--upgrade", "--remote", remote, "llama:v1", "mistral:v1")
    assert "mistral:v1 is not pinned" in assert_error(not_pinned, 2)
    assert "odai-store lock mistral:v1" in not_pinned.err.splitlines()[-1]
    assert "a digest is already a pin" in assert_error(app.run("lock", "--upgrade", f"llama@{digest}"), 2)
    assert "exclude each other" in assert_error(app.run("lock", "--upgrade", "--check"), 2)
    assert "no lockfile" in assert_error(app.run("lock", "--upgrade", "--lockfile", app.dir / "other.lock"), 2)
    assert not (app.dir / "other.lock").exists()
    assert app.lockfile.read_bytes() == first


def test_upgrade_through_the_api(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    _publish(remote, "llama:v1", V1)
    _publish(remote, "phi:v1", V1)
    store = Store(tmp_path / "store")
    lockfile = tmp_path / "odai.lock"
    locked = store.lock(["llama:v1", "phi:v1"], lockfile, remotes=str(remote))
    assert locked.previous == (None, None)
    moved = _publish(remote, "llama:v1", V2)

    heard: list[str] = []
    result = store.upgrade_lock(lockfile, "llama", say=heard.append)
    assert result.changed and [p.digest for p in result.pins] == [moved]
    assert result.previous == (locked.pins[0].digest,)
    assert heard == [f"llama:v1: {locked.pins[0].digest.short} -> {moved.short}"]
    assert store.check_lock(lockfile).previous == (moved, locked.pins[1].digest)
    assert [r.lockfile for r in store.roots()] == [lockfile]
    with pytest.raises(UsageError, match="names"):
        store.upgrade_lock(lockfile, 5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not pinned"):
        store.upgrade_lock(lockfile, ["mistral"])
