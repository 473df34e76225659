"""Worker processes for the concurrency tests: each opens the store itself and hammers it.

Functions here run in child processes (multiprocessing, spawn), so they are
plain module-level functions. A worker that meets anything but the outcomes
its race allows writes the traceback to ``<report>.error`` and exits non-zero.
"""

from __future__ import annotations

import json
import random
import time
import traceback
from pathlib import Path

__all__ = ["adder", "remover", "collector", "reader", "slow_adder", "tagger", "uploader", "stormer"]


def _guard(report: Path, body) -> None:
    try:
        result = body()
    except BaseException:
        report.with_suffix(".error").write_text(traceback.format_exc())
        raise SystemExit(1) from None
    report.write_text(json.dumps(result))


def adder(store_dir: str, sources: list[str], worker: int, rounds: int, report: str) -> None:
    """Add model-K:vJ from source K, over and over; and keep-W-I names nobody removes."""

    def body():
        from store import Store

        store, rng, kept = Store(store_dir), random.Random(worker), []
        for i in range(rounds):
            k = rng.randrange(len(sources))
            store.add(f"model-{k}:v{rng.randrange(2)}", [sources[k]])
            if i % 3 == 0:
                name = f"keep-{worker}-{i}:k{k}"
                store.add(name, [sources[k]])
                kept.append(name)
        return kept

    _guard(Path(report), body)


def remover(store_dir: str, count: int, stop_file: str, report: str) -> None:
    """Drop model-K:vJ names until ``stop_file`` exists; an unknown name is the only error allowed."""

    def body():
        from store import NotFound, Store

        store, rng, removed = Store(store_dir), random.Random(99), 0
        while not Path(stop_file).exists():
            try:
                store.remove([f"model-{rng.randrange(count)}:v{rng.randrange(2)}"])
                removed += 1
            except NotFound:
                pass
            time.sleep(0.01)
        return removed

    _guard(Path(report), body)


def collector(store_dir: str, stop_file: str, report: str, pause: float = 0.0, ready_file: str | None = None) -> None:
    """Run gc until ``stop_file`` exists, ``pause`` seconds apart; report (start, end, blobs freed) of
    every run. ``ready_file`` is created once the first run is done."""

    def body():
        from store import Store

        store, runs = Store(store_dir), []
        while not Path(stop_file).exists():
            start = time.monotonic()
            freed = len(store.gc().blobs)
            runs.append((start, time.monotonic(), freed))
            if ready_file is not None:
                Path(ready_file).touch()
            time.sleep(pause)
        return runs

    _guard(Path(report), body)


def reader(store_dir: str, stop_file: str, report: str) -> None:
    """Until ``stop_file`` exists: parse index.json (it must always parse), resolve every name,
    and run du and verify, which must neither fail nor find anything corrupt while others write."""

    def body():
        from store import NotFound, Store
        from store.oci.index import Index

        store, reads, resolved = Store(store_dir), 0, 0
        while not Path(stop_file).exists():
            Index.parse(store.layout.index.read_bytes())  # raises on a torn file
            for entry in store.list():
                try:
                    store.path(entry.name)
                    resolved += 1
                except NotFound:  # removed (and maybe collected) since list() saw it
                    pass
            store.du()
            result = store.verify()
            if not result.ok:
                raise AssertionError(f"verify found corrupt blobs while others wrote: {result.report.corrupt}")
            reads += 1
        return [reads, resolved]

    _guard(Path(report), body)


def slow_adder(store_dir: str, source: str, name: str, report: str, ready_file: str) -> None:
    """One add of many files (slow enough for gc to run many times during it), once ``ready_file`` exists."""

    def body():
        from store import Store

        store = Store(store_dir)
        deadline = time.monotonic() + 60
        while not Path(ready_file).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        start = time.monotonic()
        model = store.add(name, [source])
        return [start, time.monotonic(), str(model.path)]

    _guard(Path(report), body)


def tagger(root: str, manifest: str, size: int, worker: int, count: int, start_file: str, report: str) -> None:
    """Tag manifest ``manifest`` (a digest's hex, ``size`` bytes) in the file sink at ``root`` as tagger-W:tI, once ``start_file`` exists."""

    def body():
        from store.oci.descriptor import MANIFEST_TYPE, Descriptor
        from store.oci.digest import Digest
        from store.oci.reference import parse_reference
        from store.remote.file_sink import FileSink

        sink = FileSink(Path(root))
        deadline = time.monotonic() + 60
        while not Path(start_file).exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        names = [f"tagger-{worker}:t{i}" for i in range(count)]
        for name in names:
            sink.tag(parse_reference(name), Descriptor(MANIFEST_TYPE, Digest(manifest), size))
        return names

    _guard(Path(report), body)


def uploader(root: str, data_file: str, digest: str, stop_at: int, ready_file: str) -> None:
    """Upload the bytes of ``data_file`` to the file sink at ``root`` up to ``stop_at``, say so in ``ready_file``, then wait to be killed."""
    from store.oci.digest import Digest
    from store.remote.file_sink import FileSink

    data = Path(data_file).read_bytes()
    upload = FileSink(Path(root)).begin_blob("suite/model", Digest(digest), len(data))
    upload.write(data[:stop_at])
    Path(ready_file).touch()
    time.sleep(600)


def stormer(store_dir: str, plan: dict, worker: int, deadline: float, report: str) -> None:
    """Until ``deadline`` (time.monotonic()), run this worker's ops of the storm (tests/support/storm.py) over and over.

    ``plan`` holds ``ops`` (this worker's turn of op names: fetch, add, rm, gc,
    sync, verify), ``remote``, ``fetch`` (names to fetch), ``add`` ({name:
    [source, ...]}; each add also adds its source as a name only this worker
    sets, ``storm/kept-W-I:v1``), ``apps`` (lockfiles to sync). Reports each op as [op, name,
    manifest digest or None, start, end, outcome]: "ok", or "absent" for an rm
    of a name that was not there. Anything else (verify finding a corrupt blob
    included) fails the worker.
    """

    def body():
        from store import NotFound, Store

        store, rng, done = Store(store_dir), random.Random(1000 + worker), []
        while time.monotonic() < deadline:
            for op in plan["ops"]:
                name, digest, outcome, start = None, None, "ok", time.monotonic()
                if op == "fetch":
                    name = rng.choice(plan["fetch"])
                    digest = str(store.fetch(name, remotes=plan["remote"]).digest)
                elif op == "add":
                    name = rng.choice(sorted(plan["add"]))
                    source = rng.choice(plan["add"][name])
                    digest = str(store.add(name, [source]).digest)
                    # And a name of its own that no one else sets or removes: a change lost to a race shows as this name missing.
                    done.append([op, name, digest, start, time.monotonic(), outcome])
                    name, start = f"storm/kept-{worker}-{len(done)}:v1", time.monotonic()
                    digest = str(store.add(name, [source]).digest)
                elif op == "rm":
                    name = rng.choice(sorted(plan["add"]))
                    try:
                        store.remove([name])
                    except NotFound:
                        outcome = "absent"
                elif op == "gc":
                    store.gc()
                elif op == "sync":
                    name = rng.choice(plan["apps"])
                    store.sync(name)
                else:
                    corrupt = store.verify().report.corrupt
                    if corrupt:
                        raise AssertionError(f"verify found corrupt blobs during the storm: {corrupt}")
                done.append([op, name, digest, start, time.monotonic(), outcome])
                if time.monotonic() >= deadline:
                    break
        return done

    _guard(Path(report), body)
