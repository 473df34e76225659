"""index.json as a value: which manifest each ``NAME:TAG`` points at (spec/names.md).

index.json is read one way, ``Index.parse``, plus one fast path: the store
writes it with one descriptor per line after a fixed first line (the line
layout, spec/names.md). Nothing may depend on that for correctness, but it
lets a reader find a line instead of parsing every name: ``lookup_fast`` (one
name: ``path``), ``lists_unnamed`` (one digest: ``fetch`` of a present
digest) and ``named_totals`` (every name: ``list``), each falling back to
Index.parse on a file not in that layout. ``odai-store path`` stays fast with
10,000 names.
"""

import json
import re
from typing import Any, NamedTuple

from ..errors import InvalidManifest
from .descriptor import INDEX_TYPE, MANIFEST_TYPE, Descriptor
from .digest import Digest, InvalidDigest

__all__ = ["Index", "InvalidIndex", "MAX_INDEX_BYTES", "REF_NAME", "SIZE_KEY", "FILES_KEY", "check_index_size", "lists_unnamed", "lookup_fast", "named_totals"]

REF_NAME = "org.opencontainers.image.ref.name"
# About 20,000 names as odai-store writes them (twice the 10,000 'path' is
# tuned for). Parsing JSON takes up to ~28 times its size in memory ('{},'
# repeated): 64 MiB cost 1.7 GB, 8 MiB at most ~230 MB.
MAX_INDEX_BYTES = 8 << 20
# Totals cached on each index entry so 'list' needs no manifest reads.
SIZE_KEY = "ai.odai.model.size"
FILES_KEY = "ai.odai.model.files"
_HEAD = b'{"schemaVersion":2,"mediaType":"' + INDEX_TYPE.encode() + b'","manifests":[\n'
_TAIL = b"]}\n"
# A line of index.json exactly as manifest_descriptor and Index.with_name
# write it, named or not; the groups are what 'list' shows. Stricter than
# Descriptor.from_json, so a line it matches is a valid descriptor. A string, not
# a compiled pattern: only 'list' pays for compiling it (re caches it).
_CANONICAL_LINE = (
    r'(?m)^\{"mediaType":"' + re.escape(MANIFEST_TYPE) + r'","digest":"sha256:([0-9a-f]{64})","size":(?:0|[1-9][0-9]*)'
    r'(?:,"artifactType":"[A-Za-z0-9.+/_-]+")?'
    r',"annotations":\{"' + re.escape(SIZE_KEY) + r'":"(0|[1-9][0-9]*)","' + re.escape(FILES_KEY) + r'":"(0|[1-9][0-9]*)"'
    r'(?:,"' + re.escape(REF_NAME) + r'":"([a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9._-]*)")?\}\}'
    r"(?:,\n|\Z)"  # a comma ends every line but the last, which ends the text
)


class InvalidIndex(InvalidManifest):
    default_hint = "index.json is damaged; restore it from a backup, or remove it and add the models again"


def check_index_size(size: int) -> None:
    """Refuse an index.json of ``size`` bytes over MAX_INDEX_BYTES, before it is read or parsed."""
    if size > MAX_INDEX_BYTES:
        raise InvalidIndex(
            f"index.json of {size} bytes is over the {MAX_INDEX_BYTES}-byte limit",
            "an index.json this large is refused unparsed (spec/names.md): drop entries from it with another tool, or split the store",
        )


