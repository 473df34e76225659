"""The bodies of the commands: each calls Store and prints; none parses.

Every command's arguments and options are declared once, in
declarations.py; a body gets them as ``p``, whose attributes are the
``dest`` names declared there, with the values click would pass. The
entry point runs a body for the argument lists the quick path (quick.py)
reads, and click (commands.py) runs the same body for every other spelling.
Nothing here imports click, and the bodies of the commands scripts call in
loops (list, path, fetch, sync, export) keep their start-up tricks
(spec/cli.md, "Start-up"); the others are written plainly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .output import PEOPLE, DocumentOut, Output, WithReport, escaped, files_count, flush_stdout, human_bytes, pins_count

if TYPE_CHECKING:
    from types import SimpleNamespace as Params

    from ..api import Store

__all__ = [
    "PROGRESS_MODES",
    "Context",
    "add",
    "doctor",
    "du",
    "export",
    "fetch",
    "gc",
    "import_hf_cache",
    "init",
    "list_",
    "lock",
    "log",
    "path",
    "push",
    "rm",
    "roots",
    "serve",
    "show",
    "sync",
    "tag",
    "verify",
]

PROGRESS_MODES = ("bar", "json", "none")  # of --progress: how _renderer shows a download or an add


class Context:
    """What every command gets: the store (opened on first use) and the output."""

    def __init__(self, options: dict[str, Any]) -> None:
        """The global options by their ``dest`` in declarations.GLOBAL, as click's group passes them."""
        self.store_dir: str | None = options["store_dir"]
        self.shared: bool = options["shared"]
        self.lock_timeout: int = options["lock_timeout"]
        self.timeout: float | None = options["timeout"]  # seconds for the network phase (--timeout)
        self.insecure_registries: tuple[str, ...] = options["insecure_registries"]
        self.out = Output(options["as_json"], options["quiet"], options["verbose"])
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from ..api import Store

            self._store = Store(
                self.store_dir, shared=self.shared, on_wait=self._waiting, lock_timeout=self.lock_timeout, insecure_registries=self.insecure_registries
            )
        return self._store

    def _waiting(self, holder) -> None:
        who = holder.describe() if holder else "another process"
        self.out.say(f"waiting for a lock held by {who}")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
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


def _model_doc(model) -> dict:
    return {
        "name": model.name,
        "digest": str(model.digest),
        "path": str(model.path),
        "size": model.size,
        "files": [{"path": f.path, "digest": str(f.digest), "size": f.size} for f in model.files],
    }


def _renderer(mode: str | None, out: Output):
    if mode is None:
        mode = "bar" if PEOPLE.isatty() and not out.quiet else "none"
    if mode == "none":
        # Without importing the progress module: a sync of present models shows none.
        return None
    from .renderers import bar_renderer, json_renderer

    return {"bar": bar_renderer, "json": json_renderer}[mode]()


def _usage(command: str, message: str) -> UsageError:
    """A usage error of ``command`` that no type declares, in the words click gives its own."""
    return UsageError(message, f"see 'odai-store {command} --help'")


