"""The commands as click declares them: arguments, options and help; each body calls Store and prints.

The bodies of list, path, fetch, sync and export live in actions.py, where
the quick path (quick.py) runs them without click; here they are declared.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from .. import __version__
from ..errors import StoreError
from ..export import LINK_MODES
from ..transfer.limits import parse_rate, parse_seconds
from . import actions
from .actions import Context, model_doc, stop_on_sigterm
from .output import escaped, files_count, human_bytes, pins_count

__all__ = ["cli"]


pass_ctx = click.make_pass_decorator(Context)


class _Limit(click.ParamType):
    """A value that transfer/limits.py reads from its spelling; its words when it refuses one."""

    def __init__(self, name: str, parse: Callable[[str], float | None]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value, param, ctx):
        try:
            return self._parse(value)
        except StoreError as err:
            self.fail(err.message, param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option("--store", "store_dir", metavar="DIR", envvar=None, help="Store directory [default: $ODAI_STORE_HOME, else $XDG_CACHE_HOME/odai-store, else ~/.cache/odai-store].")
@click.option("--shared", is_flag=True, help="Create the store group-writable (setgid) for every member of its group.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No messages on stderr, only errors.")
@click.option("-v", "--verbose", is_flag=True, help="More detail, and tracebacks of errors.")
@click.option(
    "--lock-timeout",
    type=click.IntRange(min=0),
    default=actions.LOCK_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Give up (exit 8) after waiting this long for a lock of the store that another process holds.",
)
@click.option("--timeout", type=_Limit("seconds", parse_seconds), metavar="SECONDS", help="Bound the network phase of fetch, sync and lock; exit 4 when it expires.")
@click.version_option(__version__, "--version", prog_name="odai-store", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, store_dir: str | None, shared: bool, as_json: bool, quiet: bool, verbose: bool, lock_timeout: int, timeout: float | None) -> None:
    """A content-addressed store for AI models.

    Model files live once, under their SHA-256 digest, in an OCI image layout;
    names like llama-3b:q4 point at manifests that list them. Commands that
    produce a model print its directory on stdout, and nothing else.
    """
    ctx.obj = Context(store_dir, shared, as_json, quiet, verbose, lock_timeout, timeout)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--follow-links", is_flag=True, help="Also add what symbolic links lead to outside the directory being added.")
@pass_ctx
def add(c: Context, name: str, paths: tuple[Path, ...], follow_links: bool) -> None:
    """Import files and directories as the model NAME[:TAG]; print its path.

    A file is stored under its base name; a directory contributes its contents.
    """
    stop_on_sigterm()
    model = c.store.add(name, paths, follow_links=follow_links)
    c.out.say(f"added {model.name} ({model.digest.short}, {files_count(len(model.files))}, {human_bytes(model.size)})")
    c.out.data(str(model.path))
    c.out.document(model_doc(model))


@cli.command(name="list")
@pass_ctx
def list_(c: Context) -> None:
    """List names: name:tag, manifest digest, size, file count."""
    actions.list_(c)


@cli.command()
@click.argument("name")
@pass_ctx
def show(c: Context, name: str) -> None:
    """Show a model's manifest: each file's path, digest, size and presence."""
    info = c.store.info(name)
    c.out.data(f"digest: {info.digest}")
    c.out.data(f"size: {human_bytes(info.size)} in {files_count(len(info.files))} ({'complete' if info.complete else 'incomplete'})")
    for s in info.files:
        c.out.data(f"{'present' if s.present else 'missing':<7}  {s.file.digest.short}  {human_bytes(s.file.size):>10}  {escaped(s.file.path)}")
    c.out.document(
        {
            "name": info.name,
            "digest": str(info.digest),
            "size": info.size,
            "complete": info.complete,
            "files": [
                {"path": s.file.path, "digest": str(s.file.digest), "size": s.file.size, "present": s.present}
                for s in info.files
            ],
        }
    )


_VERIFY = click.option(
    "--verify", is_flag=True, help="First check the files against the xxh3 recorded when they were published (exit 5 if one changed)."
)


@cli.command()
@click.argument("name")
@click.option("--file", "file", metavar="F", help="Print the path of this file of the model instead.")
@_VERIFY
@pass_ctx
def path(c: Context, **params) -> None:
    """Print the model's directory (exit 3 if unknown or incomplete). No network."""
    actions.path(c, **params)