def _line(desc: Descriptor) -> bytes:
    return json.dumps(desc.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def _order(desc: Descriptor) -> tuple[str, str]:
    return (desc.annotations.get(REF_NAME, "\uffff"), desc.digest.hex)


class Index(NamedTuple):
    """The manifests of a store, each entry optionally named by a ref.name annotation."""

    entries: tuple[Descriptor, ...] = ()
    # Top-level keys of a foreign index.json other than the ones we write, kept on rewrite.
    extra: tuple[tuple[str, Any], ...] = ()

    def lookup(self, ref_name: str) -> Descriptor | None:
        for desc in self.entries:
            if desc.annotations.get(REF_NAME) == ref_name:
                return desc
        return None

    def named(self) -> list[tuple[str, Descriptor]]:
        return [(d.annotations[REF_NAME], d) for d in self.entries if REF_NAME in d.annotations]

    def with_name(self, ref_name: str, desc: Descriptor) -> "Index":
        """A copy where ``ref_name`` points at ``desc`` (replacing what it pointed at)."""
        annotations = {k: v for k, v in desc.annotations.items() if k != REF_NAME}
        named = Descriptor(desc.media_type, desc.digest, desc.size, {**annotations, REF_NAME: ref_name}, desc.artifact_type)
        kept = [d for d in self.entries if d.annotations.get(REF_NAME) != ref_name]
        return Index(tuple(sorted([*kept, named], key=_order)), self.extra)

    def with_unnamed(self, desc: Descriptor) -> "Index":
        """A copy that also lists ``desc`` without a name (a model fetched by digest), so gc keeps it."""
        if any(d.digest == desc.digest and REF_NAME not in d.annotations for d in self.entries):
            return self
        return Index(tuple(sorted([*self.entries, desc], key=_order)), self.extra)

    def without_unnamed(self, digest) -> "Index":
        return Index(tuple(d for d in self.entries if REF_NAME in d.annotations or d.digest != digest), self.extra)

    def without_name(self, ref_name: str) -> "Index":
        return Index(tuple(d for d in self.entries if d.annotations.get(REF_NAME) != ref_name), self.extra)

    def to_bytes(self) -> bytes:
        if self.extra:
            doc = {"schemaVersion": 2, "mediaType": INDEX_TYPE, **dict(self.extra)}
            doc["manifests"] = [d.to_json() for d in self.entries]
            return json.dumps(doc, indent=1, ensure_ascii=False).encode() + b"\n"
        return _HEAD + b",\n".join(_line(d) for d in self.entries) + b"\n" + _TAIL

    @classmethod
    def parse(cls, data: bytes) -> "Index":
        """Parse index.json bytes; raise InvalidIndex if they are not an OCI image index."""
        check_index_size(len(data))
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
                raise ValueError("not an OCI image index (schemaVersion must be 2)")
            manifests = doc.get("manifests")
            if not isinstance(manifests, list):
                raise ValueError("manifests must be a list")
            entries = tuple(Descriptor.from_json(m) for m in manifests)
        except (ValueError, InvalidDigest, RecursionError) as err:
            message = err.message if isinstance(err, InvalidDigest) else str(err)
            raise InvalidIndex(f"index.json is not valid: {message}") from None
        extra = tuple((k, v) for k, v in doc.items() if k not in ("schemaVersion", "mediaType", "manifests"))
        return cls(tuple(sorted(entries, key=_order)), extra)


def named_totals(data: bytes, unnamed: bool = False) -> list[tuple[str, Digest, int, int]]:
    """(NAME:TAG, manifest digest, total size, file count) of every named entry, sorted by name.

    What ``list`` needs and nothing more; with ``unnamed``, the entries
    without a name follow, with "" for a name, sorted by digest. An
    index.json as odai-store writes it is read by the line layout's one
    regular expression; any other by Index.parse, which also reports what
    is wrong (InvalidIndex).
    """
    check_index_size(len(data))
    fast = _canonical_totals(data, unnamed)
    if fast is not None:
        return fast
    entries = Index.parse(data).entries
    out = [
        (name, desc.digest, _cached_count(desc.annotations.get(SIZE_KEY)), _cached_count(desc.annotations.get(FILES_KEY)))
        for name, desc in ((d.annotations.get(REF_NAME, ""), d) for d in entries)
        if name or unnamed
    ]
    out.sort(key=_by_name)
    return out


def _by_name(total: tuple[str, Digest, int, int]) -> tuple[bool, str, str]:
    return (not total[0], total[0], total[1].hex)


def _cached_count(value: str | None) -> int:
    """A display cache's number (spec/names.md): 0 where absent or not a decimal, never an error."""
    return int(value) if value is not None and value.isascii() and value.isdecimal() else 0


def _canonical_totals(data: bytes, unnamed: bool = False) -> list[tuple[str, Digest, int, int]] | None:
    """named_totals of an index.json every line of which is as odai-store writes it; None for any other.

    One regular expression over the file instead of a JSON parse and a check
    of each entry: a third less time with 10,000 names. Any line written
    otherwise (another tool, other annotations, damage) sends the whole file
    to the full parse, which also reports what is wrong.
    """
    if not (data.startswith(_HEAD) and data.endswith(b"\n" + _TAIL)):
        return None
    try:
        body = data[len(_HEAD) : -len(_TAIL) - 1].decode()
    except UnicodeDecodeError:
        return None
    found = re.findall(_CANONICAL_LINE, body)
    # Each match is one whole line, so as many matches as lines means every line matched.
    if len(found) != (body.count("\n") + 1 if body else 0):
        return None
    out = [(name, Digest(hex_digest), int(size), int(files)) for hex_digest, size, files, name in found if name or unnamed]
    out.sort(key=_by_name)
    return out


def lists_unnamed(data: bytes, digest: Digest) -> bool:
    """Whether ``data``, an index.json in odai-store's layout (an entry per line), has an entry for ``digest`` without a name.

    Meant for the layout odai-store writes, where an entry's annotations are
    on its line; a False sends the caller the slow way.
    """
    needle = f'"digest":"{digest}"'.encode()
    at = data.find(needle)
    while at >= 0:
        start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
        if b'"' + REF_NAME.encode() + b'":' not in data[start:end]:
            return True
        at = data.find(needle, end)
    return False


def lookup_fast(data: bytes, ref_name: str) -> Descriptor | None:
    """``Index.parse(data).lookup(ref_name)``, without parsing other entries when ``data`` is in our layout."""
    check_index_size(len(data))
    # Both ends must be ours: a file cut short (a disk that lost its tail)
    # gets the full parse, which reports the damage instead of "not found".
    if not (data.startswith(_HEAD) and data.endswith(_TAIL)):
        return Index.parse(data).lookup(ref_name)
    # In our layout the key and value are written exactly like this; inside any
    # JSON string the quotes would be escaped, so a match is a real annotation.
    needle = b'"' + REF_NAME.encode() + b'":' + json.dumps(ref_name, ensure_ascii=False).encode()
    at = data.find(needle)
    if at < 0:
        return None
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    line = data[start:end].rstrip(b",")
    try:
        desc = Descriptor.from_json(json.loads(line))
    except (ValueError, InvalidDigest):
        return Index.parse(data).lookup(ref_name)
    return desc if desc.annotations.get(REF_NAME) == ref_name else Index.parse(data).lookup(ref_name)
