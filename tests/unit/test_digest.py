"""store.oci.digest: the sha256:<hex> value."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.oci.digest import Digest, InvalidDigest, parse_digest, sha256_of
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
