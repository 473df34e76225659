"""store.oci.index: index.json as a value, and the fast single-name lookup."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.oci.descriptor import INDEX_TYPE, MANIFEST_TYPE, Descriptor
from store.oci.digest import Digest
from store.oci.index import FILES_KEY, MAX_INDEX_BYTES, REF_NAME, SIZE_KEY, Index, InvalidIndex, _canonical_totals, lookup_fast, named_totals
from store.oci.manifest import ARTIFACT_TYPE
from tests.support.strategies import digests_hex, garbage, json_garbage, ref_names


def _desc(hex_char: str, **annotations: str) -> Descriptor:
    return Descriptor(MANIFEST_TYPE, Digest(hex_char * 64), 100, {SIZE_KEY: "5", FILES_KEY: "1", **annotations}, "application/vnd.odai.model.v1")


def test_empty_index_is_an_oci_image_index() -> None:
    data = Index().to_bytes()
    doc = json.loads(data)
    assert doc == {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
    assert Index.parse(data) == Index()


def test_with_name_replaces_and_sorts() -> None:
    index = Index().with_name("b:1", _desc("b")).with_name("a:1", _desc("a")).with_name("b:1", _desc("c"))
    assert [name for name, _ in index.named()] == ["a:1", "b:1"]
    assert index.lookup("b:1").digest == Digest("c" * 64)
    assert index.lookup("b:2") is None
    assert index.without_name("a:1").lookup("a:1") is None
    assert index.without_name("nope:1") == index


def test_one_manifest_may_carry_several_names() -> None:
    index = Index().with_name("a:1", _desc("a")).with_name("a:latest", _desc("a"))
    assert index.lookup("a:1").digest == index.lookup("a:latest").digest
    assert len(index.entries) == 2


def test_bytes_round_trip_one_entry_per_line() -> None:
    index = Index().with_name("m:1", _desc("1")).with_name("n/o:2", _desc("2"))
    data = index.to_bytes()
    assert Index.parse(data) == index
    lines = data.split(b"\n")
    # A fixed first line, then one descriptor per line: lookup_fast relies on it.
    assert lines[0].endswith(b'"manifests":[')
    assert len([line for line in lines if REF_NAME.encode() in line]) == 2


def test_foreign_keys_survive_a_rewrite() -> None:
    foreign = json.dumps(
        {"schemaVersion": 2, "manifests": [_desc("a", **{REF_NAME: "a:1"}).to_json()], "annotations": {"k": "v"}}, indent=4
    ).encode()
    index = Index.parse(foreign).with_name("b:1", _desc("b"))
    doc = json.loads(index.to_bytes())
    assert doc["annotations"] == {"k": "v"}
    assert [m["annotations"][REF_NAME] for m in doc["manifests"]] == ["a:1", "b:1"]
    assert lookup_fast(index.to_bytes(), "b:1") == index.lookup("b:1")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff garbage",
        b"[]",
        b'{"schemaVersion": 2}',
        b'{"schemaVersion": 1, "manifests": []}',
        b'{"schemaVersion": 2, "manifests": {}}',
        b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": 1, "digest": "sha256:00"}]}',
        b'{"schemaVersion": 2, "manifests": [' + b"[" * 50_000,
        Index().with_name("a:1", _desc("a")).to_bytes()[:-5],
    ],
)
def test_damaged_index_raises_invalid_index(data: bytes) -> None:
    with pytest.raises(InvalidIndex) as info:
        Index.parse(data)
    assert info.value.exit_code == 5
    assert "index.json" in info.value.message


@given(garbage())
@settings(max_examples=100)
def test_garbage_only_raises_invalid_index(data: bytes) -> None:
    try:
        Index.parse(data)
    except InvalidIndex:
        pass


@given(json_garbage(("schemaVersion", "mediaType", "manifests", "annotations")))
def test_json_garbage_only_raises_invalid_index(data: bytes) -> None:
    try:
        Index.parse(data)
    except InvalidIndex:
        pass


# -- lookup_fast is Index.parse(...).lookup(...) ---------------------------------

@st.composite
def _histories(draw) -> tuple[Index, list[str]]:
    """An index as a store reaches it: a run of name changes and removals over a few names."""
    pool = draw(st.lists(ref_names(), min_size=1, max_size=5, unique=True))
    index = Index()
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(pool))
        if draw(st.booleans()):
            index = index.with_name(name, Descriptor(MANIFEST_TYPE, Digest(draw(digests_hex())), 7, {SIZE_KEY: "1"}))
        else:
            index = index.without_name(name)
    return index, pool


@given(_histories(), ref_names())
@settings(max_examples=100)
def test_lookup_fast_equals_full_parse(history, probe: str) -> None:
    index, pool = history
    data = index.to_bytes()
    for name in [probe, *pool]:
        expected = Index.parse(data).lookup(name)
        got = lookup_fast(data, name)
        assert got == expected
        if expected is not None:
            assert got.annotations == expected.annotations and got.size == expected.size


@pytest.mark.parametrize(
    "probe",
    ["a:1", "a:10", "a:1x", "b:1", "x:y"],
)
def test_lookup_fast_is_not_fooled_by_prefixes_or_other_annotations(probe: str) -> None:
    index = (
        Index()
        .with_name("a:10", _desc("1"))
        .with_name("a:1x", _desc("2"))
        # The probe text inside another annotation's value must not count as a name.
        .with_name("b:2", _desc("3", note=f'"{REF_NAME}":"b:1"', other="a:1"))
        .with_name("x:y", _desc("4", **{"x." + REF_NAME: "a:1"}))
    )
    data = index.to_bytes()
    assert lookup_fast(data, probe) == Index.parse(data).lookup(probe)


def test_lookup_fast_on_a_foreign_layout_falls_back() -> None:
    index = Index().with_name("a:1", _desc("a"))
    pretty = json.dumps(json.loads(index.to_bytes()), indent=2).encode()
    assert lookup_fast(pretty, "a:1") == index.lookup("a:1")
    assert lookup_fast(pretty, "b:1") is None


def test_lookup_fast_on_a_damaged_line_raises() -> None:
    data = Index().with_name("a:1", _desc("a")).with_name("b:1", _desc("b")).to_bytes()
    damaged = data.replace(b'"size":100', b'"size":"x"', 1)
    with pytest.raises(InvalidIndex):
        lookup_fast(damaged, "a:1")


@given(_histories())
@settings(max_examples=60)
def test_named_totals_equal_the_full_parse(history) -> None:
    index, _ = history
    data = index.to_bytes()
    expected = sorted(
        (name, d.digest, int(d.annotations.get(SIZE_KEY, 0)), int(d.annotations.get(FILES_KEY, 0)))
        for name, d in Index.parse(data).named()
    )
    assert named_totals(data) == expected


@st.composite
def _store_histories(draw) -> Index:
    """An index as odai-store writes it: entries as manifest_descriptor makes them, named and unnamed."""
    index = Index()
    for _ in range(draw(st.integers(0, 12))):
        desc = Descriptor(
            MANIFEST_TYPE,
            Digest(draw(digests_hex())),
            draw(st.integers(0, 10**9)),
            {SIZE_KEY: str(draw(st.integers(0, 10**15))), FILES_KEY: str(draw(st.integers(0, 10**4)))},
            draw(st.sampled_from([ARTIFACT_TYPE, None])),
        )
        action = draw(st.sampled_from(["name", "unnamed", "remove"]))
        if action == "name":
            index = index.with_name(draw(ref_names()), desc)
        elif action == "unnamed":
            index = index.with_unnamed(desc)
        elif index.named():
            index = index.without_name(draw(st.sampled_from([n for n, _ in index.named()])))
    return index


@given(_store_histories())
@settings(max_examples=100)
def test_named_totals_of_our_own_index_take_the_fast_path_and_equal_the_full_parse(index: Index) -> None:
    data = index.to_bytes()
    expected = sorted(
        (name, d.digest, int(d.annotations[SIZE_KEY]), int(d.annotations[FILES_KEY])) for name, d in Index.parse(data).named()
    )
    assert _canonical_totals(data) == expected
    assert named_totals(data) == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"sha256:aaaa', b'"sha256:Aaaa'),  # not a digest any more
        (b'"size":100', b'"size":-1'),
        (b'"ai.odai.model.files":"1"', b'"ai.odai.model.files":1'),  # not a string
        (b'"b:1"}}', b'"b:1"}'),  # cut short
        (b'"a:1"}},\n', b'"a:1"}}\n'),  # a comma lost between entries
        (b'"b:1"}}\n]}', b'"b:1"}},\n]}'),  # a comma after the last entry
    ],
)
def test_a_damaged_line_of_our_own_index_is_not_taken_by_the_fast_path(old: bytes, new: bytes) -> None:
    data = Index().with_name("a:1", _desc("a")).with_name("b:1", _desc("b")).to_bytes()
    assert _canonical_totals(data) is not None
    damaged = data.replace(old, new, 1)
    assert damaged != data
    assert _canonical_totals(damaged) is None
    with pytest.raises(InvalidIndex):
        named_totals(damaged)


@pytest.mark.parametrize(
    "data",
    [b"[]", b'{"schemaVersion": 2}', b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:xyz", "annotations": {"org.opencontainers.image.ref.name": "a:b"}}]}'],
)
def test_named_totals_refuse_a_damaged_index(data: bytes) -> None:
    with pytest.raises(InvalidIndex):
        named_totals(data)


def test_a_display_cache_that_is_not_a_number_is_shown_as_zero() -> None:
    """spec/names.md: the size and file-count annotations are for display; list must not fail on them."""
    digest = "sha256:" + "a" * 64
    entry = {"mediaType": MANIFEST_TYPE, "digest": digest, "size": 10, "annotations": {SIZE_KEY: "9.4MB", FILES_KEY: "-1", REF_NAME: "m:v1"}}
    data = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    assert named_totals(data) == [("m:v1", Digest("a" * 64), 0, 0)]


# -- size: the memory a parse may take ------------------------------------------------

_HOSTILE = b'{"schemaVersion":2,"manifests":[' + b"{}," * ((MAX_INDEX_BYTES - 40) // 3) + b"{}]}"


@pytest.mark.parametrize("parse", [Index.parse, named_totals, lambda data: lookup_fast(data, "m:v1")], ids=["parse", "named_totals", "lookup_fast"])
def test_an_index_over_the_cap_is_refused_before_it_is_parsed(parse) -> None:
    # The attack: '{},' repeated costs ~28 times its size as Python objects;
    # a 64 MiB index.json took 1.7 GB to be found invalid.
    import tracemalloc

    data = _HOSTILE + b" " * (MAX_INDEX_BYTES + 1 - len(_HOSTILE))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidIndex, match=f"over the {MAX_INDEX_BYTES}-byte limit"):
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_cap_is_the_documented_one() -> None:
    assert MAX_INDEX_BYTES == 8 * 1024 * 1024


def test_the_store_never_writes_an_index_over_the_cap(tmp_path) -> None:
    from store import StorageError, Store

    store = Store(tmp_path / "store")
    def entry(i: int) -> Descriptor:
        return Descriptor(MANIFEST_TYPE, Digest("a" * 64), 1, {REF_NAME: f"m/n-{i:06d}:v1"})

    line = len(Index((entry(0), entry(1))).to_bytes()) - len(Index((entry(0),)).to_bytes())
    room = (MAX_INDEX_BYTES - len(Index().to_bytes())) // line
    store.layout.index.write_bytes(Index(tuple(entry(i) for i in range(room - 2))).to_bytes())
    before = store.layout.index.read_bytes()
    with pytest.raises(StorageError, match="over the 8388608-byte limit"):
        for i in range(3):
            store._names.edit(lambda index, i=i: index.with_name(f"m/n-{room + i:06d}:v1", entry(0)))
    assert len(store.layout.index.read_bytes()) <= MAX_INDEX_BYTES
    assert store.layout.index.read_bytes().startswith(before[:100])
