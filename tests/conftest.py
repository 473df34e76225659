"""Fixtures every test folder may use: an empty store, the CLI runner, a model tree.

Helpers that are not fixtures live in tests/support/ (import them as
``tests.support.<module>``); keep this file to fixtures only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from store import Store
from tests.support.cli import CliResult
from tests.support.cli import run_cli as _run_cli
from tests.support.flock import FLOCK, lying
from tests.support.trees import sample_model, write_tree

# No per-example deadline: the CI machine is shared and noisy, and a slow example
# is not a wrong one. Modest example counts keep the whole suite fast; a test
# that is cheap asks for more itself.
settings.register_profile("odai-store", deadline=None, max_examples=50)
# `pytest --hypothesis-profile store-model-long`: the stateful model test at length (tests/integration/test_store_model.py).
settings.register_profile("store-model-long", settings.get_profile("odai-store"), max_examples=200, stateful_step_count=40)
settings.load_profile("odai-store")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """Where the test's store lives (created on first use)."""
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Store:
    """An empty store in the test's temporary directory."""
    return Store(store_dir)


@pytest.fixture
def run_cli(store_dir: Path):
    """``run_cli(*args, **kw) -> (code, stdout, stderr)`` for ``python -m store --store <store_dir> ARGS``."""

    def run(*args, **kwargs) -> CliResult:
        return _run_cli(store_dir, *args, **kwargs)

    return run


@pytest.fixture
def model_files() -> dict[str, bytes]:
    """The contents of the sample model, by model path."""
    return sample_model()


@pytest.fixture
def model_tree(tmp_path: Path, model_files: dict[str, bytes]) -> Path:
    """A directory holding the sample model (nested paths, an empty file, binary weights)."""
    return write_tree(tmp_path / "model", model_files)


@pytest.fixture(params=FLOCK)
def flock(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a concurrency test twice: with flock as it is, and with flock lying in every process (tests/support/flock.py)."""
    if request.param == "flock-lies":
        lying(monkeypatch)
    return request.param


def pytest_addoption(parser: pytest.Parser) -> None:
    # Big runs that take too long to build for every run of the suite.
    parser.addoption("--big-store", action="store_true", help="doctor's time bound on a store of 10,000 names and 50 GB (sparse), built in about 10 s")
