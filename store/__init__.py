"""odai-store: a content-addressed model store for on-device AI, on the OCI image layout.

    >>> from store import Store
    >>> model = Store().add("llama-3b:q4", ["./llama-3b"])   # doctest: +SKIP
    >>> model.path                                          # doctest: +SKIP
    PosixPath('/home/me/.cache/odai-store/views/sha256/...')
"""

from .api import Store
from .errors import (
    IntegrityError,
    Interrupted,
    InvalidManifest,
    InvalidPath,
    InvalidReference,
    LockfileError,
    LockTimeout,
    NetworkError,
    NoSpace,
    NotFound,
    ReadOnlyStore,
    StorageError,
    StoreError,
    UsageError,
)
from .model import Model
from .oci.digest import Digest
from .oci.manifest import ModelFile
from .oci.reference import Reference

__version__ = "0.1.0"

# Result types of listing and checking verbs load on first use: the commands
# scripts call most (path, fetch) need none of them at start-up.
_REPORTS = ("ModelEntry", "ModelFileStatus", "ModelInfo", "VerifyResult", "Root")


def __getattr__(name: str):
    if name in _REPORTS:
        from . import reports

        return getattr(reports, name)
    if name == "RemoteModel":
        from .catalog import RemoteModel

        return RemoteModel
    if name == "HistoryRecord":  # Store.history's records
        from .local.history import Record

        return Record
    raise AttributeError(f"module 'store' has no attribute {name!r}")

__all__ = [
    "Store",
    "Model",
    "ModelEntry",
    "ModelFile",
    "ModelFileStatus",
    "ModelInfo",
    "RemoteModel",
    "VerifyResult",
    "Root",
    "HistoryRecord",
    "Digest",
    "Reference",
    "StoreError",
    "UsageError",
    "InvalidReference",
    "InvalidPath",
    "NotFound",
    "NetworkError",
    "IntegrityError",
    "InvalidManifest",
    "StorageError",
    "NoSpace",
    "ReadOnlyStore",
    "LockfileError",
    "LockTimeout",
    "Interrupted",
]
