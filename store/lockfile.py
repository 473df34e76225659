"""odai.lock: the exact model versions an app was tested with, as deterministic TOML (spec/lockfile.md).

A format, beside oci/: bytes in, typed values out, no I/O. Reading one from
disk, bounded, is local/roots.py's (gc reads the lockfiles it keeps models for).

Read with tomllib, written with tomli-w. Pins are sorted by name and tag,
files by path, and nothing in the file depends on time or machine, so
locking unchanged models rewrites the file byte for byte.
"""

import re
import tomllib
from collections.abc import Iterable
from typing import Any, NamedTuple

from .errors import InvalidManifest, InvalidReference, LockfileError, UsageError
from .oci.descriptor import MAX_SIZE
from .oci.digest import Digest, InvalidDigest, parse_digest
from .oci.manifest import Manifest, ModelFile, check_model_paths
from .oci.reference import Reference, parse_reference

__all__ = ["LOCKFILE_VERSION", "InvalidLockfile", "NotPinned", "Pin", "PinnedFile", "Lockfile", "parse_lockfile"]

# Bump when a field changes meaning; readers refuse versions they do not know.
LOCKFILE_VERSION = 1
DEFAULT_NAME = "odai.lock"


_COMMIT = re.compile(r"[0-9a-f]{40}")


class InvalidLockfile(UsageError):
    default_hint = "fix or regenerate the lockfile with 'odai-store lock NAME...' (format: spec/lockfile.md)"


class NotPinned(LockfileError):
    """A NAME, NAME:TAG or NAME@DIGEST that designates no pin of the lockfile: exit 7, the lockfile is behind the command."""

    def __init__(self, spelling: str, where: str) -> None:
        ref = parse_reference(spelling)
        # lock takes no digest: the hint pins the name.
        super().__init__(f"{spelling} is not pinned in {where}", f"run 'odai-store lock {ref.name if ref.digest else spelling}' first")
        self.spelling = spelling


class PinnedFile(NamedTuple):
    path: str
    digest: Digest
    size: int


class Pin(NamedTuple):
    """One model pinned to a manifest digest, with the files that manifest lists."""

    name: str
    tag: str
    remote: str
    digest: Digest
    files: tuple[PinnedFile, ...]
    # The remote's own name of the pinned version where the store's digest is none there (spec/lockfile.md):
    # the digest of the manifest of another format it was read from, or a Hub commit.
    source: str | None = None

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def reference(self) -> Reference:
        """NAME@digest: what sync fetches, never looking the tag up."""
        return Reference(self.name, None, self.digest)

    @property
    def asked(self) -> Reference | None:
        """NAME@<source digest>: what sync asks the remote for, when the pinned manifest was read from another (None: ``reference``)."""
        if self.source is None:
            return None
        if self.source.startswith("sha256:"):
            return Reference(self.name, None, parse_digest(self.source))
        return Reference(self.name, self.source)  # a commit: a Hub remote reads a tag of 40 hex digits as one

    @classmethod
    def of(cls, ref: Reference, remote: str, digest: Digest, manifest: Manifest, source: str | None = None) -> "Pin":
        """The pin of ``ref``, a NAME:TAG reference, resolved on ``remote`` to ``digest`` (read from the manifest ``source``, if given)."""
        assert ref.tag is not None  # lock refuses digest references first (lock._tags_only)
        for f in manifest.files:
            if f.size > MAX_SIZE:  # a remote's manifest says so; written, it would be no TOML integer
                raise InvalidManifest(f"{remote}: {ref} lists {f.path} of {f.size} bytes, more than a lockfile can pin (2^63 - 1)", "the remote's manifest is wrong; tell its owner")
        files = tuple(sorted(PinnedFile(f.path, f.digest, f.size) for f in manifest.files))
        return cls(ref.name, ref.tag, remote, digest, files, source)

    def matches(self, files: Iterable[ModelFile]) -> bool:
        """True if ``files`` (of a manifest or a model) are exactly the pinned files."""
        return self.files == tuple(sorted(PinnedFile(f.path, f.digest, f.size) for f in files))


