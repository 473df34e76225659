"""olah, a self-hosted Hugging Face Hub mirror, serving git repositories the tests build, offline, on 127.0.0.1.

olah (PyPI) lives in a venv of its own, ``.venv-olah`` (scripts/test makes it):
it pins its own huggingface_hub and web stack. In its offline local-mirror
mode it serves every non-bare git repository under ``<mirrors>/models/ORG/NAME``
with the Hub's HTTP API, reading commits, trees and blobs with GitPython on
each request, so repositories built or changed while it runs are served
without a restart. What it answers is pinned by tests/integration/test_olah_fixture.py.

Terms: a *git file* is committed as its bytes; an *LFS file* is committed as
git-lfs pointer text, its bytes kept at
``.git/lfs/objects/<sha256[0:2]>/<sha256[2:4]>/<sha256>``, as git-lfs leaves
them. Each commit is written by one ``git fast-import``, whatever the number
of files, and LFS objects by hand: no git-lfs, no checkout (olah reads only
commits and ``.git/lfs``), no user or system git config.
Requests go through ``http.client`` straight to 127.0.0.1, so no proxy
variable of the environment can send them anywhere else.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.nginx import free_port
from tests.support.processes import stop_process

__all__ = ["HubFile", "HubRepo", "Olah", "Response", "find_olah", "git_blob_sha1", "lfs_pointer", "start_olah"]

OLAH_VENV = Path(__file__).resolve().parents[2] / ".venv-olah"

# The Hub's default .gitattributes (a subset: the weights formats) decides
# which files a new repository stores with LFS; any file over 10 MB must be LFS.
LFS_PATTERNS = ("*.bin", "*.gguf", "*.h5", "*.onnx", "*.pt", "*.pth", "*.safetensors", "*.tflite", "*.zip")
LFS_OVER = 10 * 1000 * 1000

# Commits get dates one second apart from here, so a repository built twice
# from the same files has the same commit ids, and each new head of main is
# newer than the last: olah answers the route without a revision with the
# seeded head of the newest date.
EPOCH = 1767225600  # 2026-01-01T00:00:00Z


def find_olah() -> str | None:
    """olah's command, ``olah-cli``, from ``.venv-olah`` (made by scripts/test) or PATH; None if neither has it."""
    own = OLAH_VENV / "bin" / "olah-cli"
    if os.access(own, os.X_OK):
        return str(own)
    return shutil.which("olah-cli")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob of ``data``: what the Hub publishes as ``oid`` (and as ETag) for a git file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer text committed for ``data`` (spec v1: version, oid, size; each line ends with LF)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


@dataclass(frozen=True)
class HubFile:
    """One file at one commit. ``git_sha1`` is the id of the blob committed: the pointer's for an LFS file (the tree's
    ``oid``), the bytes' for a git file (the tree's ``oid`` and its only published digest)."""

    path: str
    data: bytes
    lfs: bool
    sha256: str
    git_sha1: str

    @classmethod
    def of(cls, path: str, data: bytes, lfs: bool) -> HubFile:
        committed = lfs_pointer(data) if lfs else data
        return cls(path, data, lfs, hashlib.sha256(data).hexdigest(), git_blob_sha1(committed))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def committed(self) -> bytes:
        """What git holds for this path: the pointer text of an LFS file, the bytes of a git file."""
        return lfs_pointer(self.data) if self.lfs else self.data


