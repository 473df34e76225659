"""One file at any http(s) URL as a remote of its own (fetch --url): the only blob of a one-file model whose manifest it synthesizes.

It knows the file's digest from the user (--sha256) and asks the server only
for its size, unless the caller knows it. It sends no credentials
(spec/fetching.md#credentials): the URL may be anyone's.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from ..errors import StoreError, UsageError
from ..oci.descriptor import MANIFEST_TYPE, Descriptor
from ..oci.digest import Digest, sha256_of
from ..oci.manifest import Manifest, ModelFile, check_model_path
from ..oci.reference import Reference
from .base import Action, Resolution, classify, nothing
from .transport import HttpStream, Transport

__all__ = ["UrlFile"]


class UrlFile:
    def __init__(self, url: str, sha256: Digest, filename: str | None = None, *, size: int | None = None, ca_bundle: str | None = None) -> None:
        self.url = url
        self._http = Transport(url, ca_bundle=ca_bundle)  # first: it refuses a URL that does not parse
        self._digest = sha256
        self._filename = check_model_path(filename or unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "model")
        self._size = size  # the size of the blob, when the store holds it already: no request at all then

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        """Any NAME[:TAG] names this one file; its manifest lists it alone, without chunk digests (the store measures them)."""
        if ref.digest is not None:
            raise UsageError(f"--url needs NAME[:TAG], not a digest: {ref}", "name the model NAME[:TAG]")
        size = self._size if self._size is not None else self._http.length(self.url)
        data = Manifest.of([ModelFile(self._filename, self._digest, size)]).to_bytes()
        return Resolution(Descriptor(MANIFEST_TYPE, sha256_of(data), len(data)), data, self.url, synthesized=True)

    def names(self) -> list[tuple[str, Digest | None]]:
        raise UsageError(f"{self.url} is one file, not a remote that names models", "list a remote layout: an http://, https:// or file:// URL, or a path")

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        return self._http.open_range(self.url, start, end, validator)

    def classify(self, err: StoreError) -> Action:
        return classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        raise err  # no credentials, so none to renew: classify never asks for it

    def close(self) -> None:
        self._http.close()