@cli.command()
@click.argument("names", nargs=-1, required=True)
@pass_ctx
def rm(c: Context, names: tuple[str, ...]) -> None:
    """Drop names. Their files stay until 'gc'."""
    removed = c.store.remove(names)
    for name in removed:
        c.out.say(f"removed {name}")
    c.out.document({"removed": removed})


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only print what would be freed.")
@click.option("--partials", is_flag=True, help="Also delete partial downloads of dead processes, which a fetch would resume.")
@pass_ctx
def gc(c: Context, dry_run: bool, partials: bool) -> None:
    """Delete blobs, manifests and views that no name or gc root needs."""
    stop_on_sigterm()
    report = c.store.gc(dry_run, partials)
    verb = "would free" if dry_run else "freed"
    c.out.data(f"{verb} {human_bytes(report.bytes_freed)}: {len(report.blobs)} blobs, {len(report.views)} views, {len(report.partials)} partial files")
    c.out.document(
        {
            "dry_run": dry_run,
            "bytes_freed": report.bytes_freed,
            "blobs": [str(d) for d in report.blobs],
            "views": [str(d) for d in report.views],
            "partials": [str(p) for p in report.partials],
        }
    )


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--fast", is_flag=True, help="Check the xxh3-128 recorded at publish time instead of SHA-256.")
@pass_ctx
def verify(c: Context, names: tuple[str, ...], fast: bool) -> None:
    """Re-hash blobs; move corrupt ones to quarantine (exit 5 if any)."""
    stop_on_sigterm()
    result = c.store.verify(names or None, fast)
    report = result.report
    c.out.data(f"checked {report.checked} blobs, {human_bytes(report.bytes_checked)}: {len(report.corrupt)} corrupt")
    for digest, moved in zip(report.corrupt, report.quarantined, strict=True):
        c.out.data(f"corrupt {digest} -> {escaped(str(moved))}")
    for name in result.damaged_models:
        c.out.data(f"damaged model {escaped(name)}")
    c.out.document(
        {
            "checked": report.checked,
            "bytes": report.bytes_checked,
            "corrupt": [str(d) for d in report.corrupt],
            "quarantined": [str(p) for p in report.quarantined],
            "damaged_models": list(result.damaged_models),
        }
    )
    if (failure := result.error()) is not None:
        sys.stdout.flush()  # the report first, then the two error lines
        raise failure


@cli.command()
@pass_ctx
def du(c: Context) -> None:
    """Show the filesystem's size and free space, and what the store uses."""
    u = c.store.du()
    rows = [
        ("filesystem size", u.filesystem_size),
        ("filesystem free", u.filesystem_free),
        (f"blobs ({u.blobs})", u.blob_bytes),
        ("reclaimable by gc", u.reclaimable_bytes),
        ("partial data", u.partial_bytes),
    ]
    for label, value in rows:
        c.out.data(f"{label:<20} {human_bytes(value):>10}")
    c.out.document(u._asdict())


