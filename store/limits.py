"""The limits a caller sets on a network phase: a rate (--limit-rate) and a time (--timeout), from their spellings; connections and retries, in their ranges.

The command line and the Python API take the same spellings ("10M", "2.5")
or the numbers they stand for, and refuse the same values.
"""

import re

from .errors import UsageError

__all__ = ["CONNECTIONS", "RETRIES", "check_count", "parse_rate", "parse_seconds"]

# The grammars of spec/fetching.md ("Rate limit") and spec/cli.md (--timeout),
# not float(): that would take 'nan', 'inf', '1e3', '1_0' and ' 5'. Compiled
# on first use, by re's cache: the commands that take neither never pay for it.
_RATE = r"([0-9]+(?:\.[0-9]+)?)([KkMmGg]?)"
_SECONDS = r"[0-9]+(?:\.[0-9]+)?"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_INFINITY = float("inf")  # not math.inf: importing math costs every command, not only those with a limit
# The ranges of --connections and --retries, and of the API's connections= and retries=.
CONNECTIONS = (1, 64)
RETRIES = (0, 100)


def _is_number(value: object) -> bool:
    # bool is an int to Python, but True is no rate, count or timeout a caller meant.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_count(name: str, value: object, bounds: tuple[int, int]) -> int:
    """``value`` if it is an int within ``bounds``, both included; UsageError naming ``name`` otherwise.

    >>> check_count("connections", 8, CONNECTIONS)
    8
    """
    low, high = bounds
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise UsageError(f"{name}={value!r}: {name} must be an int from {low} to {high}", f"as --{name} takes (spec/cli.md#python-api)")
    return value


def parse_rate(value: str | float | None) -> float | None:
    """Bytes per second from a rate like '500K', '10M' or '1G' (powers of 1024, as curl's), or a number; None: no limit.

    >>> parse_rate("10M")
    10485760.0
    """
    if value is None:
        return None
    if not (isinstance(value, str) or _is_number(value)):
        raise UsageError(f"{value!r} is not a rate: a number of bytes per second or a string like 10M", "e.g. limit_rate=\"10M\" (spec/fetching.md#rate-limit)")
    if isinstance(value, str):
        match = re.fullmatch(_RATE, value)
        if match is None:
            raise UsageError(f"{value!r} is not a rate like 500K, 10M or 1G", "a rate is bytes per second, K, M and G being powers of 1024 (spec/fetching.md#rate-limit)")
        rate = float(match[1]) * _UNITS[match[2].upper()]
    else:
        rate = float(value)
    # At least a byte a second, and finite (400 digits are inf as a float; nan compares
    # false): the token bucket sleeps for a byte's share of a second and reads a tenth of
    # the rate at a time.
    if not 1 <= rate < _INFINITY:
        raise UsageError(f"{value!r}: the rate must be at least 1 byte per second, and finite", "e.g. 500K, 10M or 1G (spec/fetching.md#rate-limit)")
    return rate


def parse_seconds(value: str | float | None) -> float | None:
    """Seconds from a decimal number above 0 like '30' or '2.5', or a number; None: no bound.

    >>> parse_seconds("2.5")
    2.5
    """
    if value is None:
        return None
    seconds = float(value) if _is_number(value) or (isinstance(value, str) and re.fullmatch(_SECONDS, value)) else None
    if seconds is None or not 0 < seconds < _INFINITY:  # nan compares false
        raise UsageError(f"{value!r} is not a number of seconds above 0, like 30 or 2.5", "a timeout is a decimal number of seconds (spec/cli.md#synopsis)")
    return seconds
