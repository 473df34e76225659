"""A socket-level HTTP/1.1 server on 127.0.0.1 that serves an OCI layout and misbehaves on demand.

It speaks just enough HTTP for a downloader (GET and HEAD, keep-alive,
Range, If-Range, ETag) and writes every byte itself, so a test can break a
response anywhere: reset the connection mid-body, close it early under a
larger Content-Length, flip bytes, ignore Range, answer 503 with Retry-After,
drip the body, change the object's ETag, redirect to another host, send more
than the blob, gzip it, or answer with any bytes at all (``raw``). It records each request (headers included) and the
body bytes it sent, which is how tests see what crossed the wire.

``latency`` delays every response's first byte, as any real network does:
loopback alone answers in microseconds and hides timing bugs.

``registry_layout`` lays a model out as a registry serves it (``/v2/...``,
manifests with their Content-Type and Docker-Content-Digest), for faults a
real registry cannot be made to show.

``hub_layout`` lays a model out as the Hugging Face Hub's API serves a
repository at one commit (``/api/models/ORG/REPO/revision/REV``, the tree
listing, paged with ``Link`` if asked, and ``/ORG/REPO/resolve/COMMIT/PATH``),
for what olah, the Hub mirror the other Hub tests use, cannot be made to do.

``tokens`` makes it a registry-like token service: every path wants
``Authorization: Bearer <token>`` and answers 401 with a Bearer challenge
whose realm is ``/token`` on this server; each token that realm issues is
good for a number of requests, then expires (a token expiring mid-download).

Faults are a script: ``server.fail(Fault(...), Fault(...))`` queues them, and
each request for a targeted path takes the first queued fault that has uses
left. Requests that find none are served honestly.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field

from store.local.names import manifest_descriptor
from store.oci.chunks import ChunkHasher
from store.oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR, MANIFEST_TYPE
from store.oci.digest import Digest
from store.oci.index import Index
from store.oci.manifest import Manifest, ModelFile
from store.oci.reference import parse_reference

__all__ = ["Fault", "Request", "Layout", "oci_layout", "registry_layout", "hub_layout", "FaultServer", "TOKEN_PATH", "SERVER"]

_PIECE = 1 << 20
TOKEN_PATH = "/token"
SERVER = "{server}"  # in a header value of a layout: this server's base URL, known once it listens
_REASONS = {
    200: "OK",
    206: "Partial Content",
    302: "Found",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Fault:
    """One misbehaviour for the next ``times`` requests of a targeted path (``times=None``: for ever).

    ``path`` targets one URL path; by default every file blob of the layout
    (not index.json, not the manifest). Byte positions are positions in the
    body of the response, except ``corrupt``, which is in the blob.
    """

    status: int | None = None  # answer this status with an empty body
    retry_after: str | None = None  # with ``status``
    error_code: str | None = None  # with ``status``: the Hub's X-Error-Code (GatedRepo, RepoNotFound...)
    unless_token: str | None = None  # not for a request carrying ``Authorization: Bearer <this>`` (a token the server accepts)
    reset_after: int | None = None  # send this many body bytes, then reset the connection (RST)
    close_after: int | None = None  # send this many body bytes, then close (FIN) under a larger Content-Length; chunked: end the body there
    linger: float = 0.0  # seconds between the last byte sent and the reset or close
    corrupt: tuple[int, int] | None = None  # flip the blob's bytes in [start, end)
    ignore_range: bool = False  # 200 and the whole object, whatever Range says
    shift_range: int = 0  # a 206 whose range (Content-Range and body) begins this many bytes after the one asked for
    drip: tuple[int, float] | None = None  # send the body this many bytes at a time, pausing this long between
    redirect: str | None = None  # 302 to the same path under this base URL
    extra: bytes = b""  # the object served is the blob followed by these bytes
    gzip: bool = False  # Content-Encoding: gzip, body compressed
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length (as olah sends a file)
    new_etag: bool = False  # the object changes version (ETag) before this request
    raw: bytes | None = None  # the whole answer, status line and headers included, whatever it holds; then close
    times: int | None = 1
    path: str | None = None


@dataclass
class Request:
    """One request as received, and what was sent back."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    at: float  # time.monotonic() when it was read
    query: str = ""  # what followed the '?' of the target
    status: int = 0
    response: dict[str, str] = field(default_factory=dict)  # headers sent back
    body_bytes: int = 0  # body bytes handed to the kernel
    fault: Fault | None = None