@dataclass
class HubRepo:
    """A model repository under olah's mirrors dir, with what each of its commits holds.

    ``branches`` and ``tags`` map names to commit ids and follow ``commit``,
    ``branch`` and ``tag``; ``commits`` maps each commit id to its files by path.
    """

    repo_id: str  # ORG/NAME
    directory: Path
    seeds: Path  # olah's cache dir for this repo's revision metadata (<repos-path>/api/models/ORG/NAME/revision)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)

    def resolve(self, revision: str) -> str:
        """The commit id of a branch, tag or commit id (full or unique prefix); KeyError if none."""
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        matches = [sha for sha in self.commits if sha.startswith(revision)]
        if len(revision) >= 4 and len(matches) == 1:
            return matches[0]
        raise KeyError(f"{self.repo_id} has no revision {revision!r}")

    def files(self, revision: str = "main") -> dict[str, HubFile]:
        """The files at ``revision`` by path."""
        return self.commits[self.resolve(revision)]

    def commit(self, files: Mapping[str, bytes], *, branch: str = "main", remove: Iterable[str] = (), lfs: Iterable[str] | None = None, message: str = "update") -> str:
        """Commit ``files`` (path -> bytes; added or replaced) and the removal of ``remove`` on top of ``branch`` (a new
        branch starts empty) and move ``branch`` to the new commit; returns its id.

        ``lfs`` names the paths to store with LFS; None: the Hub's rule (a weights format by name, or over 10 MB).
        A ``.gitattributes`` naming the LFS files is added unless ``files`` or the branch already has one, as the
        Hub's own repositories do. A new head of main is seeded as olah's answer to the route without a revision.
        """
        chosen = set(lfs) if lfs is not None else {p for p in files if _hub_lfs(p, files[p])}
        parent = self.branches.get(branch)
        tree = dict(self.commits[parent]) if parent else {}
        changed = {p: HubFile.of(p, data, p in chosen) for p, data in files.items()}
        if ".gitattributes" not in files and ".gitattributes" not in tree:
            changed[".gitattributes"] = HubFile.of(".gitattributes", _gitattributes(chosen), False)
        removed = [p for p in remove if p in tree]
        for path in removed:
            del tree[path]
        tree.update(changed)
        for item in changed.values():
            if item.lfs:
                _write_lfs_object(self.directory, item)
        when = EPOCH + len(self.commits)
        stream = [f"commit refs/heads/{branch}".encode(), f"committer Test <test@odai.invalid> {when} +0000".encode(), *_data(message.encode())]
        if parent:
            stream.append(f"from {parent}".encode())
        stream += [f"D {_quote(p)}".encode() for p in removed]
        for item in changed.values():
            stream += [f"M 100644 inline {_quote(item.path)}".encode(), *_data(item.committed)]
        _git(self.directory, "fast-import", "--quiet", "--date-format=raw", stdin=b"\n".join(stream) + b"\n")
        sha = _git(self.directory, "rev-parse", f"refs/heads/{branch}").decode().strip()
        self.commits[sha] = tree
        self.branches[branch] = sha
        if branch == "main":
            self._seed(sha, when)
        return sha

    def branch(self, name: str, at: str = "main") -> str:
        """Create or move branch ``name`` to the commit of ``at``; returns that commit id."""
        sha = self.resolve(at)
        _git(self.directory, "update-ref", f"refs/heads/{name}", sha)
        self.branches[name] = sha
        return sha

    def tag(self, name: str, at: str = "main") -> str:
        """Create or move a lightweight tag ``name`` at the commit of ``at``; returns that commit id."""
        sha = self.resolve(at)
        _git(self.directory, "update-ref", f"refs/tags/{name}", sha)
        self.tags[name] = sha
        return sha

    def _seed(self, sha: str, when: int) -> None:
        # Offline, olah answers GET /api/models/ORG/NAME (model_info, repo_exists) with the cached head of the
        # newest lastModified, or 401 if none is cached: a real Hub knows its default branch, olah only its cache.
        seed = self.seeds / sha / "meta_head.json"
        seed.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        seed.write_text(json.dumps({"sha": sha, "lastModified": stamp}))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Olah:
    """A running olah: ``endpoint`` is what HF_ENDPOINT names; ``model`` builds a repository it serves."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mirrors(self) -> Path:
        return self.base / "mirrors"

    @property
    def repos(self) -> Path:
        """olah's own cache (``repos-path``), where the revision metadata is seeded."""
        return self.base / "repos"

    def model(self, repo_id: str, files: Mapping[str, bytes], *, lfs: Iterable[str] | None = None, branch: str = "main") -> HubRepo:
        """A new model repository ``ORG/NAME`` whose first commit on ``branch`` holds ``files`` (see ``HubRepo.commit``
        for ``lfs``); FileExistsError if the repository exists (each test names its own)."""
        org, name = repo_id.split("/")
        directory = self.mirrors / "models" / org / name
        directory.mkdir(parents=True)
        _git(directory, "init", "--quiet", f"--initial-branch={branch}")
        repo = HubRepo(repo_id, directory, self.repos / "api" / "models" / org / name / "revision")
        repo.commit(files, branch=branch, lfs=lfs, message="initial commit")
        return repo

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes | None = None) -> Response:
        """One request to olah (``path`` starts with ``/``); redirects are not followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def stop(self) -> None:
        stop_process(self.process)


def _hub_lfs(path: str, data: bytes) -> bool:
    return len(data) > LFS_OVER or any(fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern) for pattern in LFS_PATTERNS)


def _gitattributes(lfs: set[str]) -> bytes:
    extra = sorted(p for p in lfs if not any(fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pattern) for pattern in LFS_PATTERNS))
    return "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in (*LFS_PATTERNS, *extra)).encode()


def _write_lfs_object(directory: Path, item: HubFile) -> None:
    target = directory / ".git" / "lfs" / "objects" / item.sha256[:2] / item.sha256[2:4] / item.sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(item.data)


def _data(payload: bytes) -> list[bytes]:
    """A fast-import ``data`` command: exact byte count, then the bytes (the caller's newline join ends it)."""
    return [b"data %d" % len(payload) + b"\n" + payload]


def _quote(path: str) -> str:
    """A path as fast-import reads it: C-style quoted, so spaces and quotes are safe."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _git(directory: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@odai.invalid")
    proc = subprocess.run(["git", "-C", str(directory), *args], input=stdin, capture_output=True, env=env, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {directory}:\n{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _config(base: Path, port: int) -> str:
    # offline: without it every route first asks the real Hub and answers 504 here.
    return f"""[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{base / 'repos'}"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"
mirrors-path = ["{base / 'mirrors'}"]

[accessibility]
offline = true
"""


def _answers(port: int) -> bool:
    """True once olah answers HTTP at all (any status: an unknown repository is 401)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        try:
            conn.request("GET", "/api/models/odai-probe/none/revision/main")
            conn.getresponse().read()
            return True
        finally:
            conn.close()
    except OSError:
        return False


def start_olah(binary: str, base: Path, attempts: int = 3) -> Olah:
    """Start olah serving the repositories under ``base/mirrors``, its config, cache and logs under ``base``;
    RuntimeError with its output if it will not come up."""
    (base / "mirrors").mkdir(parents=True, exist_ok=True)
    failure = ""
    for _ in range(attempts):  # a free port can be taken between our probe and olah's bind
        port = free_port()
        (base / "olah.toml").write_text(_config(base, port))
        with open(base / "console.log", "ab") as out:
            process = subprocess.Popen([binary, "-c", str(base / "olah.toml"), "--log-path", str(base / "logs")], stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=base)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return Olah(base, port, process)
            time.sleep(0.05)
        stop_process(process, grace=2)
        failure = (base / "console.log").read_text(errors="replace")
    raise RuntimeError(f"olah did not start:\n{failure}")
