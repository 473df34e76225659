"""Store: the Python API. One method per verb; the command line is a thin layer over it."""

from __future__ import annotations

import _thread
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidReference, NotFound, StoreError, UsageError, storage_errors
from .fs.bounded import INDEX_MAX, read_bounded
from .local.blobs import BlobStore
from .local.layout import StoreLayout
from .local.location import store_location
from .local.names import Names
from .local.opening import open_layout
from .local.views import Views
from .model import Fetched, HfImported, Model
from .oci.digest import Digest
from .oci.manifest import Manifest, parse_manifest
from .oci.reference import Reference, ShortDigest, parse_local_reference, parse_reference, parse_registry_host

if TYPE_CHECKING:
    # Inside class Store, the method 'list' hides the builtin in every later signature.
    import builtins
    import threading
    import weakref

    from .catalog import RemoteModel
    from .download import Download, DownloadQueue
    from .export import Exported, HfExported
    from .fetching.session import FetchContext
    from .fs.locks import Holder
    from .local.doctor import DoctorReport
    from .local.gc import GcReport
    from .local.history import Record as HistoryRecord
    from .local.usage import DiskUsage, ModelSizes
    from .oci.manifest import ModelFile
    from .pin import LockResult
    from .push import Pushed
    from .reports import ModelEntry, ModelInfo, Root, VerifyResult
    from .transfer.progress import Snapshot

__all__ = ["Store", "doctor", "http_server", "project_lockfile"]


# _thread, not threading: the commands that never fetch are spared importing threading.
_QUEUE_LOCK = _thread.allocate_lock()


