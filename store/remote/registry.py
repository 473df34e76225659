"""A registry of the OCI distribution spec as a remote: manifests by tag or digest, blobs by digest with ranges (spec/remotes.md#registries).

``oci://HOST[:PORT]/NAMESPACE`` is the remote; a model ``NAME:TAG`` on it is
repository ``NAMESPACE/NAME`` under ``TAG``. A registry keeps blobs per
repository, so a resolution hands the engine the repository it found the
model in (``Resolution.blobs``), whose blob URLs are
``/v2/<repository>/blobs/<digest>``. Every request goes through the
remote's Transport: redirects to blob storage (no credentials to another
host), ranges, statuses, the token flow of ``WWW-Authenticate``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from ..errors import IntegrityError, NetworkError, NotFound, StoreError, UsageError
from ..oci.descriptor import DOCKER_LIST_TYPE, DOCKER_MANIFEST_TYPE, INDEX_TYPE, MANIFEST_TYPE, Descriptor
from ..oci.digest import Digest, sha256_of
from ..oci.index import MAX_INDEX_BYTES
from ..oci.manifest import MAX_MANIFEST_BYTES
from ..oci.reference import Reference
from .auth import TokenService
from .base import Action, Resolution, classify, nothing
from .credentials import is_loopback
from .min_rate import MinRate
from .registry_credentials import Login
from .transport import MAX_PAGES, HttpStream, Transport, next_page

__all__ = ["Registry", "RegistrySink"]

# Asked for in every manifest request: without the Docker types a registry
# may convert a Docker manifest to the deprecated schema 1, or refuse.
_ACCEPT = ", ".join((MANIFEST_TYPE, INDEX_TYPE, DOCKER_MANIFEST_TYPE, DOCKER_LIST_TYPE))


class Registry:
    """A remote registry at ``base`` (``http[s]://HOST[:PORT]``) whose models live under ``namespace`` (may be empty)."""

    def __init__(
        self,
        base: str,
        namespace: str = "",
        *,
        login: Callable[[], Login | None] = lambda: None,
        ca_bundle: str | None = None,
        timeout: urllib3.Timeout | None = None,
        min_rate: MinRate = MinRate(),
    ) -> None:
        self.base = base.rstrip("/")
        self.namespace = namespace.strip("/")
        self.host = self.base.split("://", 1)[1]
        self.url = f"oci://{self.host}/{self.namespace}" if self.namespace else f"oci://{self.host}"
        # A registry's logins are the user's docker ones: the hint says where they are read from.
        refused = f"the registry wants a login with access to the repository: 'docker login {self.host}', or an auth file named by $ODAI_STORE_REGISTRY_AUTH"
        self._http = Transport(self.base, ca_bundle=ca_bundle, timeout=timeout, min_rate=min_rate, refused_hint=refused)
        # Anonymous until the registry challenges, then what it asks for. A
        # token is scoped to one repository: each has its own, so that the
        # segments of two models do not take turns invalidating one token.
        self._login = login
        self._auths: dict[str, TokenService] = {}
        # Plain http to a host elsewhere (--insecure-registry): no login goes there.
        split = urlsplit(self.base)
        self._insecure = split.scheme == "http" and not is_loopback(split.hostname or "")
        self._auths_lock = threading.Lock()

    def auth(self, repository: str) -> TokenService:
        with self._auths_lock:
            return self._auths.setdefault(repository, TokenService(self._login, insecure=self._insecure))

    def in_repository(self, name: str) -> _Repository:
        """The repository of the model ``name``: ``NAMESPACE/NAME``, or for a registry reference of this host (``HOST/REPOSITORY``) that repository."""
        if name.startswith(f"{self.host}/"):
            return _Repository(self, name, name[len(self.host) + 1 :])
        return _Repository(self, name, f"{self.namespace}/{name}" if self.namespace else name)

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        """The manifest ``ref`` names in its repository, checked against the digest asked for and the one the registry states."""
        repository = self.in_repository(ref.name)
        held = have(ref.digest) if ref.digest is not None else None
        if held is not None:
            return Resolution(Descriptor(MANIFEST_TYPE, ref.digest, len(held)), held, self.url, blobs=repository)  # type: ignore[arg-type]  # ref.digest is set
        url = f"{repository.base}/manifests/{ref.digest or ref.tag}"
        data, headers = self._http.get_document(url, MAX_MANIFEST_BYTES, headers={"Accept": _ACCEPT}, auth=repository.auth)
        digest = sha256_of(data)
        stated = headers.get("Docker-Content-Digest")
        for expected, whose in ((str(ref.digest) if ref.digest else None, "asked for"), (stated, "the registry states")):
            if expected is not None and expected != str(digest):
                raise IntegrityError(
                    f"{url}: the manifest's bytes hash to {digest}, not {expected} as {whose}", "the registry serves a damaged or replaced manifest; tell its owner"
                )
        media_type = headers.get("Content-Type", MANIFEST_TYPE).split(";", 1)[0].strip()
        return Resolution(Descriptor(media_type, digest, len(data)), data, self.url, blobs=repository)

    def names(self) -> list[tuple[str, Digest | None]]:
        """``NAME:TAG`` of every tag of every repository under the namespace, from ``_catalog`` and ``tags/list``; no digests (spec/remotes.md#listing-a-remote)."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        try:
            repositories = self._pages(f"{self.base}/v2/_catalog", "repositories", self.auth(""))
        except (NotFound, NetworkError) as err:
            if isinstance(err, NetworkError) and err.status not in (401, 403, 404):
                raise
            raise UsageError(f"{self.host} does not list its repositories ({err.message})", f"show one model: 'odai-store show --remote {self.url} NAME:TAG'") from None
        out: list[tuple[str, Digest | None]] = []
        for repository in repositories:
            if repository.startswith(prefix):
                out += [(f"{repository[len(prefix):]}:{tag}", None) for tag in self.in_repository(repository[len(prefix):]).tags()]
        return sorted(out)

    def _pages(self, url: str, member: str, auth: TokenService) -> list[str]:
        """The strings of ``member`` over every page of a listing, following ``Link: <...>; rel="next"``; each page bounded as an index.json is."""
        out: list[str] = []
        read: set[str] = set()
        for _ in range(MAX_PAGES):
            data, headers = self._http.get_document(url, MAX_INDEX_BYTES, auth=auth)
            try:
                items = json.loads(data).get(member) or []
            except (ValueError, AttributeError, RecursionError):
                items = None
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise NetworkError(f"{url}: not a listing of {member}", "the registry does not follow the distribution spec")
            out += items
            read.add(url)
            following = next_page(url, headers, read)
            if following is None:
                return out
            url = following
        raise NetworkError(f"{url}: more than {MAX_PAGES} pages of {member}", "the registry's listing does not end")

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        # A blob of a model another remote resolved: which repository holds it is unknown here.
        raise NotFound(f"{self.url}: no repository known for {digest}", "a registry serves the blobs of the models it resolved")

    def classify(self, err: StoreError) -> Action:
        return classify(err, refreshable=True)

    def reauthenticate(self, err: StoreError) -> None:
        self._http.reauthenticate(err)

    def close(self) -> None:
        """Release the connections; reads in progress end (NetworkError), those of its repositories' blobs too."""
        self._http.close()


class _Repository:
    """One repository of a registry as the Source of a model's blobs; its registry resolves and owns the connections."""

    def __init__(self, registry: Registry, model: str, name: str) -> None:
        self._registry = registry
        self.model = model  # NAME of the models it holds
        self.name = name  # the repository: NAMESPACE/NAME
        self.auth = registry.auth(name)
        self.base = f"{registry.base}/v2/{name}"
        self.url = f"oci://{registry.host}/{name}"

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        return self._registry.resolve(ref, have)

    def tags(self) -> list[str]:
        return self._registry._pages(f"{self.base}/tags/list", "tags", self.auth)

    def names(self) -> list[tuple[str, Digest | None]]:
        """This repository's tags as ``NAME:TAG``: the one model NAME under every tag."""
        return sorted((f"{self.model}:{tag}", None) for tag in self.tags())

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        return self._registry._http.open_range(f"{self.base}/blobs/{digest}", start, end, validator, auth=self.auth)

    def classify(self, err: StoreError) -> Action:
        return self._registry.classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        self._registry.reauthenticate(err)

    def close(self) -> None:
        """Nothing of its own: the registry's close ends this repository's reads."""


class RegistrySink:
    """A registry written to, as the OCI distribution spec's push does it (spec/remotes.md#writing-to-a-registry).

    A blob is uploaded in chunks (``POST`` to open an upload, a ``PATCH`` per
    write, ``PUT ?digest=`` to commit, which the registry checks against the
    bytes); the uploads this sink began and did not finish are resumed where
    the registry's bytes stop. ``name`` of each call is the model's NAME: the
    repository ``NAMESPACE/NAME`` of ``registry``.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.url = registry.url
        self._open: dict[tuple[str, Digest], str] = {}  # (repository, blob) -> the location of its unfinished upload
        self._held: dict[Digest, str] = {}  # a blob -> a repository of this registry seen to hold it: mounted from there

    def _repository(self, name: str) -> _Repository:
        return self._registry.in_repository(name)

    def tagged(self, ref: Reference) -> Digest | None:
        try:
            return self._registry.resolve(ref).descriptor.digest
        except NotFound:
            return None

    def classify(self, err: StoreError) -> Action:
        return self._registry.classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        self._registry.reauthenticate(err)

    def has_blob(self, name: str, digest: Digest, size: int) -> bool:
        repository = self._repository(name)
        try:
            headers = self._registry._http.send("HEAD", f"{repository.base}/blobs/{digest}", auth=repository.auth, ok=_OK).headers
        except NotFound:
            return False
        held = headers.get("Content-Length") == str(size)
        if held:
            self._held[digest] = repository.name
        return held

    def begin_blob(self, name: str, digest: Digest, size: int) -> _Upload:
        repository, http = self._repository(name), self._registry._http
        if self.has_blob(name, digest, size):
            return _Upload(self, repository, digest, size, None, size)
        location = self._open.pop((repository.name, digest), None)
        if location is not None:
            try:
                return _Upload(self, repository, digest, size, location, _received(http.send("GET", location, auth=repository.auth, ok=_OK).headers))
            except NotFound:
                pass  # the registry dropped it (uploads expire): start again
        uploads = f"{repository.base}/blobs/uploads/"
        if (source := self._held.get(digest)) is not None:
            # Held in another repository of this registry: a mount links it there (201) without a byte
            # sent; a registry that will not (202) has opened an ordinary upload instead.
            uploads += "?" + urlencode({"mount": str(digest), "from": source})
        answer = http.send("POST", uploads, auth=repository.auth, ok=_OK)
        if answer.status == 201:
            self._held[digest] = repository.name
            return _Upload(self, repository, digest, size, None, size)
        return _Upload(self, repository, digest, size, _location(repository, answer.headers), 0)

    def put_manifest(self, name: str, digest: Digest, data: bytes, media_type: str) -> None:
        if sha256_of(data) != digest:
            raise IntegrityError(f"the manifest's bytes hash to {sha256_of(data)}, not {digest}", "the manifest was changed on its way; push it again")
        self._put_manifest(self._repository(name), str(digest), data, media_type)

    def tag(self, ref: Reference, descriptor: Descriptor) -> None:
        if ref.digest is not None or ref.tag is None:
            raise UsageError(f"cannot tag {ref}: a digest is no tag", "name the tag NAME:TAG")
        repository = self._repository(ref.name)
        # A registry tags by putting the manifest's bytes again, under the tag: they come from the registry itself.
        data, headers = self._registry._http.get_document(
            f"{repository.base}/manifests/{descriptor.digest}", MAX_MANIFEST_BYTES, headers={"Accept": _ACCEPT}, auth=repository.auth
        )
        if sha256_of(data) != descriptor.digest:
            raise IntegrityError(f"{repository.url}: the registry's manifest {descriptor.digest} hashes to {sha256_of(data)}", "tell the registry's owner")
        self._put_manifest(repository, ref.tag, data, headers.get("Content-Type", descriptor.media_type).split(";", 1)[0].strip())

    def _put_manifest(self, repository: _Repository, reference: str, data: bytes, media_type: str) -> None:
        self._registry._http.send("PUT", f"{repository.base}/manifests/{reference}", headers={"Content-Type": media_type}, body=data, auth=repository.auth, ok=_OK)

    def close(self) -> None:
        self._registry.close()


_OK = frozenset({200, 201, 202, 204})
# A blob up to this size goes in the one PUT that commits it: a config or a
# small JSON file costs one request instead of two. Larger ones go in PATCHes
# the registry keeps, which an interrupted push resumes.
MONOLITHIC_MAX = 64 << 10
# The most bytes of one PATCH of write_rest. Distribution's filesystem driver
# fsyncs the upload at the end of every request: in PATCHes of 16 MiB, a
# third of a 2 GiB push on loopback was spent waiting for those answers. One
# PATCH for all of a large blob would put its whole fsync inside one read
# timeout, and lose it all to a cut: Distribution drops an upload whose PATCH
# was cut off (its upload location no longer matches the bytes it holds), so
# a push resumes only from the end of the last PATCH answered.
PATCH_MAX = 256 << 20


def _location(repository: _Repository, headers: Mapping[str, str]) -> str:
    """Where an upload goes on: the ``Location`` of the registry's last answer, absolute."""
    location = headers.get("Location")
    if not location:
        raise NetworkError(f"{repository.url}: the registry gave no upload location", "the registry does not follow the distribution spec")
    return urljoin(repository.base, location)


def _received(headers: Mapping[str, str]) -> int:
    """How many bytes of an upload the registry holds, from its ``Range: 0-<last>`` (none: 0)."""
    span = headers.get("Range", "")
    first, _, last = span.partition("-")
    return int(last) + 1 if first == "0" and last.isdigit() else 0


class _Upload:
    """One blob's upload to a registry: ``offset`` is what the registry holds; a write is a ``PATCH``."""

    def __init__(self, sink: RegistrySink, repository: _Repository, digest: Digest, size: int, location: str | None, offset: int) -> None:
        self._sink, self._repository = sink, repository
        self._digest, self._size = digest, size
        self._location = location  # None: the registry holds the blob already
        self.offset = offset
        self.url = location or f"{repository.base}/blobs/{digest}"
        # The bytes of a small blob, sent with the commit; None: each write is sent as it comes.
        self._pending: bytearray | None = bytearray() if location is not None and offset == 0 and size <= MONOLITHIC_MAX else None

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self._size:
            raise IntegrityError(f"{self.url}: {self.offset + len(data)} bytes for a blob of {self._size}", "the data is not the blob's")
        if not data or self._location is None:
            return
        if self._pending is not None:
            self._pending += data
            self.offset += len(data)
            return
        headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{self.offset}-{self.offset + len(data) - 1}", "Content-Length": str(len(data))}
        answer = self._sink._registry._http.send("PATCH", self._location, headers=headers, body=data, auth=self._repository.auth, ok=_OK)
        self._location = _location(self._repository, answer.headers)
        self.offset += len(data)

    def write_rest(self, blocks: Iterable[bytes | memoryview]) -> None:
        if self._location is None or self._pending is not None:  # held already, or a small blob sent with the commit
            for block in blocks:
                self.write(bytes(block))
        else:
            rest = _Rest(blocks, self.url)
            while self.offset < self._size:
                length = min(PATCH_MAX, self._size - self.offset)
                headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{self.offset}-{self.offset + length - 1}", "Content-Length": str(length)}
                answer = self._sink._registry._http.send("PATCH", self._location, headers=headers, body=rest.take(length), auth=self._repository.auth, ok=_OK)
                self._location = _location(self._repository, answer.headers)
                self.offset += length
            rest.end()
        if self.offset != self._size:
            raise IntegrityError(f"{self.url}: {self.offset} bytes for a blob of {self._size}", "the data is not the blob's")

    def commit(self) -> None:
        location, self._location = self._location, None
        if location is None:
            return  # present already
        http, auth = self._sink._registry._http, self._repository.auth
        if self.offset != self._size:
            http.send("DELETE", location, auth=auth, ok=_OK | {404})
            raise IntegrityError(f"{self.url}: {self.offset} bytes sent for a blob of {self._size}", "the data is not the blob's")
        body, headers = (bytes(self._pending), {"Content-Type": "application/octet-stream"}) if self._pending is not None else (None, None)
        try:
            http.send("PUT", f"{location}{'&' if '?' in location else '?'}digest={self._digest}", headers=headers, body=body, auth=auth, ok=_OK)
        except NetworkError as err:
            if err.status != 400:  # DIGEST_INVALID: the registry hashed other bytes
                raise
            http.send("DELETE", location, auth=auth, ok=_OK | {404})
            raise IntegrityError(f"{self.url}: the registry refused the bytes sent as {self._digest} ({err.message})", "the data is not the blob's") from None
        self._sink._held[self._digest] = self._repository.name

    def close(self) -> None:
        """Keep the unfinished upload's location, for this sink's next ``begin_blob`` of the blob to resume (a small blob's from 0)."""
        if self._location is not None:
            self._sink._open[(self._repository.name, self._digest)] = self._location
            self._location = None


class _Rest:
    """The blocks of a write_rest, taken as the bodies of PATCHes of set lengths; a block that straddles two is cut."""

    def __init__(self, blocks: Iterable[bytes | memoryview], url: str) -> None:
        self._blocks = iter(blocks)
        self._held = memoryview(b"")  # the part of the last block the previous body did not take
        self._url = url

    def take(self, length: int) -> Iterator[memoryview]:
        """A body of exactly ``length`` bytes; IntegrityError, raised into the request (which then ends), if the blocks end sooner."""
        left = length
        while left:
            if not self._held:
                block = next(self._blocks, None)
                if block is None:
                    raise IntegrityError(f"{self._url}: the data ended {left} bytes short of the blob", "the data is not the blob's")
                self._held = memoryview(block)
                continue
            part, self._held = self._held[:left], self._held[left:]
            left -= len(part)
            yield part

    def end(self) -> None:
        """IntegrityError if the blocks hold more than the bodies took."""
        if self._held or any(len(block) for block in self._blocks):
            raise IntegrityError(f"{self._url}: more bytes than the blob's size", "the data is not the blob's")
