"""A journal's unsynced ranges count only in the boot that wrote them."""

from __future__ import annotations

import json

from store.local.journal import Journal, Ranges, boot_id, parse_journal
from store.oci.digest import Digest

DIGEST = Digest("ab" * 32)


def _journal() -> Journal:
    return Journal(
        DIGEST,
        100,
        done=Ranges(((0, 60),)),
        unchecked=Ranges(((60, 70),)),
        durable_done=Ranges(((0, 20),)),
        durable_unchecked=Ranges(((20, 25),)),
        boot="boot-a",
    )


def test_same_boot_trusts_every_range():
    got = parse_journal(_journal().to_bytes(), "boot-a")
    assert got.done.spans == ((0, 60),) and got.unchecked.spans == ((60, 70),)


def test_another_boot_trusts_only_synced_ranges():
    got = parse_journal(_journal().to_bytes(), "boot-b")
    assert got.done.spans == ((0, 20),) and got.unchecked.spans == ((20, 25),)


def test_unknown_boot_trusts_only_synced_ranges():
    assert parse_journal(_journal().to_bytes(), None).done.spans == ((0, 20),)


def test_a_journal_of_a_machine_without_a_boot_id_trusts_only_synced_ranges():
    """Neither the writer nor the reader knows its boot (no /proc boot_id): two unknowns are not the same boot."""
    doc = json.loads(_journal().to_bytes())
    doc["boot"] = None
    got = parse_journal(json.dumps(doc).encode(), None)
    assert got.done.spans == ((0, 20),) and got.unchecked.spans == ((20, 25),)


def test_a_journal_of_negative_size_is_damaged():
    doc = json.loads(_journal().to_bytes())
    doc.update(size=-1, done=[], unchecked=[], durable={"done": [], "unchecked": []})
    assert parse_journal(json.dumps(doc).encode(), "boot-a") is None


def test_removing_a_range_keeps_what_lies_either_side():
    ranges = Ranges(((0, 100), (200, 300)))
    assert ranges.remove(50, 250).spans == ((0, 50), (250, 300))
    assert ranges.remove(20, 30).spans == ((0, 20), (30, 100), (200, 300))


def test_journal_without_tiers_lists_synced_ranges_only():
    doc = json.loads(_journal().to_bytes())
    del doc["durable"], doc["boot"]
    got = parse_journal(json.dumps(doc).encode(), "boot-b")
    assert got.done.spans == ((0, 60),)


def test_durable_ranges_outside_the_blob_make_it_damaged():
    doc = json.loads(_journal().to_bytes())
    doc["durable"]["done"] = [[0, 101]]
    assert parse_journal(json.dumps(doc).encode(), "boot-a") is None


def test_this_machine_has_a_boot_id():
    assert boot_id() is None or len(boot_id()) >= 8
