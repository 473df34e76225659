"""store.local.location: --store, else $ODAI_STORE_HOME, else $XDG_CACHE_HOME, else ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.local.location import store_location


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("ODAI_STORE_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_default_is_the_home_cache(env, tmp_path: Path) -> None:
    assert store_location() == tmp_path / "home" / ".cache" / "odai-store"


def test_xdg_cache_home(env, tmp_path: Path) -> None:
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store_location() == tmp_path / "xdg" / "odai-store"


def test_relative_xdg_is_ignored(env, tmp_path: Path) -> None:
    env.setenv("XDG_CACHE_HOME", "relative/cache")
    assert store_location() == tmp_path / "home" / ".cache" / "odai-store"


def test_env_beats_xdg_and_explicit_beats_env(env, tmp_path: Path) -> None:
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    env.setenv("ODAI_STORE_HOME", "rel-store")
    assert store_location() == tmp_path / "rel-store"
    assert store_location(tmp_path / "explicit") == tmp_path / "explicit"
    assert store_location("~/s") == tmp_path / "home" / "s"
    assert store_location("x").is_absolute()
