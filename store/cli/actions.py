"""The bodies of the commands scripts call in loops: list, path, fetch, sync and export.

Nothing here imports click. The quick path (quick.py) runs these bodies for
the argument lists it recognizes, without paying for click's import;
commands.py declares the same commands to click, for help, errors and every
other spelling. Both call them with the same keyword arguments: the
parameters click would pass.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .output import Output, files_count, human_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..api import Store

__all__ = ["BY_NAME", "CONNECTIONS", "LINK", "LOCKFILE", "LOCK_TIMEOUT", "PROGRESS_MODES", "RETRIES", "Context", "export", "fetch", "list_", "model_doc", "path", "stop_on_sigterm", "sync"]

# Defaults and choices that the click declarations and the quick path share.
CONNECTIONS = 8
RETRIES = 5
LOCKFILE = "odai.lock"
LINK = "auto"
LOCK_TIMEOUT = 600  # seconds; the Python API's default too
PROGRESS_MODES = ("bar", "json", "none")


class Context:
    """What every command gets: the store (opened on first use) and the output."""

    def __init__(self, store_dir: str | None, shared: bool, as_json: bool, quiet: bool, verbose: bool, lock_timeout: int, timeout: float | None = None) -> None:
        """The global options, as click's group passes them."""
        self.store_dir = store_dir
        self.shared = shared
        self.lock_timeout = lock_timeout
        self.timeout = timeout  # seconds for the network phase (--timeout)
        self.out = Output(as_json, quiet, verbose)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from ..api import Store

            self._store = Store(self.store_dir, shared=self.shared, on_wait=self._waiting, lock_timeout=self.lock_timeout)
            if self._store.layout.shared:
                # The program's own umask, which a library must leave alone: group
                # write for the files ingest still makes without an explicit mode
                # (partials and their journals), as spec/locking.md has them.
                os.umask(os.umask(0) & ~0o020)
        return self._store

    def _waiting(self, holder) -> None:
        who = holder.describe() if holder else "another process"
        self.out.say(f"waiting for a lock held by {who}")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM stops a command that writes like Ctrl-C does: partial data and journals are kept.

    Installed by those commands only: SIGTERM ends the quick readers (path,
    list, show) as it ends any program. By CPython's built-in _signal where
    it has one: importing the signal module around it builds enums of every
    signal, 3 million instructions.
    """
    try:
        from _signal import SIGTERM, signal  # type: ignore[import-not-found]  # stubless
    except ImportError:
        from signal import SIGTERM, signal

    signal(SIGTERM, _terminate)


def model_doc(model) -> dict:
    return {
        "name": model.name,
        "digest": str(model.digest),
        "path": str(model.path),
        "size": model.size,
        "files": [{"path": f.path, "digest": str(f.digest), "size": f.size} for f in model.files],
    }


def _renderer(mode: str | None, out: Output):
    if mode is None:
        mode = "bar" if sys.stderr.isatty() and not out.quiet else "none"
    if mode == "none":
        # Without importing the progress module: a sync of present models shows none.
        return None
    from .renderers import bar_renderer, json_renderer

    return {"bar": bar_renderer, "json": json_renderer}[mode]()


def list_(c: Context) -> None:
    entries = c.store.list()
    width = max((len(e.name) for e in entries), default=0)
    if entries:  # one write: with 10,000 names, a write per line costs more than the lines
        c.out.data("\n".join(f"{e.name:<{width}}  {e.digest.short}  {human_bytes(e.size):>10}  {files_count(e.files)}" for e in entries))
    if c.out.json:  # with 10,000 names, building this document unasked costs as much as printing the list
        c.out.document({"models": [{"name": e.name, "digest": str(e.digest), "size": e.size, "files": e.files} for e in entries]})


def path(c: Context, name: str, file: str | None, verify: bool) -> None:
    result = c.store.path(name, file, verify=verify)
    c.out.data(str(result))
    c.out.document({"path": str(result)})


def fetch(
    c: Context,
    names: tuple[str, ...],
    remotes: tuple[str, ...],
    url: str | None,
    sha256: str | None,
    filename: str | None,
    connections: int,
    retries: int,
    limit_rate: float | None,
    ca_bundle: str | None,
    progress_mode: str | None,
) -> None:
    """Fetch ``names``, or with ``url`` the one file as the model ``names[0]``; the caller has checked the combination."""
    stop_on_sigterm()
    options: dict[str, Any] = dict(connections=connections, retries=retries, limit_rate=limit_rate, ca_bundle=ca_bundle, timeout=c.timeout)
    render = _renderer(progress_mode, c.out)
    if url:
        assert sha256 is not None  # commands.fetch refuses --url without --sha256
        results = [c.store.fetch_url(names[0], url, sha256, filename=filename, progress=render, say=c.out.say, **options)]
    else:
        results = c.store.fetch_all(list(names), remotes=remotes, progress=render, say=c.out.say, **options)
    for r in results:
        c.out.data(str(r.model.path))
    from ..oci.reference import parse_reference

    # NAME and TAG apart: from the name it got, or (by digest, no name) the one asked for.
    refs = [parse_reference(r.model.name or asked) for r, asked in zip(results, names, strict=True)]
    c.out.document({"models": [{**model_doc(r.model), "name": ref.name, "tag": ref.tag, "downloaded": r.downloaded} for r, ref in zip(results, refs, strict=True)]})


def sync(
    c: Context,
    names: tuple[str, ...],
    lockfile: Path,
    remotes: tuple[str, ...],
    connections: int,
    retries: int,
    ca_bundle: str | None,
    progress_mode: str | None,
    verify: bool,
) -> None:
    stop_on_sigterm()
    models = c.store.sync(
        lockfile,
        list(names) or None,
        remotes=remotes,
        connections=connections,
        retries=retries,
        ca_bundle=ca_bundle,
        timeout=c.timeout,
        progress=_renderer(progress_mode, c.out),
        say=c.out.say,
        verify=verify,
    )
    for model in models:
        c.out.data(str(model.path))
    c.out.document({"lockfile": str(lockfile.absolute()), "models": [model_doc(m) for m in models]})


def export(c: Context, name: str, dest: Path, link: str) -> None:
    stop_on_sigterm()
    result = c.store.export(name, dest, link)
    c.out.say(f"exported {files_count(len(result.files))} to {dest} by {result.method}")
    c.out.data(str(dest))
    c.out.document({"dest": str(dest), "method": result.method, "files": [{"path": p, "method": m} for p, m in result.files]})


# The commands by their names on the command line, for the quick path.
BY_NAME: dict[str, Callable[..., None]] = {"list": list_, "path": path, "fetch": fetch, "sync": sync, "export": export}
