"""store.oci.reference: the NAME[:TAG] / NAME@digest grammar (spec/names.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import InvalidReference
from store.oci.digest import Digest
from store.oci.reference import DEFAULT_TAG, Reference, parse_reference
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
