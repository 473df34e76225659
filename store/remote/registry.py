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

import threading
from collections.abc import Callable

import urllib3

from ..errors import IntegrityError, NotFound, StoreError
from ..oci.descriptor import INDEX_TYPE, MANIFEST_TYPE, Descriptor
from ..oci.digest import Digest, sha256_of
from ..oci.manifest import MAX_MANIFEST_BYTES
from ..oci.reference import Reference
from .auth import TokenService
from .base import Action, Resolution, classify, nothing
from .min_rate import MinRate
from .registry_credentials import Login
from .transport import HttpStream, Transport

__all__ = ["Registry", "DOCKER_MANIFEST_TYPE", "DOCKER_LIST_TYPE"]

DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
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
        self._http = Transport(self.base, ca_bundle=ca_bundle, timeout=timeout, min_rate=min_rate)
        # Anonymous until the registry challenges, then what it asks for. A
        # token is scoped to one repository: each has its own, so that the
        # segments of two models do not take turns invalidating one token.
        self._login = login
        self._auths: dict[str, TokenService] = {}
        self._auths_lock = threading.Lock()

    def auth(self, repository: str) -> TokenService:
        with self._auths_lock:
            return self._auths.setdefault(repository, TokenService(self._login))

    def repository(self, ref: Reference) -> str:
        return f"{self.namespace}/{ref.name}" if self.namespace else ref.name

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        """The manifest ``ref`` names in its repository, checked against the digest asked for and the one the registry states."""
        repository = _Repository(self, self.repository(ref))
        held = have(ref.digest) if ref.digest is not None else None
        if held is not None:
            return Resolution(Descriptor(MANIFEST_TYPE, ref.digest, len(held)), held, self.url, blobs=repository)  # type: ignore[arg-type]  # ref.digest is set
        url = f"{repository.base}/manifests/{ref.digest or ref.tag}"
        data, headers = self._http.get_document(url, MAX_MANIFEST_BYTES, headers={"Accept": _ACCEPT}, auth=self.auth(repository.name))
        digest = sha256_of(data)
        stated = headers.get("Docker-Content-Digest")
        for expected, whose in ((str(ref.digest) if ref.digest else None, "asked for"), (stated, "the registry states")):
            if expected is not None and expected != str(digest):
                raise IntegrityError(
                    f"{url}: the manifest's bytes hash to {digest}, not {expected} as {whose}", "the registry serves a damaged or replaced manifest; tell its owner"
                )
        media_type = headers.get("Content-Type", MANIFEST_TYPE).split(";", 1)[0].strip()
        return Resolution(Descriptor(media_type, digest, len(data)), data, self.url, blobs=repository)

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

    def __init__(self, registry: Registry, name: str) -> None:
        self._registry = registry
        self.name = name
        self.base = f"{registry.base}/v2/{name}"
        self.url = f"oci://{registry.host}/{name}"

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        return self._registry.resolve(ref, have)

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        return self._registry._http.open_range(f"{self.base}/blobs/{digest}", start, end, validator, auth=self._registry.auth(self.name))

    def classify(self, err: StoreError) -> Action:
        return self._registry.classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        self._registry.reauthenticate(err)

    def close(self) -> None:
        """Nothing of its own: the registry's close ends this repository's reads."""