class Lockfile(NamedTuple):
    pins: tuple[Pin, ...] = ()

    def select(self, ref: Reference, any_tag: bool = False) -> list[Pin]:
        """The pins ``ref`` designates: by NAME:TAG, by NAME@DIGEST, or with ``any_tag`` every pin of NAME."""
        if ref.digest is not None:
            return [p for p in self.pins if p.name == ref.name and p.digest == ref.digest]
        return [p for p in self.pins if p.name == ref.name and (any_tag or p.tag == ref.tag)]

    def spelled(self, text: str) -> list[Pin]:
        """The pins ``text`` designates as a person writes it: NAME (its pins of every tag), NAME:TAG or NAME@DIGEST; InvalidReference for bad text."""
        ref = parse_reference(text)
        return self.select(ref, any_tag=text == ref.name)

    def chosen(self, spellings: Iterable[str] | None, where: str) -> list[Pin]:
        """The pins of each of ``spellings`` as ``spelled`` reads them, or every pin for None: each once, in lockfile order.

        The one selection of sync, lock --check and lock --upgrade. NotPinned
        for the first spelling that designates no pin of the lockfile at ``where``.
        """
        if spellings is None:
            return list(self.pins)
        found: set[Pin] = set()
        for text in spellings:
            pins = self.spelled(text)
            if not pins:
                raise NotPinned(text, where)
            found.update(pins)
        return [p for p in self.pins if p in found]

    def with_pins(self, pins: list[Pin]) -> "Lockfile":
        """A copy where each of ``pins`` replaces the pin of the same name and tag."""
        keep = {p.ref_name: p for p in self.pins}
        keep.update({p.ref_name: p for p in pins})
        return Lockfile(tuple(sorted(keep.values(), key=lambda p: (p.name, p.tag))))

    def to_bytes(self) -> bytes:
        import tomli_w

        doc = {
            "version": LOCKFILE_VERSION,
            "model": [_pin_table(p) for p in sorted(self.pins, key=lambda p: (p.name, p.tag))],
        }
        return tomli_w.dumps(doc).encode()


def _pin_table(p: Pin) -> dict[str, Any]:
    """A pin's table, its keys in the canonical order (spec/lockfile.md#canonical-form)."""
    table: dict[str, Any] = {"name": p.name, "tag": p.tag, "remote": p.remote}
    if p.source is not None:
        table["source"] = p.source
    table["digest"] = str(p.digest)
    table["files"] = [{"path": f.path, "digest": str(f.digest), "size": f.size} for f in sorted(p.files)]
    return table


def _pin(entry: object, where: str) -> Pin:
    if not isinstance(entry, dict):
        raise InvalidLockfile(f"{where}: each [[model]] must be a table")
    try:
        name, tag, remote, files = entry["name"], entry["tag"], entry["remote"], entry["files"]
        # Strings only: the f-string below would turn name = 5 into "5".
        if not all(isinstance(v, str) for v in (name, tag, remote)) or not isinstance(files, list):
            raise TypeError
        ref = parse_reference(f"{name}:{tag}")
        if (ref.name, ref.tag) != (name, tag):  # an '@' in the name made a digest reference of it
            raise InvalidReference(f"invalid model name {name!r}")
        pinned = tuple(
            PinnedFile(f["path"], parse_digest(f["digest"]), f["size"])
            for f in files
        )
        if any(type(f.size) is not int or not 0 <= f.size <= MAX_SIZE or not isinstance(f.path, str) for f in pinned):
            raise TypeError
        check_model_paths([f.path for f in pinned])
        source = entry.get("source")
        if source is not None and not (isinstance(source, str) and (source.startswith("sha256:") and parse_digest(source) or _COMMIT.fullmatch(source))):
            raise InvalidDigest(f"invalid source {source!r}: a sha256: digest or a 40-hex commit")
        return Pin(ref.name, tag, remote, parse_digest(entry["digest"]), tuple(sorted(pinned)), source)
    except (KeyError, TypeError):
        raise InvalidLockfile(f"{where}: a model needs name, tag, remote, digest and files (path, digest, size)") from None
    except (InvalidDigest, UsageError) as err:  # a bad digest, name, tag or file path
        raise InvalidLockfile(f"{where}: {err.message}") from None


def parse_lockfile(data: bytes, where: str = DEFAULT_NAME) -> Lockfile:
    """Parse lockfile bytes; raise InvalidLockfile (exit 2) for anything malformed or of another version."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, UnicodeDecodeError; an integer of over 4300 digits; nesting past the recursion limit
        raise InvalidLockfile(f"{where} is not valid TOML: {err}") from None
    version = doc.get("version")
    # The integer 1: in Python true == 1 and 1.0 == 1, in a lockfile they are other versions.
    if type(version) is not int or version != LOCKFILE_VERSION:
        raise InvalidLockfile(
            f"{where} has lockfile version {version!r}; this odai-store reads version {LOCKFILE_VERSION}",
            "upgrade odai-store, or regenerate the lockfile with 'odai-store lock'",
        )
    models = doc.get("model", [])
    if not isinstance(models, list):
        raise InvalidLockfile(f"{where}: 'model' must be an array of tables")
    pins = [_pin(entry, f"{where}, model {i + 1}") for i, entry in enumerate(models)]
    names = [p.ref_name for p in pins]
    if len(set(names)) != len(names):
        raise InvalidLockfile(f"{where} pins the same NAME:TAG twice")
    return Lockfile(tuple(sorted(pins, key=lambda p: (p.name, p.tag))))
