"""store.oci.descriptor: the OCI content descriptor record."""

from __future__ import annotations

import hashlib

import pytest

from store.oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR, EMPTY_TYPE, Descriptor
from store.oci.digest import Digest, InvalidDigest

HEX = "ab" * 32


def test_round_trip_with_optional_fields() -> None:
    desc = Descriptor("application/x", Digest(HEX), 12, {"k": "v"}, "application/vnd.a")
    obj = desc.to_json()
    assert obj == {
        "mediaType": "application/x",
        "digest": f"sha256:{HEX}",
        "size": 12,
        "artifactType": "application/vnd.a",
        "annotations": {"k": "v"},
    }
    back = Descriptor.from_json(obj)
    assert back == desc and back.annotations == desc.annotations


def test_optional_fields_are_left_out_when_empty() -> None:
    assert Descriptor("a/b", Digest(HEX), 0).to_json() == {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": 0}


def test_empty_descriptor_is_the_oci_empty_blob() -> None:
    assert EMPTY_BYTES == b"{}"
    assert EMPTY_DESCRIPTOR.media_type == EMPTY_TYPE == "application/vnd.oci.empty.v1+json"
    assert EMPTY_DESCRIPTOR.digest.hex == hashlib.sha256(EMPTY_BYTES).hexdigest()
    assert EMPTY_DESCRIPTOR.size == len(EMPTY_BYTES)


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "descriptor",
        {"digest": f"sha256:{HEX}", "size": 1},
        {"mediaType": "", "digest": f"sha256:{HEX}", "size": 1},
        {"mediaType": 5, "digest": f"sha256:{HEX}", "size": 1},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}"},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": -1},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": 1.0},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": True},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": "1"},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": 1, "annotations": []},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": 1, "annotations": {"k": 1}},
        {"mediaType": "a/b", "digest": f"sha256:{HEX}", "size": 1, "artifactType": 3},
    ],
)
def test_malformed_descriptors(obj: object) -> None:
    with pytest.raises(ValueError):
        Descriptor.from_json(obj)


@pytest.mark.parametrize("digest", [None, "", "sha256:xyz", f"md5:{HEX}", 7])
def test_malformed_digest(digest: object) -> None:
    with pytest.raises(InvalidDigest):
        Descriptor.from_json({"mediaType": "a/b", "digest": digest, "size": 1})
