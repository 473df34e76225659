"""The garbage campaign's figures: with ODAI_STORE_HYPOTHESIS_PROFILE=long, the session ends by printing the bad inputs tried per format."""

from __future__ import annotations

from tests.support.bad_inputs import LONG, report


def pytest_terminal_summary(terminalreporter) -> None:
    lines = report()
    if LONG and lines:
        terminalreporter.section("bad inputs tried per format (format, examples, how each command ended)")
        for line in lines:
            terminalreporter.write_line(line)
