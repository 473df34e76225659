"""store.config: a store's config.toml (spec/config.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.config import Config, read_config
from store.errors import StorageError, UsageError


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    return path


def test_an_absent_file_is_the_default(tmp_path: Path) -> None:
    assert read_config(tmp_path / "config.toml") == Config(remotes=())


def test_remotes_keep_their_order(tmp_path: Path) -> None:
    path = _write(tmp_path, b'remotes = ["https://b.example/models", "/mnt/usb/store", "file:///srv/a"]\n')
    assert read_config(path).remotes == ("https://b.example/models", "/mnt/usb/store", "file:///srv/a")


def test_a_relative_path_is_relative_to_the_store(tmp_path: Path) -> None:
    path = _write(tmp_path, b'remotes = ["../mirror", "~/models", "https://a.example/m"]\n')
    assert read_config(path).remotes == (str(tmp_path / "../mirror"), "~/models", "https://a.example/m")


@pytest.mark.parametrize(("data", "key"), [(b'remote = ["/a"]\n', "remote"), (b'remotes = ["/a"]\n[later]\nx = "y"\n', "later")])
def test_an_unknown_key_or_table_is_a_usage_error_naming_it(tmp_path: Path, data: bytes, key: str) -> None:
    """Issue 13, item 14: a misspelt key, ignored, would send every fetch elsewhere unseen (spec/config.md)."""
    with pytest.raises(UsageError, match=f"unknown key '{key}'") as refused:
        read_config(_write(tmp_path, data))
    assert refused.value.exit_code == 2 and "remotes" in refused.value.hint


def test_insecure_registries_are_hosts_with_an_optional_port(tmp_path: Path) -> None:
    path = _write(tmp_path, b'insecure-registries = ["Registry.LAN:5000", "10.0.0.7"]\n')
    assert read_config(path) == Config(remotes=(), insecure_registries=frozenset({"registry.lan:5000", "10.0.0.7"}))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'insecure-registries = "registry.lan"\n', "must be a list"),
        (b"insecure-registries = [5000]\n", "must be a list"),
        (b'insecure-registries = ["http://registry.lan"]\n', "invalid registry"),
        (b'insecure-registries = ["registry.lan/team"]\n', "invalid registry"),
        (b'insecure-registries = [""]\n', "invalid registry"),
    ],
)
def test_an_insecure_registry_that_is_no_host_is_a_usage_error(tmp_path: Path, data: bytes, says: str) -> None:
    # A scheme or a path would never match a registry's HOST[:PORT]: silently, every fetch would go to https.
    with pytest.raises(UsageError, match=says) as info:
        read_config(_write(tmp_path, data))
    assert info.value.exit_code == 2 and "config.toml" in info.value.message


def test_utf8_whatever_the_locale(tmp_path: Path) -> None:
    path = _write(tmp_path, 'remotes = ["/mnt/modèles"]\n'.encode())
    assert read_config(path).remotes == ("/mnt/modèles",)


@pytest.mark.parametrize(
    "data",
    # Nesting past the recursion limit and an integer past Python's 4300 digits were exit 1 (issue 16, garbage everywhere).
    [b"remotes = [", b"remotes = ['a'\n", b"= 1\n", b'remotes = ["\xff"]\n', b"remotes = " + b"[" * 2000 + b"]" * 2000, b"remotes = 1" + b"0" * 5000],
)
def test_what_is_not_toml_is_a_usage_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UsageError, match="not valid TOML") as info:
        read_config(_write(tmp_path, data))
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "data",
    [b'remotes = "https://a.example"\n', b"remotes = [1]\n", b'remotes = [""]\n', b"remotes = {a = 1}\n", b'remotes = [["/a"]]\n'],
)
def test_remotes_of_the_wrong_type_are_a_usage_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UsageError, match="remotes") as info:
        read_config(_write(tmp_path, data))
    assert info.value.exit_code == 2


def test_an_unreadable_config_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(StorageError) as info:
        read_config(tmp_path / "config.toml")
    assert info.value.exit_code == 6


def test_a_config_others_may_write_is_not_honoured(tmp_path: Path) -> None:
    """spec/config.md#who-may-write-it: any member of a shared store may have changed it."""
    path = _write(tmp_path, b'remotes = ["https://planted.example"]\n')
    path.chmod(0o664)
    with pytest.raises(UsageError, match="may be written by group or others") as info:
        read_config(path)
    assert info.value.exit_code == 2


def test_a_config_owned_by_another_user_is_not_honoured(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = _write(tmp_path, b'remotes = ["https://planted.example"]\n')
    os.chown(path, 47399, -1)  # a member, neither the store's owner nor the user running the command
    with pytest.raises(UsageError, match="owned by uid 47399, neither the store's owner"):
        read_config(path)


def test_a_config_that_is_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.toml"
    target.write_bytes(b'remotes = ["https://planted.example"]\n')
    (tmp_path / "config.toml").symlink_to(target)
    with pytest.raises(StorageError):
        read_config(tmp_path / "config.toml")


def test_a_broken_config_does_not_fail_a_fetch_that_names_its_remote(tmp_path: Path) -> None:
    # Found in review: any member of a shared store can break config.toml;
    # a command given --remote has no use for it and must not read it.
    from store import Store

    source = Store(tmp_path / "source")
    (tmp_path / "model.bin").write_bytes(b"weights")
    source.add("m:v1", [tmp_path / "model.bin"])
    store = Store(tmp_path / "store")
    (store.layout.config).write_text("remotes = [not toml\n")
    model = store.fetch("m:v1", remotes=[str(source.layout.root)])
    assert (model.path / "model.bin").read_bytes() == b"weights"
