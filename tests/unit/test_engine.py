"""The download engine against scripted in-memory sources: faults, restarts, bad chunks, failover.

Beside the socket-level tests of tests/integration/test_fetch_*.py, these
drive Engine.fetch into a real IngestWriter in a temporary store, with no
network, so every rule of the retry loop (spec/fetching.md, "Retries") is
checked in milliseconds.
"""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pytest

from store.errors import IntegrityError, Interrupted, NetworkError, NotFound
from store.local.ingest import IngestWriter
from store.local.layout import StoreLayout
from store.local.opening import open_layout
from store.oci.chunks import ChunkHasher
from store.oci.digest import Digest
from store.transfer.engine import BlobTask, Engine
from store.transfer.progress import Progress
from store.transfer.retry import RetryPolicy
from store.transfer.segments import SegmentPlan
from tests.support.scripted_source import ScriptedSource, Step

CHUNK = 64 << 10
DATA = random.Random(12).randbytes(10 * CHUNK + 1234)  # ten whole chunks and a short one
DIGEST = Digest(hashlib.sha256(DATA).hexdigest())
FAST = RetryPolicy(retries=3, base=0.001, cap=0.002)


def _chunks():
    hasher = ChunkHasher(CHUNK)
    hasher.update(DATA)
    return hasher.result()


@pytest.fixture
def layout(tmp_path: Path) -> StoreLayout:
    return open_layout(tmp_path / "store")


def _fetch(layout: StoreLayout, *sources: ScriptedSource, connections: int = 1, chunks: bool = True, policy: RetryPolicy = FAST, cancel=None):
    """Run the engine for DATA and commit; return the committed size (the SHA-256 is checked by commit)."""
    plan = SegmentPlan(connections=connections, threshold=2 * CHUNK, chunk=CHUNK)
    engine = Engine(Progress(), policy=policy, plan=plan, cancel=cancel)
    writer = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600)
    try:
        engine.fetch(BlobTask(DIGEST, len(DATA), _chunks() if chunks else None, sources), writer)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(DIGEST, len(DATA)).size


def source(name: str = "a", *script: Step) -> ScriptedSource:
    return ScriptedSource(f"mem://{name}", {DIGEST: DATA}, list(script))


@pytest.mark.parametrize("connections", [1, 4])
@pytest.mark.parametrize("chunks", [True, False])
def test_an_honest_source_fills_the_blob(layout, connections: int, chunks: bool) -> None:
    a = source()
    assert _fetch(layout, a, connections=connections, chunks=chunks) == len(DATA)
    assert len(a.opened) == (1 if connections == 1 else len(SegmentPlan(connections, 2 * CHUNK, CHUNK).segments(len(DATA), _ranges(), True)))


def _ranges():
    from store.local.journal import Ranges

    return Ranges()


def test_a_reset_resumes_where_the_data_stopped_on_the_same_source(layout) -> None:
    a = source("a", Step(cut_after=CHUNK + 100))
    assert _fetch(layout, a) == len(DATA)
    # Mid-chunk: the chunk's hasher goes on, so only the rest is asked for.
    assert [o.start for o in a.opened] == [0, CHUNK + 100]


def test_failures_are_counted_afresh_after_bytes_arrive(layout) -> None:
    # Four resets, each after some progress: more than --retries (3) in all,
    # but never three in a row without a byte, so the download goes on.
    a = source("a", *(Step(cut_after=CHUNK) for _ in range(4)))
    assert _fetch(layout, a) == len(DATA)


def test_retries_without_progress_run_out_then_the_next_source_serves(layout) -> None:
    reset = NetworkError("mem://a: connection refused", transient=True)
    a = source("a", *(Step(fail=reset) for _ in range(10)))
    b = source("b")
    assert _fetch(layout, a, b) == len(DATA)
    assert len(a.opened) == FAST.retries + 1 and len(b.opened) == 1


def test_a_source_without_the_blob_fails_over_at_once(layout) -> None:
    a = source("a", Step(fail=NotFound("mem://a: not found")))
    b = source("b")
    assert _fetch(layout, a, b) == len(DATA)
    assert len(a.opened) == 1


def test_every_source_failing_raises_the_last_error(layout) -> None:
    a = source("a", *(Step(fail=NotFound("mem://a: not found")) for _ in range(3)))
    b = source("b", *(Step(fail=NotFound("mem://b: not found")) for _ in range(3)))
    with pytest.raises(NotFound, match="mem://b"):
        _fetch(layout, a, b)


def test_a_bad_chunk_is_fetched_again_from_the_next_source_alone(layout) -> None:
    a = source("a", Step(corrupt=(3 * CHUNK + 5, 3 * CHUNK + 6)))
    b = source("b")
    assert _fetch(layout, a, b) == len(DATA)
    # b is asked for the bad chunk onwards, a again for nothing before it.
    assert [o.start for o in b.opened] == [3 * CHUNK]


