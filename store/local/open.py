"""Opening a store: create the layout on first use, refuse one made by a newer version."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import StorageError, from_os_error, storage_errors
from ..oci.index import Index
from .atomic import create_atomic
from .layout import LAYOUT_VERSION, StoreLayout

__all__ = ["open_layout"]

_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}\n'


def _version(layout: StoreLayout) -> int | None:
    try:
        return int(json.loads(layout.odai_layout.read_bytes())["odaiLayoutVersion"])
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise StorageError(f"the store location {layout.root} is not a directory", "point --store or $ODAI_STORE_HOME at a directory") from None
    except OSError as err:
        raise from_os_error(err, f"opening the store at {layout.root}") from err
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"{layout.odai_layout} is damaged", "restore it: it holds {\"odaiLayoutVersion\": 1}") from None


def open_layout(root: Path) -> StoreLayout:
    """The layout at ``root``, created if absent. A store that exists is not written to.

    An OCI image layout made by another tool is adopted: our directories are
    added beside it and its index.json is kept.
    """
    layout = StoreLayout(root)
    version = _version(layout)
    if version is not None and version > LAYOUT_VERSION:
        raise StorageError(
            f"the store at {root} has layout version {version}; this odai-store knows up to {LAYOUT_VERSION}",
            "upgrade odai-store, or use another store with --store",
        )
    if version == LAYOUT_VERSION:
        return layout
    with storage_errors(f"creating the store at {root}"):
        for directory in layout.directories():
            directory.mkdir(parents=True, exist_ok=True)
        create_atomic(layout.oci_layout, _OCI_LAYOUT)
        create_atomic(layout.index, Index().to_bytes())
        # Last: its presence says every part above exists.
        create_atomic(layout.odai_layout, json.dumps({"odaiLayoutVersion": LAYOUT_VERSION}).encode() + b"\n")
    return layout