# Options several commands share, declared once.
_CONNECTIONS = click.option("--connections", type=click.IntRange(1, 64), default=actions.CONNECTIONS, show_default=True, help="Parallel connections for a large blob.")
_RETRIES = click.option("--retries", type=click.IntRange(0, 100), default=actions.RETRIES, show_default=True, help="Retries of a transient failure.")
_CA_BUNDLE = click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="Trust this CA bundle for HTTPS.")
_PROGRESS = click.option("--progress", "progress_mode", type=click.Choice(actions.PROGRESS_MODES), help="Progress on stderr [default: bar on a terminal].")
_LOCKFILE = click.option(
    "--lockfile", type=click.Path(dir_okay=False, path_type=Path), default=Path(actions.LOCKFILE), show_default=True, help="The lockfile."
)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--remote", "remotes", multiple=True, metavar="URL", help="A remote store (http(s)://, file:// or a path); repeat to try several in order.")
@click.option("--url", metavar="URL", help="Fetch one file from any URL as a one-file model NAME.")
@click.option("--sha256", metavar="HEX", help="With --url: the file's SHA-256.")
@click.option("--filename", metavar="F", help="With --url: the file's name in the model [default: from the URL].")
@_CONNECTIONS
@_RETRIES
@click.option("--limit-rate", type=_Limit("rate", parse_rate), metavar="RATE", help="Cap the total rate, e.g. 10M (bytes/s).")
@_CA_BUNDLE
@_PROGRESS
@pass_ctx
def fetch(c: Context, **params) -> None:
    """Fetch models from remotes; print one model path per NAME, in order.

    NAME is NAME[:TAG] or NAME@sha256:<hex>. A model complete in the store and
    named by digest needs no network at all.
    """
    if not params["names"]:
        raise click.UsageError("name at least one model")
    if params["url"] or params["sha256"] or params["filename"]:
        if not (params["url"] and params["sha256"]) or len(params["names"]) != 1:
            raise click.UsageError("--url needs --sha256 and exactly one NAME")
    actions.fetch(c, **params)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--read-only", is_flag=True, help="Serve a store on read-only media: never create or change anything in it.")
@pass_ctx
def serve(c: Context, host: str, port: int, read_only: bool) -> None:
    """Serve this store as a remote (GET/HEAD, Range); print its URL, then serve until interrupted."""
    stop_on_sigterm()
    from ..api import http_server

    server = http_server(c.store_dir, host, port, read_only=read_only, shared=c.shared)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    c.out.data(f"http://{shown}:{bound_port}")
    c.out.document({"url": f"http://{shown}:{bound_port}"})
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        # Ctrl-C and SIGTERM are how a server is meant to stop: not an error.
        c.out.say("stopped")
    finally:
        server.server_close()


def _pins_doc(pins) -> list[dict]:
    return [{"name": p.name, "tag": p.tag, "remote": p.remote, "digest": str(p.digest), "files": len(p.files)} for p in pins]


@cli.command()
@click.argument("names", nargs=-1)
@_LOCKFILE
@click.option("--check", is_flag=True, help="Resolve the pins again; exit 7 listing every tag that moved.")
@click.option("--remote", "remotes", multiple=True, metavar="URL", help="Resolve on this remote (repeatable).")
@_CA_BUNDLE
@pass_ctx
def lock(c: Context, names, lockfile: Path, check: bool, remotes, ca_bundle) -> None:
    """Pin NAME[:TAG]... to their current manifests in the lockfile (network).

    The lockfile is sorted and has no timestamps: locking unchanged models
    leaves it byte-identical. It is registered as a gc root of the store.
    """
    stop_on_sigterm()
    if check:
        result = c.store.check_lock(lockfile, list(names) or None, remotes=remotes, ca_bundle=ca_bundle, timeout=c.timeout)
        c.out.say(f"{pins_count(len(result.pins))} {'holds' if len(result.pins) == 1 else 'hold'} in {lockfile}")
    else:
        if not names:
            raise click.UsageError("name at least one model to lock")
        result = c.store.lock(list(names), lockfile, remotes=remotes, ca_bundle=ca_bundle, timeout=c.timeout)
        for pin in result.pins:
            c.out.say(f"locked {pin.ref_name} at {pin.digest.short}")
    c.out.data(str(result.lockfile))
    c.out.document({"lockfile": str(result.lockfile), "changed": result.changed, "pins": _pins_doc(result.pins)})


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME[:TAG]|NAME@DIGEST]...")
@_LOCKFILE
@click.option("--remote", "remotes", multiple=True, metavar="URL", help="Fetch from this remote instead of the pinned one.")
@_CONNECTIONS
@_RETRIES
@_CA_BUNDLE
@_PROGRESS
@_VERIFY
@pass_ctx
def sync(c: Context, **params) -> None:
    """Make exactly the pinned models present; print each one's path.

    All pins, or those of each NAME (any tag), NAME:TAG or NAME@DIGEST. Never looks a tag up; with every pin present it sends no request at all.
    """
    actions.sync(c, **params)


@cli.command()
@pass_ctx
def roots(c: Context) -> None:
    """List the lockfiles registered as gc roots (gc drops those whose file is gone)."""
    found = c.store.roots()
    for root in found:
        c.out.data(f"{escaped(str(root.lockfile))}  {pins_count(root.pins) if root.exists else 'missing'}")
    c.out.document({"roots": [{"lockfile": str(r.lockfile), "exists": r.exists, "pins": r.pins} for r in found]})


@cli.command()
@click.argument("name")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--link", type=click.Choice(LINK_MODES), default=actions.LINK, show_default=True, help="How files are made: auto tries reflink, then hardlink, then copy.")
@pass_ctx
def export(c: Context, **params) -> None:
    """Materialize a model's files under DEST with their own names (read-only)."""
    actions.export(c, **params)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--shared", "shared_here", is_flag=True, help="Group-writable with the setgid bit, for every member of the group (read the trust note above).")
@pass_ctx
def init(c: Context, directory: Path | None, shared_here: bool) -> None:
    """Create a store (at DIRECTORY, else the usual location) and print its path.

    \b
    A shared store (--shared) trusts every member of its group: any member
    can change or delete the models of the others (rewrite or delete
    blobs, move names, plant views). Share a store only among
    people who trust each other. root, or a service account, must not run
    odai-store on a shared store whose members it does not trust.
    'path --verify' and 'sync --verify' notice a changed file
    (spec/locking.md#trust).
    """
    from ..api import Store

    store, refused = Store.init(directory or c.store_dir, shared=shared_here or c.shared)
    for directory in refused:
        c.out.say(f"cannot set the sticky bit of {directory}: only its owner (uid {directory.stat().st_uid}) may; ask them to run 'odai-store init --shared {store.root}'")
    c.out.data(str(store.root))
    c.out.document({"store": str(store.root), "shared": store.shared})
