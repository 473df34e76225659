"""Store: the Python API. One method per verb; the command line is a thin layer over it."""

from __future__ import annotations

import _thread
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotFound, StoreError, UsageError, from_os_error, storage_errors
from .local.blobs import BlobStore
from .local.bounded import INDEX_MAX, read_bounded
from .local.layout import StoreLayout
from .local.location import store_location
from .local.names import Names
from .local.opening import open_layout
from .local.views import Views
from .model import Fetched, Model
from .oci.digest import Digest
from .oci.index import lists_unnamed
from .oci.manifest import Manifest, parse_manifest
from .oci.reference import Reference, parse_reference

if TYPE_CHECKING:
    # Inside class Store, the method 'list' hides the builtin in every later signature.
    import builtins
    import threading

    from .download import Download, DownloadQueue
    from .export import Exported
    from .fetch import FetchContext
    from .local.gc import GcReport
    from .local.locks import Holder
    from .local.usage import DiskUsage
    from .lockfile import Pin
    from .oci.manifest import ModelFile
    from .pin import LockResult
    from .reports import ModelEntry, ModelInfo, Root, VerifyResult
    from .transfer.progress import Snapshot

__all__ = ["Store", "http_server"]


# _thread, not threading: the commands that never fetch are spared importing threading.
_QUEUE_LOCK = _thread.allocate_lock()


def _pin_remotes(pin: Pin, others: tuple[str, ...], say: Callable[[str], None]) -> tuple[str, ...]:
    """The remote ``pin`` was resolved on, then ``others`` (the usual ones).

    A lockfile may name a remote this odai-store cannot use (an s3:// of
    another tool, spec/lockfile.md): while others remain, it is skipped
    with a word, not the end of the sync.
    """
    from .remote.select import open_remote

    if others:
        try:
            open_remote(pin.remote).close()
        except UsageError as err:
            say(f"{pin.ref_name}: not trying its pinned remote: {err.message}")
            return others
    return (pin.remote, *others)


def _fetch_options(options: dict):
    """FetchOptions from keyword arguments (remotes may be any iterable; limit_rate and timeout as limits.py reads them)."""
    from .fetch import FetchOptions
    from .limits import parse_rate

    options = _with_deadline(options)
    return FetchOptions(**{**options, "remotes": tuple(options.get("remotes", ())), "limit_rate": parse_rate(options.get("limit_rate"))})


def _with_deadline(options: dict) -> dict:
    """``options`` with ``timeout`` (seconds or their spelling, or None) turned into the deadline it sets from now."""
    if "timeout" not in options:
        return options
    from .limits import parse_seconds

    options = dict(options)
    timeout = parse_seconds(options.pop("timeout"))
    if timeout is not None:
        import time

        from .transfer.deadline import Deadline

        options["deadline"] = Deadline.after(timeout, time.monotonic())
    return options


def _context(
    store: Store, options: dict, progress: Callable[[Snapshot], None] | None, cancel: threading.Event | None, say: Callable[[str], None] | None
) -> FetchContext:
    """The FetchContext of one call: the store, its options, progress counters, the cancel event, where messages go."""
    import threading

    from .fetch import FetchContext
    from .transfer.progress import Progress

    return FetchContext(store.layout, store._names, _fetch_options(options), Progress(progress), cancel or threading.Event(), say or (lambda _: None))


def _ref(ref: str | Reference) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


