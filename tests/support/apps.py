"""An app as the lockfile tests see one: a project directory with its odai.lock, and the store $ODAI_STORE_HOME names; and a remote to publish to."""

from __future__ import annotations

import os
from pathlib import Path

from store import Store
from store.local.roots import read_lockfile
from store.oci.digest import Digest
from store.oci.manifest import Manifest
from tests.support.cli import CliResult, run_cli
from tests.support.trees import write_tree

__all__ = ["App", "publish"]


def publish(remote: Path, name: str, files: dict[str, bytes]) -> tuple[Digest, Manifest]:
    """Add ``files`` to the store at ``remote`` as ``name``; its manifest's digest and the manifest."""
    source = write_tree(remote.parent / f"src-{remote.name}-{name.replace(':', '-')}-{len(os.listdir(remote.parent))}", files)
    Store(remote).add(name, [source])
    return Store(remote).resolve(name)


class App:
    """An app: its own working directory (holding its odai.lock), and the store from $ODAI_STORE_HOME (no remote configured)."""

    def __init__(self, root: Path, store: Path) -> None:
        self.dir = root
        self.dir.mkdir()
        self.store = store

    @property
    def env(self) -> dict[str, str]:
        return {"ODAI_STORE_HOME": str(self.store)}

    @property
    def lockfile(self) -> Path:
        return self.dir / "odai.lock"

    def run(self, *args: str | os.PathLike[str], env: dict[str, str] | None = None) -> CliResult:
        return run_cli(None, *args, env={**self.env, **(env or {})}, cwd=self.dir)

    def blobs(self) -> set[str]:
        return set(os.listdir(self.store / "blobs" / "sha256"))

    def pinned(self) -> dict[str, Digest]:
        return {pin.ref_name: pin.digest for pin in read_lockfile(self.lockfile).pins}
