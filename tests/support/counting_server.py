"""Our ``odai-store serve`` handler in a thread, counting the bytes it sends, optionally
throttled per connection and optionally over TLS.

For tests that must know how much a remote served (crash and resume) or need
HTTPS with a private CA. nginx is the peer for everything else.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from store.local.layout import StoreLayout
from store.serve import make_server

__all__ = ["Served", "serve_counting"]


@dataclass
class Served:
    url: str
    bytes_sent: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def serve_counting(root: Path, tls: ssl.SSLContext | None = None, rate: float | None = None) -> Iterator[Served]:
    """Serve the store at ``root``; ``rate`` caps each connection (bytes/s), like nginx's limit_rate."""
    server = make_server(StoreLayout(root), "127.0.0.1", 0)
    served = Served(f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}")
    base = server.RequestHandlerClass

    class Counting(base):  # type: ignore[valid-type, misc]
        def _send(self, f, start: int, end: int) -> None:
            self.wfile.flush()
            if tls is not None:  # sendfile cannot write through TLS: copy in user space
                f.seek(start)
                while start < end:
                    block = f.read(min(1 << 20, end - start))
                    self.wfile.write(block)
                    start += len(block)
                    with served.lock:
                        served.bytes_sent += len(block)
                return
            began, first = time.monotonic(), start
            while start < end:
                if rate:
                    ahead = (start - first) / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
                step = min(end - start, 128 << 10) if rate else end - start
                sent = os.sendfile(self.connection.fileno(), f.fileno(), start, step)
                if sent == 0:
                    return
                start += sent
                with served.lock:
                    served.bytes_sent += sent  # what the kernel took, not what was asked

        def _serve(self, body: bool) -> None:
            with served.lock:
                served.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}")
            super()._serve(body)

    server.RequestHandlerClass = Counting
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
