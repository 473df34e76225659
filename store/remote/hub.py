"""A Hugging Face Hub repository, or a mirror of the Hub's API, as a remote: the files of one revision as one model (spec/remotes.md#hugging-face-hub).

``hf://ORG/REPO[@REVISION][?include=GLOB&exclude=GLOB]`` is the remote; the
endpoint is ``$HF_ENDPOINT`` (a mirror), else the Hub. Resolving asks the
Hub's API for the revision's commit, then for the file list at that commit,
and synthesizes the model manifest from it: the same commit and filters
always give the same manifest. Large (LFS) files come with their SHA-256 in
the listing; an ordinary git file has only its git blob SHA-1, so it is
downloaded while resolving, checked against that, and carried to the store
with the resolution. Every file is read from ``/REPO/resolve/COMMIT/PATH``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode

import urllib3

from ..errors import IntegrityError, InvalidManifest, NetworkError, NotFound, StoreError, UsageError
from ..oci.descriptor import MANIFEST_TYPE, MAX_SIZE, Descriptor
from ..oci.digest import Digest, InvalidDigest, parse_digest, sha256_of
from ..oci.huggingface import COMMIT, REPO_PART, git_blob_sha1, hub_manifest
from ..oci.manifest import MAX_MANIFEST_BYTES, ModelFile, check_model_paths
from ..oci.reference import Reference
from .auth import Bearer
from .base import Action, Resolution, classify, nothing
from .min_rate import MinRate
from .transport import MAX_PAGES, HttpStream, Transport, next_page

__all__ = ["HubSpec", "HubSource", "parse_hub", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "https://huggingface.co"
_SCHEME = "hf://"
# Git files the Hub keeps outside LFS are small (it refuses more than 10 MiB); a mirror's bigger one is refused unread.
_GIT_FILE_MAX = 16 << 20
_SEPARATORS = re.compile(r"[._-]{2,}")
_NOT_TAG = re.compile(r"[^A-Za-z0-9._-]")
_TAG_FIRST = re.compile(r"[A-Za-z0-9_]")
_LISTING_MAX = 64 << 20  # one page of a tree listing: a repository of 100,000 files
_TOKEN_MAX = 4096
_NOT_FOUND = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound"})
_ACCESS_HINT = "the repository is gated or private: accept its terms on the Hub, then set HF_TOKEN or log in with 'hf auth login' (token file $HF_HOME/token)"


class HubSpec(NamedTuple):
    """A repository at a revision, and which of its files make the model."""

    repo: str  # ORG/REPO, as the Hub spells it
    revision: str = "main"  # a branch, tag or commit
    include: tuple[str, ...] = ()  # globs on the file path; none: every file
    exclude: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The remote's spelling, which a lockfile's pin records: ``hf://ORG/REPO@REVISION`` and the filters as a query."""
        query = urlencode([*(("include", g) for g in self.include), *(("exclude", g) for g in self.exclude)])
        return f"{_SCHEME}{self.repo}@{self.revision}" + (f"?{query}" if query else "")

    def local_reference(self) -> Reference:
        """The store's name for the model, without --as: ``hf/ORG/REPO:REVISION`` in the store's grammar (spec/names.md#hugging-face-names).

        Lowercased, each run of separators cut to its first; the revision a tag,
        characters a tag cannot hold turned into ``-``. Not reversible (two
        repositories may differ only in case): ``show`` prints the exact one.
        """
        name = "hf/" + "/".join(_SEPARATORS.sub(lambda m: m.group(0)[0], part.lower()) for part in self.repo.split("/"))
        tag = _NOT_TAG.sub("-", self.revision)[:128]
        if not _TAG_FIRST.match(tag):
            tag = "_" + tag[:127]
        return Reference(name, tag)

    def selects(self, path: str) -> bool:
        """Whether the file at ``path`` is one of the model's: matching an include glob (if any) and no exclude glob, as fnmatch matches (``*`` crosses ``/``)."""
        if self.include and not any(fnmatch.fnmatchcase(path, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(path, g) for g in self.exclude)


def parse_hub(text: str) -> HubSpec:
    """``hf://ORG/REPO[@REVISION][?include=GLOB&exclude=GLOB...]`` as a HubSpec; UsageError for anything else."""
    hint = "write hf://ORG/REPO or hf://ORG/REPO@REVISION (a branch, tag or commit)"
    if not text.startswith(_SCHEME):
        raise UsageError(f"{text!r} is not a Hugging Face repository", hint)
    rest, _, query = text[len(_SCHEME) :].partition("?")
    repo, at, revision = rest.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(REPO_PART.fullmatch(p) and ".." not in p for p in parts):
        raise UsageError(f"invalid Hugging Face repository {repo!r} in {text!r}", hint)
    if at and (not revision or any(c in revision for c in "\0\n\r\t ") or revision.startswith("/") or ".." in revision.split("/")):
        raise UsageError(f"invalid revision {revision!r} in {text!r}", hint)
    include: list[str] = []
    exclude: list[str] = []
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)) if query else ():
        if key not in ("include", "exclude") or not value:
            raise UsageError(f"invalid filter {key}={value!r} in {text!r}", "a Hub remote takes include=GLOB and exclude=GLOB")
        (include if key == "include" else exclude).append(value)
    return HubSpec(repo, revision or "main", tuple(include), tuple(exclude))


