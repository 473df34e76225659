"""An OCI image layout served over HTTP(S) by any static web server (spec/remotes.md).

What is particular to a layout: the URLs (``<base>/index.json``,
``<base>/blobs/sha256/<hex>``) and resolving a name in index.json. Every
request goes through the remote's Transport (transport.py): connections,
proxy, TLS, authentication, and what each status means.
"""

from __future__ import annotations

from collections.abc import Callable

import urllib3

from ..errors import StoreError
from ..oci.digest import Digest, blob_path
from ..oci.manifest import MAX_MANIFEST_BYTES
from ..oci.reference import Reference
from ..redact import scrub
from .auth import Auth
from .base import MAX_INDEX_BYTES, Action, Resolution, classify, names_in_layout, nothing, resolve_in_layout
from .min_rate import MinRate
from .transport import HttpStream, Transport

__all__ = ["HttpLayout"]


class HttpLayout:
    """A remote OCI image layout at an http:// or https:// base URL."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        ca_bundle: str | None = None,
        timeout: urllib3.Timeout | None = None,
        min_rate: MinRate = MinRate(),
    ) -> None:
        self.url = url.rstrip("/")
        self._http = Transport(self.url, auth=auth, ca_bundle=ca_bundle, timeout=timeout, min_rate=min_rate)

    def blob_url(self, digest: Digest) -> str:
        return f"{self.url}/{blob_path(digest)}"

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        # Named, and recorded as the locator a lockfile keeps, without credentials: a lockfile is
        # shared (committed), and urllib3 sends no URL userinfo anyway (spec/fetching.md#credentials).
        shown = scrub(self.url)
        return resolve_in_layout(ref, have, self._read_index, self.read_manifest, scrub(self._index_url), shown, f"check the name; 'odai-store list --remote {shown}' lists the models it holds")

    def names(self) -> list[tuple[str, Digest | None]]:
        return names_in_layout(self._read_index, scrub(self._index_url))

    @property
    def _index_url(self) -> str:
        return f"{self.url}/index.json"

    def _read_index(self) -> bytes:
        return self._http.get_small(self._index_url, MAX_INDEX_BYTES)

    def read_manifest(self, digest: Digest) -> bytes:
        return self._http.get_small(self.blob_url(digest), MAX_MANIFEST_BYTES)

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        return self._http.open_range(self.blob_url(digest), start, end, validator)

    def classify(self, err: StoreError) -> Action:
        return classify(err, self._http.auth.refreshable)

    def reauthenticate(self, err: StoreError) -> None:
        self._http.reauthenticate(err)

    def close(self) -> None:
        """Release the connections. Safe from another thread: a read of index.json or a manifest in progress ends (NetworkError)."""
        self._http.close()
