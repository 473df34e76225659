"""store.oci.chunks: BLAKE3 digests of fixed-size chunks."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.oci.chunks import CHUNK_SIZE, ChunkDigests, ChunkHasher, InvalidChunks


def _expected(data: bytes, size: int) -> tuple[str, ...]:
    return tuple(blake3.blake3(data[i : i + size]).hexdigest() for i in range(0, len(data), size))


@st.composite
def _split(draw) -> tuple[bytes, int, list[bytes]]:
    size = draw(st.integers(1, 64))
    data = draw(st.binary(max_size=400))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return data, size, pieces


@given(_split())
def test_any_split_gives_the_per_chunk_blake3(case) -> None:
    data, size, pieces = case
    hasher = ChunkHasher(size)
    for piece in pieces:
        hasher.update(memoryview(piece) if len(piece) % 2 else piece)
    result = hasher.result()
    assert result == ChunkDigests(size, _expected(data, size))
    assert len(result.digests) == -(-len(data) // size)


def test_exact_multiple_has_no_empty_last_chunk() -> None:
    data = bytes(range(256)) * 4
    assert ChunkHasher(256).result().digests == ()
    hasher = ChunkHasher(256)
    hasher.update(data)
    assert hasher.result().digests == _expected(data, 256)
    assert len(hasher.result().digests) == 4


def test_default_chunk_size() -> None:
    hasher = ChunkHasher()
    hasher.update(b"a")
    assert hasher.result().size == CHUNK_SIZE
    assert CHUNK_SIZE > 0 and CHUNK_SIZE % (1 << 20) == 0


@given(st.binary(max_size=300), st.integers(1, 50))
def test_encode_decode_check(data: bytes, size: int) -> None:
    hasher = ChunkHasher(size)
    hasher.update(data)
    chunks = hasher.result()
    assert ChunkDigests.decode(size, chunks.encode(), len(data)) == chunks
    for i in range(len(chunks.digests)):
        piece = data[i * size : (i + 1) * size]
        assert blake3.blake3(piece).hexdigest() == chunks.digests[i]


@pytest.mark.parametrize(
    ("size", "text", "blob_size"),
    [
        (0, "", 0),
        (-8, "", 0),
        (8, "", 1),
        (8, "0" * 64, 0),
        (8, "0" * 64, 9),
        (8, "0" * 63, 8),
        (8, "0" * 65, 8),
        (8, "A" * 64, 8),
        (8, "g" * 64, 8),
        (8, " " * 64, 8),
    ],
)
def test_decode_refuses_what_does_not_fit(size: int, text: str, blob_size: int) -> None:
    with pytest.raises(InvalidChunks):
        ChunkDigests.decode(size, text, blob_size)
