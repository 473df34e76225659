"""store.local.layout: every path in a store comes from its root."""

from __future__ import annotations

from pathlib import Path

from store.local.layout import StoreLayout
from store.oci.digest import Digest

HEX = "ab" * 32


def test_oci_paths() -> None:
    layout = StoreLayout(Path("/s"))
    assert layout.oci_layout == Path("/s/oci-layout")
    assert layout.index == Path("/s/index.json")
    assert layout.blob(Digest(HEX)) == Path(f"/s/blobs/sha256/{HEX}")


def test_every_path_is_inside_the_root_and_distinct() -> None:
    layout = StoreLayout(Path("/s"))
    paths = [
        layout.oci_layout,
        layout.index,
        layout.odai_layout,
        layout.config,
        layout.blob(Digest(HEX)),
        layout.fast_record(Digest(HEX)),
        layout.view(Digest(HEX)),
        layout.lock("index"),
        *layout.directories(),
    ]
    assert all(p.is_relative_to("/s") and p != Path("/s") for p in paths)
    assert len(set(paths)) == len(paths)


def test_directories_cover_what_writers_use() -> None:
    layout = StoreLayout(Path("/s"))
    dirs = set(layout.directories())
    for path in (layout.blob(Digest(HEX)), layout.fast_record(Digest(HEX)), layout.view(Digest(HEX)), layout.lock("gc")):
        assert path.parent in dirs
    assert {layout.ingest, layout.leases, layout.quarantine, layout.roots} <= dirs