class Store:
    """A model store on disk.

    ``Store()`` opens the store the CLI would use (``$ODAI_STORE_HOME``, else
    the XDG cache directory), creating it on first use. Every method is safe
    to call from many processes at once on one store.

    ``on_wait`` is called with the holder when a lock is busy, so a caller can
    say whom it waits for. A method that waits for a lock longer than
    ``lock_timeout`` seconds (600, as the command line's default; None: no
    limit) raises LockTimeout naming the holder; waiting for another process's
    download of a blob only counts while that download makes no progress.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        shared: bool = False,
        max_downloads: int = 2,
        on_wait: Callable[[Holder | None], None] | None = None,
        lock_timeout: float | None = 600,
    ) -> None:
        self.layout: StoreLayout = open_layout(store_location(path), shared)
        self.max_downloads = max_downloads
        self._queue: DownloadQueue | None = None
        self._names = Names(self.layout, on_wait, lock_timeout)
        self._blobs = BlobStore(self.layout)

    @property
    def root(self) -> Path:
        return self.layout.root

    # -- resolving -----------------------------------------------------------

    def resolve(self, ref: str | Reference) -> tuple[Digest, Manifest]:
        """The manifest a reference designates in this store; NotFound if none."""
        ref = _ref(ref)
        with storage_errors("reading the store"):
            if ref.digest is not None:
                digest = ref.digest
            else:
                desc = self._names.lookup(ref)
                if desc is None:
                    raise NotFound(f"no model named {ref.ref_name} in {self.root}")
                digest = desc.digest
            try:
                data = self._blobs.read_manifest(digest)
            except FileNotFoundError:
                raise NotFound(f"the manifest of {ref} ({digest}) is not in the store", "fetch or add the model again") from None
        return digest, parse_manifest(data, digest)

    def info(self, ref: str | Reference) -> ModelInfo:
        from .reports import ModelFileStatus, ModelInfo

        ref = _ref(ref)
        digest, manifest = self.resolve(ref)
        files = tuple(ModelFileStatus(f, self._blobs.has(f.digest, f.size)) for f in manifest.files)
        return ModelInfo(None if ref.digest else ref.ref_name, digest, files)

    def _complete(self, ref: Reference) -> tuple[Digest, Manifest]:
        """The manifest ``ref`` designates, once every file's blob is here; NotFound if any is absent."""
        digest, manifest = self.resolve(ref)
        missing = [f.path for f in manifest.files if not self._blobs.has(f.digest, f.size)]
        if missing:
            raise NotFound(
                f"model {ref} is incomplete: {len(missing)} of {len(manifest.files)} files missing ({missing[0]}, ...)",
                "fetch or add the model again",
            )
        return digest, manifest

    def model(self, ref: str | Reference) -> Model:
        """The model with its view, built if missing; NotFound if any file is absent."""
        ref = _ref(ref)
        digest, manifest = self._complete(ref)
        views = Views(self.layout)
        path = views.path(digest)
        if not path.is_dir():
            with storage_errors("building the model view", self.root):
                path = views.build(digest, manifest)
        return Model(None if ref.digest else ref.ref_name, digest, path, manifest.files)

    def path(self, ref: str | Reference, file: str | None = None, *, verify: bool = False) -> Path:
        """The model's view directory, or one file in it. Never touches the network.

        With ``verify``, the files (or the one file) are checked first against
        what was published: IntegrityError (exit 5) if any was changed since.
        """
        model = self.model(ref)
        files: Sequence[ModelFile] = model.files
        if file is not None:
            files = [f for f in model.files if f.path == file]
            if not files:
                raise NotFound(f"model {ref} has no file {file!r}", f"'odai-store show {ref}' lists its files")
        if verify:
            self._verify_files(model, files)
        return model.path if file is None else model.path / file

    def _verify_files(self, model: Model, files: Iterable[ModelFile]) -> None:
        """IntegrityError unless each of ``files`` of ``model`` is its view's link to a blob as published."""
        from .errors import IntegrityError
        from .local.verify import altered_blobs

        files = list(files)
        with storage_errors("verifying the model's files", self.root):
            planted = Views(self.layout).altered(model.digest, files)
            changed = set(altered_blobs(self.layout, [f.digest for f in files]))
        bad = sorted({*planted, *(f.path for f in files if f.digest in changed)})
        if bad:
            shown = model.name or model.digest.short
            raise IntegrityError(
                f"{shown}: {len(bad)} file{'s' if len(bad) > 1 else ''} changed since published: {', '.join(bad)}",
                "run 'odai-store verify' to set damaged blobs aside, then fetch or sync the model again; in a shared store, ask who changed it",
            )

    def list(self) -> list[ModelEntry]:
        from .oci.index import named_totals
        from .reports import ModelEntry

        with storage_errors("reading the store"):
            data = read_bounded(self.layout.index, INDEX_MAX, "index.json")
        return [ModelEntry(*totals) for totals in named_totals(data)]

    # -- writing -------------------------------------------------------------

    def add(self, ref: str | Reference, paths: Iterable[str | os.PathLike[str]], *, follow_links: bool = False) -> Model:
        """Import files and directory trees as one model named ``ref``.

        A symbolic link in a directory that leads outside it is refused
        (UsageError) unless ``follow_links``; files in /proc, /sys and the
        filesystem of /dev always are (spec/cli.md, "add").
        """
        from .add import add

        return add(self.layout, _ref(ref), [Path(p) for p in paths], self._names, follow_links)

    def fetch(self, ref: str | Reference, **options) -> Model:
        """Make one model complete in the store from the remotes and return it.

        Options are those of ``fetch_all``. A model named by digest and
        complete in the store costs no request at all.
        """
        return self.fetch_all([ref], **options)[0].model

    def fetch_all(
        self,
        refs: Iterable[str | Reference],
        *,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
        **options,
    ) -> builtins.list[Fetched]:
        """Make models complete in the store from remotes; one Fetched per reference, in order.

        ``options`` are the fields of FetchOptions: remotes, connections (8),
        retries (5), limit_rate (bytes/s, or a rate like "10M"), ca_bundle; and
        timeout (seconds, or their spelling like "2.5"), after which the network
        phase stops with NetworkError. A limit out of range raises UsageError. ``progress`` receives
        Snapshots whose ``done`` never decreases and ends equal to ``total``.
        Setting ``cancel`` stops within a second, keeping partial data for the
        next call, and raises Interrupted.
        """
        parsed = [_ref(r) for r in refs]
        present = self._present_by_digest(parsed)
        if present is not None:
            return present
        from .fetch import fetch

        return fetch(_context(self, options, progress, cancel, say), parsed)

    def fetch_url(
        self,
        ref: str | Reference,
        url: str,
        sha256: str,
        *,
        filename: str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
        **options,
    ) -> Fetched:
        """A single-file model from any URL, verified against ``sha256`` (64 hex digits); options as fetch_all."""
        from .fetch import fetch_url
        from .oci.digest import parse_digest

        digest = parse_digest(sha256 if sha256.startswith("sha256:") else f"sha256:{sha256}")
        return fetch_url(_context(self, options, progress, cancel, say), _ref(ref), url, digest, filename)

    def start_fetch(self, ref: str | Reference, *, priority: int = 0, **options) -> Download:
        """Queue a fetch of ``ref`` in the background; the Download handle watches and steers it.

        At most ``max_downloads`` run at once, higher ``priority`` first.
        """
        from .download import Download, DownloadQueue

        with _QUEUE_LOCK:
            if self._queue is None:
                self._queue = DownloadQueue(self.max_downloads)

        def run(cancel: threading.Event, on_progress: Callable[[Snapshot], None]) -> Model:
            return self.fetch(ref, cancel=cancel, progress=on_progress, **options)

        return Download(run, self._queue, priority).start()

    # -- lockfiles and sharing -------------------------------------------------

    def lock(
        self, refs: Iterable[str | Reference], lockfile: str | os.PathLike[str] = "odai.lock", *, remotes: Iterable[str] = (), ca_bundle: str | None = None, timeout: float | str | None = None
    ) -> LockResult:
        """Resolve ``refs`` on the remotes and pin them in ``lockfile``; register it as a gc root."""
        from .pin import lock

        path = Path(lockfile).absolute()
        result = lock(self.layout, self._names, [_ref(r) for r in refs], path, _fetch_options({"remotes": remotes, "ca_bundle": ca_bundle, "timeout": timeout}))
        self._register_root(path)
        return result

    def check_lock(
        self,
        lockfile: str | os.PathLike[str] = "odai.lock",
        refs: Iterable[str | Reference] | None = None,
        *,
        remotes: Iterable[str] = (),
        ca_bundle: str | None = None,
        timeout: float | str | None = None,
    ) -> LockResult:
        """Resolve the pinned names again; LockfileError (exit 7) if any tag moved."""
        from .pin import check

        path = Path(lockfile).absolute()
        parsed = None if refs is None else [_ref(r) for r in refs]
        return check(self.layout, self._names, parsed, path, _fetch_options({"remotes": remotes, "ca_bundle": ca_bundle, "timeout": timeout}))

    def sync(self, lockfile: str | os.PathLike[str] = "odai.lock", names: Iterable[str] | None = None, **options) -> builtins.list[Model]:
        """Make exactly the pinned models present (all, or the pins of ``names``: NAME, NAME:TAG or NAME@DIGEST); never looks a tag up.

        With every pin present it sends no request and writes nothing, so it
        works on a read-only store. Registers the lockfile as a gc root.
        ``verify=True`` checks every file as ``path(verify=True)`` does.
        """
        from .local.roots import drop_root, read_lockfile
        from .sync import select_pins, sync

        path = Path(lockfile).absolute()
        options = _with_deadline(options)  # one deadline for every pin's fetch
        remotes = tuple(options.pop("remotes", ()))
        verify = options.pop("verify", False)
        only = list(names) if names else None
        # Refused before the store changes: a lockfile that does not parse, or
        # does not pin a name asked for, must not become a root that gc then
        # cannot read.
        pins = select_pins(read_lockfile(path), only, path)

        def present(pin) -> Model | None:
            try:
                return self.model(pin.reference)
            except NotFound:
                return None

        def fetch_pins(pins) -> list[Model]:
            from .config import read_config
            from .remote.select import remote_specs

            others = () if remotes else tuple(remote_specs((), lambda: read_config(self.layout.config).remotes))
            say = options.get("say") or (lambda _: None)
            models = []
            for pin in pins:
                chosen = remotes or _pin_remotes(pin, others, say)
                models.append(self.fetch(pin.reference, remotes=chosen, named=remotes, keep_by_digest=False, **options))
                # Where a lockfile sent this sync is for the user to see: the lockfile may not be theirs.
                # Said after, not before: a failure's message names its remote, in the two lines of an error.
                say(f"{pin.ref_name}: fetched from {' or '.join(chosen)}")
            return models

        # The root first: from here on gc keeps what the lockfile pins, so
        # nothing fetched below can be collected before sync returns.
        registered = self._register_root(path)
        try:
            models = sync(pins, path, present, fetch_pins)
            for model in models if verify else ():
                self._verify_files(model, model.files)
            return models
        except BaseException:
            # A failed sync leaves the store as it found it. Known hole: a
            # concurrent sync of the same lockfile loses the root too, until
            # its next sync or lock registers it again.
            if registered:
                try:
                    drop_root(self.layout, path)
                except OSError:
                    pass  # the sync's own error is the one to report
            raise

    def _register_root(self, lockfile: Path) -> bool:
        """Register ``lockfile`` as a gc root; True if this call added it."""
        from .local.roots import register_root

        try:
            return register_root(self.layout, lockfile, self._names.lock_timeout)
        except OSError as err:
            if not self.read_only:
                raise from_os_error(err, "registering the lockfile as a gc root") from err
            # A read-only store keeps everything anyway: nothing to protect.
            return False

    def roots(self) -> builtins.list[Root]:
        """The registered lockfiles, whether they still exist, and how many models each pins."""
        from .local.roots import read_lockfile, root_paths
        from .reports import Root

        out = []
        # A lockfile or roots/ that may not be read is a storage error (exit 6), as in gc, not a crash.
        with storage_errors("reading the gc roots"):
            for path in root_paths(self.layout):
                if path.exists():
                    out.append(Root(path, True, len(read_lockfile(path).pins)))
                else:
                    out.append(Root(path, False, 0))
        return out

    @classmethod
    def init(cls, path: str | os.PathLike[str] | None = None, *, shared: bool = False) -> tuple[Store, builtins.list[Path]]:
        """Create the store at ``path`` (or open it), and with ``shared`` make sure it is a shared one.

        Returns the store and the directories whose sticky bit this user
        could not set (tighten_shared). UsageError if ``shared`` and the
        store exists unshared: opening never changes a store, so calling it
        shared would be false.
        """
        store = cls(path, shared=shared)
        if not shared:
            return store, []
        if not store.shared:
            raise UsageError(
                f"the store at {store.root} exists and is not shared; --shared applies only when a store is created",
                "create a shared store with 'odai-store init --shared DIR' and fetch into it from this one with --remote",
            )
        return store, store.tighten_shared()

    def tighten_shared(self) -> builtins.list[Path]:
        """Give a shared store's directories their sticky bits where they lack them (a store made by an older odai-store).

        Returns the directories this user may not change: only a
        directory's owner may set its mode.
        """
        from .local.opening import set_sticky

        with storage_errors("setting the sticky bits", self.root):
            return set_sticky(self.layout)

    @property
    def shared(self) -> bool:
        """True if the store was created for a group (``shared=True``; spec/locking.md#shared-stores)."""
        from .local.opening import is_shared

        with storage_errors("reading the store"):
            return is_shared(self.layout)

    def _present_by_digest(self, refs: builtins.list[Reference]) -> builtins.list[Fetched] | None:
        """The models, if every ref is a digest of a complete model that gc keeps anyway; else None.

        Then fetch needs no network, no write and none of the download
        machinery: a script re-running ``fetch NAME@sha256:...`` costs a
        start-up and a few stats. It applies when index.json already holds
        the unnamed entry an earlier fetch by digest wrote; otherwise the
        full fetch writes it.
        """
        if not refs or any(ref.digest is None for ref in refs):
            return None
        try:
            index = read_bounded(self.layout.index, INDEX_MAX, "index.json")
            models = []
            for ref in refs:
                if not lists_unnamed(index, ref.digest):  # type: ignore[arg-type]  # not None: checked above
                    return None
                models.append(self.model(ref))
        except (NotFound, OSError):
            return None
        return [Fetched(m, 0) for m in models]

    @property
    def read_only(self) -> bool:
        """True when this process cannot write to the store (read-only mount, or permissions)."""
        return not os.access(self.layout.root, os.W_OK) or bool(os.statvfs(self.layout.root).f_flag & os.ST_RDONLY)

    def export(self, ref: str | Reference, dest: str | os.PathLike[str], link: str = "auto") -> Exported:
        """Materialize the model's files under ``dest`` with their own names (read-only files)."""
        from .export import export

        # From the blobs, not the view: export writes under DEST only, so a read-only store without the view serves it too.
        _, manifest = self._complete(_ref(ref))
        return export(manifest.files, self._blobs.path, Path(dest), link)

    def remove(self, refs: Iterable[str | Reference]) -> builtins.list[str]:
        """Drop names (blobs stay until gc); NotFound, with nothing removed, if any is unknown.

        A name given twice, in any spelling (``a``, ``a:latest``), is removed once.
        """
        parsed: list[Reference] = []
        seen: set[object] = set()
        for ref in map(_ref, refs):
            key = ref.digest if ref.digest is not None else ref.ref_name
            if key not in seen:
                seen.add(key)
                parsed.append(ref)

        def drop(index):
            for ref in parsed:
                if ref.digest is not None:
                    kept = index.without_unnamed(ref.digest)
                    if kept == index:
                        raise NotFound(f"no model fetched by digest {ref.digest}", "'odai-store list' shows names; rm NAME:TAG drops one")
                    index = kept
                    continue
                if index.lookup(ref.ref_name) is None:
                    raise NotFound(f"no model named {ref.ref_name}")
                index = index.without_name(ref.ref_name)
            return index

        with storage_errors("removing names", self.root):
            self._names.edit(drop)
        return [str(r) if r.digest else r.ref_name for r in parsed]

    def gc(self, dry_run: bool = False, partials: bool = False) -> GcReport:
        """Delete everything no name, gc root or running writer needs.

        With ``partials``, also the partial downloads of writers that are
        dead (on this host), which a later fetch would otherwise resume.
        """
        from .local.gc import collect
        from .local.roots import pinned_digests

        with storage_errors("collecting garbage", self.root):
            return collect(self.layout, lambda: pinned_digests(self.layout), dry_run, self._names.lock_timeout, partials)

    def verify(self, refs: Iterable[str | Reference] | None = None, fast: bool = False) -> VerifyResult:
        """Re-hash blobs (of ``refs``, or all); corrupt ones go to quarantine/."""
        from .local.verify import verify_blobs
        from .reports import VerifyResult

        digests = None
        if refs is not None:
            digests = []
            for ref in refs:
                digest, manifest = self.resolve(ref)
                digests += [digest, *manifest.blob_digests()]
        with storage_errors("verifying", self.root):
            named = self._names.index().named()
            report = verify_blobs(self.layout, digests, fast)
        damaged = []
        for name, desc in named:
            if desc.digest in report.corrupt:
                damaged.append(name)
                continue
            try:
                manifest = parse_manifest(self._blobs.read_manifest(desc.digest), desc.digest)
            except (OSError, StoreError):  # gone, or damaged and reported above
                continue
            if manifest.blob_digests() & set(report.corrupt):
                damaged.append(name)
        return VerifyResult(report, tuple(damaged))

    def du(self) -> DiskUsage:
        from .local.usage import disk_usage

        reclaimable = self.gc(dry_run=True).bytes_freed
        with storage_errors("measuring the store"):
            return disk_usage(self.layout, reclaimable)


def http_server(path: str | os.PathLike[str] | None, host: str, port: int, *, read_only: bool = False, shared: bool = False):
    """A server of the store at ``path`` as a remote (spec/remotes.md); call serve_forever() on it.

    ``read_only`` serves a store on read-only media as it is: nothing is
    created or changed, so a directory without index.json is NotFound.
    """
    from .serve import make_server

    location = store_location(path)
    layout = StoreLayout(location) if read_only else open_layout(location, shared)
    if not layout.index.exists():
        raise NotFound(f"no store at {layout.root}", "create one with 'odai-store add', or pass --store")
    return make_server(layout, host, port)
