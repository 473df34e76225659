"""SpaceCheck (spec/fetching.md, "Free space"): pure, so tested as arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from store.errors import NoSpace
from store.local.space import SpaceCheck, megabytes


@given(st.integers(0, 1 << 44), st.integers(0, 1 << 44))
@example(100, 110)  # 100 * 1.1 in floats is 110.00000000000001
def test_it_fits_exactly_when_need_and_its_ten_percent_margin_are_free(need: int, free: int) -> None:
    check = SpaceCheck()
    fits = need == 0 or free >= -(-need * 11 // 10)
    assert (check.shortfall(need, free) == 0) == fits
    if not fits:
        assert free + check.shortfall(need, free) == check.required(need)


def test_the_message_of_the_origin_with_the_gc_clause() -> None:
    with pytest.raises(NoSpace) as refused:
        SpaceCheck().check(10_000_000, 6_000_000, "/store", reclaimable=4_000_000)
    assert refused.value.message == "not enough space in /store: need 11 MB (10 MB + 10% margin), 6 MB available"
    assert refused.value.hint == "free up 5 MB; 'odai-store gc' would reclaim 4 MB"
    with pytest.raises(NoSpace) as refused:
        SpaceCheck().check(10_000_000, 6_000_000, "/store", reclaimable=0)
    assert refused.value.hint == "free up 5 MB; 'odai-store gc' would free nothing"  # so that nobody runs it in vain
    with pytest.raises(NoSpace) as refused:
        SpaceCheck().check(10_000_000, 6_000_000, "/store", reclaimable=None)  # not known (a damaged root): no claim either way
    assert refused.value.hint == "free up 5 MB"
    SpaceCheck().check(10_000_000, 11_000_000, "/store", reclaimable=0)  # fits: no error


def test_megabytes_round_up() -> None:
    assert [megabytes(n) for n in (0, 1, 999_999, 1_000_000, 1_000_001)] == [0, 1, 1, 1, 2]


def test_a_filesystem_is_short_of_space_below_the_margin_free() -> None:
    check = SpaceCheck()
    assert check.low(9, 100) and check.low(0, 100)
    assert not check.low(10, 100) and not check.low(100, 100)