@dataclass(frozen=True)
class Layout:
    """An OCI image layout in memory: URL path -> bytes, and what it holds."""

    files: dict[str, bytes]
    ref_name: str
    manifest: Digest
    blobs: dict[str, bytes]  # model path -> bytes of each file
    blob_prefix: str = "/blobs/sha256/"  # a blob's URL path, but its hex digest
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # URL path -> headers its answers carry besides
    file_paths: dict[str, str] | None = None  # model path -> URL path of its bytes, where not under blob_prefix (a Hub layout)

    def blob_path(self, data: bytes) -> str:
        return f"{self.blob_prefix}{hashlib.sha256(data).hexdigest()}"

    @property
    def file_blob_paths(self) -> set[str]:
        if self.file_paths is not None:
            return set(self.file_paths.values())
        return {self.blob_path(data) for data in self.blobs.values()}


def oci_layout(
    model: dict[str, bytes], ref_name: str = "faulty/model:v1", *, chunks: bool = True, sizes: dict[str, int] | None = None
) -> Layout:
    """The layout a store would serve for ``model`` named ``ref_name``; without ``chunks``, no chunk digests.

    ``sizes`` makes the manifest claim another size for some paths, as a
    lying remote would (serve the bytes to match with ``Fault(extra=...)``).
    """
    files: dict[str, bytes] = {"/oci-layout": b'{"imageLayoutVersion":"1.0.0"}\n'}
    entries = []
    for path, data in model.items():
        chunk_digests = None
        if chunks:
            hasher = ChunkHasher()
            hasher.update(data)
            chunk_digests = hasher.result()
        size = (sizes or {}).get(path, len(data))
        entries.append(ModelFile(path, Digest(hashlib.sha256(data).hexdigest()), size, chunk_digests))
        files[f"/blobs/sha256/{hashlib.sha256(data).hexdigest()}"] = data
    manifest = Manifest.of(entries)
    data = manifest.to_bytes()
    digest = Digest(hashlib.sha256(data).hexdigest())
    files[f"/blobs/sha256/{digest.hex}"] = data
    files[f"/blobs/sha256/{EMPTY_DESCRIPTOR.digest.hex}"] = EMPTY_BYTES
    ref = parse_reference(ref_name)
    index = Index().with_name(ref.ref_name, manifest_descriptor(digest, len(data), manifest))
    files["/index.json"] = index.to_bytes()
    return Layout(files, ref.ref_name, digest, dict(model))