def test_a_chunk_begun_on_one_source_and_finished_on_another_keeps_none_of_the_first(layout) -> None:
    # Source a sends half a chunk of wrong bytes, then fails for good: b sends
    # the chunk whole. The half kept in memory at the hash frontier must not be
    # hashed in front of b's bytes (found by review: commit then blamed b).
    refused = NetworkError("mem://a: HTTP 403", transient=False)
    a = source("a", Step(corrupt=(0, CHUNK // 2), cut_after=CHUNK // 2, cut_error=refused))
    # b is cut where a stopped, so its next block lands just after a's bytes in memory.
    b = source("b", Step(cut_after=CHUNK // 2))
    assert _fetch(layout, a, b, chunks=True) == len(DATA)
    assert [o.start for o in b.opened][:2] == [0, CHUNK // 2]


def test_a_chunk_bad_on_every_source_is_an_integrity_error(layout) -> None:
    bad = Step(corrupt=(0, 1))
    a = source("a", *(bad for _ in range(10)))
    b = source("b", *(bad for _ in range(10)))
    with pytest.raises(IntegrityError, match="failed its check"):
        _fetch(layout, a, b)
    assert len(a.opened) + len(b.opened) == FAST.retries + 1


def test_without_chunk_digests_a_bad_byte_fails_the_whole_blob_check(layout) -> None:
    a = source("a", Step(corrupt=(7, 8)))
    with pytest.raises(IntegrityError, match="hashes to"):
        _fetch(layout, a, chunks=False)


def test_a_source_blamed_for_a_damaged_copy_is_not_asked_for_that_blob_again(layout) -> None:
    # spec/fetching.md, "Damaged copies": the caller's SHA-256 check failed on a's copy;
    # the engine then asks b only, from byte 0, and says who sent each copy.
    reset = NetworkError("mem://b: connection reset", transient=True)
    a, b, c = source("a", Step(corrupt=(7, 8))), source("b", Step(cut_after=CHUNK, cut_error=reset)), source("c")
    engine = Engine(Progress(), policy=FAST, plan=SegmentPlan(connections=1, threshold=2 * CHUNK, chunk=CHUNK))
    task = BlobTask(DIGEST, len(DATA), None, (a, b, c))
    writer = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600)
    assert engine.fetch(task, writer).sources == (a,)
    with pytest.raises(IntegrityError):
        writer.commit(DIGEST, len(DATA))
    assert engine.damaged(task, (a,)) == (b, c)
    writer = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600, adopt=False)
    assert engine.fetch(task, writer, again=True).sources == (b,)  # a reset on b is retried on b
    assert writer.commit(DIGEST, len(DATA)).size == len(DATA)
    assert len(a.opened) == 1 and [o.start for o in b.opened] == [0, CHUNK] and not c.opened
    assert engine.damaged(task, (b,)) == (c,) and engine.damaged(task, (c,)) == ()


@pytest.mark.parametrize("connections", [1, 4])
def test_a_source_that_ignores_range_restarts_the_download_from_zero(layout, connections: int) -> None:
    # A first answer cut short leaves bytes on disk; the second ignores Range:
    # those bytes may be of another version, so everything starts again.
    a = source("a", Step(cut_after=2 * CHUNK), Step(ignore_range=True, validator="v2"))
    assert _fetch(layout, a, connections=connections) == len(DATA)
    assert any(o.served_from == 0 and o.start > 0 for o in a.opened)


@pytest.mark.parametrize("chunks", [True, False])
def test_a_whole_blob_answer_to_the_first_segment_is_read_from_that_one_stream(layout, chunks: bool) -> None:
    # It begins at byte 0, where the first segment begins: only its end says it is not the range asked for.
    a = source("a", Step(ignore_range=True))
    assert _fetch(layout, a, connections=4, chunks=chunks) == len(DATA)
    assert [(o.start, o.served_from) for o in a.opened] == [(0, 0)]


@pytest.mark.parametrize("connections", [1, 4])
def test_a_resume_of_a_changed_object_starts_over_with_its_new_validator(layout, connections: int) -> None:
    # The first run keeps 3 chunks of version v1; by the resume the object is
    # v2, so If-Range brings the whole blob and nothing of v1 is kept.
    engine = Engine(Progress(), policy=RetryPolicy(retries=0), plan=SegmentPlan(1, 2 * CHUNK, CHUNK))
    cut = (source("a", Step(cut_after=3 * CHUNK)),)
    writer = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600)
    with pytest.raises(NetworkError):
        engine.fetch(BlobTask(DIGEST, len(DATA), _chunks(), cut), writer)
    writer.suspend()
    assert writer.journal.validator == "v1" and writer.done.total() == 3 * CHUNK
    changed = source("a", *(Step(validator="v2") for _ in range(20)))
    plan = SegmentPlan(connections, 2 * CHUNK, CHUNK)
    resumed = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600)
    Engine(Progress(), policy=FAST, plan=plan).fetch(BlobTask(DIGEST, len(DATA), _chunks(), (changed,)), resumed)
    assert changed.opened[0].validator == "v1" and changed.opened[0].served_from == 0
    assert resumed.journal.validator == "v2"
    assert resumed.commit(DIGEST, len(DATA)).size == len(DATA)


@pytest.mark.parametrize("connections", [1, 4])
def test_a_body_longer_than_the_range_is_another_object(layout, connections: int) -> None:
    a = source("a", *(Step(extra=b"payload") for _ in range(10)))
    with pytest.raises(NetworkError, match="longer than the blob"):
        _fetch(layout, a, connections=connections)
    assert len(a.opened) == 1 or connections > 1, "not a fault that retrying the same source can mend"


def test_a_cancel_stops_the_download(layout) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        _fetch(layout, source("a"), cancel=cancel)


def test_an_unreachable_source_is_skipped_for_the_next_blob(layout) -> None:
    down = NetworkError("mem://a: connection refused", transient=True)
    a = source("a", *(Step(fail=down) for _ in range(FAST.retries + 1)))
    b = source("b")
    plan = SegmentPlan(connections=1, threshold=2 * CHUNK, chunk=CHUNK)
    engine = Engine(Progress(), policy=FAST, plan=plan)
    for _ in range(2):
        writer = IngestWriter.for_blob(layout, DIGEST, len(DATA), stale_after=3600)
        engine.fetch(BlobTask(DIGEST, len(DATA), _chunks(), (a, b)), writer)
        writer.abort()
    assert len(a.opened) == FAST.retries + 1 and len(b.opened) == 2


# -- re-authentication (spec/fetching.md, "Authentication") ------------------------------


def _refused(name: str = "a") -> NetworkError:
    return NetworkError(f"mem://{name}: HTTP 401 Unauthorized", status=401)


def refreshable(name: str, *script: Step) -> ScriptedSource:
    return ScriptedSource(f"mem://{name}", {DIGEST: DATA}, list(script), refreshable=True)


def test_an_expired_token_mid_download_is_renewed_and_the_same_range_asked_again(layout) -> None:
    cut = 3 * CHUNK + 100  # mid-chunk: the chunk's hasher must go on, not start again
    a = refreshable("a", Step(cut_after=cut), Step(fail=_refused()))
    assert _fetch(layout, a) == len(DATA)
    assert len(a.renewals) == 1 and a.renewals[0].status == 401
    assert [o.start for o in a.opened] == [0, cut, cut]


def test_a_second_refusal_before_any_byte_fails_over(layout) -> None:
    a = refreshable("a", Step(cut_after=3 * CHUNK + 100), Step(fail=_refused()), Step(fail=_refused()))
    b = source("b")
    assert _fetch(layout, a, b) == len(DATA)
    assert len(a.renewals) == 1 and len(a.opened) == 3
    assert [o.start for o in b.opened] == [3 * CHUNK]  # the chunk begun on a, whole from b


def test_credentials_are_renewed_again_after_bytes_arrive(layout) -> None:
    # A registry's token lasts minutes, a large download longer: each expiry after progress renews it.
    a = refreshable("a", Step(fail=_refused()), Step(cut_after=2 * CHUNK), Step(fail=_refused()), Step(cut_after=CHUNK), Step(fail=_refused()))
    assert _fetch(layout, a) == len(DATA)
    assert len(a.renewals) == 3
    assert [o.start for o in a.opened] == [0, 0, 2 * CHUNK, 2 * CHUNK, 3 * CHUNK, 3 * CHUNK]


def test_a_refusal_of_credentials_that_cannot_be_renewed_fails_over_at_once(layout) -> None:
    a = source("a", Step(fail=_refused()))
    b = source("b")
    assert _fetch(layout, a, b) == len(DATA)
    assert a.renewals == [] and len(a.opened) == 1 and len(b.opened) == 1


def test_a_renewal_that_fails_fails_over_with_its_own_error(layout) -> None:
    a = refreshable("a", Step(fail=_refused()))
    a.renewal_failures.append(NetworkError("mem://a/token: HTTP 403 Forbidden", status=403))
    with pytest.raises(NetworkError, match="token: HTTP 403"):
        _fetch(layout, a)
    b = source("b")
    a = refreshable("a", Step(fail=_refused()))
    a.renewal_failures.append(NetworkError("mem://a/token: HTTP 403 Forbidden", status=403))
    assert _fetch(layout, a, b) == len(DATA)
    assert len(a.opened) == 1


@pytest.mark.parametrize("connections", [1, 4])
def test_a_refusal_of_the_first_open_is_renewed(layout, connections: int) -> None:
    # The first segment is opened apart from the rest (ranges are tested on it): it renews too.
    a = refreshable("a", Step(fail=_refused()))
    assert _fetch(layout, a, connections=connections) == len(DATA)
    assert len(a.renewals) == 1 and a.opened[0].start == a.opened[1].start == 0



def test_a_first_open_refused_twice_fails_over_before_the_segments_start(layout) -> None:
    # The other segments start on the first source again, as every segment does.
    a = refreshable("a", Step(fail=_refused()), Step(fail=_refused()))
    b = source("b")
    assert _fetch(layout, a, b, connections=4) == len(DATA)
    assert len(a.renewals) == 1 and [(o.start, o.end) for o in a.opened[:2]] == [(0, 2 * CHUNK)] * 2
    assert (b.opened[0].start, b.opened[0].end) == (0, 2 * CHUNK)
