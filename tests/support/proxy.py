"""A minimal forwarding HTTP proxy on 127.0.0.1 that records what it relayed (HTTP_PROXY tests)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["forward_proxy"]


class _Relay(socketserver.BaseRequestHandler):
    seen: list[str]

    def handle(self) -> None:
        client = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return
            head += data
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode().split(" ", 2)
        self.seen.append(f"{method} {target}")
        url = urlsplit(target)
        upstream = socket.create_connection((url.hostname, url.port or 80))
        path = url.path + (f"?{url.query}" if url.query else "")
        # One request per connection keeps the relay trivial.
        rest = rest.replace(b"Connection: keep-alive", b"Connection: close")
        upstream.sendall(f"{method} {path} {version}\r\n".encode() + b"Connection: close\r\n" + rest)
        while data := upstream.recv(1 << 20):
            client.sendall(data)
        upstream.close()


@contextlib.contextmanager
def forward_proxy() -> Iterator[tuple[str, list[str]]]:
    """Yield (proxy URL, requests relayed)."""
    seen: list[str] = []
    handler = type("Relay", (_Relay,), {"seen": seen})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
