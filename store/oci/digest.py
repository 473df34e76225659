"""Digest: the typed name of a blob's content, ``sha256:<64 lowercase hex>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["Digest", "InvalidDigest", "parse_digest", "sha256_of"]

# The store names blobs by SHA-256 only (spec/digests.md): one algorithm keeps
# every path in blobs/ unique per content, which is what dedup relies on.
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


class InvalidDigest(UsageError):
    default_hint = "a digest is sha256: followed by 64 lowercase hex digits (spec/digests.md)"


@dataclass(frozen=True, order=True)
class Digest:
    hex: str

    algorithm = "sha256"

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex digits, for people; never for lookups."""
        return self.hex[:12]


def parse_digest(text: str) -> Digest:
    """Parse ``sha256:<hex>``; raise InvalidDigest for anything else."""
    match = _SHA256.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDigest(f"not a sha256 digest: {text!r}")
    return Digest(match.group(1))


def sha256_of(data: bytes) -> Digest:
    import hashlib

    return Digest(hashlib.sha256(data).hexdigest())
