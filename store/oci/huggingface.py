"""What the store makes of a Hugging Face repository at a commit: its manifest; and a git file's id.

Pure functions of a repository's name, its commit and its files, shared by
everything that brings a Hub model in (``fetch hf://`` over the network,
``import-hf-cache`` from a cache huggingface_hub filled): the same commit and
files give the same manifest digest whichever way they came
(spec/remotes.md#hugging-face-hub).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from types import MappingProxyType

from .manifest import SOURCE_FORMAT, SOURCE_REPOSITORY, SOURCE_REVISION, Manifest, ModelFile

__all__ = ["HUB_FORMAT", "COMMIT", "REPO_PART", "git_blob_hasher", "git_blob_sha1", "hub_manifest"]

HUB_FORMAT = "huggingface"
# The Hub's own rule for an organisation or repository name.
REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
# A commit, and a git blob id: git SHA-1 object names.
COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_manifest(repo: str, commit: str, files: Iterable[ModelFile]) -> Manifest:
    """The store manifest of ``files`` of ``repo`` (ORG/REPO, as the Hub spells it) at ``commit``: sorted by path,
    no chunk digests, the source format, repository and commit as annotations."""
    annotations = {SOURCE_FORMAT: HUB_FORMAT, SOURCE_REPOSITORY: repo, SOURCE_REVISION: commit}
    return Manifest(tuple(sorted(files, key=lambda f: f.path)), annotations=MappingProxyType(annotations))


def git_blob_hasher(size: int):
    """A SHA-1 fed git's header for a blob of ``size`` bytes: fed the bytes, it gives their git blob id."""
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``: the only digest the Hub states of a file kept outside LFS."""
    hasher = git_blob_hasher(len(data))
    hasher.update(data)
    return hasher.hexdigest()
