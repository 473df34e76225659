"""store.oci.reference: the NAME[:TAG] / NAME@digest grammar (spec/names.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import InvalidReference
from store.oci.digest import Digest
from store.oci.reference import DEFAULT_TAG, Reference, ShortDigest, parse_local_reference, parse_reference
from tests.support.strategies import names, tags

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("llama", "llama", DEFAULT_TAG),
        ("llama:q4", "llama", "q4"),
        ("org/llama-3b.v2_x:Q4_K_M", "org/llama-3b.v2_x", "Q4_K_M"),
        ("a/b/c:_", "a/b/c", "_"),
        ("0:0", "0", "0"),
        ("m:1.0-rc.1", "m", "1.0-rc.1"),
    ],
)
def test_name_and_tag(text: str, name: str, tag: str) -> None:
    ref = parse_reference(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, None)
    assert ref.ref_name == f"{name}:{tag}"
    assert parse_reference(str(ref)) == ref


def test_default_tag_is_latest() -> None:
    assert DEFAULT_TAG == "latest"
    assert parse_reference("m").ref_name == "m:latest"
    assert parse_reference("m") == parse_reference("m:latest")


def test_digest_reference() -> None:
    ref = parse_reference(f"org/m@sha256:{HEX}")
    assert ref == Reference("org/m", None, Digest(HEX))
    assert str(ref) == f"org/m@sha256:{HEX}"
    assert parse_reference(str(ref)) == ref


def test_name_length_limit() -> None:
    longest = ("a" * 127) + "/" + ("b" * 127)
    assert len(longest) == 255
    assert parse_reference(longest).name == longest
    with pytest.raises(InvalidReference, match="longer"):
        parse_reference(longest + "c")
    with pytest.raises(InvalidReference):
        parse_reference(f"{longest}c@sha256:{HEX}")


def test_tag_length_limit() -> None:
    assert parse_reference("m:" + "T" * 128).tag == "T" * 128
    with pytest.raises(InvalidReference, match="tag"):
        parse_reference("m:" + "T" * 129)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":tag",
        "@sha256:" + HEX,
        "Llama",
        "llamA:q4",
        "a..b",
        "a/../b",
        "a/./b",
        "../a",
        "a//b",
        "/a",
        "a/",
        ".a",
        "a.",
        "-a",
        "a_",
        "a b",
        "a\n",
        "\na",
        "ä",
        "a\\b",
        "a:",
        "a:.tag",
        "a:-tag",
        "a:t/g",
        "a:tag:more",
        "a:t@g",
        "a@",
        "a@sha256:",
        "a@sha256:" + HEX[:-1],
        "a@sha256:" + HEX + "0",
        "a@sha256:" + HEX.upper(),
        "a@sha512:" + HEX,
        "a@md5:" + HEX,
        "a:tag@sha256:" + HEX,
        "a@sha256:" + HEX + "\n",
    ],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert info.value.exit_code == 2
    assert info.value.hint and "\n" not in info.value.hint
    assert "\n" not in info.value.message.replace(repr(text), "")


@pytest.mark.parametrize("value", [None, b"llama", 3, ["llama"]])
def test_non_text_is_refused(value: object) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(value)  # type: ignore[arg-type]


@given(names(), tags())
def test_generated_references_round_trip(name: str, tag: str) -> None:
    ref = parse_reference(f"{name}:{tag}")
    assert (ref.name, ref.tag) == (name, tag)
    assert parse_reference(str(ref)) == ref


@given(st.text(max_size=40))
def test_anything_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    # What is accepted is canonical, and can never spell a path that leaves a directory.
    assert parse_reference(str(ref)) == ref
    assert all(part not in ("", ".", "..") for part in ref.name.split("/"))
    assert ref.name == ref.name.lower() and ref.name.isascii()


# -- short digests (spec/names.md#short-digests) ---------------------------------


@pytest.mark.parametrize(
    ("text", "short"),
    [
        (HEX[:12], HEX[:12]),
        ("sha256:" + HEX[:12], HEX[:12]),
        (HEX[:40], HEX[:40]),
        (HEX, HEX),
        ("sha256:" + HEX, HEX),
    ],
)
def test_short_digest(text: str, short: str) -> None:
    assert parse_local_reference(text) == ShortDigest(short)
    assert str(ShortDigest(short)) == short


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        (HEX[:11], Reference(HEX[:11])),  # fewer than 12 digits: a name
        (HEX[:12] + ":latest", Reference(HEX[:12])),  # a name of hex digits, by its full reference
        ("sha256:" + HEX[:11], Reference("sha256", HEX[:11])),
        ("abcdefabcdefg", Reference("abcdefabcdefg")),  # not all hex
        ("m@sha256:" + HEX, Reference("m", None, Digest(HEX))),
        ("llama:q4", Reference("llama", "q4")),
        (HEX + "0", Reference(HEX + "0")),  # more than 64 digits: a name
        ("sha256:" + HEX + "0", Reference("sha256", HEX + "0")),
        ("sha256:" + HEX[:12].upper(), Reference("sha256", HEX[:12].upper())),
    ],
)
def test_what_is_not_a_short_digest_is_a_reference(text: str, ref: Reference) -> None:
    assert parse_local_reference(text) == ref


@pytest.mark.parametrize("text", [HEX[:12].upper(), "SHA256:" + HEX[:12], "sha256:" + HEX[:12] + "@sha256:" + HEX])
def test_neither_a_short_digest_nor_a_reference(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_local_reference(text)


@given(st.text("0123456789abcdef", min_size=12, max_size=64))
def test_every_run_of_12_to_64_hex_digits_is_a_short_digest(hex_: str) -> None:
    assert parse_local_reference(hex_) == parse_local_reference("sha256:" + hex_) == ShortDigest(hex_)
    assert ShortDigest(hex_).starts(Digest(hex_ + "0" * (64 - len(hex_))))


@pytest.mark.parametrize(
    ("text", "name", "tag", "registry"),
    [
        ("localhost:5000/llama:v1", "localhost:5000/llama", "v1", "localhost:5000"),
        ("localhost:5000/llama", "localhost:5000/llama", "latest", "localhost:5000"),
        ("localhost/llama", "localhost/llama", "latest", "localhost"),
        ("registry.example.com/team/llama:q4", "registry.example.com/team/llama", "q4", "registry.example.com"),
        ("oci://127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b", "c", "127.0.0.1:5000"),
        ("org/tiny-embed:q4", "org/tiny-embed", "q4", None),  # no '.', ':' or localhost first: a name of the store's
        ("llama-3.2_1b:Q4_K_M", "llama-3.2_1b", "Q4_K_M", None),  # one component: never a registry
    ],
)
def test_registry_references_name_their_registry(text: str, name: str, tag: str, registry: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.name, ref.tag, ref.registry) == (name, tag, registry)


@pytest.mark.parametrize("text", ["Registry.example.com/x", "localhost:port/x", "localhost:5000/Llama", "oci://llama:v1", "oci://llama", "localhost:5000/"])
def test_malformed_registry_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)
