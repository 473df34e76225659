"""Fixtures for tests that talk to real servers on 127.0.0.1 (nginx, an OCI registry, olah as the Hugging Face Hub, the fault server,
`odai-store serve`), or need a filesystem that clones."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fault_server import FaultServer, Layout
from tests.support.hf_client import HfClient
from tests.support.loop_fs import loop_mounted
from tests.support.nginx import Nginx, find_nginx, start_nginx
from tests.support.olah import Olah, find_olah, start_olah
from tests.support.registry import Registry, running_registry
from tests.support.requirements import unavailable
from tests.support.store_server import StoreServer, start_store_server


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """One nginx for the session; each test serves its layouts from its own ``nginx.site(name)``."""
    binary = find_nginx()
    if binary is None:
        unavailable("nginx is not installed (Debian package nginx-light; scripts/test installs it as root)")
    base = tmp_path_factory.mktemp("nginx")
    server = start_nginx(binary, base / "prefix", base / "www")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def skopeo() -> str:
    """The skopeo binary: the other client that copies models to and from registries and layouts."""
    found = shutil.which("skopeo")
    if found is None:
        unavailable("skopeo is not installed (Debian package skopeo; scripts/test installs it as root)")
    return found


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One OCI registry (docker-registry) for the session; each test pushes to repositories of its own."""
    with running_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(scope="session")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Olah]:
    """One olah (a Hugging Face Hub mirror, offline) for the session; each test builds repositories of its own names with ``olah.model``."""
    binary = find_olah()
    if binary is None:
        unavailable("olah is not installed (PyPI olah, in .venv-olah: scripts/test makes it)")
    if shutil.which("git") is None:
        unavailable("git is not installed (Debian package git; scripts/test installs it as root)")
    server = start_olah(binary, tmp_path_factory.mktemp("olah"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hf_client() -> HfClient:
    """The official huggingface_hub client, each call in a child process whose environment reaches only loopback."""
    if importlib.util.find_spec("huggingface_hub") is None:
        unavailable("huggingface_hub is not installed in this venv (a test extra: scripts/test installs it)")
    return HfClient()


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    """``fault_server(layout, extra=None, latency=0.0, tokens=None) -> FaultServer``; every server made is closed after the test."""
    made: list[FaultServer] = []

    def make(layout: Layout | None = None, extra: dict[str, bytes] | None = None, *, latency: float = 0.0, tokens: list[int | None] | None = None) -> FaultServer:
        server = FaultServer(layout, extra, latency=latency, tokens=tokens)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, for the free-space tests (root only; CI runs as root, so there it must work)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        unavailable("the free-space test mounts a tmpfs, which needs root and the mount command (util-linux)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here for the free-space test: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def store_server() -> Iterator[Callable[..., StoreServer]]:
    """``store_server(store_dir, *args) -> StoreServer`` running `odai-store serve`; stopped after the test."""
    made: list[StoreServer] = []

    def start(store: Path, *args: str) -> StoreServer:
        server = start_store_server(store, *args)
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


@pytest.fixture(scope="session")
def xfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One XFS that can clone (reflink=1), loop-mounted for the session: unmounted and detached after it, even on failure."""
    with loop_mounted("xfs", tmp_path_factory.mktemp("xfs")) as mount:
        yield mount


@pytest.fixture
def xfs(xfs_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A new directory of this test's own on the session's XFS, removed after it (the image is small)."""
    import shutil

    directory = xfs_mount / request.node.name.replace("/", "_")[:100]
    directory.mkdir()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
