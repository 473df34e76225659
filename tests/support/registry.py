"""A real OCI registry (Debian's docker-registry, CNCF distribution 2.x) on 127.0.0.1 (or another address of this machine), and skopeo to talk to it.

The registry runs in the foreground with its own config and storage under the
test's temporary directory, without authentication or TLS, listening on
loopback, or on ``non_loopback_address()`` for a test of a registry that is
not on loopback. Requests go through ``http.client`` straight to that address,
so no proxy variable of the environment can send them anywhere else.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.nginx import free_port
from tests.support.processes import stop_process
from tests.support.requirements import unavailable

__all__ = ["OCI_MANIFEST", "Registry", "find_registry", "non_loopback_address", "start_registry", "skopeo_copy"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# A request line of the access log: 127.0.0.1 - - [03/Dec/2026:11:05:19 +0000] "GET /v2/ HTTP/1.1" 200 2 "" ""
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[[^]]*\] "([A-Z]+) (\S+) HTTP/[0-9.]+" ', re.MULTILINE)


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine outside 127.0.0.0/8, which a client must not take for loopback; None if it has none."""
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect only picks the route's source address, nothing is sent
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def find_registry() -> str | None:
    """The docker-registry binary (Debian package docker-registry), or None."""
    return shutil.which("docker-registry")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes


@dataclass
class Registry:
    """A running registry: ``host`` (``127.0.0.1:PORT``) is what skopeo and ORAS references start with."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]
    binary: str
    status: int  # what GET /v2/ answers once it is up: 200, or 401 where it wants a login
    address: str = "127.0.0.1"  # where it listens: loopback, unless a test needs a registry "elsewhere"

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def ref(self, repository: str, reference: str) -> str:
        """A skopeo ``docker://`` reference: ``reference`` is a tag, or ``sha256:<hex>`` for a digest."""
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}{sep}{reference}"

    def get(self, path: str, accept: str | None = None, method: str = "GET") -> Response:
        """One request to the registry's HTTP API (``path`` starts with ``/v2/``)."""
        conn = http.client.HTTPConnection(self.address, self.port, timeout=30)
        try:
            conn.request(method, path, headers={"Accept": accept} if accept else {})
            response = conn.getresponse()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def manifest(self, repository: str, reference: str) -> Response:
        """The manifest of ``repository`` at a tag or digest, asked for as an OCI image manifest."""
        return self.get(f"/v2/{repository}/manifests/{reference}", accept=OCI_MANIFEST)

    def requests(self) -> list[str]:
        """Every request the registry has answered so far, as ``METHOD PATH`` lines of its access log, oldest first.

        Distribution writes a combined-format access line per request to its
        console, whatever the log level, once the answer is sent. So a marker
        request goes last, and the log is read once the marker is in it: every
        request answered before is in it too. A test takes the length before
        an action and reads what came after.
        """
        marker = f"/v2/?marker={time.monotonic_ns()}"
        self.get(marker)
        deadline = time.monotonic() + 10
        while True:
            log = (self.base / "console.log").read_text(errors="replace")
            lines = [f"{m.group(1)} {m.group(2)}" for m in _ACCESS.finditer(log)]
            if f"GET {marker}" in lines:
                return [line for line in lines[: lines.index(f"GET {marker}")] if not line.startswith("GET /v2/?marker=")]
            if time.monotonic() > deadline:
                raise AssertionError(f"the registry's access log never showed {marker}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        """Start it again on the same port, config and storage (after ``stop``); RuntimeError if it does not come up."""
        process = _launch(self.binary, self.base, self.address, self.port, self.status)
        if process is None:
            raise RuntimeError(f"docker-registry did not start again:\n{(self.base / 'console.log').read_text(errors='replace')}")
        self.process = process


def _config(data: Path, address: str, port: int, htpasswd: Path | None, token: dict[str, str] | None) -> str:
    # YAML flow style; the registry is plain HTTP on loopback, deletes allowed, Basic auth if htpasswd is given,
    # or token auth by the issuer ``token`` describes (realm, service, issuer, rootcertbundle).
    auth = f"auth: {{htpasswd: {{realm: odai-test, path: {htpasswd}}}}}\n" if htpasswd else ""
    if token:
        auth = "auth: {token: {" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in token.items()) + "}}\n"
    return f"""version: 0.1
storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}
http: {{addr: {address}:{port}}}
log: {{level: error}}
{auth}"""


def _answers(address: str, port: int, status: int) -> bool:
    """True once ``GET /v2/`` answers ``status`` (200, or 401 where it wants a login): the API is up."""
    try:
        conn = http.client.HTTPConnection(address, port, timeout=0.5)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status == status
        finally:
            conn.close()
    except OSError:
        return False


def _htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file of bcrypt hashes (the only kind distribution takes), made by Apache's htpasswd (Debian package apache2-utils)."""
    binary = shutil.which("htpasswd")
    if binary is None:
        raise FileNotFoundError("htpasswd is not installed (Debian package apache2-utils; scripts/test installs it as root)")
    lines = [subprocess.run([binary, "-Bbn", user, password], check=True, capture_output=True, text=True).stdout.strip() for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def running_registry(base: Path, **options: Any) -> Iterator[Registry]:
    """A registry started under ``base`` (``options`` as start_registry's) for the ``with`` block, stopped after; the test skips (fails under CI) where docker-registry or htpasswd is missing."""
    binary = find_registry()
    if binary is None:
        unavailable("docker-registry is not installed (Debian package docker-registry; scripts/test installs it as root)")
    try:
        server = start_registry(binary, base, **options)
    except FileNotFoundError as err:  # htpasswd, for users=
        unavailable(str(err))
    try:
        yield server
    finally:
        server.stop()


def start_registry(
    binary: str, base: Path, attempts: int = 3, users: dict[str, str] | None = None, address: str = "127.0.0.1", token: dict[str, str] | None = None
) -> Registry:
    """Start a registry keeping its config, storage and console log under ``base``, with Basic auth for ``users``
    (name -> password) if given, or token auth (``TokenIssuer.registry_auth()``), listening on ``address``; raise
    RuntimeError with its output if it will not come up."""
    base.mkdir(parents=True, exist_ok=True)
    htpasswd = _htpasswd(base / "htpasswd", users) if users else None
    failure = ""
    status = 401 if users or token else 200
    for _ in range(attempts):  # a free port can be taken between our probe and the registry's bind
        port = free_port()
        (base / "config.yml").write_text(_config(base / "data", address, port, htpasswd, token))
        process = _launch(binary, base, address, port, status)
        if process is not None:
            return Registry(base, port, process, binary, status, address)
        failure = (base / "console.log").read_text(errors="replace")
    raise RuntimeError(f"docker-registry did not start:\n{failure}")


def _launch(binary: str, base: Path, address: str, port: int, status: int) -> subprocess.Popen[bytes] | None:
    """The registry of ``base``'s config, once ``GET /v2/`` answers ``status``; None (and nothing left running) if it does not within 10 s."""
    with open(base / "console.log", "ab") as out:
        process = subprocess.Popen([binary, "serve", str(base / "config.yml")], stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=base)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(address, port, status):
            return process
        time.sleep(0.05)
    stop_process(process, grace=2)
    return None


def skopeo_copy(skopeo: str, source: str, dest: str) -> None:
    """``skopeo copy SOURCE DEST`` over plain HTTP; AssertionError with skopeo's output if it fails.

    ``--insecure-policy``: signature policy is no part of these tests, and the
    machine's /etc/containers/policy.json need not exist.
    """
    proc = subprocess.run(
        [skopeo, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", source, dest],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"skopeo copy {source} {dest} failed:\n{proc.stderr.decode(errors='replace')}"
