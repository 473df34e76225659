"""The storm: many processes fetching, adding, removing, collecting, syncing and verifying on one store at once, then the store judged.

Each worker (tests/support/workers.py ``stormer``) records every op it
completed, with its start and end. Afterwards ``check_storm`` asks: does
``verify`` find nothing; does every name hold what the op that set or removed
it last left (where ops on one name overlap in time, any of the last
overlapping ones may have won); does every synced pin resolve; and did nginx
send each blob's bytes (but manifests') once, plus at most one chunk per request that was cut
short?
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from store import Store
from store.oci.chunks import CHUNK_SIZE
from tests.support import workers
from tests.support.apps import publish
from tests.support.nginx import Nginx
from tests.support.trees import read_tree, write_tree

__all__ = ["StormWorld", "Storm", "run_storm", "check_storm"]

OPS = ("fetch", "add", "rm", "gc", "sync", "verify")
KiB = 1024


def _files(seed: int, sizes: list[int], shared: bytes | None = None) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"part-{i}.bin": rng.randbytes(size) for i, size in enumerate(sizes)}
    files["config.json"] = b'{"storm": %d}\n' % seed
    if shared is not None:
        files["shared.bin"] = shared
    return files


@dataclass
class StormWorld:
    """The store, the remote models on nginx, the sources of the names added and the projects synced."""

    root: Path
    nginx: Nginx

    def __post_init__(self) -> None:
        self.store = self.root / "store"
        self.site, _ = self.nginx.site(f"storm-{self.root.name}")
        self.remote = f"{self.nginx.throttled_url}/{self.site.name}"
        shared = random.Random(7).randbytes(1536 * KiB)  # in every remote model: fetched once, however many ask
        self.remote_trees = {f"storm/remote-{k}:v1": _files(500 + k, [512 * KiB + k, 64 * KiB], shared) for k in range(3)}
        for name, files in self.remote_trees.items():
            publish(self.site, name, files)
        self.sources: dict[str, list[str]] = {}
        self.trees: dict[str, dict[str, bytes]] = {}  # source directory -> its files
        for k in range(2):
            name = f"storm/added-{k}:v1"
            for variant in range(2):
                files = _files(600 + 10 * k + variant, [256 * KiB + variant, 4 * KiB])
                source = write_tree(self.root / "sources" / f"added-{k}-{variant}", files)
                self.sources.setdefault(name, []).append(str(source))
                self.trees[str(source)] = files
        store = Store(self.store)
        self.apps = []
        for k, pinned in enumerate([["storm/remote-0:v1"], ["storm/remote-1:v1", "storm/remote-2:v1"]]):
            app = self.root / f"app-{k}"
            app.mkdir()
            store.lock(pinned, app / "odai.lock", remotes=self.remote)
            self.apps.append(str(app / "odai.lock"))
        self.pins = {self.apps[0]: ["storm/remote-0:v1"], self.apps[1]: ["storm/remote-1:v1", "storm/remote-2:v1"]}


@dataclass
class Storm:
    """What the workers did: each op as [op, name, digest, start, end, outcome], and worker failures."""

    processes: int
    seconds: float
    ops: list[list] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    log_start: int = 0

    def names(self) -> set[str]:
        """Every name an op set or removed."""
        return {op[1] for op in self.ops if op[0] in ("fetch", "add", "rm")}

    def counts(self) -> Counter:
        return Counter(op[0] for op in self.ops)


def run_storm(world: StormWorld, processes: int, seconds: float) -> Storm:
    """``processes`` workers, each running every op in its own rotation, for ``seconds``."""
    spawn = multiprocessing.get_context("spawn")
    storm = Storm(processes, seconds, log_start=len(world.nginx.access_log.read_text().splitlines()))
    plan = {"remote": world.remote, "fetch": sorted(world.remote_trees), "add": world.sources, "apps": world.apps}
    reports = [world.root / f"storm-{w}.json" for w in range(processes)]
    # Spawned workers take a while to start under load: the deadline leaves them 3 s for it, so each gets about ``seconds`` of work.
    deadline = time.monotonic() + seconds + 3
    children = []
    for w in range(processes):
        ops = [OPS[(w + i) % len(OPS)] for i in range(len(OPS))]
        children.append(spawn.Process(target=workers.stormer, args=(str(world.store), {**plan, "ops": ops}, w, deadline, str(reports[w]))))
        children[-1].start()
    for child in children:
        child.join(seconds + 600)
        if child.is_alive():
            child.kill()
            child.join()
    for report, child in zip(reports, children, strict=True):
        error = report.with_suffix(".error")
        if error.exists():
            storm.failures.append(error.read_text())
        elif child.exitcode != 0:
            storm.failures.append(f"a worker exited {child.exitcode}")
        else:
            storm.ops += json.loads(report.read_text())
    return storm


def _may_hold(ops: list[list]) -> set[str | None]:
    """What a name may hold after ``ops``, its completed sets and removals: the effect of any op that no other op began after the end of.

    An rm that found the name absent counts as a removal: at some instant of its run, the name was gone.
    """
    if not ops:
        return {None}
    return {op[2] if op[0] != "rm" else None for op in ops if not any(other[3] > op[4] for other in ops)}


def check_storm(world: StormWorld, storm: Storm) -> dict[str, list[str]]:
    """Problems by kind: ``workers``, ``doctor`` (what it finds), ``corrupt blobs``, ``names``, ``pins``, ``downloads``."""
    problems: dict[str, list[str]] = {"workers": list(storm.failures), "doctor": [], "corrupt blobs": [], "names": [], "pins": [], "downloads": []}
    store = Store(world.store)
    problems["doctor"] = [f"{p.kind}: {p.subject}: {p.detail}" for p in store.doctor().found]
    result = store.verify()
    problems["corrupt blobs"] += [str(d) for d in result.report.corrupt] + [f"{m.name} incomplete" for m in result.incomplete_models]
    named = {e.name: str(e.digest) for e in store.list() if e.name is not None and e.pinned_in is None}
    for name in storm.names():
        expected = _may_hold([op for op in storm.ops if op[1] == name and op[0] in ("fetch", "add", "rm")])
        if named.get(name) not in expected:
            problems["names"].append(f"{name} holds {named.get(name)}, expected one of {sorted(map(str, expected))}")
        elif name in named:
            got = read_tree(store.path(name))
            allowed = [world.remote_trees[name]] if name in world.remote_trees else list(world.trees.values())
            if got not in allowed:
                problems["names"].append(f"{name}: its files are none of its sources'")
    synced = {op[1] for op in storm.ops if op[0] == "sync"}
    for lockfile in synced:
        for name in world.pins[lockfile]:
            if read_tree(store.path(name, lockfile=lockfile)) != world.remote_trees[name]:
                problems["pins"].append(f"{name} pinned in {lockfile} does not read back")
    problems["downloads"] = _downloaded_twice(world, storm)
    return problems


def _downloaded_twice(world: StormWorld, storm: Storm) -> list[str]:
    """Blobs nginx sent more of than their size, plus one chunk per response cut short (an interruption, which a resume continues).

    Manifests are left out: resolving a name reads its manifest, and processes
    that resolve one name at the same instant each read it (a few KiB);
    the download of blobs is what runs once across processes.
    """
    manifests = {entry.digest.hex for entry in Store(world.site).list()}
    sizes = {p.name: p.stat().st_size for p in (world.site / "blobs" / "sha256").iterdir() if p.name not in manifests}
    sent: dict[str, int] = Counter()
    cut: dict[str, int] = Counter()
    for request in world.nginx.requests(f"/{world.site.name}/blobs/sha256/")[storm.log_start :]:
        if request.method != "GET" or request.status not in (200, 206):
            continue
        blob = request.path.rsplit("/", 1)[1]
        if blob in manifests:
            continue
        sent[blob] += request.body_bytes
        if request.body_bytes < _asked(request.range, sizes[blob]):
            cut[blob] += 1
    return [
        f"{blob[:12]}: {count} bytes sent for {sizes[blob]}, {cut[blob]} responses cut short"
        for blob, count in sent.items()
        if count > sizes[blob] + cut[blob] * CHUNK_SIZE
    ]


def _asked(header: str | None, size: int) -> int:
    """The bytes a GET asked for: the whole blob, or its one range ``bytes=A-[B]``."""
    if header is None:
        return size
    start, _, end = header.removeprefix("bytes=").partition("-")
    return (int(end) + 1 if end else size) - int(start)
