"""Reference: how a person names a model, ``NAME[:TAG]`` or ``NAME@sha256:<hex>`` (spec/names.md)."""

import re
from typing import NamedTuple

from ..errors import InvalidReference
from .digest import Digest, InvalidDigest, is_hex, parse_digest

__all__ = ["DEFAULT_TAG", "SHORT_DIGEST_MIN", "Reference", "ShortDigest", "parse_local_reference", "parse_reference", "parse_registry_host"]

DEFAULT_TAG = "latest"
# Lowercase alphanumeric runs joined by single separators: no empty, '.' or '..'
# component can be spelled, and every name is also a valid OCI repository name.
_NAME = re.compile(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*")
_NAME_MAX = 255
# A registry's host, as docker reads the first component of a reference:
# lowercase DNS labels (an IPv4 address among them), and a port.
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?")
# The OCI distribution-spec tag grammar.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class Reference(NamedTuple):
    """A parsed reference: a name with a tag, or a name pinned to a manifest digest."""

    name: str
    tag: str | None = DEFAULT_TAG
    digest: Digest | None = None

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"

    @property
    def ref_name(self) -> str:
        """The value of ``org.opencontainers.image.ref.name`` in index.json: ``NAME:TAG``."""
        return f"{self.name}:{self.tag}"

    @property
    def registry(self) -> str | None:
        """``HOST[:PORT]`` when the name begins with a registry, as docker reads it (spec/names.md#registry-references); else None."""
        first, slash, _ = self.name.partition("/")
        return first if slash and _is_domain(first) else None


def _is_domain(first: str) -> bool:
    """Whether a name's first component names a registry: it holds a '.' or a ':', or is localhost, and is a host.

    Docker refuses a first component such as ``a.b_c`` (a '.' but no host);
    here it stays a name of the store, as it was before registries.
    """
    return ("." in first or ":" in first or first == "localhost") and _DOMAIN.fullmatch(first) is not None


def _check_name(name: str, text: str) -> None:
    if not name:
        raise InvalidReference(f"missing model name in {text!r}")
    if len(name) > _NAME_MAX:
        raise InvalidReference(f"model name longer than {_NAME_MAX} characters: {text!r}")
    first, slash, rest = name.partition("/")
    if slash and _is_domain(first):
        if not _NAME.fullmatch(rest):
            raise InvalidReference(f"invalid registry reference {name!r}", "a registry reference is HOST[:PORT]/REPOSITORY, lowercase (spec/names.md#registry-references)")
        return
    if not _NAME.fullmatch(name):
        raise InvalidReference(f"invalid model name {name!r}")


def parse_registry_host(text: str) -> str:
    """``HOST[:PORT]`` of a registry, lower-cased, as the first component of a registry reference spells it (--insecure-registry); raise InvalidReference."""
    host = text.strip().lower() if isinstance(text, str) else ""
    if not _DOMAIN.fullmatch(host):
        raise InvalidReference(f"invalid registry {text!r}", "a registry is HOST or HOST:PORT, as in a reference HOST[:PORT]/REPOSITORY (spec/names.md#registry-references)")
    return host


def parse_reference(text: str) -> Reference:
    """Parse a reference as typed by a person or written in a file; raise InvalidReference."""
    if not isinstance(text, str):
        raise InvalidReference(f"a reference is text, not {type(text).__name__}")
    if text.startswith("oci://"):
        # The explicit spelling of a registry reference: the same reference without its scheme.
        reference = parse_reference(text[len("oci://") :])
        if reference.registry is None:
            raise InvalidReference(f"{text!r} names no registry", "write oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:<hex>]")
        return reference
    if "@" in text:
        name, _, digest_text = text.partition("@")
        _check_name(name, text)
        try:
            digest = parse_digest(digest_text)
        except InvalidDigest as err:
            raise InvalidReference(f"invalid digest in {text!r}: {err.message}") from None
        return Reference(name, None, digest)
    # The tag follows the last ':' of the last component, as docker reads it: a registry's port has one before.
    head, slash, last = text.rpartition("/")
    last_name, colon, tag = last.partition(":")
    name = f"{head}{slash}{last_name}"
    _check_name(name, text)
    if not colon:
        return Reference(name)
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag {tag!r} in {text!r}")
    return Reference(name, tag)


# Fewer digits are a name: 12 is what list shows, and what people copy from it.
SHORT_DIGEST_MIN = 12


class ShortDigest:
    """The first 12 to 64 hex digits of a manifest digest, as ``list`` shows them (spec/names.md#short-digests).

    Only a store that holds the manifest can say which it is: a short digest
    designates a manifest of this store, never one on a remote. A plain
    class: this module is on the path of every quick command, and a named
    tuple's class costs a start-up a million instructions.
    """

    __slots__ = ("hex",)

    def __init__(self, hex: str) -> None:
        self.hex = hex

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"ShortDigest({self.hex!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShortDigest) and other.hex == self.hex

    def __hash__(self) -> int:
        return hash((ShortDigest, self.hex))

    def starts(self, digest: Digest) -> bool:
        """Whether ``digest`` is one this short digest may stand for."""
        return digest.hex.startswith(self.hex)


def parse_local_reference(text: str) -> Reference | ShortDigest:
    """A reference, or a short digest (``[sha256:]<12 to 64 hex>``): what a command that looks only in the store takes.

    Decided by the text alone, never by what the store holds: 12 or more
    lowercase hex digits, alone or after ``sha256:``, are a short digest,
    though they also spell a NAME (or ``sha256`` with a TAG); such a model is
    reached by its full reference, ``<hex>:latest``. Raise InvalidReference.
    """
    if isinstance(text, str):
        digits = text[7:] if text.startswith("sha256:") else text
        if SHORT_DIGEST_MIN <= len(digits) <= 64 and is_hex(digits):
            return ShortDigest(digits)
    return parse_reference(text)