def registry_layout(model: dict[str, bytes], repository: str = "team/model", tag: str = "v1") -> Layout:
    """``model`` as a registry serves it in ``repository`` under ``tag``: its manifest at ``/v2/<repository>/manifests/<tag>``
    and ``.../manifests/sha256:<hex>`` (with Content-Type and Docker-Content-Digest), its blobs at ``/v2/<repository>/blobs/sha256:<hex>``.

    ``ref_name`` is ``NAME:TAG`` on the remote ``oci://HOST:PORT/<namespace>`` (``repository`` = ``<namespace>/NAME``).
    """
    layout = oci_layout(model, f"{repository}:{tag}")
    base = f"/v2/{repository}"
    manifest = layout.files[f"/blobs/sha256/{layout.manifest.hex}"]
    files = {f"{base}/blobs/sha256:{path.rsplit('/', 1)[1]}": data for path, data in layout.files.items() if path.startswith("/blobs/sha256/")}
    named = {f"{base}/manifests/{tag}": manifest, f"{base}/manifests/{layout.manifest}": manifest}
    stated = {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": str(layout.manifest)}
    return Layout({**files, **named}, f"{repository.rsplit('/', 1)[-1]}:{tag}", layout.manifest, layout.blobs, f"{base}/blobs/sha256:", dict.fromkeys(named, stated))


def hub_layout(
    model: dict[str, bytes], repo: str = "acme/model", *, lfs: frozenset[str] | set[str] = frozenset(), revision: str = "main", pages: int = 1
) -> Layout:
    """``model`` as the Hub's API serves repository ``repo`` at ``revision``: the revision's commit (asked by ``revision`` or by the commit), the recursive tree
    listing at it (``lfs`` files with their SHA-256, the others with their git blob SHA-1 only), in ``pages`` pages
    linked by ``Link: <...>; rel="next"``, and each file at ``/REPO/resolve/COMMIT/PATH`` (``file_paths``).

    ``manifest`` is the SHA-256 of the listing, not a manifest's: the client synthesizes that.
    """
    commit = hashlib.sha1(repr(sorted(model.items())).encode()).hexdigest()
    api = f"/api/models/{repo}"
    entries: list[dict] = []
    for directory in sorted({p.rsplit("/", 1)[0] for p in model if "/" in p}):
        entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": directory})
    for path, data in sorted(model.items()):
        if path in lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()
            lfs_info = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
            entries.append({"type": "file", "oid": _git_blob_sha1(pointer), "size": len(data), "path": path, "lfs": lfs_info})
        else:
            entries.append({"type": "file", "oid": _git_blob_sha1(data), "size": len(data), "path": path})
    # The revision's commit, asked by name, and by the commit itself (as sync asks for a pinned one).
    info = json.dumps({"id": repo, "sha": commit}).encode()
    files = {f"{api}/revision/{revision}": info, f"{api}/revision/{commit}": info}
    headers: dict[str, dict[str, str]] = {}
    tree = f"{api}/tree/{commit}/"
    per_page = -(-len(entries) // pages)
    for n in range(pages):
        # The first page is the URL the client builds; the others are the query strings the Links name.
        at = tree if n == 0 else f"{tree}?recursive=true&cursor=page{n + 1}"
        files[at] = json.dumps(entries[n * per_page : (n + 1) * per_page]).encode()
        if n + 1 < pages:
            headers[at] = {"Link": f'<{SERVER}{tree}?recursive=true&cursor=page{n + 2}>; rel="next"'}
    file_paths = {path: f"/{repo}/resolve/{commit}/{path}" for path in model}
    files.update({file_paths[path]: data for path, data in model.items()})
    listing = Digest(hashlib.sha256(files[tree]).hexdigest())
    return Layout(files, f"hf://{repo}@{revision}", listing, dict(model), headers=headers, file_paths=file_paths)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Queue:
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultServer:
    """Serves ``layout`` (and any ``extra`` paths) on 127.0.0.1; use as a context manager or ``close()``."""

    def __init__(
        self, layout: Layout | None = None, extra: dict[str, bytes] | None = None, *, latency: float = 0.0, tokens: list[int | None] | None = None
    ) -> None:
        self.layout = layout
        self.headers: dict[str, dict[str, str]] = dict(layout.headers) if layout else {}  # URL path -> headers its answers carry
        self.latency = latency  # seconds before each response's first byte
        # With ``tokens``: the requests each token issued is good for, in order (None: any
        # number); the last applies to every later token. Without: no token is wanted.
        self.tokens = tokens
        self.issued: list[str] = []  # the tokens issued, the current one last
        self._uses_left: int | None = 0
        self.files: dict[str, bytes] = {**(layout.files if layout else {}), **(extra or {})}
        self.targets: set[str] = set(layout.file_blob_paths) if layout else set()
        self.requests: list[Request] = []
        self.connections = 0
        self._queue = _Queue()
        self._versions: dict[str, int] = {}
        self._digests: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="fault-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_as(self, host: str) -> str:
        """This server's base URL under another host name (e.g. ``localhost``): another host to a client."""
        return f"http://{host}:{self.port}"

    # -- the script ---------------------------------------------------------------

    def fail(self, *faults: Fault) -> FaultServer:
        """Queue ``faults``, in order, behind those already queued."""
        with self._queue.lock:
            self._queue.faults.extend(faults)
        return self

    def _take(self, path: str, authorization: str | None = None) -> Fault | None:
        with self._queue.lock:
            for fault in self._queue.faults:
                targeted = path == fault.path if fault.path is not None else path in self.targets
                excused = fault.unless_token is not None and authorization == f"Bearer {fault.unless_token}"
                if targeted and not excused and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # -- what crossed the wire ----------------------------------------------------

    def requests_for(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def bytes_served(self) -> int:
        with self._lock:
            return sum(r.body_bytes for r in self.requests)

    def served_for(self, path: str) -> int:
        return sum(r.body_bytes for r in self.requests_for(path))

    # -- serving ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(target=self._connection, args=(conn,), name="fault-conn", daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                path, _, query = target.partition("?")
                request = Request(method, path, headers, time.monotonic(), query)
                with self._lock:
                    self.requests.append(request)
                if not self._respond(conn, request):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _digest_of(self, path: str, blob: bytes) -> str:
        """The SHA-256 of what ``path`` serves, computed once per blob (the ETag's base): hashing a 512 MiB blob per request would make the server, not the network, the bottleneck."""
        with self._lock:
            known = self._digests.get(path)
        if known is not None and known[0] is blob:
            return known[1]
        digest = hashlib.sha256(blob).hexdigest()
        with self._lock:
            self._digests[path] = (blob, digest)
        return digest

    def _send_head(self, conn: socket.socket, request: Request, status: int, headers: dict[str, str]) -> None:
        request.status = status
        request.response = dict(headers)
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _respond(self, conn: socket.socket, request: Request) -> bool:  # noqa: C901 - the faults in the order a response meets them, read top to bottom
        """Answer one request; False when the connection must end (faults that cut it)."""
        path = request.path
        if self.latency:
            time.sleep(self.latency)
        if self.tokens is not None and not self._authorized(conn, request):
            return True
        fault = request.fault = self._take(path, request.headers.get("authorization"))
        fault = fault or Fault()
        if fault.raw is not None:
            self._send(conn, request, memoryview(fault.raw))
            conn.shutdown(socket.SHUT_WR)
            return False
        if fault.new_etag:
            with self._lock:
                self._versions[path] = self._versions.get(path, 0) + 1
        if fault.redirect is not None:
            self._send_head(conn, request, 302, {"Location": fault.redirect + path, "Content-Length": "0"})
            return True
        if fault.status is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            if fault.error_code is not None:
                extra["X-Error-Code"] = fault.error_code
            self._send_head(conn, request, fault.status, {**extra, "Content-Length": "0"})
            return True
        # A page of a listing is known by its query too (hub_layout's Links); anything else by its path.
        if request.query and f"{path}?{request.query}" in self.files:
            path = f"{path}?{request.query}"
        blob = self.files.get(path)
        if blob is None or request.method not in ("GET", "HEAD"):
            self._send_head(conn, request, 404, {"Content-Length": "0"})
            return True
        whole = blob + fault.extra if fault.extra else blob
        etag = f'"{self._digest_of(path, blob)[:16]}-v{self._versions.get(path, 0)}"'
        status, start, end = 200, 0, len(whole)
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if wanted and not fault.ignore_range and (if_range is None or if_range == etag):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            if first:
                start = int(first)
                end = min(len(whole), int(last) + 1) if last else len(whole)
            else:
                start = max(0, len(whole) - int(last))
            if start >= len(whole):
                self._send_head(conn, request, 416, {"Content-Range": f"bytes */{len(whole)}", "Content-Length": "0"})
                return True
            status = 206
            start = min(start + fault.shift_range, end - 1)
        # A view, not a copy, unless a fault changes the bytes: a request must cost the
        # server what it sends, as with a real one, not the whole blob again.
        body: bytearray | memoryview = memoryview(whole)[start:end]
        if fault.corrupt is not None:
            body = bytearray(body)
            low, high = max(fault.corrupt[0], start), min(fault.corrupt[1], end)
            for at in range(low - start, high - start):
                body[at] ^= 0xFF
        stated = {name: value.replace(SERVER, self.url) for name, value in self.headers.get(path, {}).items()}
        headers = {"Content-Type": "application/octet-stream", "ETag": etag, **stated}
        if not fault.ignore_range:
            headers["Accept-Ranges"] = "bytes"
        if fault.gzip:
            body = memoryview(gzip.compress(bytes(body)))
            headers["Content-Encoding"] = "gzip"
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(whole)}"
        if fault.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(body))
        self._send_head(conn, request, status, headers)
        if request.method == "HEAD":
            return True
        view = memoryview(body)
        if fault.chunked:
            if fault.close_after is not None:  # a chunked body ends where it says, short or not
                view = view[: fault.close_after]
            for at in range(0, len(view), _PIECE):
                piece = view[at : at + _PIECE]
                conn.sendall(b"%x\r\n" % len(piece))
                self._send(conn, request, piece)
                conn.sendall(b"\r\n")
            conn.sendall(b"0\r\n\r\n")
            return True
        if fault.reset_after is not None:
            self._send(conn, request, view[: fault.reset_after])
            time.sleep(fault.linger)
            self._reset(conn)
            return False
        if fault.close_after is not None:
            self._send(conn, request, view[: fault.close_after])
            time.sleep(fault.linger)
            conn.shutdown(socket.SHUT_WR)
            return False
        if fault.drip is not None:
            step, pause = fault.drip
            for at in range(0, len(view), step):
                self._send(conn, request, view[at : at + step])
                time.sleep(pause)
            return True
        self._send(conn, request, view)
        return True

    def _authorized(self, conn: socket.socket, request: Request) -> bool:
        """Whether ``request`` carries a token still good (using it once); else it is answered here: a token, or a 401."""
        with self._lock:
            if request.path == TOKEN_PATH:
                assert self.tokens is not None
                lifetime = self.tokens[min(len(self.issued), len(self.tokens) - 1)]
                self.issued.append(f"token-{len(self.issued) + 1}-{os.urandom(4).hex()}")
                self._uses_left = lifetime
                body = json.dumps({"token": self.issued[-1], "expires_in": 300}).encode()
            else:
                good = bool(self.issued) and request.headers.get("authorization") == f"Bearer {self.issued[-1]}"
                if good and (self._uses_left is None or self._uses_left > 0):
                    if self._uses_left is not None:
                        self._uses_left -= 1
                    return True
                body = b""
        if body:
            self._send_head(conn, request, 200, {"Content-Type": "application/json", "Content-Length": str(len(body))})
            self._send(conn, request, memoryview(body))
        else:
            challenge = f'Bearer realm="{self.url}{TOKEN_PATH}",service="fault-server",scope="repository:model:pull"'
            self._send_head(conn, request, 401, {"WWW-Authenticate": challenge, "Content-Length": "0"})
        return False

    def _send(self, conn: socket.socket, request: Request, data: memoryview) -> None:
        for at in range(0, len(data), _PIECE):
            piece = data[at : at + _PIECE]
            conn.sendall(piece)
            with self._lock:
                request.body_bytes += len(piece)

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        """Abort with RST once the client's kernel has every byte sent: a reset mid-body, not lost data."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            unsent = struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            if unsent == 0:
                break
            time.sleep(0.002)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    # -- stopping -----------------------------------------------------------------

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._listener.close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
