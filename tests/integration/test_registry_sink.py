"""A registry written to (store/remote/registry.py, RegistrySink): the Sink suite against a real docker-registry, then what skopeo reads back."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.errors import IntegrityError
from store.oci.digest import Digest
from store.remote import registry as registry_module
from store.remote.registry import Registry, RegistrySink
from tests.support.registry import Registry as RunningRegistry
from tests.support.remote_suite import Sample, make_sample, read_all
from tests.support.sink_suite import NAME, SinkSuite, push, refilled

_NAMESPACES = itertools.count()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("registry-sink-suite") / "store")


@pytest.fixture
def namespace() -> str:
    return f"sink{next(_NAMESPACES)}"  # each test an empty corner of the one registry


@pytest.fixture
def sink(registry: RunningRegistry, namespace: str) -> Iterator[RegistrySink]:
    sink = RegistrySink(Registry(f"http://{registry.host}", namespace))
    yield sink
    sink.close()


@pytest.fixture
def reader(registry: RunningRegistry, namespace: str) -> Iterator:
    remote = Registry(f"http://{registry.host}", namespace)
    yield remote.in_repository(NAME)
    remote.close()


class TestRegistrySink(SinkSuite):
    pass


def test_skopeo_reads_what_the_sink_pushed(sink: RegistrySink, registry: RunningRegistry, namespace: str, sample: Sample, tmp_path: Path, skopeo: str) -> None:
    push(sink, sample)
    pulled = tmp_path / "pulled"
    proc = subprocess.run(
        [skopeo, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", registry.ref(f"{namespace}/{NAME}", "v1"), f"oci:{pulled}:{NAME}:v1"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert (pulled / "blobs" / "sha256" / sample.manifest.hex).read_bytes() == sample.manifest_bytes
    assert (pulled / "blobs" / "sha256" / sample.blob.hex).read_bytes() == sample.data


def test_a_blob_another_repository_holds_is_mounted_not_sent(sink: RegistrySink, reader, sample: Sample) -> None:
    push(sink, sample)  # into NAME
    upload = sink.begin_blob("other/model", sample.blob, len(sample.data))
    try:
        assert upload.offset == len(sample.data)  # mounted from NAME: nothing to send
        upload.commit()
    finally:
        upload.close()
    assert sink.has_blob("other/model", sample.blob, len(sample.data))


def test_a_small_blob_goes_in_one_request_and_is_checked(sink: RegistrySink, sample: Sample) -> None:
    data = b'{"small": true}\n'
    digest = Digest(hashlib.sha256(data).hexdigest())
    upload = sink.begin_blob(NAME, digest, len(data))
    upload.write(data[:5])
    upload.write(data[5:])
    upload.commit()
    assert sink.has_blob(NAME, digest, len(data))
    wrong = sink.begin_blob(NAME, Digest(hashlib.sha256(b"x" * len(data)).hexdigest()), len(data))
    wrong.write(data)
    with pytest.raises(IntegrityError):
        wrong.commit()


def test_the_rest_of_a_blob_goes_in_patches_of_patch_max(
    sink: RegistrySink, registry: RunningRegistry, namespace: str, reader, sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Distribution fsyncs an upload at the end of every request: the fewer, the faster. Blocks straddle the PATCHes' ends.
    monkeypatch.setattr(registry_module, "PATCH_MAX", 100_000)
    upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
    try:
        upload.write_rest(refilled(sample.data, 0, 65_536))
        upload.commit()
    finally:
        upload.close()
    log = (registry.base / "console.log").read_text(errors="replace").splitlines()
    assert len([line for line in log if f'"PATCH /v2/{namespace}/{NAME}/blobs/uploads/' in line]) == -(-len(sample.data) // 100_000)
    stream = reader.open_blob(sample.blob)
    try:
        assert read_all(stream) == sample.data
    finally:
        stream.close()
