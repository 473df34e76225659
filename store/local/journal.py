"""Journal: what a resumable partial holds, so an interrupted download continues where it stopped.

The journal sits beside its partial (``<partial>.journal``, spec/ingest.md). It
lists the byte ranges that are on disk, durable (fsynced before the journal
was written) and checked against their chunk digests when there are any. It
never claims more than the data file holds, so a power loss only loses what
arrived after the last journal write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..fs.bounded import JOURNAL_MAX, Refused, read_bounded
from ..oci.digest import Digest, InvalidDigest, parse_digest

__all__ = ["Ranges", "Journal", "parse_journal", "read_journal"]


@dataclass(frozen=True)
class Ranges:
    """A set of half-open byte ranges [start, end), kept sorted and merged."""

    spans: tuple[tuple[int, int], ...] = ()

    def add(self, start: int, end: int) -> Ranges:
        if end <= start:
            return self
        merged: list[tuple[int, int]] = []
        for s, e in sorted([*self.spans, (start, end)]):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return Ranges(tuple(merged))

    def remove(self, start: int, end: int) -> Ranges:
        kept: list[tuple[int, int]] = []
        for s, e in self.spans:
            if e <= start or s >= end:
                kept.append((s, e))
                continue
            if s < start:
                kept.append((s, start))
            if e > end:
                kept.append((end, e))
        return Ranges(tuple(kept))

    def union(self, other: Ranges) -> Ranges:
        merged = self
        for s, e in other.spans:
            merged = merged.add(s, e)
        return merged

    def total(self) -> int:
        return sum(e - s for s, e in self.spans)

    def end_of_run(self, at: int) -> int:
        """The end of the range containing ``at``, or ``at`` if none does."""
        for s, e in self.spans:
            if s <= at < e:
                return e
        return at

    def covered(self, start: int, end: int) -> int:
        """How many bytes of [start, end) the set holds."""
        return sum(max(0, min(e, end) - max(s, start)) for s, e in self.spans)

    def missing(self, size: int) -> list[tuple[int, int]]:
        """The gaps in [0, size)."""
        gaps, at = [], 0
        for s, e in self.spans:
            if s > at:
                gaps.append((at, min(s, size)))
            at = max(at, e)
        if at < size:
            gaps.append((at, size))
        return [(s, e) for s, e in gaps if s < e]


@dataclass(frozen=True)
class Journal:
    digest: Digest
    size: int
    # The validator the bytes came with (ETag, else Last-Modified): a resume
    # sends it as If-Range, so a changed object restarts from byte 0.
    validator: str | None = None
    url: str | None = None
    done: Ranges = field(default_factory=Ranges)
    # On disk and durable, but part of a chunk not yet checked: a resume
    # completes the chunk from here and checks it then, rather than fetch
    # these bytes again.
    unchecked: Ranges = field(default_factory=Ranges)
    # done and unchecked as of the last fdatasync of the partial. Only these
    # survive a power loss; the others also survive a kill -9, which leaves
    # the page cache intact. A reader tells the two cases apart by the boot id.
    durable_done: Ranges = field(default_factory=Ranges)
    durable_unchecked: Ranges = field(default_factory=Ranges)
    boot: str | None = None

    def to_bytes(self) -> bytes:
        doc = {
            "version": 1,
            "digest": str(self.digest),
            "size": self.size,
            "validator": self.validator,
            "url": self.url,
            "done": [list(span) for span in self.done.spans],
            "unchecked": [list(span) for span in self.unchecked.spans],
            "boot": self.boot,
            "durable": {
                "done": [list(span) for span in self.durable_done.spans],
                "unchecked": [list(span) for span in self.durable_unchecked.spans],
            },
        }
        return json.dumps(doc).encode() + b"\n"


def boot_id() -> str | None:
    """This boot of the machine: a journal written in another boot may have lost unsynced data."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _ranges(spans: object, size: int) -> Ranges:
    if not isinstance(spans, list):
        raise ValueError("ranges must be a list")
    ranges = Ranges()
    for s, e in ((int(s), int(e)) for s, e in spans):
        if not 0 <= s < e <= size:
            raise ValueError("range outside the blob")
        ranges = ranges.add(s, e)
    return ranges


def parse_journal(data: bytes, boot: str | None = None) -> Journal | None:
    """The journal in ``data`` as far as it can be trusted now, or None if it is damaged.

    Written in this boot (``boot``), every range holds: the page cache kept
    what was not yet synced. Written in another boot, or by a writer that
    recorded none, only the durable ranges do.
    """
    try:
        doc = json.loads(data)
        if doc.get("version") != 1:
            return None
        size = doc["size"]
        if type(size) is not int or size < 0:
            return None
        done, unchecked = _ranges(doc.get("done", []), size), _ranges(doc.get("unchecked", []), size)
        durable = doc.get("durable")
        written_in = doc.get("boot")
        if isinstance(durable, dict):
            durable_done, durable_unchecked = _ranges(durable.get("done", []), size), _ranges(durable.get("unchecked", []), size)
        else:  # a journal without the two tiers lists only synced ranges
            durable_done, durable_unchecked, written_in = done, unchecked, boot
        if written_in is None or written_in != boot:
            done, unchecked = durable_done, durable_unchecked
        return Journal(
            parse_digest(doc["digest"]), size, doc.get("validator"), doc.get("url"), done, unchecked, durable_done, durable_unchecked, boot
        )
    except (ValueError, KeyError, TypeError, AttributeError, InvalidDigest, RecursionError, OverflowError):
        return None


def read_journal(path: Path, boot: str | None = None) -> Journal | None:
    """The journal at ``path`` as parse_journal reads it; None if absent, not a regular file, too large or damaged.

    Opened without following a link and read up to a bound: in a shared
    store any member may have put a link to a FIFO or a huge file there.
    """
    try:
        return parse_journal(read_bounded(path, JOURNAL_MAX, "a journal"), boot)
    except (OSError, Refused):
        return None
