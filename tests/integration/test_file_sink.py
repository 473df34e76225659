"""The file remote written to (store/remote/file_sink.py): the Sink suite, then what only real files and processes show.

An upload killed with SIGKILL is resumed by another process; two uploads
of one blob do not write it at once; taggers in several processes lose no
name; what the sink writes is an OCI image layout that the image-spec's
schemas and skopeo accept, and that an odai-store store can be.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import Store
from store.errors import IntegrityError, LockTimeout
from store.oci.digest import Digest
from store.oci.reference import parse_reference
from store.remote.file_layout import FileLayout
from store.remote.file_sink import FileSink
from tests.support import workers
from tests.support.oci_schema import SCHEMA_DIR, validator
from tests.support.remote_suite import Sample, make_sample
from tests.support.sink_suite import NAME, SinkSuite, push

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("sink-suite") / "store")


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "layout"


@pytest.fixture
def sink(target: Path) -> Iterator[FileSink]:
    sink = FileSink(target, lock_timeout=30)
    yield sink
    sink.close()


@pytest.fixture
def reader(target: Path) -> FileLayout:
    return FileLayout(target)


class TestFileSink(SinkSuite):
    pass


def _uploads(target: Path) -> list[str]:
    return sorted(p.name for p in (target / "uploads" / "sha256").iterdir())


def test_nothing_is_left_beside_the_blobs_and_they_are_read_only(sink: FileSink, target: Path, sample: Sample) -> None:
    push(sink, sample)
    assert _uploads(target) == []
    blobs = list((target / "blobs" / "sha256").iterdir())
    assert len(blobs) == 4  # the two files, the empty config, the manifest
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in blobs)
    assert not [p for p in target.rglob("*") if p.name.startswith(".")], "a temporary file was left"


def test_an_upload_refused_leaves_no_file(sink: FileSink, target: Path, sample: Sample) -> None:
    upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
    upload.write(bytes(len(sample.data)))
    with pytest.raises(IntegrityError, match="not the"):
        upload.commit()
    assert _uploads(target) == [] and list((target / "blobs" / "sha256").iterdir()) == []


def test_an_upload_killed_mid_way_is_resumed_by_another_process(sink: FileSink, target: Path, sample: Sample, tmp_path: Path) -> None:
    data_file, ready = tmp_path / "data", tmp_path / "ready"
    data_file.write_bytes(sample.data)
    cut = len(sample.data) // 3
    process = SPAWN.Process(target=workers.uploader, args=(str(target), str(data_file), sample.blob.hex, cut, str(ready)))
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.is_alive() and time.monotonic() < deadline, "the uploader did not get going"
            time.sleep(0.01)
        # While it lives, its upload is its own: another waits for it.
        waiting = FileSink(target, lock_timeout=0.2)
        with pytest.raises(LockTimeout, match="locked by another process"):
            waiting.begin_blob(NAME, sample.blob, len(sample.data))
    finally:
        os.kill(process.pid, 9)  # SIGKILL: no close, no flush; the kernel drops its lock
        process.join(30)
    upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
    try:
        assert upload.offset == cut
        upload.write(sample.data[cut:])
        upload.commit()
    finally:
        upload.close()
    assert (target / "blobs" / "sha256" / sample.blob.hex).read_bytes() == sample.data
    assert _uploads(target) == []


def test_two_uploads_of_one_blob_take_turns(sink: FileSink, target: Path, sample: Sample) -> None:
    first = sink.begin_blob(NAME, sample.blob, len(sample.data))
    first.write(sample.data[:1000])
    second_offset: list[int] = []

    def second() -> None:
        upload = FileSink(target, lock_timeout=30).begin_blob(NAME, sample.blob, len(sample.data))
        second_offset.append(upload.offset)
        upload.commit()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and not second_offset, "the second upload did not wait for the first"
    first.write(sample.data[1000:])
    first.commit()
    thread.join(30)
    # The first committed the blob: the second finds it whole, with nothing to send.
    assert second_offset == [len(sample.data)]


def test_taggers_in_several_processes_lose_no_name(sink: FileSink, target: Path, sample: Sample, tmp_path: Path, flock: str) -> None:
    descriptor = push(sink, sample)
    start = tmp_path / "start"
    reports = [tmp_path / f"tagger-{w}.json" for w in range(4)]
    processes = [
        SPAWN.Process(target=workers.tagger, args=(str(target), sample.manifest.hex, descriptor.size, w, 25, str(start), str(reports[w]))) for w in range(4)
    ]
    for process in processes:
        process.start()
    start.touch()
    for process in processes:
        process.join(120)
    errors = [r.with_suffix(".error").read_text() for r in reports if r.with_suffix(".error").exists()]
    assert errors == [] and all(p.exitcode == 0 for p in processes)
    tagged = {name for r in reports for name in json.loads(r.read_text())}
    assert len(tagged) == 100
    index = json.loads((target / "index.json").read_bytes())
    names = {d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"]}
    assert names == tagged | {f"{NAME}:v1"}


def test_what_the_sink_writes_passes_the_oci_schemas(sink: FileSink, target: Path, sample: Sample) -> None:
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"OCI JSON schemas not found at {SCHEMA_DIR}")
    push(sink, sample)
    for document, schema in (("oci-layout", "image-layout-schema.json"), ("index.json", "image-index-schema.json")):
        errors = list(validator(schema).iter_errors(json.loads((target / document).read_bytes())))
        assert errors == [], f"{document}: {errors}"
    manifest = json.loads((target / "blobs" / "sha256" / sample.manifest.hex).read_bytes())
    assert list(validator("image-manifest-schema.json").iter_errors(manifest)) == []


def test_skopeo_reads_what_the_sink_wrote(sink: FileSink, target: Path, sample: Sample, skopeo: str) -> None:
    push(sink, sample)
    proc = subprocess.run([skopeo, "inspect", "--raw", f"oci:{target}:{NAME}:v1"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == sample.manifest_bytes


def test_a_store_as_a_sink_keeps_its_names_and_serves_the_pushed_model(sample: Sample, tmp_path: Path) -> None:
    # Pushing to another store (a USB disk) takes the lock that store's own writers take.
    other = Store(tmp_path / "other")
    own = other.add("own/model:v1", [_tree(tmp_path / "own", {"a.txt": b"own"})])
    push(FileSink(other.root), sample)
    assert {m.name for m in other.list()} == {"own/model:v1", f"{NAME}:v1"}
    assert other.path("own/model:v1") == own.path
    fetched = Store(tmp_path / "third").fetch(f"{NAME}:v1", remotes=[str(other.root)])
    assert fetched.digest == sample.manifest
    assert other.verify().ok


def test_a_tag_is_one_atomic_replacement_of_index_json(sink: FileSink, target: Path, sample: Sample) -> None:
    descriptor = push(sink, sample)
    before = os.stat(target / "index.json").st_ino
    sink.tag(parse_reference(f"{NAME}:v2"), descriptor)
    assert os.stat(target / "index.json").st_ino != before  # renamed into place, never written in place
    assert FileLayout(target).resolve(parse_reference(f"{NAME}:v2")).descriptor.digest == Digest(sample.manifest.hex)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    from tests.support.trees import write_tree

    return write_tree(root, files)