def add(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    model = c.store.add(p.name, p.paths, follow_links=p.follow_links, move=p.move, progress=_renderer(p.progress_mode, c.out), say=c.out.say)
    c.out.say(f"added {model.name} ({model.digest.short}, {files_count(len(model.files))}, {human_bytes(model.size)})")
    c.out.data(str(model.path))
    c.out.document(_model_doc(model))


def _read_remote(command: str, p: Params) -> bool:
    """Whether ``command`` (list, show) reads a remote: --remote given. --ca-bundle without it would be ignored: a usage error."""
    if p.ca_bundle and not p.remote:
        raise _usage(command, "--ca-bundle applies to a remote: pass --remote URL with it")
    return bool(p.remote)


def list_(c: Context, p: Params) -> None:
    if _read_remote("list", p):
        if p.sizes:
            raise _usage("list", "--size counts this store's files, not a remote's")
        return _list_remote(c, p)
    entries, total = c.store.list_sizes() if p.sizes else (c.store.list(), None)
    # Escaped: a name in an index.json another tool wrote is not held to the name grammar.
    # A model fetched by digest has no name: its digest is what 'rm' takes.
    shown = [escaped(e.name or str(e.digest)) for e in entries]
    width = max(map(len, shown), default=0)
    if entries and total is not None:
        c.out.data("\n".join(_sized_lines(shown, width, entries)))
    elif entries:  # one write: with 10,000 names, a write per line costs more than the lines
        c.out.data("\n".join(f"{name:<{width}}  {e.digest.short}  {human_bytes(e.size):>10}  {files_count(e.files)}{_marks(e)}" for name, e in zip(shown, entries, strict=True)))
    if total is not None:
        c.out.data(f"total: {human_bytes(total)}, each file counted once")
    if c.out.json:  # with 10,000 names, building this document unasked costs as much as printing the list
        models = [
            {
                "name": e.name,
                "digest": str(e.digest),
                "size": e.size,
                "files": e.files,
                "complete": e.complete,
                "damaged": e.damaged,
                "pinned_in": e.pinned_in and str(e.pinned_in),
                "by_digest": e.by_digest,
            }
            for e in entries
        ]
        if total is None:
            c.out.document({"models": models})
        else:
            c.out.document({"models": [{**m, "unique": e.unique, "shared": e.shared} for m, e in zip(models, entries, strict=True)], "total": total})


def _marks(entry) -> str:
    """list's marks after a model's columns: not whole (damaged, else incomplete), and what keeps a model no name keeps."""
    whole = "" if entry.complete else "  damaged" if entry.damaged else "  incomplete"
    if entry.pinned_in is not None:
        return f"{whole}  pinned in {escaped(str(entry.pinned_in))}"
    return f"{whole}  by digest" if entry.by_digest else whole


def _sized_lines(shown: list[str], width: int, entries) -> list[str]:
    """list --size's lines: its columns follow the file count, padded to line them up."""
    counts = [files_count(e.files) for e in entries]
    pad = max(map(len, counts))
    return [
        f"{name:<{width}}  {e.digest.short}  {human_bytes(e.size):>10}  {count:<{pad}}  {human_bytes(e.unique):>10} unique  {human_bytes(e.shared):>10} shared{_marks(e)}"
        for name, e, count in zip(shown, entries, counts, strict=True)
    ]


def _list_remote(c: Context, p: Params) -> None:
    models = c.store.remote_models(p.remote, ca_bundle=p.ca_bundle, timeout=c.timeout)
    shown = [escaped(m.name) for m in models]
    width = max(map(len, shown), default=0)
    for name, m in zip(shown, models, strict=True):
        c.out.data(f"{name:<{width}}  {m.digest.short}  {human_bytes(m.size):>10}  {files_count(m.files)}")
    c.out.document({"models": [{"name": m.name, "digest": str(m.digest), "size": m.size, "files": m.files} for m in models]})


_DONE = {"add": "added from", "fetch": "fetched from", "sync": "synced from"}  # show's source line, by the record's command


def show(c: Context, p: Params) -> None:
    remote = _read_remote("show", p)
    info = c.store.remote_info(p.remote, p.name, ca_bundle=p.ca_bundle, timeout=c.timeout) if remote else c.store.info(p.name)
    origin = None if remote else c.store.origin(info.digest)
    c.out.data(f"digest: {info.digest}")
    c.out.data(f"size: {human_bytes(info.size)} in {files_count(len(info.files))} ({'complete' if info.complete else 'incomplete'})")
    if info.source_format != "odai":  # the store's own format goes without saying
        read_from = f", read from {info.source_repository or info.source_digest}" if info.source_repository or info.source_digest != info.digest else ""
        c.out.data(escaped(f"format: {info.source_format}{read_from}"))
    if origin is not None:
        c.out.data(escaped(f"source: {_DONE.get(origin.command, origin.command)} {', '.join(origin.sources) or 'this store'}"))
    for s in info.files:
        c.out.data(f"{'present' if s.present else 'missing':<7}  {s.file.digest.short}  {human_bytes(s.file.size):>10}  {escaped(s.file.path)}")
    c.out.document(
        {
            "name": info.name,
            "digest": str(info.digest),
            "size": info.size,
            "complete": info.complete,
            "source": None if origin is None else {"command": origin.command, "sources": list(origin.sources)},
            "source_format": info.source_format,
            "source_digest": str(info.source_digest),
            "source_repository": info.source_repository,
            "files": [
                {"path": s.file.path, "digest": str(s.file.digest), "size": s.file.size, "present": s.present}
                for s in info.files
            ],
        }
    )


def path(c: Context, p: Params) -> None:
    from ..api import project_lockfile

    # In a project, its odai.lock decides what a pinned NAME:TAG is (spec/cli.md#path).
    lockfile = p.lockfile or project_lockfile()
    result = c.store.path(p.name, p.file, verify=p.verify, lockfile=lockfile)
    c.out.data(str(result))
    c.out.document({"path": str(result)})


def rm(c: Context, p: Params) -> None:
    removed = c.store.remove(p.names)
    for name in removed:
        c.out.say(f"removed {name}")
    c.out.document({"removed": removed})


def tag(c: Context, p: Params) -> None:
    from ..oci.reference import parse_reference

    digest = c.store.tag(p.source, p.new)
    name = parse_reference(p.new).ref_name
    c.out.say(f"tagged {name} ({digest.short})")
    c.out.document({"name": name, "digest": str(digest)})


def gc(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    report = c.store.gc(p.dry_run, p.partials)
    verb = "would free" if p.dry_run else "freed"
    c.out.data(
        f"{verb} {human_bytes(report.bytes_freed)}: {len(report.blobs)} blobs, {len(report.views)} views, {len(report.partials)} partial files, {len(report.quarantined)} quarantined blobs"
    )
    for model in report.kept:
        c.out.data(f"kept {_gc_model(model)}, until {_day(model.until)}")
    for model in report.freed:
        c.out.data(f"{verb} {_gc_model(model)}" + (f", whose grace ended {_day(model.until)}" if model.until is not None else ""))
    c.out.document(
        {
            "dry_run": p.dry_run,
            "bytes_freed": report.bytes_freed,
            "blobs": [str(d) for d in report.blobs],
            "views": [str(d) for d in report.views],
            "partials": [str(partial) for partial in report.partials],
            "quarantined": [str(path) for path in report.quarantined],
            "kept": [_gc_model_doc(m) for m in report.kept],
            "freed": [_gc_model_doc(m) for m in report.freed],
        }
    )


def _gc_model(model) -> str:
    """A model gc names: NAME:TAG (short digest) pinned in LOCKFILE: why; or its digest: why."""
    if model.lockfile is None:
        return f"{model.digest}: {model.why}"
    # Escaped: a lockfile's path (in why too, for one refused) is the user's, any bytes.
    return f"{escaped(model.name)} ({model.digest.short}) pinned in {escaped(str(model.lockfile))}: {escaped(model.why)}"


def _gc_model_doc(model) -> dict:
    return {"name": model.name, "digest": str(model.digest), "lockfile": model.lockfile and str(model.lockfile), "why": model.why, "until": model.until}


def _day(when: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(when or 0))


def verify(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    result = c.store.verify(p.names or None, p.fast)
    report = result.report
    c.out.data(f"checked {report.checked} blobs, {human_bytes(report.bytes_checked)}: {len(report.corrupt)} corrupt")
    for digest, moved in zip(report.corrupt, report.quarantined, strict=True):
        c.out.data(f"corrupt {digest} -> {escaped(str(moved))}")
    for name in result.damaged_models:
        c.out.data(f"damaged model {escaped(name)}")
    for model in result.incomplete_models:
        c.out.data(f"incomplete model {escaped(model.name)} ({model.describe()})")
    doc = {
        "checked": report.checked,
        "bytes": report.bytes_checked,
        "corrupt": [str(d) for d in report.corrupt],
        "quarantined": [str(moved) for moved in report.quarantined],
        "damaged_models": list(result.damaged_models),
        "incomplete_models": [{"name": m.name, "missing": m.missing, "files": m.files} for m in result.incomplete_models],
    }
    if (failure := result.error()) is None:
        c.out.document(doc)
        return
    flush_stdout()  # the report first, then the two error lines
    raise WithReport(failure, doc)


def doctor(c: Context, p: Params) -> None:
    from ..api import doctor
    from ..errors import IntegrityError

    # Not c.store: Store() refuses a store whose odai-layout is damaged, which doctor repairs.
    report = doctor(c.store_dir, repair=p.repair, lock_timeout=c.lock_timeout)
    for problem in report.found:
        c.out.data(f"{problem.kind} {escaped(problem.subject)}: {escaped(problem.detail)}" + (f" ({escaped(', '.join(problem.names))})" if problem.names else ""))
        c.out.data(f"  means: {problem.meaning}")
    for problem in report.repaired:
        c.out.data(f"repaired {problem.kind} {escaped(problem.subject)}: {escaped(problem.action)}")
    if report.repair:
        for problem in report.remaining:
            c.out.data(f"not repaired {problem.kind} {escaped(problem.subject)}: {escaped(problem.action)}")
    for name in report.lost_names:
        c.out.data(f"lost name {escaped(name)}")
    kinds: dict[str, list] = {}
    for note in report.notes:
        kinds.setdefault(note.kind, []).append(note)
    for kind, notes in kinds.items():
        # Many notes of one kind (a store's garbage) are one line: --json lists them all.
        for note in notes if len(notes) <= 3 else notes[:1]:
            c.out.say(f"note: {kind} {note.subject}: {note.detail}" + (f" (and {len(notes) - 1} more)" if len(notes) > 3 else ""))
    c.out.data("healthy" if report.healthy else f"{len(report.remaining)} problem{'s' if len(report.remaining) != 1 else ''}")
    doc = {
        "healthy": report.healthy,
        "found": [p._asdict() for p in report.found],
        "repaired": [p._asdict() for p in report.repaired],
        "remaining": [p._asdict() for p in report.remaining],
        "lost_names": list(report.lost_names),
        "notes": [p._asdict() for p in report.notes],
    }
    if report.healthy:
        c.out.document(doc)
        return
    count = f"{len(report.remaining)} problem{'s' if len(report.remaining) != 1 else ''}"
    if report.repair:
        failure = IntegrityError(f"{count} remain after repair", "each 'not repaired' line says what to do")
    else:
        failure = IntegrityError(f"the store has {count}", "run 'odai-store doctor --repair' to fix what can be fixed")
    flush_stdout()
    raise WithReport(failure, doc)


def du(c: Context, p: Params) -> None:
    u = c.store.du()
    rows = [
        ("filesystem size", u.filesystem_size),
        ("filesystem free", u.filesystem_free),
        (f"blobs ({u.blobs})", u.blob_bytes),
        ("reclaimable by gc", u.reclaimable_bytes),
        ("partial data", u.partial_bytes),
        (f"quarantine ({u.quarantined})", u.quarantine_bytes),
    ]
    for label, value in rows:
        c.out.data(f"{label:<20} {human_bytes(value):>10}")
    c.out.document(u._asdict())


def fetch(c: Context, p: Params) -> None:
    """Fetch the NAMEs, or with --url the one file as the model NAME."""
    if not p.names:
        raise _usage("fetch", "name at least one model")
    if (p.url or p.sha256 or p.filename) and not (p.url and p.sha256 and len(p.names) == 1):
        raise _usage("fetch", "--url needs --sha256 and exactly one NAME")
    _stop_on_sigterm()
    options: dict[str, Any] = dict(connections=p.connections, retries=p.retries, limit_rate=p.limit_rate, ca_bundle=p.ca_bundle, timeout=c.timeout)
    render = _renderer(p.progress_mode, c.out)
    if p.url:
        results = [c.store.fetch_url(p.names[0], p.url, p.sha256, filename=p.filename, progress=render, say=c.out.say, **options)]
    elif hub := _hub_repository("fetch", p):
        results = [c.store.fetch_hub(hub, include=p.include, exclude=p.exclude, as_=p.as_, progress=render, say=c.out.say, **options)]
    else:
        results = c.store.fetch_all(list(p.names), remotes=p.remotes, progress=render, say=c.out.say, **options)
    for r in results:
        c.out.data(str(r.model.path))
    from ..oci.reference import parse_reference

    # NAME and TAG apart: from the name it got, or (by digest, no name) the one asked for.
    refs = [parse_reference(r.model.name or asked) for r, asked in zip(results, p.names, strict=True)]
    c.out.document({"models": [{**_model_doc(r.model), "name": ref.name, "tag": ref.tag, "downloaded": r.downloaded} for r, ref in zip(results, refs, strict=True)]})


def _hub_repository(command: str, p: Params) -> str | None:
    """The one hf://ORG/REPO[@REVISION] among the command's references, or None; --include, --exclude and --as only with it."""
    hub = [name for name in p.names if name.startswith("hf://")]
    if hub and len(p.names) != 1:
        raise _usage(command, f"{command} hf://ORG/REPO on its own, not with other references")
    if (p.include or p.exclude or p.as_) and not hub:
        raise _usage(command, "--include, --exclude and --as go with one hf://ORG/REPO")
    return hub[0] if hub else None


def push(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    pushed = c.store.push(
        p.name, p.dest, as_=p.as_, format=p.format, retries=p.retries, ca_bundle=p.ca_bundle, timeout=c.timeout, progress=_renderer(p.progress_mode, c.out), say=c.out.say
    )
    dest = pushed.destination
    c.out.say(f"{dest}: {'pushed, ' + human_bytes(pushed.sent) + ' sent' if pushed.tagged else 'up to date'}")
    c.out.data(str(pushed.digest))
    c.out.document({"digest": str(pushed.digest), "format": pushed.format, "remote": dest.remote, "name": dest.ref.name, "tag": dest.ref.tag, "sent": pushed.sent, "tagged": pushed.tagged})


def serve(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    import signal

    from ..api import http_server

    server = http_server(c.store_dir, p.host, p.port, read_only=p.read_only, shared=c.shared)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    # Ctrl-C or SIGTERM from here waits until the URL is out, then stops the
    # server: stdout holds the whole document, and only it. Held for the
    # process: no other thread runs yet to take the signal instead.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _serve_at(c, server, f"http://{shown}:{bound_port}", held)
    except (KeyboardInterrupt, Exception) as err:
        # The URL is out (spec/cli.md, serve): whatever ends the server now, a second Ctrl-C included, is no second document.
        raise DocumentOut(err) from err


def _serve_at(c: Context, server, url: str, held: set) -> None:
    """Print ``url``, let the signals ``held`` back come, serve until Ctrl-C or SIGTERM, close."""
    import signal

    try:
        c.out.data(url)
        c.out.document({"url": url})
        flush_stdout()
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a stop that came meanwhile lands here, after the document
        server.serve_forever()
    except KeyboardInterrupt:
        # Ctrl-C and SIGTERM are how a server is meant to stop: not an error.
        c.out.say("stopped")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        server.server_close()


def _pins_doc(result) -> list[dict]:
    return [
        {"name": pin.name, "tag": pin.tag, "remote": pin.remote, "digest": str(pin.digest), "previous": None if was is None else str(was), "files": len(pin.files)}
        for pin, was in zip(result.pins, result.previous, strict=True)
    ]


def lock(c: Context, p: Params) -> None:
    if p.check and p.upgrade:
        raise _usage("lock", "--check and --upgrade exclude each other")
    if not (p.check or p.upgrade or p.names):
        raise _usage("lock", "name at least one model to lock, or pass --upgrade to re-resolve every pin")
    _stop_on_sigterm()
    if p.check:
        result = c.store.check_lock(p.lockfile, list(p.names) or None, remotes=p.remotes, ca_bundle=p.ca_bundle, timeout=c.timeout)
        c.out.say(f"{pins_count(len(result.pins))} {'holds' if len(result.pins) == 1 else 'hold'} in {p.lockfile}")
    elif p.upgrade:
        result = c.store.upgrade_lock(p.lockfile, list(p.names) or None, remotes=p.remotes, ca_bundle=p.ca_bundle, timeout=c.timeout, say=c.out.say)
    elif hub := _hub_repository("lock", p):
        result = c.store.lock_hub(hub, p.lockfile, include=p.include, exclude=p.exclude, as_=p.as_, ca_bundle=p.ca_bundle, timeout=c.timeout)
    else:
        result = c.store.lock(list(p.names), p.lockfile, remotes=p.remotes, ca_bundle=p.ca_bundle, timeout=c.timeout)
        for pin in result.pins:
            c.out.say(f"locked {pin.ref_name} at {pin.digest.short}")
    c.out.data(str(result.lockfile))
    c.out.document({"lockfile": str(result.lockfile), "changed": result.changed, "pins": _pins_doc(result)})


def sync(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    models = c.store.sync(
        p.lockfile,
        list(p.names) or None,
        remotes=p.remotes,
        connections=p.connections,
        retries=p.retries,
        ca_bundle=p.ca_bundle,
        timeout=c.timeout,
        progress=_renderer(p.progress_mode, c.out),
        say=c.out.say,
        verify=p.verify,
    )
    for model in models:
        c.out.data(str(model.path))
    c.out.document({"lockfile": str(p.lockfile.absolute()), "models": [_model_doc(m) for m in models]})


def log(c: Context, p: Params) -> None:
    records = c.store.history(p.name, limit=p.limit)
    for r in records:
        outcome = r.outcome if r.outcome != "failed" else f"failed (exit {r.exit}, {r.error})"
        moved = f"{human_bytes(r.bytes)} in {r.seconds:.1f} s ({human_bytes(r.rate)}/s)"
        digest = r.digest[7:19] if r.digest and r.digest.startswith("sha256:") else "-"
        c.out.data(escaped(f"{r.time}  {r.command}  {r.reference}  {digest}  {moved}  {outcome}  {', '.join(r.sources) or '-'}"))
    c.out.document({"records": [r.to_json() for r in records]})


def roots(c: Context, p: Params) -> None:
    pruned = c.store.prune_roots() if p.prune else []
    for root in pruned:
        c.out.say(f"dropped {root.lockfile}: {root.problem}")
    found = c.store.roots()
    for root in found:
        c.out.data(f"{escaped(str(root.lockfile))}  {'export, ' if root.export else ''}{_root_state(root)}")
    c.out.document(
        {
            "roots": [_root_doc(r) for r in found],
            **({"pruned": [_root_doc(r) for r in pruned]} if p.prune else {}),
        }
    )


def _root_state(root) -> str:
    """What 'roots' says after the lockfile: ``1 pin``, or why it is stale and what it keeps until when."""
    if root.problem is None:
        return pins_count(root.pins)
    if root.expired:
        return f"stale: {escaped(root.problem)}; the next gc drops it"
    return f"stale: {escaped(root.problem)}; keeps {pins_count(root.pins)} until {_day(root.until)}"


def _root_doc(root) -> dict:
    return {"lockfile": str(root.lockfile), "exists": root.exists, "pins": root.pins, "problem": root.problem, "refreshed": root.refreshed, "until": root.until, "expired": root.expired, "export": root.export}


def export(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    if p.layout == "hf-cache":
        return _export_hf_cache(c, p)
    if p.dest is None or p.cache_dir is not None or p.repo is not None or p.revision is not None:
        raise UsageError("export needs a DEST directory; --cache-dir, --repo and --revision go with --layout hf-cache", "odai-store export NAME DEST, or odai-store export NAME --layout hf-cache")
    result = c.store.export(p.name, p.dest, p.link)  # as given: the API refuses an empty DEST, which a Path would read as "."
    dest = Path(p.dest)
    c.out.say(f"exported {files_count(len(result.files))} to {dest} by {result.method}")
    c.out.data(str(dest))
    c.out.document({"dest": str(dest), "method": result.method, "files": [{"path": file, "method": how} for file, how in result.files]})


def _export_hf_cache(c: Context, p: Params) -> None:
    if p.dest is not None:
        raise UsageError("--layout hf-cache takes no DEST: the model goes into the cache", "name the cache with --cache-dir DIR, or give none for huggingface_hub's own")
    result = c.store.export_hf_cache(p.name, p.cache_dir, p.link, repo=p.repo, revision="main" if p.revision is None else p.revision)
    if result.previous is not None:
        c.out.say(f"refs/{escaped(result.ref or '')} named {escaped(result.previous)}, now {result.snapshot.name}")
    if result.method == "kept":
        c.out.say(f"{escaped(str(result.snapshot))} already held the {files_count(len(result.files))}")
    else:
        c.out.say(f"exported {files_count(len(result.files))} to {escaped(str(result.snapshot))} by {result.method}")
    c.out.data(str(result.snapshot))
    c.out.document(
        {
            "snapshot": str(result.snapshot),
            "ref": result.ref,
            "previous": result.previous,
            "method": result.method,
            "files": [{"path": file, "method": how} for file, how in result.files],
        }
    )


def import_hf_cache(c: Context, p: Params) -> None:
    _stop_on_sigterm()
    result = c.store.import_hf_cache(p.repos, cache_dir=p.cache_dir, link=p.link, say=c.out.say)
    for model in result.models:
        c.out.say(f"imported {model.name} ({model.digest.short}, {files_count(len(model.files))}, {human_bytes(model.size)})")
    if p.link:
        c.out.say(f"linked {files_count(result.linked)} of the cache to the store: {human_bytes(result.reclaimed)} reclaimed")
    if not result.models:
        c.out.say("nothing to import: the cache holds no snapshot of a model")
    for model in result.models:
        c.out.data(str(model.path))
    c.out.document({"models": [_model_doc(m) for m in result.models], "linked": result.linked, "left": result.left, "reclaimed": result.reclaimed})


def init(c: Context, p: Params) -> None:
    from ..api import Store

    store, refused = Store.init(p.directory or c.store_dir, shared=p.shared_here or c.shared)
    for directory in refused:
        c.out.say(f"cannot set the sticky bit of {directory}: only its owner (uid {directory.stat().st_uid}) may; ask them to run 'odai-store init --shared {store.root}'")
    c.out.data(str(store.root))
    c.out.document({"store": str(store.root), "shared": store.shared})
