"""Opening a store: create the layout on first use, refuse one made by a newer version."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..errors import StorageError, UsageError, from_os_error, storage_errors
from ..fs.atomic import create_atomic
from ..fs.bounded import ODAI_LAYOUT_MAX, read_bounded
from ..oci.index import Index
from .layout import LAYOUT_VERSION, StoreLayout

__all__ = ["OCI_LAYOUT", "is_shared", "layout_version", "open_layout", "set_sticky", "sticky_directories"]

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}\n'


def layout_version(layout: StoreLayout) -> tuple[int | None, bool]:
    """(odaiLayoutVersion, shared) of the store, (None, False) if it has none yet."""
    try:
        doc = json.loads(read_bounded(layout.odai_layout, ODAI_LAYOUT_MAX, "odai-layout"))
        version, shared = doc["odaiLayoutVersion"], doc.get("shared", False)
        # Exactly as spec/store-layout.md says: int() would take true, "1" and 1.7 for 1.
        if type(version) is not int or version < 1 or type(shared) is not bool:
            raise ValueError("odai-layout holds no valid version")
        return version, shared
    except FileNotFoundError:
        return None, False
    except NotADirectoryError:
        raise StorageError(f"the store location {layout.root} is not a directory", "point --store or $ODAI_STORE_HOME at a directory") from None
    except OSError as err:
        raise from_os_error(err, f"opening the store at {layout.root}") from err
    except (ValueError, KeyError, TypeError, RecursionError):
        raise StorageError(f"{layout.odai_layout} is damaged", "restore it: it holds {\"odaiLayoutVersion\": 1}") from None


def is_shared(layout: StoreLayout) -> bool:
    """Whether the store was created shared: its odai-layout says ``"shared": true``."""
    return layout_version(layout)[1]


def sticky_directories(layout: StoreLayout) -> tuple[Path, ...]:
    """The directories of a shared store whose entries only their owner (or the store's) may delete or replace.

    Those whose entries no other member ever needs to remove: lock files
    are never deleted, a root is its registrant's, quarantined blobs are
    evidence. Not blobs/, meta/, views/ (any member's gc collects them),
    nor ingest/ and leases/ (any member cleans up after a dead writer):
    spec/store-layout.md#permissions.
    """
    return (layout.locks, layout.roots, layout.quarantine)


def set_sticky(layout: StoreLayout) -> list[Path]:
    """Add the sticky bit to each of ``sticky_directories`` that lacks it; return those this user may not change (not their owner)."""
    refused = []
    for directory in sticky_directories(layout):
        try:
            mode = os.stat(directory).st_mode
            if not mode & stat.S_ISVTX:
                os.chmod(directory, stat.S_IMODE(mode) | stat.S_ISVTX)
        except PermissionError:
            refused.append(directory)
    return refused


def open_layout(root: Path, shared: bool = False, *, anywhere: bool = False) -> StoreLayout:
    """The layout at ``root``, created if absent (group-shared if ``shared``). A store that exists is not written to.

    An OCI image layout made by another tool is adopted: our directories are
    added beside it and its index.json is kept. A directory holding anything
    else is refused (UsageError) unless ``anywhere`` (init, deliberately):
    ``--store ~/projects`` is a typo, not a wish for a store among a user's
    files. The process umask is left alone: in a shared store, the layout's
    ``shared`` makes writers give their files group read and write
    explicitly (spec/locking.md#shared-stores).
    """
    version, is_shared = layout_version(StoreLayout(root))
    if version is not None and version > LAYOUT_VERSION:
        raise StorageError(
            f"the store at {root} has layout version {version}; this odai-store knows up to {LAYOUT_VERSION}",
            "upgrade odai-store, or use another store with --store",
        )
    if version == LAYOUT_VERSION:
        return StoreLayout(root, is_shared)
    layout = StoreLayout(root, shared)
    if not anywhere:
        _refuse_foreign_files(layout)
    with storage_errors(f"creating the store at {root}"):
        root.mkdir(parents=True, exist_ok=True)
        for directory in (root, *layout.directories()):
            directory.mkdir(parents=True, exist_ok=True)
            if shared:
                # setgid: everything created below belongs to the directory's group.
                os.chmod(directory, 0o2775)
        if shared:
            for parent in {d.parent for d in layout.directories()} - {root}:
                os.chmod(parent, 0o2775)
            set_sticky(layout)
        create_atomic(layout.oci_layout, OCI_LAYOUT, group=shared)
        create_atomic(layout.index, Index().to_bytes(), group=shared)
        record = {"odaiLayoutVersion": LAYOUT_VERSION, **({"shared": True} if shared else {})}
        # Last: its presence says every part above exists.
        create_atomic(layout.odai_layout, json.dumps(record).encode() + b"\n", group=shared)
    return layout


def _refuse_foreign_files(layout: StoreLayout) -> None:
    """UsageError if the directory a store would be made in holds files that are no part of one (or of an OCI image layout)."""
    ours = {"oci-layout", "index.json", "index.previous.json", "odai-layout", "config.toml", "blobs", *(d.relative_to(layout.root).parts[0] for d in layout.directories())}
    try:
        # A dot-name is a temporary file of a creation cut short, or a hidden file nobody works in.
        foreign = sorted(name for name in os.listdir(layout.root) if name not in ours and not name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return  # created below; a file in its place is refused there
    except OSError as err:
        raise from_os_error(err, f"opening the store at {layout.root}") from err
    if foreign:
        raise UsageError(
            f"{layout.root} holds files and is not a store ({foreign[0]}, ...): odai-store makes no store there unasked",
            f"check --store and $ODAI_STORE_HOME; to make a store in that directory, run 'odai-store init {layout.root}'",
        )
