"""store.transfer.segments: how the missing bytes of a blob are cut into segments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from store.local.journal import Ranges
from store.transfer.segments import SegmentPlan

MiB = 1 << 20


@st.composite
def _case(draw) -> tuple[SegmentPlan, int, Ranges]:
    chunk = draw(st.integers(1, 64))
    plan = SegmentPlan(connections=draw(st.integers(1, 16)), threshold=draw(st.integers(0, 512)), chunk=chunk)
    size = draw(st.integers(0, 4096))
    done = Ranges()
    for start, length in draw(st.lists(st.tuples(st.integers(0, size), st.integers(0, 512)), max_size=6)):
        done = done.add(start, min(size, start + length))
    return plan, size, done


@given(_case(), st.booleans())
def test_segments_cover_exactly_the_missing_bytes_in_order(case, ranges_ok) -> None:
    plan, size, done = case
    segments = plan.segments(size, done, ranges_ok)
    assert all(start < end for start, end in segments)
    assert all(a[1] <= b[0] for a, b in zip(segments, segments[1:], strict=False))
    covered = Ranges()
    for start, end in segments:
        covered = covered.add(start, end)
    assert covered.spans == tuple(done.missing(size))


@given(_case())
def test_segments_end_on_chunk_boundaries_inside_a_gap(case) -> None:
    plan, size, done = case
    gap_ends = {end for _, end in done.missing(size)}
    for _, end in plan.segments(size, done, ranges_ok=True):
        assert end % plan.chunk == 0 or end in gap_ends


def test_segments_shrink_to_one_chunk_towards_the_end() -> None:
    plan = SegmentPlan(connections=8, chunk=8 * MiB)
    lengths = [end - start for start, end in plan.segments(400_000_000, Ranges(), ranges_ok=True)]
    # Long segments first (few requests), single chunks last (connections finish together).
    assert lengths[:-1] == sorted(lengths[:-1], reverse=True)  # the last one is what is left
    assert lengths[0] >= 3 * 8 * MiB
    assert lengths[-2] == 8 * MiB
    assert len(lengths) >= 2 * plan.connections


def test_no_split_without_ranges_below_the_threshold_or_for_one_connection() -> None:
    gaps = [(0, 64 * MiB)]
    assert SegmentPlan().segments(64 * MiB, Ranges(), ranges_ok=False) == gaps
    assert SegmentPlan(connections=1).segments(64 * MiB, Ranges(), ranges_ok=True) == gaps
    assert SegmentPlan().segments(16 * MiB, Ranges(), ranges_ok=True) == [(0, 16 * MiB)]
