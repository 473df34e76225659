"""A parallel download whose object changed (a 200 to the first ranged request) restarts cleanly (spec/fetching.md).

Cleanly means: the partial forgets its old ranges and takes the new
validator, so the next resume asks with the new one and gets a 206, instead
of a second full restart.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.support.cli import assert_error
from tests.support.fault_server import Fault, oci_layout
from tests.support.trees import read_tree

DATA = random.Random(61).randbytes(40 << 20)  # above the 32 MiB threshold: segments
MiB = 1 << 20


def test_a_restart_takes_the_new_validator(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    blob = layout.blob_path(DATA)
    server = fault_server(layout)
    fetch = ("fetch", "--connections", "2", "--retries", "0", "--progress", "none", "--remote", server.url, layout.ref_name)

    server.fail(Fault(close_after=3 * MiB))
    assert_error(run_cli(*fetch), 4)
    # The object changes version; its whole new body is cut short as well.
    server.fail(Fault(new_etag=True, close_after=5 * MiB))
    seen = len(server.requests_for(blob))
    assert_error(run_cli(*fetch), 4)
    restarted = next(r for r in server.requests_for(blob)[seen:] if r.fault is not None and r.fault.new_etag)
    assert restarted.status == 200, "the changed object was not sent whole"
    [journal] = (store_dir / "ingest").glob("*.journal")
    assert json.loads(journal.read_text())["validator"] == restarted.response["ETag"]

    seen = len(server.requests_for(blob))
    result = run_cli(*fetch)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert [r.status for r in server.requests_for(blob)[seen:]] and all(r.status == 206 for r in server.requests_for(blob)[seen:])


def test_a_resume_continues_each_segment_where_its_data_stopped(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    blob = layout.blob_path(DATA)
    server = fault_server(layout)
    fetch = ("fetch", "--connections", "2", "--retries", "0", "--progress", "none", "--remote", server.url, layout.ref_name)
    server.fail(Fault(close_after=3 * MiB))  # inside the first chunk: on disk, not yet checked
    assert_error(run_cli(*fetch), 4)
    [journal] = (store_dir / "ingest").glob("*.journal")
    # The other segment may have data too, by the time the first one's cut fails the command.
    spans: list[list[int]] = []
    for start, end in sorted(tuple(span) for key in ("done", "unchecked") for span in json.loads(journal.read_text())[key]):
        if spans and spans[-1][1] == start:  # checked bytes, then the unchecked rest of a chunk
            spans[-1][1] = end
        else:
            spans.append([start, end])
    kept = sum(e - s for s, e in spans)
    assert kept > 0
    seen = len(server.requests_for(blob))
    result = run_cli(*fetch)  # no fault: a resume must not need a retry
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    again = server.requests_for(blob)[seen:]
    assert len(again) > 1 and all(r.status == 206 for r in again), "the resume did not stay parallel"
    starts = {int(r.headers["range"].removeprefix("bytes=").split("-")[0]) for r in again}
    assert {e for _, e in spans if e < len(DATA)} <= starts, "a segment did not continue where its data stopped"
    assert sum(r.body_bytes for r in again) == len(DATA) - kept
