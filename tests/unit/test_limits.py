"""store.limits: the spellings of --limit-rate and --timeout, which the API takes too."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from store import Store, limits
from store.errors import UsageError
from store.limits import parse_rate, parse_seconds


def test_the_examples_of_the_docstrings() -> None:
    assert doctest.testmod(limits).failed == 0


@pytest.mark.parametrize(("value", "rate"), [("1", 1.0), ("500K", 512000.0), ("500k", 512000.0), ("10M", 10485760.0), ("1.5G", 1.5 * 2**30), ("0.5K", 512.0), (4096, 4096.0), (1.5, 1.5), (None, None)])
def test_a_rate_is_bytes_per_second(value: str | float | None, rate: float | None) -> None:
    assert parse_rate(value) == rate


# The grammar of spec/fetching.md, and nothing float() would also take.
@pytest.mark.parametrize(
    "value",
    ["fast", "0", "-5M", "10Q", "10MB", "nan", "nanK", "infK", "1e999", "1e3", "1_0K", ".5K", "+5", " 5", "5.", "5\n", "0.000000001", "\u0665", "9" * 400, 0, 0.5, -1, float("nan"), float("inf")],
)
def test_anything_else_is_not_a_rate(value: str | float) -> None:
    with pytest.raises(UsageError):
        parse_rate(value)


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), ("2.5", 2.5), ("0.001", 0.001), (7, 7.0), (0.25, 0.25), (None, None)])
def test_a_timeout_is_seconds_above_zero(value: str | float | None, seconds: float | None) -> None:
    assert parse_seconds(value) == seconds


@pytest.mark.parametrize("value", ["0", "0.0", "-1", "nan", "inf", "1e3", "", "2s", " 2", "2.", "9" * 400, 0, -1.5, float("nan"), float("inf")])
def test_anything_else_is_not_a_timeout(value: str | float) -> None:
    with pytest.raises(UsageError):
        parse_seconds(value)


def test_the_api_takes_the_spellings_and_refuses_what_the_command_line_refuses(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w" * 5000)
    Store(tmp_path / "remote").add("m:v1", [model])
    client = Store(tmp_path / "client")
    # Refused before the first request: the remote is a port nothing listens on.
    with pytest.raises(UsageError):
        client.fetch("m:v1", remotes=["http://127.0.0.1:9"], limit_rate="10MB")
    with pytest.raises(UsageError):
        client.fetch("m:v1", remotes=["http://127.0.0.1:9"], timeout="0")
    with pytest.raises(UsageError):
        client.fetch("m:v1", remotes=["http://127.0.0.1:9"], limit_rate=0.5)
    fetched = client.fetch("m:v1", remotes=[str(tmp_path / "remote")], limit_rate="10M", timeout="30")
    assert fetched.size == 5000