def _items(value: object, what: str, kind: type | tuple[type, ...]) -> tuple:
    """``value`` as a tuple of ``kind``: a str, path, Reference or ShortDigest alone is one item, not a sequence of characters (or fields).

    Anything else must be an iterable of ``kind``. UsageError (exit 2), before
    anything is done, for another type: e.g. ``remotes=5``, or ``paths`` of bytes.
    """
    if isinstance(value, (str, os.PathLike, Reference, ShortDigest)) or not isinstance(value, Iterable):
        items: tuple = (value,)
    else:
        items = tuple(value)
    for item in items:
        if not isinstance(item, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise UsageError(f"{what}: {item!r} ({type(item).__name__}) is not a {names}", f"pass one {names} or a list of them (spec/cli.md#python-api)")
    return items


def _fetch_options(
    remotes: object = (),
    connections: object = 8,
    retries: object = 5,
    limit_rate: object = None,
    ca_bundle: object = None,
    timeout: object = None,
    progress: object = None,
    cancel: object = None,
    say: object = None,
) -> dict:
    """The fetching keyword arguments of a method, checked where the caller passes them.

    A wrong type or value is a UsageError (exit 2) here, not a TypeError from
    inside a download. ``limit_rate`` and ``timeout`` are read as limits.py
    reads the options' spellings.
    """
    from .limits import CONNECTIONS, RETRIES, check_count, parse_rate, parse_seconds

    for name, value in (("progress", progress), ("say", say)):
        if value is not None and not callable(value):
            raise UsageError(f"{name}={value!r} is not callable", f"pass a function for {name}, or None")
    if cancel is not None and not all(callable(getattr(cancel, method, None)) for method in ("is_set", "set", "wait")):
        raise UsageError(f"cancel={cancel!r} is not an event", "pass a threading.Event for cancel, or None")
    if ca_bundle is not None and not isinstance(ca_bundle, (str, os.PathLike)):
        raise UsageError(f"ca_bundle={ca_bundle!r} is not a path", "pass the path of a PEM file for ca_bundle, or None")
    return {
        "remotes": _items(remotes, "remotes", str),
        "connections": check_count("connections", connections, CONNECTIONS),
        "retries": check_count("retries", retries, RETRIES),
        "limit_rate": parse_rate(limit_rate),  # type: ignore[arg-type]  # checked there
        "ca_bundle": None if ca_bundle is None else os.fspath(ca_bundle),
        "timeout": parse_seconds(timeout),  # type: ignore[arg-type]  # checked there
        "progress": progress,
        "cancel": cancel,
        "say": say,
    }


def _context(store: Store, options: dict, **fetch_options) -> FetchContext:
    """The FetchContext of one call, from its checked keyword arguments (_fetch_options) and ``fetch_options``' fields.

    The timeout starts the deadline now.
    """
    import threading

    from .fetching.session import FetchContext, FetchOptions
    from .transfer.progress import Progress

    options = dict(options)
    progress, cancel, say, timeout = (options.pop(key) for key in ("progress", "cancel", "say", "timeout"))
    if timeout is not None:
        import time

        from .transfer.deadline import Deadline

        options["deadline"] = Deadline.after(timeout, time.monotonic())
    return FetchContext(store.layout, store._names, FetchOptions(**options, **fetch_options, insecure_registries=store.insecure_registries), Progress(progress), cancel or threading.Event(), say or (lambda _: None))


def project_lockfile(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The lockfile of the project ``start`` (default: the working directory) is in: its odai.lock, or the nearest parent's."""
    from .local.roots import find_lockfile

    return find_lockfile(Path(start or os.getcwd()).absolute())


def _one_remote(remote: object) -> str:
    """``remote``, if it is one remote's URL or path as a string; UsageError otherwise."""
    if not isinstance(remote, str) or not remote:
        raise UsageError(f"remote={remote!r} is not a remote", "pass one remote: an http(s):// or file:// URL, or a path, as a string")
    return remote


def _hub(repository: str, include: Iterable[str], exclude: Iterable[str], as_: str | Reference | None) -> tuple[str, Reference]:
    """The remote of ``hf://ORG/REPO[@REVISION]`` with the filters, and the model's name: ``as_``, else spec/names.md's."""
    from .remote.select import hub_remote

    url, named = hub_remote(repository, _items(include, "include", (str,)), _items(exclude, "exclude", (str,)))
    return url, named if as_ is None else _ref(as_)


def _ref(ref: str | Reference) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


def _hf_cache(cache_dir: str | os.PathLike[str] | None, verb: str) -> Path:
    """The Hugging Face cache named, absolute; None: the one huggingface_hub uses. An empty string is refused, not read as none."""
    from .export import hf_cache_dir

    if cache_dir is not None and not os.fspath(cache_dir):
        raise UsageError(f"{verb} needs a cache directory, not an empty string", "name the directory, or give none for huggingface_hub's own")
    return Path(os.path.abspath(cache_dir if cache_dir is not None else hf_cache_dir(os.environ)))


def _local_ref(ref: str | Reference | ShortDigest) -> Reference | ShortDigest:
    """What a method that looks only in the store takes: a reference, or a short digest (spec/names.md#short-digests)."""
    return ref if isinstance(ref, (Reference, ShortDigest)) else parse_local_reference(ref)


def _name_of(ref: Reference | ShortDigest) -> str | None:
    """The NAME:TAG ``ref`` designates a model by; None for a digest, short or full."""
    return ref.ref_name if isinstance(ref, Reference) and ref.digest is None else None


def _history_filter(ref: Reference, any_tag: bool) -> tuple[Callable[[bytes], bool], Callable[[HistoryRecord], bool]]:
    """Which lines may hold a record of ``ref`` (cheap, before parsing), and which records are of it (Store.history's ``name``)."""
    if ref.digest is not None:
        return (lambda line: ref.digest.hex.encode() in line), (lambda r: r.digest == str(ref.digest))

    def of(record: HistoryRecord) -> bool:
        for text in (record.name, record.reference):
            try:
                theirs = parse_reference(text) if text else None
            except InvalidReference:  # a record another implementation wrote
                continue
            if theirs is not None and theirs.name == ref.name and (any_tag or (theirs.digest is None and theirs.tag == ref.tag)):
                return True
        return False

    return (lambda line: ref.name.encode() in line), of


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

    ``insecure_registries`` (``HOST[:PORT]`` each, as ``--insecure-registry``)
    are registries spoken to over plain http though not on this machine;
    the store's config.toml may name more (spec/remotes.md#registries).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        shared: bool = False,
        max_downloads: int = 2,
        on_wait: Callable[[Holder | None], None] | None = None,
        lock_timeout: float | None = 600,
        insecure_registries: Iterable[str] = (),
    ) -> None:
        self.insecure_registries = frozenset(map(parse_registry_host, _items(insecure_registries, "insecure_registries", str)))
        self.layout: StoreLayout = open_layout(store_location(path), shared)
        self.max_downloads = max_downloads
        self._queue: DownloadQueue | None = None
        self._downloads: weakref.WeakSet[Download] | None = None  # start_fetch's handles, for pause_all and resume_all
        self._names = Names(self.layout, on_wait, lock_timeout)
        self._blobs = BlobStore(self.layout)

    @property
    def root(self) -> Path:
        return self.layout.root

    # -- resolving -----------------------------------------------------------

    def resolve(self, ref: str | Reference | ShortDigest) -> tuple[Digest, Manifest]:
        """The manifest a reference or a short digest designates in this store; NotFound if none."""
        ref = _local_ref(ref)
        with storage_errors("reading the store"):
            digest = self._designated(ref)
            try:
                data = self._blobs.read_manifest(digest)
            except FileNotFoundError:
                raise NotFound(f"the manifest of {ref} ({digest}) is not in the store", "fetch or add the model again") from None
        return digest, parse_manifest(data, digest)

    def _designated(self, ref: Reference | ShortDigest) -> Digest:
        """The manifest digest ``ref`` designates, whether or not the manifest is here; NotFound for an unknown name.

        A short digest: UsageError if several manifests start with it, NotFound if none does.
        """
        if isinstance(ref, ShortDigest):
            from .local.short_digests import expand

            return expand(self.layout, self._names.index(), ref)
        if ref.digest is not None:
            return ref.digest
        desc = self._names.lookup(ref)
        if desc is None:
            raise NotFound(f"no model named {ref.ref_name} in {self.root}")
        return desc.digest

    def info(self, ref: str | Reference | ShortDigest) -> ModelInfo:
        from .reports import ModelFileStatus, ModelInfo

        ref = _local_ref(ref)
        digest, manifest = self.resolve(ref)
        files = tuple(ModelFileStatus(f, self._blobs.has(f.digest, f.size)) for f in manifest.files)
        return ModelInfo(_name_of(ref), digest, files, *manifest.read_from(digest), manifest.repository)

    def _complete(self, ref: Reference | ShortDigest) -> tuple[Digest, Manifest]:
        """The manifest ``ref`` designates, once every file's blob is here; NotFound if any is absent."""
        digest, manifest = self.resolve(ref)
        missing = self._blobs.missing(manifest.files)
        if missing:
            raise NotFound(
                f"model {ref} is incomplete: {len(missing)} of {len(manifest.files)} files missing ({missing[0]}, ...)",
                "fetch or add the model again",
            )
        return digest, manifest

    def model(self, ref: str | Reference | ShortDigest) -> Model:
        """The model with its view, built if missing; NotFound if any file is absent."""
        ref = _local_ref(ref)
        digest, manifest = self._complete(ref)
        with storage_errors("building the model view", self.root):
            path = Views(self.layout).build(digest, manifest)
        return Model(_name_of(ref), digest, path, manifest.files)

    def path(self, ref: str | Reference | ShortDigest, file: str | None = None, *, verify: bool = False, lockfile: str | os.PathLike[str] | None = None) -> Path:
        """The model's view directory, or one file in it. Never touches the network.

        With ``lockfile`` (a project's odai.lock), a NAME:TAG it pins is its
        pinned manifest, whatever index.json names so: an app gets exactly
        the version it pinned. With ``verify``, the files (or the one file)
        are checked first against what was published: IntegrityError (exit 5)
        if any was changed since.
        """
        ref = _local_ref(ref)
        model = self._pinned(ref, Path(lockfile)) if lockfile is not None and isinstance(ref, Reference) else None
        model = model or self.model(ref)
        files: Sequence[ModelFile] = model.files
        if file is not None:
            files = [f for f in model.files if f.path == file]
            if not files:
                raise NotFound(f"model {ref} has no file {file!r}", f"'odai-store show {ref}' lists its files")
        if verify:
            from .local.verify import check_model_files

            with storage_errors("verifying the model's files", self.root):
                check_model_files(self.layout, model.digest, files, model.name or model.digest.short)
        return model.path if file is None else model.path / file

    def _pinned(self, ref: Reference, lockfile: Path) -> Model | None:
        """The model ``lockfile`` pins as ``ref`` (NAME:TAG), named so; None if it pins no such name."""
        from .local.roots import read_lockfile

        pins = read_lockfile(lockfile).select(ref) if ref.digest is None else []
        if not pins:
            return None
        try:
            return self.model(pins[0].reference)._replace(name=pins[0].ref_name)
        except NotFound as err:
            raise NotFound(f"{ref.ref_name}, pinned in {lockfile}: {err.message}", f"run 'odai-store sync --lockfile {lockfile}' to fetch it") from None

    def remote_models(self, remote: str, *, ca_bundle: str | os.PathLike[str] | None = None, timeout: float | str | None = None) -> builtins.list[RemoteModel]:
        """Every name ``remote`` (a URL or path, as --remote takes) holds, sorted, each with its manifest's digest, size and file count.

        Reads the remote's index.json and manifests only, never a file's
        blob; a manifest the store holds is not read again. UsageError for
        a remote that cannot list its names. ``ca_bundle`` and ``timeout``
        as fetch_all's.
        """
        from .catalog import remote_models

        options = _fetch_options(remotes=_one_remote(remote), ca_bundle=ca_bundle, timeout=timeout)
        return remote_models(_context(self, options), remote)

    def remote_info(
        self, remote: str, ref: str | Reference, *, ca_bundle: str | os.PathLike[str] | None = None, timeout: float | str | None = None
    ) -> ModelInfo:
        """The manifest ``ref`` designates on ``remote``, as ``info`` reports one of the store's: each file's path, digest and size, and ``present``, whether this store holds it already (what a fetch would not download).

        Reads the remote's index.json and the manifest only, never a file's
        blob, except a model's tar layers, whose files are known only from
        their bytes (spec/manifest.md#tar-layers); the manifest is checked as
        fetch checks it. ``ca_bundle`` and ``timeout`` as fetch_all's.
        """
        from .catalog import remote_info

        options = _fetch_options(remotes=_one_remote(remote), ca_bundle=ca_bundle, timeout=timeout)
        return remote_info(_context(self, options), remote, _ref(ref))

    def list(self, *, sizes: bool = False) -> builtins.list[ModelEntry]:
        """The names, sorted, then the models gc roots pin (as their entries recorded them), then those fetched by digest
        (``name`` None); each with its manifest digest, size, file count and marks (spec/cli.md, "list").

        Without ``sizes`` no manifest is read: a model is marked incomplete
        when its manifest blob is absent, and damaged when verify moved it
        to quarantine. With ``sizes`` each manifest is read and each file
        blob stat'ed once: the marks then cover the files too, and each
        entry has its ``unique`` and ``shared`` bytes (``list_sizes`` also
        gives their total).
        """
        if sizes:
            return self.list_sizes().models
        with storage_errors("reading the store"):
            return self._entries(read_bounded(self.layout.index, INDEX_MAX, "index.json"))

    def _entries(self, index: bytes) -> builtins.list[ModelEntry]:
        """list's rows of ``index`` (index.json's bytes) and of the recorded pins, marked by what is seen without a manifest."""
        from .oci.index import named_totals
        from .reports import ModelEntry

        totals = named_totals(index, unnamed=True)
        pinned = self._recorded_pins()
        # One read of blobs/sha256, not a stat per manifest (a tenth of the
        # instructions with 10,000 manifests), and no manifest read: spec/cli.md, "list".
        present = set(os.listdir(self.layout.blobs)) if totals or pinned else set()
        named = [t for t in totals if t[0]]
        rows = [*named, *(t for t, _ in pinned), *(t for t in totals if not t[0])]
        pinned_in = [None] * len(named) + [lockfile for _, lockfile in pinned] + [None] * (len(totals) - len(named))
        absent = {digest for digest in {t[1] for t in rows} if digest.hex not in present}
        # Only when a manifest is absent: one read of quarantine/ tells a damaged model from a removed blob.
        quarantined = self._blobs.quarantined() if absent else set()
        return [
            ModelEntry(t[0] or None, *t[1:], complete=t[1] not in absent, damaged=t[1] in absent and t[1] in quarantined, pinned_in=lockfile, by_digest=not t[0])
            for t, lockfile in zip(rows, pinned_in, strict=True)
        ]

    def _has_roots(self) -> bool:
        with os.scandir(self.layout.roots) as scanned:
            return any(not entry.name.startswith(".") for entry in scanned)

    def _recorded_pins(self) -> builtins.list[tuple[tuple[str, Digest, int, int], Path]]:
        """Each pin the entries of roots/ record, sorted by name, with the lockfile; an entry that cannot be read, or records none, shows none."""
        if not self._has_roots():
            return []  # list of a store without roots loads no lockfile code
        from .local.root_records import root_entries

        rows = [((pin.name, pin.digest, pin.size, pin.files), record.lockfile) for _, record in root_entries(self.layout) if not isinstance(record, Exception) for pin in record.pins or ()]
        return sorted(rows, key=lambda row: (row[0][0], str(row[1])))

    def list_sizes(self) -> ModelSizes:
        """``list(sizes=True)``, and the bytes of the distinct file blobs of all its models, each counted once however many share it."""
        from .local.usage import ModelSizes, held

        with storage_errors("reading the store"):
            # The rows hold every name, every pin a gc root records and every model fetched by digest:
            # what each row alone holds is what no other row does.
            entries = self._entries(read_bounded(self.layout.index, INDEX_MAX, "index.json"))
            found, total = held(self.layout, [e.digest for e in entries], [])
        models = [e._replace(complete=h.complete, damaged=h.damaged, unique=h.unique, shared=h.shared) for e, h in zip(entries, found, strict=True)]
        return ModelSizes(models, total)

    # -- writing -------------------------------------------------------------

    def add(
        self,
        ref: str | Reference,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        follow_links: bool = False,
        move: bool = False,
        progress: Callable[[Snapshot], None] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Model:
        """Import files and directory trees (``paths``: one, or several) as one model named ``ref``.

        A symbolic link in a directory that leads outside it is refused
        (UsageError) unless ``follow_links``; files in /proc, /sys and the
        filesystem of /dev always are (spec/cli.md, "add"). Each file is
        cloned where the filesystem can, else copied. With ``move`` the
        files are moved into the store instead (no byte copied where they
        can be) and are gone from ``paths`` once the model is named.
        ``progress`` gets Snapshots of the bytes read, as fetch's does.
        ``say`` is told 'NAME:TAG: old -> new' when ``ref`` named another
        model before.
        """
        from .add import add

        checked = _fetch_options(progress=progress, say=say)  # the one check of these callables, as the downloads' (UsageError)
        items = [Path(p) for p in _items(paths, "paths", (str, os.PathLike))]
        return add(self.layout, _ref(ref), items, self._names, follow_links, move, checked["progress"], checked["say"] or (lambda _: None))

    def import_hf_cache(
        self,
        repos: str | Iterable[str] = (),
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        link: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> HfImported:
        """Import the snapshots of a Hugging Face cache (``cache_dir``, default huggingface_hub's) of ``repos`` (ORG/REPO; none: all) as named models.

        Each file is checked against its blob's name first (IntegrityError,
        nothing named, the cache untouched); each snapshot is named as
        ``fetch hf://ORG/REPO@REVISION`` names it. With ``link`` the cache's
        blob files then become hard links to the store's blobs where the
        filesystem allows (spec/cli.md#import-hf-cache).
        """
        from .hf_import import import_hf_cache

        checked = _fetch_options(say=say)
        items = list(_items(repos, "repos", str))
        return import_hf_cache(self.layout, self._names, _hf_cache(cache_dir, "import-hf-cache"), items, link, checked["say"] or (lambda _: None))

    def fetch(
        self,
        ref: str | Reference,
        *,
        remotes: str | Iterable[str] = (),
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Model:
        """Make one model complete in the store from the remotes and return it.

        The keyword arguments are those of ``fetch_all``. A model named by
        digest and complete in the store costs no request at all.
        """
        [fetched] = self.fetch_all(
            [ref],
            remotes=remotes,
            connections=connections,
            retries=retries,
            limit_rate=limit_rate,
            ca_bundle=ca_bundle,
            timeout=timeout,
            progress=progress,
            cancel=cancel,
            say=say,
        )
        return fetched.model

    def fetch_all(
        self,
        refs: str | Reference | Iterable[str | Reference],
        *,
        remotes: str | Iterable[str] = (),
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> builtins.list[Fetched]:
        """Make models complete in the store from remotes; one Fetched per reference, in order.

        As the options of ``odai-store fetch``: ``remotes`` (one URL or path,
        or several, tried in order; none: $ODAI_STORE_REMOTE, else
        config.toml), ``connections`` (1 to 64), ``retries`` (0 to 100),
        ``limit_rate`` (bytes/s, or a rate like "10M"), ``ca_bundle`` (a PEM
        file) and ``timeout`` (seconds, or their spelling like "2.5"), after
        which the network phase stops with NetworkError. A value of a wrong
        type or out of range raises UsageError before anything is done.
        ``progress`` receives Snapshots whose ``done`` never decreases and
        ends equal to ``total``. Setting ``cancel`` stops within a second,
        keeping partial data for the next call, and raises Interrupted.
        ``say`` receives the messages the command line prints on stderr.
        """
        from .fetch import fetch

        options = _fetch_options(remotes, connections, retries, limit_rate, ca_bundle, timeout, progress, cancel, say)
        wanted = [_ref(r) for r in _items(refs, "refs", (str, Reference))]
        return fetch(self.layout, wanted, lambda: _context(self, options))

    def push(
        self,
        ref: str | Reference,
        dest: str,
        *,
        as_: str | Reference | None = None,
        format: str = "odai",
        retries: int = 5,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Pushed:
        """Push the model ``ref`` names here to the registry ``dest`` (spec/cli.md#push); the keyword arguments are fetch_all's, ``as_``
        the NAME[:TAG] it gets under a namespace ``dest``, and ``format`` the manifest's: ``odai`` (the store's own) or ``modelpack``.
        Nothing is sent when the tag names the same manifest already."""
        from .model import PUSH_FORMATS
        from .push import destination, push

        if format not in PUSH_FORMATS:
            raise UsageError(f"unknown push format {format!r}", f"use one of {', '.join(PUSH_FORMATS)}")
        options = _fetch_options((), 8, retries, None, ca_bundle, timeout, progress, cancel, say)
        model = _ref(ref)
        return push(_context(self, options), model, destination(dest, model, None if as_ is None else _ref(as_)), format)

    def fetch_url(
        self,
        ref: str | Reference,
        url: str,
        sha256: str,
        *,
        filename: str | None = None,
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Fetched:
        """A single-file model from any URL, verified against ``sha256`` (64 hex digits); the other arguments as fetch_all's."""
        from .fetch import fetch
        from .oci.digest import parse_digest
        from .remote.select import open_url_file

        options = _fetch_options((), connections, retries, limit_rate, ca_bundle, timeout, progress, cancel, say)
        digest = parse_digest(sha256 if sha256.startswith("sha256:") else f"sha256:{sha256}")
        # First: it refuses a URL that does not parse. A blob here already needs no request for its size.
        source = open_url_file(url, digest, filename, size=self._blobs.size(digest) if self._blobs.has(digest) else None, ca_bundle=options["ca_bundle"])
        [fetched] = fetch(self.layout, [_ref(ref)], lambda: _context(self, options), source)
        return fetched

    def fetch_hub(
        self,
        repository: str,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        as_: str | Reference | None = None,
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Fetched:
        """The files of a Hugging Face repository, ``hf://ORG/REPO[@REVISION]``, that ``include`` and ``exclude`` (globs) select, as the model ``as_`` (default: hf/ORG/REPO:REVISION, spec/names.md); the other arguments as fetch_all's."""
        from .fetch import fetch
        from .remote.select import open_remote

        options = _fetch_options((), connections, retries, limit_rate, ca_bundle, timeout, progress, cancel, say)
        url, ref = _hub(repository, include, exclude, as_)
        [fetched] = fetch(self.layout, [ref], lambda: _context(self, options), open_remote(url, ca_bundle=options["ca_bundle"]))
        return fetched

    def start_fetch(
        self,
        ref: str | Reference,
        *,
        priority: int = 0,
        remotes: str | Iterable[str] = (),
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Download:
        """Queue a fetch of ``ref`` in the background; the Download handle watches, pauses and cancels it.

        At most ``max_downloads`` run at once, higher ``priority`` first. The
        other arguments are fetch_all's, checked now: a wrong one raises
        UsageError here, not from the handle's ``wait()``.
        """
        from .download import Download, DownloadQueue
        from .fetch import fetch

        wanted, options = _ref(ref), _fetch_options(remotes, connections, retries, limit_rate, ca_bundle, timeout, None, None, say)
        with _QUEUE_LOCK:
            if self._queue is None:
                import weakref

                self._queue = DownloadQueue(self.max_downloads)
                self._downloads = weakref.WeakSet()

        def run(cancel: threading.Event, on_progress: Callable[[Snapshot], None]) -> Model:
            [fetched] = fetch(self.layout, [wanted], lambda: _context(self, {**options, "progress": on_progress, "cancel": cancel}))
            return fetched.model

        download = Download(run, self._queue, priority)
        with _QUEUE_LOCK:
            self._downloads.add(download)  # type: ignore[union-attr]  # made with the queue above
        return download.start()

    def _handles(self) -> builtins.list[Download]:
        with _QUEUE_LOCK:
            return [] if self._downloads is None else [*self._downloads]

    def pause_all(self) -> None:
        """Pause every download ``start_fetch`` of this Store started that is still pending or running, at once; return when none transfers.

        Each keeps its partial data, as ``Download.pause`` does; ``resume_all``
        (or each handle's ``resume``) continues them. Thread-safe.
        """
        from .download import pause_all

        pause_all(self._handles())

    def resume_all(self) -> None:
        """Resume every paused download of this Store (``pause_all``'s, or a handle's own ``pause``), in the queue's order and limit."""
        from .download import DownloadState

        for download in self._handles():
            if download.state is DownloadState.PAUSED:
                download.resume()

    def history(self, name: str | Reference | None = None, *, limit: int | None = None) -> builtins.list[HistoryRecord]:
        """The store's history, oldest first: what each fetch, sync and add did to each model (spec/store-layout.md#history).

        ``name``: only the records of that model: ``NAME`` (any tag, or by
        digest), ``NAME:TAG``, or ``NAME@sha256:<hex>`` (its manifest).
        ``limit``: only the newest that many. Read from the end of the files,
        up to a bound: a history cut short by it starts later, never fails.
        """
        from .local.history import read_records

        if limit is not None and (type(limit) is not int or limit < 0):
            raise UsageError(f"limit={limit!r} is not a count", "pass an int of at least 0, or None for every record")
        if name is None:
            keep, wanted = (lambda line: True), (lambda record: True)
        else:
            ref = _ref(name)
            keep, wanted = _history_filter(ref, any_tag=isinstance(name, str) and name == ref.name)
        with storage_errors("reading the history", self.root):
            records = [r for r in read_records(self.layout, keep) if wanted(r)]
        return records[len(records) - limit :] if limit is not None and limit < len(records) else records

    def origin(self, ref: str | Reference | Digest) -> HistoryRecord | None:
        """Where the model ``ref`` designates (or the manifest of a digest) came from: its newest successful record in the history, None if it has none.

        Never fails on the history's account: one that cannot be read is no record.
        """
        from .local.history import read_records

        digest = ref if isinstance(ref, Digest) else self._designated(_ref(ref))
        try:
            found = read_records(self.layout, lambda line: digest.hex.encode() in line)
        except (OSError, StoreError):
            return None
        return next((r for r in reversed(found) if r.digest == str(digest) and r.outcome == "ok"), None)

    # -- lockfiles and sharing -------------------------------------------------

    def lock(
        self,
        refs: str | Reference | Iterable[str | Reference],
        lockfile: str | os.PathLike[str] = "odai.lock",
        *,
        remotes: str | Iterable[str] = (),
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
    ) -> LockResult:
        """Resolve ``refs`` on the remotes and pin them in ``lockfile``; register it as a gc root."""
        from .pin import lock
        from .sync import register

        path = Path(lockfile).absolute()
        options = _fetch_options(remotes=remotes, ca_bundle=ca_bundle, timeout=timeout)
        result = lock(_context(self, options), [_ref(r) for r in _items(refs, "refs", (str, Reference))], path)
        register(self.layout, path, result.all_pins, self._names.lock_timeout, self.read_only)
        return result

    def lock_hub(
        self,
        repository: str,
        lockfile: str | os.PathLike[str] = "odai.lock",
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        as_: str | Reference | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
    ) -> LockResult:
        """Pin the files of a Hugging Face repository, as fetch_hub selects and names them, in ``lockfile``: its commit and manifest digest."""
        url, ref = _hub(repository, include, exclude, as_)
        return self.lock(ref, lockfile, remotes=url, ca_bundle=ca_bundle, timeout=timeout)

    def upgrade_lock(
        self,
        lockfile: str | os.PathLike[str] = "odai.lock",
        names: str | Iterable[str] | None = None,
        *,
        remotes: str | Iterable[str] = (),
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        say: Callable[[str], None] | None = None,
    ) -> LockResult:
        """Resolve the pins again (all, or those of ``names``: NAME for every tag, or NAME:TAG), each on its pinned remote unless ``remotes`` are given, and write what they designate now.

        As ``uv lock --upgrade``: nothing is downloaded (``sync`` does that).
        ``previous`` of the result holds what each pin designated before;
        ``say`` hears per pin ``NAME:TAG: old -> new`` or ``NAME:TAG: up to
        date``. UsageError (exit 2) for a name the lockfile does not pin.
        Registers the lockfile as a gc root.
        """
        from .pin import upgrade
        from .sync import register

        path = Path(lockfile).absolute()
        options = _fetch_options(remotes=remotes, ca_bundle=ca_bundle, timeout=timeout, say=say)
        chosen = None if names is None else list(_items(names, "names", str))
        result = upgrade(_context(self, options), chosen, path)
        register(self.layout, path, result.all_pins, self._names.lock_timeout, self.read_only)
        return result

    def check_lock(
        self,
        lockfile: str | os.PathLike[str] = "odai.lock",
        refs: str | Reference | Iterable[str | Reference] | None = None,
        *,
        remotes: str | Iterable[str] = (),
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
    ) -> LockResult:
        """Resolve the pins again (all, or those of ``refs``: NAME for every tag, NAME:TAG or a Reference for that pin); LockfileError (exit 7) if any tag moved, or for a name not pinned."""
        from .pin import check

        path = Path(lockfile).absolute()
        options = _fetch_options(remotes=remotes, ca_bundle=ca_bundle, timeout=timeout)
        spelled = None if refs is None else [r if isinstance(r, str) else str(r) for r in _items(refs, "refs", (str, Reference))]
        return check(_context(self, options), spelled, path)

    def sync(
        self,
        lockfile: str | os.PathLike[str] = "odai.lock",
        names: str | Iterable[str] | None = None,
        *,
        remotes: str | Iterable[str] = (),
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
        verify: bool = False,
    ) -> builtins.list[Model]:
        """Make exactly the pinned models present (all, or the pins of ``names``: NAME, NAME:TAG or NAME@DIGEST); never looks a tag up.

        With every pin present it sends no request and writes nothing, so it
        works on a read-only store. Registers the lockfile as a gc root.
        ``verify=True`` checks every file as ``path(verify=True)`` does.
        ``remotes`` are tried instead of each pin's own; the other arguments
        are fetch_all's.
        """
        from .local.roots import read_lockfile
        from .sync import sync

        path = Path(lockfile).absolute()
        options = _fetch_options(remotes, connections, retries, limit_rate, ca_bundle, timeout, progress, cancel, say)
        if not isinstance(verify, bool):
            raise UsageError(f"verify={verify!r} is not a bool", "pass verify=True or verify=False")
        chosen = None if names is None else list(_items(names, "names", str))
        # Refused before the store changes: a lockfile that does not parse, or
        # does not pin a name asked for, must not become a root that gc then
        # cannot read.
        parsed = read_lockfile(path)
        pins = parsed.chosen(chosen or None, str(path))
        return sync(
            self.layout,
            path,
            parsed,
            pins,
            lambda: _context(self, options, named=options["remotes"], keep_by_digest=False),
            lock_timeout=self._names.lock_timeout,
            verify=verify,
            read_only=self.read_only,
            say=options["say"] or (lambda _: None),
        )

    def roots(self) -> builtins.list[Root]:
        """The registered lockfiles, whether gc can read each, and how many models each keeps (until when, for a stale one)."""
        import time

        from .local.roots import survey_roots
        from .reports import Root

        # roots/ that may not be read is a storage error (exit 6), as in gc, not a crash.
        with storage_errors("reading the gc roots"):
            return [Root.of(state) for state in survey_roots(self.layout, time.time())]

    def prune_roots(self) -> builtins.list[Root]:
        """Drop the stale gc roots now, in their grace period or not, so the next gc frees what only they kept; return those dropped.

        In a shared store, only the roots this user registered (or all, for the store's owner).
        """
        import time

        from .local.roots import prune_roots
        from .reports import Root

        with storage_errors("pruning the gc roots", self.root):
            return [Root.of(state) for state in prune_roots(self.layout, time.time(), self._names.lock_timeout)]

    @classmethod
    def init(cls, path: str | os.PathLike[str] | None = None, *, shared: bool = False) -> tuple[Store, builtins.list[Path]]:
        """Create the store at ``path`` (or open it), and with ``shared`` make sure it is a shared one.

        Returns the store and the directories whose sticky bit this user
        could not set (tighten_shared). UsageError if ``shared`` and the
        store exists unshared: opening never changes a store, so calling it
        shared would be false.
        """
        open_layout(store_location(path), shared, anywhere=True)  # deliberately: in a directory with files too
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

    @property
    def read_only(self) -> bool:
        """True when this process cannot write to the store (read-only mount, or permissions)."""
        return not os.access(self.layout.root, os.W_OK) or bool(os.statvfs(self.layout.root).f_flag & os.ST_RDONLY)

    def export(self, ref: str | Reference | ShortDigest, dest: str | os.PathLike[str], link: str = "auto") -> Exported:
        """Materialize the model's files under ``dest`` with their own names (read-only files)."""
        from .export import export

        if not os.fspath(dest):  # Path("") is ".": an empty DEST would export into the working directory
            raise UsageError("export needs a DEST directory, not an empty string", "name the directory to export into; '.' for this one")
        # From the blobs, not the view: export writes under DEST only, so a read-only store without the view serves it too.
        _, manifest = self._complete(_local_ref(ref))
        return export(manifest.files, self._blobs.path, Path(dest), link)

    def export_hf_cache(
        self,
        ref: str | Reference | ShortDigest,
        cache_dir: str | os.PathLike[str] | None = None,
        link: str = "auto",
        *,
        repo: str | None = None,
        revision: str | None = "main",
    ) -> HfExported:
        """Put the model into a Hugging Face cache (``cache_dir``, else the one huggingface_hub uses) as huggingface_hub lays it out.

        The repository and commit are those the model was fetched from
        (``hf://``); ``repo`` names the repository of a model that came from
        elsewhere, whose commit is then the first 40 hex digits of its
        manifest digest. ``revision``'s ref names the commit (None: no ref).
        The export's snapshot directory becomes a gc root (spec/locking.md#export-roots).
        """
        import time

        from .export import check_hub_origin, check_revision, export_hf_cache
        from .local.root_records import RecordedPin
        from .local.roots import register_export, restore_root
        from .oci.manifest import SOURCE_FORMAT, SOURCE_REPOSITORY, SOURCE_REVISION

        if revision is not None:
            check_revision(revision)
        target = _local_ref(ref)
        digest, manifest = self._complete(target)
        hub = manifest.annotations.get(SOURCE_FORMAT) == "huggingface"
        if not hub and repo is None:
            raise UsageError(f"model {ref} did not come from the Hugging Face Hub: its repository and commit are unknown", "name a repository for it with --repo ORG/REPO (repo= in Python)")
        origin = check_hub_origin(repo or manifest.annotations.get(SOURCE_REPOSITORY, ""), manifest.annotations.get(SOURCE_REVISION, "") if hub else digest.hex[:40])
        cache = _hf_cache(cache_dir, "export")
        snapshot = cache / f"models--{origin.repo.replace('/', '--')}" / "snapshots" / origin.commit
        pin = RecordedPin(str(target), digest, sum(f.size for f in manifest.files), len(manifest.files))
        # Before any link is made: a gc from then on keeps what the export links to.
        with storage_errors("registering the export as a gc root", self.root):
            try:
                registered = register_export(self.layout, snapshot, pin, time.time(), self._names.lock_timeout)
            except OSError:
                if not self.read_only:
                    raise
                registered = None
        try:
            return export_hf_cache(manifest.files, self._blobs.path, cache, origin, revision, link)
        except BaseException:
            if registered is not None:
                restore_root(self.layout, snapshot, registered, self._names.lock_timeout)
            raise

    def remove(self, refs: str | Reference | ShortDigest | Iterable[str | Reference | ShortDigest]) -> builtins.list[str]:
        """Drop names (blobs stay until gc); NotFound, with nothing removed, if any is unknown. Returns what was removed.

        A name given twice, in any spelling (``a``, ``a:latest``), is removed
        once. A short digest drops the entries of its manifest: its one name
        and its unnamed entry; UsageError if it has several names.
        """
        targets = [_local_ref(r) for r in _items(refs, "refs", (str, Reference, ShortDigest))]
        with storage_errors("removing names", self.root):
            wanted = [self._designated(t) if isinstance(t, ShortDigest) else t for t in targets]
            try:
                return self._names.remove(wanted)
            except NotFound:
                self._refuse_pinned(wanted)  # the same outcome, said better: what keeps the model
                raise

    def _refuse_pinned(self, refs: builtins.list[Reference | Digest]) -> None:
        """NotFound naming the lockfile, for a digest no entry of index.json has but a gc root keeps: rm cannot drop a pin."""
        digests = {r if isinstance(r, Digest) else r.digest for r in refs} - {None}
        if not digests or not self._has_roots():
            return
        from .local.root_records import root_entries
        from .oci.index import REF_NAME

        listed = {d.digest for d in self._names.index().entries if REF_NAME not in d.annotations}
        for _, record in root_entries(self.layout):
            if isinstance(record, Exception):
                continue
            for pin in record.pins or ():
                if pin.digest in digests - listed:
                    raise NotFound(
                        f"no model fetched by digest {pin.digest}: {record.lockfile} pins it as {pin.name}, and that gc root keeps it",
                        "remove the pin from that lockfile, then run 'odai-store sync' there; if the lockfile is gone, 'odai-store roots --prune' drops its root",
                    )

    def tag(self, source: str | Reference, new: str | Reference) -> Digest:
        """Name the model ``source`` (NAME[:TAG] or NAME@DIGEST) also ``new`` (NAME[:TAG]), as docker tag does; return its manifest digest.

        Only index.json is read and written (and index.previous.json, the version it replaces). NotFound, with nothing changed,
        if ``source`` is not in it; UsageError if ``new`` carries a digest.
        What ``new`` named before, it no longer names.
        """
        source, new = _ref(source), _ref(new)
        if new.digest is not None:
            raise UsageError(f"invalid new name {new}: a name is NAME[:TAG], without a digest", "the model keeps its digest; give only the name, e.g. 'odai-store tag SOURCE mine:v1'")
        with storage_errors("tagging", self.root):
            return self._names.tag(source, new).digest

    def gc(self, dry_run: bool = False, partials: bool = False) -> GcReport:
        """Delete everything no name, gc root or running writer needs.

        With ``partials``, also the partial downloads of writers that are
        dead (on this host), which a later fetch would otherwise resume.
        """
        from .local.gc import collect

        with storage_errors("collecting garbage", self.root):
            return collect(self.layout, dry_run, self._names.lock_timeout, partials)

    def verify(self, refs: str | Reference | Iterable[str | Reference] | None = None, fast: bool = False) -> VerifyResult:
        """Re-hash blobs (of ``refs``, or all); corrupt ones go to quarantine/.

        The models checked (``refs``, or every name) that lack their manifest
        or a file's blob, and are not damaged, are reported incomplete.
        """
        from .local.verify import damaged_names, missing_files, verify_blobs
        from .reports import IncompleteModel, VerifyResult

        digests = None
        with storage_errors("verifying", self.root):
            named = self._names.index().named()
            if refs is None:
                models = [(name, desc.digest) for name, desc in named]
            else:
                models, digests = [], []
                for ref in map(_ref, _items(refs, "refs", (str, Reference))):
                    digest = self._designated(ref)
                    try:
                        digests += [digest, *parse_manifest(self._blobs.read_manifest(digest), digest).blob_digests()]
                    except FileNotFoundError:
                        if ref.digest is not None:  # a digest the store never held: unknown, as in path
                            raise NotFound(f"the manifest of {ref} is not in the store", "'odai-store list' shows the models this store holds") from None
                        # A name whose manifest is gone: reported incomplete below.
                    models.append((str(ref) if ref.digest else ref.ref_name, digest))
            report = verify_blobs(self.layout, digests, fast)
            damaged = damaged_names(self.layout, named, report.corrupt)
            incomplete = missing_files(self.layout, [(name, digest) for name, digest in models if name not in damaged and digest not in report.corrupt])
        return VerifyResult(report, tuple(damaged), tuple(IncompleteModel(*found) for found in incomplete))

    def doctor(self, repair: bool = False) -> DoctorReport:
        """Check the whole store, hashing no blob (verify does); with ``repair``, fix what can be fixed without losing verified data, then check again.

        Problems are reported, not raised: the report's ``healthy`` says
        whether any remain (the command line exits 5 then). A store this
        constructor refuses (its odai-layout damaged) is checked with the
        module's ``doctor(path)``.
        """
        from .local.doctor import doctor

        with storage_errors("checking the store", self.root):
            return doctor(self.layout, repair, self._names.lock_timeout)

    def du(self) -> DiskUsage:
        """The filesystem's size and free space, and the bytes of the store's blobs, of what gc would free, of partial data and of quarantine/."""
        from .local.usage import disk_usage

        reclaimable = self.gc(dry_run=True).bytes_freed
        with storage_errors("measuring the store"):
            return disk_usage(self.layout, reclaimable)


def doctor(path: str | os.PathLike[str] | None = None, *, repair: bool = False, lock_timeout: float | None = 600) -> DoctorReport:
    """Store(path).doctor(repair), also for a store that Store() refuses to open (its odai-layout missing or damaged); never creates a store.

    NotFound if there is no directory at ``path``.
    """
    from .local.doctor import doctor as check
    from .local.opening import layout_version

    root = store_location(path)
    layout = StoreLayout(root)
    # None of the three files a store has: a directory doctor must not make a store of (--store ~/projects).
    if not root.is_dir() or not any(os.path.lexists(p) for p in (layout.odai_layout, layout.oci_layout, layout.index)):
        raise NotFound(f"no store at {root}", "check --store and $ODAI_STORE_HOME")
    try:
        shared = layout_version(layout)[1]
    except StoreError:  # damaged: doctor reports it, and with repair infers it
        shared = False
    with storage_errors("checking the store", root):
        return check(StoreLayout(root, shared), repair, lock_timeout)


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