def hub_token(environ: os._Environ[str] | dict[str, str] = os.environ) -> str | None:
    """The user's Hub token: $HF_TOKEN, else the file the Hugging Face CLI writes ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token)."""
    if token := environ.get("HF_TOKEN", "").strip():
        return token
    home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    path = Path(environ.get("HF_TOKEN_PATH") or os.path.join(home, "token"))
    try:
        with open(path, "rb") as f:
            return f.read(_TOKEN_MAX).decode("utf-8", "replace").strip() or None
    except OSError:  # none, or not readable: anonymous
        return None


class _Entry(NamedTuple):
    path: str
    size: int
    git_oid: str  # the git blob SHA-1 (of the LFS pointer, for an LFS file)
    sha256: Digest | None  # published for LFS files only


class HubSource:
    """The files of ``spec`` on the Hub at ``endpoint``, resolved to a commit; read with ``token`` (sent to the endpoint's host only)."""

    def __init__(
        self,
        spec: HubSpec,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        token: str | None = None,
        ca_bundle: str | None = None,
        timeout: urllib3.Timeout | None = None,
        min_rate: MinRate = MinRate(),
    ) -> None:
        self.spec = spec
        self.url = spec.url
        self._endpoint = endpoint.rstrip("/")
        self._http = Transport(self._endpoint, auth=Bearer(token) if token else None, ca_bundle=ca_bundle, timeout=timeout, min_rate=min_rate)
        self._files: dict[Digest, tuple[str, str, int]] = {}  # a blob -> (commit, path, size) of a resolution: where open_blob reads it

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        """The model of the spec's files at its revision (or at the commit ``ref``'s tag names, as sync asks), synthesized from the listing."""
        revision = ref.tag if ref.tag is not None and COMMIT.fullmatch(ref.tag) else self.spec.revision
        commit = self._commit(revision)
        files, carried = [], []
        for entry in self._tree(commit):
            if not self.spec.selects(entry.path):
                continue
            if entry.sha256 is None:
                data = self._git_file(commit, entry)
                carried.append(data)
                digest = sha256_of(data)
            else:
                digest = entry.sha256
            files.append(ModelFile(entry.path, digest, entry.size))
            self._files[digest] = (commit, entry.path, entry.size)
        if not files:
            raise NotFound(f"{self.url}: no file of {self.spec.repo} at {commit[:12]} matches the filters", "check --include and --exclude")
        try:
            check_model_paths([f.path for f in files])
        except UsageError as err:
            raise IntegrityError(f"{self.url}: {err.message}", "the repository lists a path that cannot be laid out safely; it was not used") from None
        manifest = hub_manifest(self.spec.repo, commit, files)
        data = manifest.to_bytes()
        if len(data) > MAX_MANIFEST_BYTES:  # every reader refuses it unread: named, it would stop show and gc
            raise InvalidManifest(
                f"{self.url}: its {len(files)} files make a manifest of {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold",
                "take part of the repository with --include and --exclude",
            )
        return Resolution(Descriptor(MANIFEST_TYPE, sha256_of(data), len(data)), data, self.url, carried=tuple(carried), revision=commit)

    def _api(self, path: str) -> str:
        return f"{self._endpoint}/api/models/{self.spec.repo}/{path}"

    def _json(self, url: str, cap: int) -> tuple[object, Mapping[str, str]]:
        data, headers = self._get(url, cap)
        try:
            return json.loads(data), headers
        except (ValueError, RecursionError):
            raise NetworkError(f"{url}: not the Hub's JSON", "check HF_ENDPOINT: it must be the Hub or a mirror of its API") from None

    def _get(self, url: str, cap: int):
        try:
            return self._http.get_document(url, cap)
        except NetworkError as err:
            raise self._refused(err) from None

    def _refused(self, err: NetworkError) -> StoreError:
        """The Hub's refusals, named: an unknown repository, revision or file (exit 3), access refused (exit 4, naming the token).

        The Hub answers 401 for a repository that does not exist, as for one
        the user may not see: its X-Error-Code tells them apart.
        """
        if err.code in _NOT_FOUND:
            return NotFound(f"{err.message} ({err.code})", f"check the repository and revision of {self.url}")
        if err.status in (401, 403):
            return NetworkError(f"{err.message}: access to {self.spec.repo} refused", _ACCESS_HINT, status=err.status)
        return err

    def _commit(self, revision: str) -> str:
        doc, _ = self._json(self._api(f"revision/{quote(revision, safe='')}"), 64 << 20)
        commit = doc.get("sha") if isinstance(doc, dict) else None
        if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
            raise NetworkError(f"{self.url}: the Hub named no commit for {revision!r}", "check HF_ENDPOINT: it must be the Hub or a mirror of its API")
        return commit

    def _tree(self, commit: str) -> list[_Entry]:
        """Every file at ``commit``, over every page of the listing."""
        url = self._api(f"tree/{commit}/?recursive=true")
        out: list[_Entry] = []
        read: set[str] = set()
        for _ in range(MAX_PAGES):
            doc, headers = self._json(url, _LISTING_MAX)
            if not isinstance(doc, list):
                raise NetworkError(f"{url}: not a file listing", "check HF_ENDPOINT: it must be the Hub or a mirror of its API")
            out += [e for item in doc if (e := _entry(item, url)) is not None]
            read.add(url)
            following = next_page(url, headers, read)
            if following is None:
                return out
            url = following
        raise NetworkError(f"{url}: more than {MAX_PAGES} pages of files", "the listing does not end")

    def _file_url(self, commit: str, path: str) -> str:
        return f"{self._endpoint}/{self.spec.repo}/resolve/{commit}/{quote(path)}"

    def _git_file(self, commit: str, entry: _Entry) -> bytes:
        """A git file's bytes, checked against its git blob SHA-1 (the only digest the Hub states of it)."""
        if entry.size > _GIT_FILE_MAX:
            raise NetworkError(f"{self.url}: {entry.path} is {entry.size} bytes outside LFS, over the {_GIT_FILE_MAX}-byte limit", "tell the repository's owner to track it with LFS")
        url = self._file_url(commit, entry.path)
        data, _ = self._get(url, _GIT_FILE_MAX)
        if git_blob_sha1(data) != entry.git_oid or len(data) != entry.size:
            raise IntegrityError(f"{url}: the bytes served are not git blob {entry.git_oid} of {entry.size} bytes", "the server sends damaged data; try again later or another endpoint")
        return data

    def names(self) -> list[tuple[str, Digest | None]]:
        raise UsageError(f"{self.url} is one repository, not a remote that names models", "show it with 'odai-store show --remote hf://ORG/REPO NAME'")

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> HttpStream:
        where = self._files.get(digest)
        if where is None:
            raise NotFound(f"{self.url}: {digest} is no file of the revision resolved", "a Hub remote serves the files of the models it resolved")
        commit, path, size = where
        try:
            return self._http.open_range(self._file_url(commit, path), start, end, validator, size=size)
        except NetworkError as err:
            raise self._refused(err) from None

    def classify(self, err: StoreError) -> Action:
        return classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        raise err  # a token is the user's: none to renew

    def close(self) -> None:
        self._http.close()


def _entry(item: object, url: str) -> _Entry | None:
    """A file of a tree listing; None for a directory; NetworkError for an entry that is neither."""
    if isinstance(item, dict) and item.get("type") == "directory":
        return None
    if isinstance(item, dict) and item.get("type") == "file":
        path, size, oid, lfs = item.get("path"), item.get("size"), item.get("oid"), item.get("lfs")
        if isinstance(path, str) and type(size) is int and 0 <= size <= MAX_SIZE and isinstance(oid, str) and COMMIT.fullmatch(oid):
            if lfs is None:
                return _Entry(path, size, oid, None)
            if isinstance(lfs, dict) and lfs.get("size") == size:
                try:
                    return _Entry(path, size, oid, parse_digest(f"sha256:{lfs.get('oid')}"))
                except InvalidDigest:
                    pass
    raise NetworkError(f"{url}: a file entry the Hub would not list: {str(item)[:200]}", "check HF_ENDPOINT: it must be the Hub or a mirror of its API")
