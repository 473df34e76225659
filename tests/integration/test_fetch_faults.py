"""fetch against a server that misbehaves: one test per fault, each asserting the documented outcome.

Transient faults (a reset, a short body, 5xx, a server that ignores Range or
whose object changed) are retried, resume where the data stopped, and end
with the right blob; what crossed the wire stays close to one copy where the
fault allows a resume. Permanent ones (404, gzip, a body longer than the
blob, wrong bytes with no chunk digests to find them) fail at once with the
documented exit code and an `error:`/`hint:` pair, and leave no blob behind.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import blake3
import pytest

from store import Store
from store.errors import NetworkError
from store.oci.chunks import CHUNK_SIZE
from store.oci.digest import Digest
from store.oci.index import MAX_INDEX_BYTES
from store.oci.reference import parse_reference
from store.remote.http_layout import HttpLayout
from store.remote.min_rate import MinRate
from tests.support.cli import RETRY_NOTICE, CliResult, assert_error
from tests.support.fault_server import Fault, FaultServer, Layout, oci_layout
from tests.support.trees import read_tree

SMALL = random.Random(21).randbytes(3_000_000)  # one chunk
LARGE = random.Random(22).randbytes(2 * CHUNK_SIZE + 123)  # three chunks, below the parallel threshold
CUT = 1_200_000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(run_cli, server: FaultServer, *options: str, env: dict[str, str] | None = None) -> CliResult:
    assert server.layout is not None
    return run_cli("fetch", "--progress", "json", *options, "--remote", server.url, server.layout.ref_name, env=env)


def progress(result: CliResult) -> list[dict]:
    lines = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    done = [line["done"] for line in lines]
    assert done == sorted(done), f"done went back: {done}"
    return lines


def assert_fetched(result: CliResult, layout: Layout) -> None:
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == layout.blobs
    lines = progress(result)
    assert lines[-1]["done"] == lines[-1]["total"]


def assert_nothing_published(store_dir: Path, data: bytes) -> None:
    layout = Store(store_dir).layout
    assert not (layout.blobs / _sha(data)).exists()
    assert not [p for p in layout.ingest.iterdir() if p.name.startswith(_sha(data))], "a failed blob left data in ingest"


def range_start(request) -> int | None:
    value = request.headers.get("range")
    return None if value is None else int(value.removeprefix("bytes=").split("-")[0])


# -- transient: retried, resumed, correct ---------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(reset_after=CUT), Fault(close_after=CUT)],
    ids=["reset mid-body", "truncated body"],
)
def test_a_body_cut_short_resumes_where_the_data_stopped(fault: Fault, fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(fault)
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    requests = server.requests_for(layout.blob_path(SMALL))
    assert [range_start(r) for r in requests][1:] == [CUT]
    assert server.served_for(layout.blob_path(SMALL)) == len(SMALL)
    assert progress(result)[-1]["refetched"] == 0


def test_faults_in_a_row_each_resume(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(
        Fault(close_after=500_000), Fault(reset_after=700_000), Fault(status=503, retry_after="0"), Fault(close_after=1)
    )
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    starts = [range_start(r) for r in server.requests_for(layout.blob_path(SMALL))]
    assert starts[1:] == [500_000, 1_200_000, 1_200_000, 1_200_001]
    assert server.served_for(layout.blob_path(SMALL)) == len(SMALL)


def test_wrong_bytes_refetch_only_their_chunk(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": LARGE})
    bad = CHUNK_SIZE + 1000  # inside the second chunk
    server = fault_server(layout).fail(Fault(corrupt=(bad, bad + 16)))
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    requests = server.requests_for(layout.blob_path(LARGE))
    assert [range_start(r) for r in requests] == [0, CHUNK_SIZE]
    assert progress(result)[-1]["refetched"] == CHUNK_SIZE
    # The first response may run on into the kernel's buffers after the client
    # hangs up; what is asked again is the bad chunk and what never arrived.
    assert requests[1].body_bytes == len(LARGE) - CHUNK_SIZE


def test_a_bad_chunk_comes_from_the_next_remote(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": LARGE})
    damaged = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    good = fault_server(layout)
    result = run_cli("fetch", "--remote", damaged.url, "--remote", good.url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == layout.blobs
    assert [range_start(r) for r in good.requests_for(layout.blob_path(LARGE))] == [CHUNK_SIZE]


def test_a_chunk_bad_on_every_attempt_is_an_integrity_error(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": LARGE})
    server = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    message = assert_error(run_cli("fetch", "--retries", "2", "--remote", server.url, layout.ref_name), 5)
    assert f"{server.url}{layout.blob_path(LARGE)}" in message
    bad = bytearray(LARGE[CHUNK_SIZE : 2 * CHUNK_SIZE])
    bad[0] ^= 0xFF
    assert blake3.blake3(LARGE[CHUNK_SIZE : 2 * CHUNK_SIZE]).hexdigest() in message
    assert blake3.blake3(bytes(bad)).hexdigest() in message
    # The first try and --retries more, each asking for the bad chunk again.
    assert [range_start(r) for r in server.requests_for(layout.blob_path(LARGE))] == [0, CHUNK_SIZE, CHUNK_SIZE]
    assert not (Store(store_dir).layout.blobs / _sha(LARGE)).exists()


def test_range_ignored_restarts_from_zero(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(close_after=CUT), Fault(ignore_range=True))
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    requests = server.requests_for(layout.blob_path(SMALL))
    assert [r.status for r in requests] == [206, 200]
    assert server.served_for(layout.blob_path(SMALL)) == CUT + len(SMALL)
    assert progress(result)[-1]["refetched"] == CUT


def test_range_ignored_with_parallel_segments(fault_server, run_cli) -> None:
    data = random.Random(23).randbytes(40 << 20)  # above the parallel threshold
    layout = oci_layout({"big.bin": data})
    server = fault_server(layout).fail(Fault(ignore_range=True, times=None))
    result = fetch(run_cli, server, "--connections", "8")
    assert_fetched(result, layout)
    assert progress(result)[-1]["total"] == len(data)
    # The 200 to the first segment is the whole blob, read once: no other segment is asked for.
    assert [r.status for r in server.requests_for(layout.blob_path(data))] == [200]
    assert server.served_for(layout.blob_path(data)) == len(data)


def test_etag_change_between_attempts_restarts_from_zero(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(close_after=CUT), Fault(new_etag=True))
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    first, second = server.requests_for(layout.blob_path(SMALL))
    # The resume presented the validator of the bytes it had; the server said they changed.
    assert second.headers["range"] == f"bytes={CUT}-{len(SMALL) - 1}"
    assert second.headers["if-range"] == first.response["ETag"]
    assert second.status == 200
    assert progress(result)[-1]["refetched"] == CUT
    assert server.served_for(layout.blob_path(SMALL)) == CUT + len(SMALL)


def test_503_with_retry_after_is_honoured(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(status=503, retry_after="1"))
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    first, second = server.requests_for(layout.blob_path(SMALL))
    assert first.status == 503
    assert second.at - first.at >= 0.95, f"retried after {second.at - first.at:.2f}s, Retry-After said 1"


@pytest.mark.parametrize(("status", "transient"), [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (400, False), (401, False), (403, False), (410, False), (451, False)])
def test_which_statuses_are_transient(status: int, transient: bool, fault_server) -> None:
    # Which answers the engine retries (test_503_with_retry_after_is_honoured shows it does) is the remote's call.
    layout = oci_layout({"w.bin": SMALL[:1000]})
    server = fault_server(layout).fail(Fault(status=status, retry_after="7"))
    remote = HttpLayout(server.url)
    try:
        with pytest.raises(NetworkError) as caught:
            remote.open_blob(Digest(_sha(SMALL[:1000])), 0, 1000)
    finally:
        remote.close()
    assert caught.value.transient is transient
    assert str(status) in caught.value.message
    assert caught.value.retry_after == 7


def test_a_transient_status_is_retried(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL[:100_000]})
    server = fault_server(layout).fail(Fault(status=502))
    assert_fetched(fetch(run_cli, server), layout)
    statuses = [r.status for r in server.requests_for(layout.blob_path(SMALL[:100_000]))]
    assert statuses[0] == 502 and statuses[1:] in ([200], [206])


def test_slow_drip_completes(fault_server, run_cli) -> None:
    data = SMALL[:64 * 1024]
    layout = oci_layout({"w.bin": data})
    server = fault_server(layout).fail(Fault(drip=(1024, 0.005)))
    assert_fetched(fetch(run_cli, server), layout)
    assert server.served_for(layout.blob_path(data)) == len(data)


@pytest.mark.parametrize("target", ["blob", "index.json"])
def test_a_drip_below_the_minimum_rate_is_a_transient_fault(target: str, fault_server) -> None:
    # The attack: one byte every 0.2 s never reaches the read timeout, so the
    # read went on for as long as the remote liked (hours for a large blob).
    data = SMALL[:100_000]
    layout = oci_layout({"w.bin": data})
    path = layout.blob_path(data) if target == "blob" else "/index.json"
    server = fault_server(layout).fail(Fault(drip=(1, 0.2), times=None, path=path))
    remote = HttpLayout(server.url, min_rate=MinRate(bytes_per_second=100, window=1.0))
    began = time.monotonic()
    try:
        with pytest.raises(NetworkError) as caught:
            if target == "blob":
                stream = remote.open_blob(Digest(_sha(data)), 0, len(data))
                while stream.read(1 << 20):
                    pass
            else:
                remote.resolve(parse_reference(layout.ref_name))
    finally:
        remote.close()
    assert caught.value.transient and "below the minimum of 100 bytes/s" in caught.value.message
    assert time.monotonic() - began < 5


def test_a_stalled_blob_is_retried_from_where_its_data_stopped(fault_server, store_dir, monkeypatch) -> None:
    # The engine's side of the rule: a stall is transient like a reset, so the
    # next request asks for the rest, and the model arrives whole.
    monkeypatch.setitem(HttpLayout.__init__.__kwdefaults__, "min_rate", MinRate(bytes_per_second=1000, window=0.5))
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(drip=(10, 0.1)))
    model = Store(store_dir).fetch(layout.ref_name, remotes=[server.url])
    assert read_tree(model.path) == layout.blobs
    starts = [range_start(r) for r in server.requests_for(layout.blob_path(SMALL))]
    assert len(starts) == 2 and 0 < starts[1] < 1000, starts


def test_a_slow_but_steady_stream_is_not_stalled(fault_server) -> None:
    data = SMALL[:20_000]
    layout = oci_layout({"w.bin": data})
    server = fault_server(layout).fail(Fault(drip=(1000, 0.05)))  # 20 kB/s
    remote = HttpLayout(server.url, min_rate=MinRate(bytes_per_second=1000, window=0.3))
    try:
        stream = remote.open_blob(Digest(_sha(data)), 0, len(data))
        got = b""
        while part := stream.read(1 << 20):
            got += part
    finally:
        remote.close()
    assert got == data


@pytest.mark.parametrize(("target", "waiting"), [("blob", "while downloading "), ("index.json", "while resolving faulty/model:v1 on http://")])
def test_timeout_bounds_the_network_phase(target: str, waiting: str, fault_server, run_cli, store_dir) -> None:
    # The attack: a remote dripping a byte every half second kept fetch alive for
    # ever (a read timeout never fires). --timeout ends it, exit 4, naming what waited.
    layout = oci_layout({"w.bin": SMALL})
    path = layout.blob_path(SMALL) if target == "blob" else "/index.json"
    server = fault_server(layout).fail(Fault(drip=(1, 0.5), times=None, path=path))
    began = time.monotonic()
    result = run_cli("--timeout", "2", "fetch", "--remote", server.url, layout.ref_name, timeout=30)
    message = assert_error(result, 4, said=RETRY_NOTICE)
    assert time.monotonic() - began < 10
    assert message.startswith("--timeout 2 s expired " + waiting), message
    assert not (Store(store_dir).layout.blobs / _sha(SMALL)).exists()


def test_timeout_is_one_deadline_for_the_whole_sync(fault_server, run_cli, tmp_path) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout)
    lockfile = tmp_path / "odai.lock"
    assert run_cli("lock", "--lockfile", lockfile, "--remote", server.url, layout.ref_name).code == 0
    server.fail(Fault(drip=(1, 0.5), times=None))
    began = time.monotonic()
    assert_error(run_cli("--timeout", "1.5", "sync", "--lockfile", lockfile, "--remote", server.url, timeout=30), 4)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e3", "", "2s"])
def test_timeout_must_be_a_positive_number_of_seconds(value: str, run_cli) -> None:
    assert "--timeout" in assert_error(run_cli("--timeout", value, "fetch", "--remote", "http://127.0.0.1:9", "m"), 2)


def test_a_remote_index_over_the_cap_is_refused_unparsed(fault_server, run_cli) -> None:
    # The attack: a remote's index.json of '{},' repeated; 64 MiB of it took 1.7 GB to parse.
    layout = oci_layout({"w.bin": SMALL[:1000]})
    layout.files["/index.json"] = b'{"schemaVersion":2,"manifests":[' + b"{}," * (3 << 20) + b"{}]}"
    assert len(layout.files["/index.json"]) > MAX_INDEX_BYTES
    server = fault_server(layout)
    message = assert_error(fetch(run_cli, server), 4)
    assert f"over the {MAX_INDEX_BYTES}-byte limit" in message


def test_resume_in_a_later_run_fetches_only_the_rest(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": LARGE})
    cut = CHUNK_SIZE + 4 * 1024 * 1024  # inside the second chunk
    # The journal is saved every 0.1 s while data flows, and not again when a
    # run fails; the pause before the cut lets the save record every byte sent.
    server = fault_server(layout).fail(Fault(close_after=cut, linger=0.5))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", server.url, layout.ref_name), 4)
    result = fetch(run_cli, server)
    assert_fetched(result, layout)
    starts = [range_start(r) for r in server.requests_for(layout.blob_path(LARGE))]
    assert starts == [0, cut]
    assert server.served_for(layout.blob_path(LARGE)) == len(LARGE)


# -- the token stays with its host -------------------------------------------------------


def test_the_token_never_follows_a_redirect_to_another_host(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    origin, cdn = fault_server(layout), fault_server(layout)
    # "localhost" is another host to the client, though the same machine.
    origin.fail(Fault(redirect=cdn.url_as("localhost"), times=None))
    result = fetch(run_cli, origin, env={"ODAI_STORE_TOKEN": "s3cret-token"})
    assert_fetched(result, layout)
    assert origin.requests and all(r.headers.get("authorization") == "Bearer s3cret-token" for r in origin.requests)
    assert [r.status for r in origin.requests_for(layout.blob_path(SMALL))] == [302]
    assert cdn.requests_for(layout.blob_path(SMALL)), "the redirect was not followed"
    assert all("authorization" not in r.headers for r in cdn.requests)
    assert all("s3cret-token" not in value for r in cdn.requests for value in r.headers.values())


# -- permanent: fail at once, cleanly -------------------------------------------------


def test_404_for_a_blob_is_not_found(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(status=404, times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 3)
    assert layout.blob_path(SMALL) in message
    assert len(server.requests_for(layout.blob_path(SMALL))) == 1  # not retried
    assert_nothing_published(store_dir, SMALL)
    assert_error(run_cli("path", layout.ref_name), 3)


def test_404_for_index_json_is_not_found(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(status=404, path="/index.json", times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 3)
    assert layout.ref_name in message


def test_other_4xx_fail_at_once(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(status=403, times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 4)
    assert "403" in message
    assert len(server.requests_for(layout.blob_path(SMALL))) == 1
    assert_nothing_published(store_dir, SMALL)


def test_503_for_ever_gives_up_after_the_retries(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(status=503, retry_after="0", times=None))
    message = assert_error(run_cli("fetch", "--retries", "1", "--remote", server.url, layout.ref_name), 4, said=RETRY_NOTICE)
    assert "503" in message
    assert len(server.requests_for(layout.blob_path(SMALL))) == 2


def test_gzip_is_refused(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(gzip=True, times=None))
    result = run_cli("fetch", "--remote", server.url, layout.ref_name)
    message = assert_error(result, 4)
    assert "gzip" in message
    assert "Content-Encoding" in result.err.splitlines()[1] or "gzip" in result.err.splitlines()[1]
    assert len(server.requests_for(layout.blob_path(SMALL))) == 1
    assert server.requests_for(layout.blob_path(SMALL))[0].headers.get("accept-encoding") == "identity"
    assert_nothing_published(store_dir, SMALL)


@pytest.mark.parametrize("ranges", ["honoured", "ignored"])
def test_a_body_longer_than_the_blob_fails(ranges: str, fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(extra=b"trailing garbage", ignore_range=ranges == "ignored", times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 4)
    assert str(len(SMALL)) in message
    assert len(server.requests_for(layout.blob_path(SMALL))) == 1
    assert_nothing_published(store_dir, SMALL)


def test_wrong_bytes_without_chunk_digests_fail_the_blob(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL}, chunks=False)
    server = fault_server(layout).fail(Fault(corrupt=(CUT, CUT + 1), times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 5)
    damaged = bytearray(SMALL)
    damaged[CUT] ^= 0xFF
    # The message names the URL, the expected digest and what the bytes hash to.
    assert f"{server.url}{layout.blob_path(SMALL)}" in message
    assert _sha(SMALL) in message and _sha(bytes(damaged)) in message
    assert len(server.requests_for(layout.blob_path(SMALL))) == 1
    assert_nothing_published(store_dir, SMALL)
    assert_error(run_cli("path", layout.ref_name), 3)


def test_a_damaged_manifest_is_refused(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    manifest_path = f"/blobs/sha256/{layout.manifest.hex}"
    server = fault_server(layout).fail(Fault(corrupt=(20, 21), path=manifest_path, times=None))
    message = assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 5)
    assert layout.manifest.hex in message
    assert server.requests_for(layout.blob_path(SMALL)) == []


def test_a_damaged_index_json_names_the_remote(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    server = fault_server(layout).fail(Fault(corrupt=(0, 1), path="/index.json", times=None))
    result = run_cli("fetch", "--remote", server.url, layout.ref_name)
    message = assert_error(result, 5)
    assert f"{server.url}/index.json" in message
    assert "remote" in result.err.splitlines()[1]


@pytest.mark.parametrize("damaged", ["index", "manifest"])
def test_a_damaged_remote_fails_over_to_the_next(damaged: str, fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": SMALL})
    path = "/index.json" if damaged == "index" else f"/blobs/sha256/{layout.manifest.hex}"
    bad = fault_server(layout).fail(Fault(corrupt=(0, 1), path=path, times=None))
    good = fault_server(layout)
    result = run_cli("fetch", "--remote", bad.url, "--remote", good.url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == layout.blobs


def test_not_found_on_one_remote_and_down_on_another_is_a_network_error(fault_server, run_cli) -> None:
    # The remote that is down may hold the model: exit 3 would tell a script it does not exist.
    empty = fault_server()
    message = assert_error(run_cli("fetch", "--retries", "0", "--remote", "http://127.0.0.1:9", "--remote", empty.url, "m:v1"), 4)
    assert "127.0.0.1:9" in message


def test_every_remote_down_is_a_network_error(run_cli) -> None:
    message = assert_error(run_cli("fetch", "--retries", "0", "--remote", "http://127.0.0.1:9", "m:v1"), 4)
    assert "127.0.0.1:9" in message
