"""Model: a model present in the store, as the verbs that produce one return it; and the ways export makes its files."""

from pathlib import Path
from typing import NamedTuple

from .oci.digest import Digest
from .oci.manifest import ModelFile

__all__ = ["LINK_MODES", "PUSH_FORMATS", "Model", "Fetched", "HfImported"]

# How export may make a model's files (Store.export's ``link``, the command line's
# --link): here, not in export.py, so that the command line's table has them
# without loading the verb, which every other command would pay for.
LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")
# The manifests push may write (Store.push's ``format``, --format), here for the same reason.
PUSH_FORMATS = ("odai", "modelpack")


class Model(NamedTuple):
    """A model present in the store: its manifest digest, its view directory and its files."""

    name: str | None  # NAME:TAG it was asked for by (a pin's, for sync), None when asked for by digest alone
    digest: Digest
    path: Path
    files: tuple[ModelFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


class Fetched(NamedTuple):
    """A model as fetch returns it, with what the command downloaded for it."""

    model: Model
    downloaded: int  # bytes received from remotes for this model in this command


class HfImported(NamedTuple):
    """What import-hf-cache made of a Hugging Face cache: a model per name, and with link what the cache gave back."""

    models: tuple[Model, ...]  # one per name given, snapshot by snapshot
    linked: int  # files of the cache that became links to the store's blobs
    left: int  # files link left as they were (another filesystem, or changed since they were checked)
    reclaimed: int  # bytes the disk no longer holds twice
