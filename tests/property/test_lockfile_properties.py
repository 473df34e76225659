"""Properties of odai.lock (issue 4, Tests): any pins round-trip byte-exact, the bytes are sorted and
deterministic, and re-locking the same pins changes nothing."""

from __future__ import annotations

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from store.lockfile import Lockfile, parse_lockfile
from store.oci.reference import Reference
from tests.support.strategies import lockfiles, pins


@given(lockfiles())
@settings(max_examples=100)
def test_any_pins_round_trip_byte_exact(lockfile: Lockfile) -> None:
    data = lockfile.to_bytes()
    parsed = parse_lockfile(data)
    assert parsed.to_bytes() == data
    # The parsed pins are the given ones, in sorted order with sorted files: nothing is lost or invented.
    assert {(p.name, p.tag, p.remote, p.digest, frozenset(p.files)) for p in parsed.pins} == {
        (p.name, p.tag, p.remote, p.digest, frozenset(p.files)) for p in lockfile.pins
    }
    assert all(list(p.files) == sorted(p.files) for p in parsed.pins)
    assert parse_lockfile(data) == parsed  # parsing is a function of the bytes


@given(lockfiles(), st.randoms(use_true_random=False))
def test_the_bytes_are_sorted_and_do_not_depend_on_order(lockfile: Lockfile, rng) -> None:
    shuffled = list(lockfile.pins)
    rng.shuffle(shuffled)
    data = lockfile.to_bytes()
    assert Lockfile(tuple(shuffled)).to_bytes() == data
    doc = tomllib.loads(data.decode())
    assert doc["version"] == 1
    keys = [(m["name"], m["tag"]) for m in doc["model"]]
    assert keys == sorted(keys)
    for model in doc["model"]:
        paths = [f["path"] for f in model["files"]]
        assert paths == sorted(paths)


@given(lockfiles(), st.data())
def test_relocking_the_same_pins_is_idempotent(lockfile: Lockfile, data) -> None:
    parsed = parse_lockfile(lockfile.to_bytes())
    again = parsed.with_pins(list(parsed.pins))
    assert again.to_bytes() == parsed.to_bytes()
    # Re-locking some of them, or locking one twice in a row, changes nothing either.
    some = data.draw(st.lists(st.sampled_from(parsed.pins), unique=True) if parsed.pins else st.just([]))
    assert parsed.with_pins(some).with_pins(some).to_bytes() == parsed.to_bytes()


@given(lockfiles(max_pins=3), pins())
def test_locking_a_new_pin_adds_exactly_that_pin(lockfile: Lockfile, pin) -> None:
    parsed = parse_lockfile(lockfile.to_bytes())
    updated = parse_lockfile(parsed.with_pins([pin]).to_bytes())
    others = [p for p in parsed.pins if p.ref_name != pin.ref_name]
    assert [p for p in updated.pins if p.ref_name != pin.ref_name] == others
    [got] = updated.select(Reference(pin.name, pin.tag))
    assert (got.remote, got.digest, set(got.files)) == (pin.remote, pin.digest, set(pin.files))
