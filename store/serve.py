"""Serve: this store as an HTTP remote, so another machine's store can fetch from it (spec/remotes.md).

GET and HEAD of the OCI layout's files only: index.json, oci-layout and
blobs/sha256/<hex>. Blobs get ``ETag: "sha256:<hex>"`` (content never changes
under a digest), Range with 206 and 416, and If-Range. Nothing is written.
"""

from __future__ import annotations

import email.utils
import os
import re
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import UsageError
from .fs.bounded import Refused, open_regular
from .local.layout import StoreLayout
from .oci.digest import digest_of_blob_path

__all__ = ["make_server"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Handler(BaseHTTPRequestHandler):
    layout: StoreLayout
    protocol_version = "HTTP/1.1"
    server_version = "odai-store"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass  # stdout belongs to the printed URL; stderr stays quiet by default

    def _target(self) -> tuple[Path, str | None] | None:
        path = self.path.split("?", 1)[0]
        if path == "/index.json":
            return self.layout.index, None
        if path == "/oci-layout":
            return self.layout.oci_layout, None
        digest = digest_of_blob_path(path.removeprefix("/"))
        if digest is not None:
            return self.layout.blob(digest), f'"{digest}"'
        return None

    def _error(self, status: HTTPStatus, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        target = self._target()
        if target is None:
            return self._error(HTTPStatus.NOT_FOUND)
        path, etag = target
        try:
            # Never through a link, only a regular file: a member of a shared
            # store who links a blob's name to a file only the serving user
            # may read must not publish that file to the network.
            fd, info = open_regular(path, "a served file")
        except (OSError, Refused):
            return self._error(HTTPStatus.NOT_FOUND)
        with open(fd, "rb") as f:
            size = info.st_size
            validator = etag or email.utils.formatdate(info.st_mtime, usegmt=True)
            start, end = 0, size
            status = HTTPStatus.OK
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            # Range is defined for GET only; every other method MUST ignore it (RFC 9110, 14.2).
            if body and wanted and (if_range is None or if_range == validator):
                match = _RANGE.fullmatch(wanted.strip())
                if match and (match.group(1) or match.group(2)):
                    first, last = match.group(1), match.group(2)
                    if first:
                        start, end = int(first), min(size, int(last) + 1) if last else size
                    else:  # a suffix: the last N bytes
                        start, end = max(0, size - int(last)), size
                    if start >= size or start >= end:
                        return self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
                    status = HTTPStatus.PARTIAL_CONTENT
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if etag else "application/json")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            if etag:
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", "public, max-age=31536000, immutable")
            else:
                self.send_header("Last-Modified", validator)
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if not body:
                return
            try:
                self._send(f, start, end)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _send(self, f, start: int, end: int) -> None:
        self.wfile.flush()  # headers first; the body goes kernel to kernel
        while start < end:
            sent = os.sendfile(self.connection.fileno(), f.fileno(), start, end - start)
            if sent == 0:  # the file shrank: it cannot, blobs are read-only, but never spin
                self.close_connection = True
                return
            start += sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-blob is normal (cancel, parallel segments stopped)


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(layout: StoreLayout, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to (host, port); port 0 picks a free one. Call serve_forever() on it.

    Raises UsageError when it cannot listen there (unknown host, port in use).
    """
    handler = type("Handler", (_Handler,), {"layout": layout})
    # The stdlib server is IPv4 only; an IPv6 literal (::1) needs its own family.
    server_class = _Server6 if ":" in host else _Server
    try:
        server = server_class((host, port), handler)
    except OSError as err:
        raise UsageError(
            f"cannot listen on {host} port {port}: {err.strerror or err}", "choose another --host, or --port 0 for a free port"
        ) from err
    server.daemon_threads = True
    return server
