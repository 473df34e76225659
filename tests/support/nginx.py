"""Real nginx on 127.0.0.1 with its own prefix and config, serving a directory of OCI layouts.

The Debian binary runs in the foreground (``daemon off``) with everything it
writes (pid, error and access logs, temporary files) inside a prefix under the
test's temporary directory, so it never touches /etc/nginx or /var. Two server
blocks share one document root: a plain one, and one limited to
``THROTTLE`` per connection, where parallel segments show their worth.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import stop_process

__all__ = ["THROTTLE", "THROTTLE_BYTES", "Nginx", "find_nginx", "start_nginx", "free_port"]

# nginx's per-connection limit on the throttled block; "m" is 2**20 there.
THROTTLE = "20m"
THROTTLE_BYTES = 20 << 20

# Temporary-path directives belong to modules a lighter build may leave out;
# naming a directive of a missing module is a fatal config error.
_TEMP_MODULES = ("proxy", "fastcgi", "uwsgi", "scgi")
# One line per request; fields split on spaces, the Range header last (it may be "-").
_LOG_FORMAT = '$request_method $uri $status $body_bytes_sent $http_range'


def find_nginx() -> str | None:
    """The nginx binary, also where a non-login PATH lacks /usr/sbin."""
    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def free_port() -> int:
    """A port nobody listens on right now (another process may still take it: callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    status: int
    body_bytes: int
    range: str | None


@dataclass
class Nginx:
    """A running nginx: ``url`` and ``throttled_url`` both serve ``root``."""

    prefix: Path
    root: Path
    port: int
    throttled_port: int
    process: subprocess.Popen[bytes]
    _sites: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def throttled_url(self) -> str:
        return f"http://127.0.0.1:{self.throttled_port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def site(self, name: str) -> tuple[Path, str]:
        """A fresh directory under the root for one test's layout, and its URL on the plain block."""
        if name in self._sites or (self.root / name).exists():
            raise ValueError(f"site {name!r} is taken; every test needs its own")
        self._sites.add(name)
        return self.root / name, f"{self.url}/{name}"

    def requests(self, under: str = "/") -> list[Logged]:
        """Requests whose path starts with ``under``, in the order nginx finished them."""
        out = []
        for line in self.access_log.read_text().splitlines():
            method, path, status, sent, rng = line.split(" ", 4)
            if path.startswith(under):
                out.append(Logged(method, path, int(status), int(sent), None if rng == "-" else rng))
        return out

    def stop(self) -> None:
        # QUIT lets workers finish; the tests are over, so TERM is enough and quicker.
        stop_process(self.process)


def _config(prefix: Path, root: Path, port: int, throttled_port: int, modules_out: set[str]) -> str:
    temp = "\n".join(
        f"    {module}_temp_path {prefix}/tmp/{module};" for module in _TEMP_MODULES if module not in modules_out
    )
    # Workers of a root master drop to 'nobody', who cannot enter pytest's
    # 0700 temporary directories; as root they stay root.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    types {{ application/json json; }}
    default_type application/octet-stream;
    log_format odai '{_LOG_FORMAT}';
    access_log {prefix}/logs/access.log odai;
    client_body_temp_path {prefix}/tmp/client_body;
{temp}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
    server {{
        listen 127.0.0.1:{throttled_port};
        root {root};
        limit_rate {THROTTLE};
    }}
}}
"""


def _modules_left_out(binary: str) -> set[str]:
    configure = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=30).stderr
    return {m for m in _TEMP_MODULES if f"--without-http_{m}_module" in configure}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def start_nginx(binary: str, prefix: Path, root: Path, attempts: int = 3) -> Nginx:
    """Start nginx serving ``root``; raise RuntimeError with its error log if it will not come up."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "tmp", "conf"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    modules_out = _modules_left_out(binary)
    failure = ""
    for _ in range(attempts):  # a free port can be taken between our probe and nginx's bind
        port, throttled_port = free_port(), free_port()
        if port == throttled_port:
            continue
        conf = prefix / "conf" / "nginx.conf"
        conf.write_text(_config(prefix, root, port, throttled_port, modules_out))
        console = prefix / "logs" / "console.log"
        with open(console, "wb") as out:
            process = subprocess.Popen(
                # -e: the error log before the config is read, else the compiled-in path under /var.
                [binary, "-p", str(prefix), "-e", str(prefix / "logs" / "error.log"), "-c", str(conf), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port) and _answers(throttled_port):
                (prefix / "logs" / "access.log").write_text("")  # forget our own probes
                return Nginx(prefix, root, port, throttled_port, process)
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
        logs = [console, prefix / "logs" / "error.log"]
        failure = "".join(log.read_text(errors="replace") for log in logs if log.exists())
    raise RuntimeError(f"nginx did not start:\n{failure}")
