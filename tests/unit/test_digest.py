"""store.oci.digest: the sha256:<hex> value."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.oci.digest import Digest, InvalidDigest, digest_named, parse_digest, sha256_of
from tests.support.strategies import digests_hex

HEX = "0123456789abcdef" * 4


def test_parse_and_print() -> None:
    digest = parse_digest(f"sha256:{HEX}")
    assert digest == Digest(HEX)
    assert str(digest) == f"sha256:{HEX}"
    assert digest.algorithm == "sha256"
    assert digest.short == HEX[:12]


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX,
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        f"sha256:{HEX.upper()}",
        f"SHA256:{HEX}",
        f"sha512:{HEX}{HEX}",
        f"sha256:{HEX}\n",
        f" sha256:{HEX}",
        f"sha256:{HEX[:-1]}g",
        f"sha256: {HEX[1:]}",
    ],
)
def test_invalid_digests(text: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        parse_digest(text)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value", [None, 5, HEX.encode(), {"digest": HEX}])
def test_non_text_is_refused(value: object) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(value)  # type: ignore[arg-type]


@given(st.binary(max_size=4096))
def test_sha256_of_equals_hashlib(data: bytes) -> None:
    assert sha256_of(data) == Digest(hashlib.sha256(data).hexdigest())
    assert parse_digest(str(sha256_of(data))) == sha256_of(data)


@given(digests_hex(), digests_hex())
def test_order_and_equality_follow_the_hex(a: str, b: str) -> None:
    assert (Digest(a) == Digest(b)) == (a == b)
    assert (Digest(a) < Digest(b)) == (a < b)
    assert len({Digest(a), Digest(b)}) == len({a, b})


@given(st.text(alphabet=st.sampled_from("sha256:0123456789abcdefABG_ é\udc80\x00\n"), min_size=60, max_size=80) | st.text(max_size=80))
def test_parse_accepts_exactly_the_grammar(text: str) -> None:
    # parse_digest checks with string methods for speed; the grammar of
    # spec/digests.md, as a regular expression, is the reference.
    import re

    if re.fullmatch(r"sha256:[0-9a-f]{64}", text):
        assert parse_digest(text) == Digest(text[7:])
    else:
        with pytest.raises(InvalidDigest):
            parse_digest(text)


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.integers(0, 63), st.characters())
def test_one_wrong_character_is_refused(hex_: str, at: int, char: str) -> None:
    text = f"sha256:{hex_[:at]}{char}{hex_[at + 1:]}"
    if char in "0123456789abcdef":
        assert parse_digest(text) == Digest(text[7:])
    else:
        with pytest.raises(InvalidDigest):
            parse_digest(text)


def test_digest_named_takes_exactly_64_lowercase_hex_digits() -> None:
    hex64 = "0123456789abcdef" * 4
    assert digest_named(hex64) == Digest(hex64)
    for name in ["", hex64[:-1], hex64 + "0", hex64.upper(), "g" + hex64[1:], ".build-1-" + hex64[:16] + ".tmp", "٠" * 64]:
        assert digest_named(name) is None, name
