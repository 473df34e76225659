"""Digest: the typed name of a blob's content, ``sha256:<64 lowercase hex>``."""

import functools
from typing import NamedTuple

from ..errors import UsageError

__all__ = ["Digest", "InvalidDigest", "digest_named", "is_hex", "parse_digest", "sha256_of"]

# The store names blobs by SHA-256 only (spec/digests.md): one algorithm keeps
# every path in blobs/ unique per content, which is what dedup relies on.
_PREFIX = "sha256:"
_HEX_DIGITS = b"0123456789abcdef"


class InvalidDigest(UsageError):
    default_hint = "a digest is sha256: followed by 64 lowercase hex digits (spec/digests.md)"


class Digest(NamedTuple):
    hex: str

    # A property, not a class attribute: in a NamedTuple an attribute is a field to type checkers.
    @property
    def algorithm(self) -> str:
        return "sha256"

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex digits, for people; never for lookups."""
        return self.hex[:12]


def parse_digest(text: object) -> Digest:
    """Parse ``sha256:<hex>``; raise InvalidDigest for anything else."""
    # Deleting the hex digits leaves nothing only if there was nothing else.
    # A third faster than a regular expression, which counts: 'list' parses
    # one digest per name in index.json.
    if (
        isinstance(text, str)
        and len(text) == 71
        and text.isascii()
        and text.startswith(_PREFIX)
        and not text[7:].encode().translate(None, _HEX_DIGITS)
    ):
        return Digest(text[7:])
    raise InvalidDigest(f"not a sha256 digest: {text!r}")


# Where an OCI image layout keeps a sha256 blob, relative to its root: the one
# place the path grammar is written (the store, both layout remotes, serve).
BLOBS_DIR = "blobs/sha256"


def blob_path(digest: Digest) -> str:
    """``blobs/sha256/<hex>``: the blob's path in an OCI image layout, '/'-separated."""
    return f"{BLOBS_DIR}/{digest.hex}"


def digest_of_blob_path(path: str) -> Digest | None:
    """The digest ``blobs/sha256/<hex>`` stands for; None for any other path."""
    directory, _, name = path.rpartition("/")
    return digest_named(name) if directory == BLOBS_DIR else None


def digest_named(name: str) -> Digest | None:
    """The digest a file name in blobs/sha256/, views/sha256/ or meta/ stands for: 64 lowercase hex digits; else None."""
    if len(name) == 64 and is_hex(name):
        return Digest(name)
    return None


def is_hex(text: str) -> bool:
    """Whether ``text`` is lowercase hex digits only (and not empty)."""
    return bool(text) and text.isascii() and not text.encode().translate(None, _HEX_DIGITS)


def sha256_of(data: bytes) -> Digest:
    """The digest of a small document in memory (a manifest, an index)."""
    return Digest(_small_sha256()(data).hexdigest())


@functools.cache
def _small_sha256():
    # hashlib loads OpenSSL's libcrypto when imported, which costs 'odai-store
    # path' more than all its own work; for a few KiB, CPython's built-in
    # SHA-256 is as good. That module is private: _sha256 in 3.11, the
    # oldest Python we support, tried first; _sha2 from 3.12. Cached: a
    # failed import searches sys.path again every time (50 us, 25 times the
    # hash of a manifest).
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11's, stubless
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12's, stubless
        except ImportError:
            from hashlib import sha256
    return sha256
