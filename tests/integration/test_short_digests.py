"""Short digests (spec/names.md#short-digests): path, show, rm and export take the first 12 or more hex digits of a manifest digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import Store
from store.errors import NotFound, UsageError
from store.oci.descriptor import MANIFEST_TYPE, Descriptor
from store.oci.digest import Digest
from store.oci.reference import ShortDigest
from tests.support.cli import assert_error, run_cli
from tests.support.trees import write_tree


@pytest.fixture
def demo(store_dir: Path, tmp_path: Path) -> Store:
    """demo:v1 and demo:latest (one manifest), other:v1 (another)."""
    store = Store(store_dir)
    store.add("demo:v1", write_tree(tmp_path / "demo", {"a.txt": b"hello\n", "w.bin": b"w" * 100}))
    store.tag("demo:v1", "demo:latest")
    store.add("other:v1", write_tree(tmp_path / "other", {"o.txt": b"other"}))
    return store


def _digest(store: Store, ref: str) -> Digest:
    return store.resolve(ref)[0]


@pytest.mark.parametrize("spell", [lambda d: d.short, lambda d: d.hex[:20], lambda d: d.hex, lambda d: f"sha256:{d.short}", str])
def test_path_show_export_take_a_short_digest(demo: Store, tmp_path: Path, spell) -> None:
    digest = _digest(demo, "other:v1")
    short = spell(digest)
    assert run_cli(demo.root, "path", short) == (0, f"{demo.path('other:v1')}\n", "")
    assert run_cli(demo.root, "path", short, "--file", "o.txt").out == f"{demo.path('other:v1')}/o.txt\n"
    shown = json.loads(run_cli(demo.root, "--json", "show", short).out)
    assert (shown["name"], shown["digest"]) == (None, str(digest))
    assert run_cli(demo.root, "-q", "export", short, tmp_path / "out").code == 0
    assert (tmp_path / "out" / "o.txt").read_bytes() == b"other"


def test_the_short_digest_list_shows_works(demo: Store) -> None:
    line = next(line for line in run_cli(demo.root, "list").out.splitlines() if line.startswith("other:v1"))
    assert run_cli(demo.root, "path", line.split()[1]).out == f"{demo.path('other:v1')}\n"


def test_fewer_than_12_digits_are_a_name(demo: Store) -> None:
    message = assert_error(run_cli(demo.root, "path", _digest(demo, "other:v1").hex[:11]), 3)
    assert message.startswith("no model named ")


def test_a_model_named_with_hex_digits_is_reached_with_its_tag(demo: Store) -> None:
    name = "0123456789abcdef"
    demo.tag("other:v1", name)
    assert run_cli(demo.root, "path", f"{name}:latest").out == f"{demo.path('other:v1')}\n"
    message = assert_error(run_cli(demo.root, "path", name), 3)
    assert message.endswith(f"has a digest starting with {name}")
    assert f"write {name}:latest" in run_cli(demo.root, "path", name).err


def test_a_prefix_of_nothing_is_not_found(demo: Store) -> None:
    message = assert_error(run_cli(demo.root, "show", "000000000000", "--json"), 3, json=True)
    assert message == f"no model manifest in {demo.root} has a digest starting with 000000000000"


def test_a_files_short_digest_is_not_a_model(demo: Store) -> None:
    """show prints the short digest of each file too; it designates no model."""
    file_digest = demo.info("other:v1").files[0].file.digest
    message = assert_error(run_cli(demo.root, "path", file_digest.short), 3)
    assert message.endswith(f"{file_digest} is a model's file, not a manifest")


def _name_fake(store: Store, name: str, hex_: str) -> None:
    """Name a manifest the store does not hold (another tool may write such an entry)."""
    store._names.edit(lambda index: index.with_name(name, Descriptor(MANIFEST_TYPE, Digest(hex_), 100)))


def test_an_ambiguous_prefix_is_a_usage_error_naming_the_candidates(demo: Store) -> None:
    first, second = "abcdef123456" + "0" * 52, "abcdef123456" + "1" * 52
    _name_fake(demo, "fake:a", first)
    _name_fake(demo, "fake:b", second)
    result = run_cli(demo.root, "path", "abcdef123456")
    message = assert_error(result, 2)
    assert message == f"short digest abcdef123456 is ambiguous: 2 manifests in {demo.root} start with it"
    assert f"sha256:{first} (fake:a)" in result.err and f"sha256:{second} (fake:b)" in result.err
    # One more digit decides; the manifest is absent, so that one is not found.
    assert "is not in the store" in assert_error(run_cli(demo.root, "path", "abcdef1234560"), 3)
    with pytest.raises(UsageError):
        demo.path("sha256:abcdef123456")


def test_a_manifest_no_entry_names_is_found_in_blobs(demo: Store) -> None:
    """A model whose name was removed, not yet collected: NAME@sha256:<hex> designates it, so does its short digest."""
    digest = _digest(demo, "other:v1")
    view = demo.path("other:v1")
    demo.remove("other:v1")
    assert run_cli(demo.root, "path", digest.short).out == f"{view}\n"
    assert demo.path(ShortDigest(digest.short)) == view
    # rm has no entry to drop for it.
    assert "no entry of index.json has manifest" in assert_error(run_cli(demo.root, "rm", digest.short), 3)


def test_rm_by_short_digest_drops_the_models_one_name(demo: Store) -> None:
    digest = _digest(demo, "other:v1")
    result = run_cli(demo.root, "--json", "rm", digest.short)
    assert (result.code, json.loads(result.out), result.err) == (0, {"removed": ["other:v1"]}, "removed other:v1\n")
    assert [e.name for e in demo.list()] == ["demo:latest", "demo:v1"]


def test_rm_by_short_digest_of_a_model_with_several_names_removes_nothing(demo: Store) -> None:
    digest = _digest(demo, "demo:v1")
    result = run_cli(demo.root, "rm", "other:v1", digest.short)
    assert assert_error(result, 2) == f"manifest {digest} has 2 names: demo:latest, demo:v1"
    assert result.err.endswith("hint: remove the names you mean: odai-store rm demo:latest demo:v1\n")
    assert [e.name for e in demo.list()] == ["demo:latest", "demo:v1", "other:v1"]
    # By the name and the digest both: removed once.
    assert demo.remove(["demo:latest", "other:v1", _digest(demo, "other:v1").short]) == ["demo:latest", "other:v1"]
    assert demo.remove(ShortDigest(digest.hex[:16])) == ["demo:v1"]


def test_rm_by_short_digest_drops_an_unnamed_entry(demo: Store) -> None:
    """fetch by digest leaves an unnamed entry; its short digest removes it, reported by its full digest."""
    digest = _digest(demo, "other:v1")
    mine = Store(demo.root.parent / "mine")
    mine.fetch(f"other@{digest}", remotes=str(demo.root))
    assert run_cli(mine.root, "rm", digest.short) == (0, "", f"removed {digest}\n")
    with pytest.raises(NotFound):
        mine.remove(digest.short)


def test_the_python_api_takes_short_digests(demo: Store, tmp_path: Path) -> None:
    digest = _digest(demo, "other:v1")
    assert demo.resolve(digest.short)[0] == digest
    assert demo.info(f"sha256:{digest.short}").digest == digest
    assert demo.model(ShortDigest(digest.hex[:30])).path == demo.path("other:v1")
    assert [path for path, _ in demo.export(digest.short, tmp_path / "api").files] == ["o.txt"]
