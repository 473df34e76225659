"""The store's history (spec/store-layout.md#history): what fetch, sync and add record, 'log' and 'show', and pause_all/resume_all."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from store import Store, UsageError
from store.download import DownloadState
from store.local import history
from store.local.history import Record, append, new_record, read_records
from store.redact import scrub
from tests.support.cli import assert_error, run_cli, run_cli_many
from tests.support.counting_server import serve_counting
from tests.support.trees import one_file_origin, write_tree


def lines_of(store: Path) -> list[bytes]:
    return (store / "meta" / "history.jsonl").read_bytes().splitlines()


def records_of(store: Path) -> list[dict]:
    return [json.loads(line) for line in lines_of(store) if line]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "model", {"config.json": b'{"dim": 4}\n', "weights.bin": bytes(range(256)) * 64})


# -- what is recorded ----------------------------------------------------------------------


def test_add_fetch_and_a_failed_fetch_are_recorded_and_shown(tmp_path: Path, model: Path) -> None:
    mirror, store = tmp_path / "mirror", tmp_path / "store"
    added = run_cli(mirror, "add", "demo:v1", model)
    assert added.code == 0, added.err
    fetched = run_cli(store, "--json", "fetch", "--remote", mirror, "demo:v1")
    assert fetched.code == 0, fetched.err
    [doc] = json.loads(fetched.out)["models"]

    [add] = records_of(mirror)
    assert (add["command"], add["reference"], add["name"], add["digest"], add["sources"]) == ("add", "demo:v1", "demo:v1", doc["digest"], [str(model)])
    assert (add["outcome"], add["exit"], add["error"], add["bytes"]) == ("ok", 0, None, 0)
    [fetch] = records_of(store)
    assert (fetch["command"], fetch["reference"], fetch["digest"], fetch["sources"]) == ("fetch", "demo:v1", doc["digest"], [mirror.as_uri()])
    assert fetch["bytes"] == doc["downloaded"] > 0 and fetch["outcome"] == "ok"
    assert list(fetch) == ["v", "time", "command", "reference", "name", "digest", "sources", "bytes", "seconds", "rate", "outcome", "exit", "error", "pid", "uid"]
    assert fetch["pid"] != os.getpid() and fetch["uid"] == os.getuid() and fetch["time"].endswith("Z")

    missing = run_cli(store, "fetch", "--remote", mirror, "demo:v9")
    assert_error(missing, 3)
    failed = records_of(store)[-1]
    assert (failed["reference"], failed["digest"], failed["outcome"], failed["exit"], failed["error"]) == ("demo:v9", None, "failed", 3, "NotFound")
    assert failed["sources"] == [str(mirror)]  # the --remote as given: nothing was resolved

    shown = run_cli(store, "show", "demo:v1")
    assert shown.code == 0 and f"source: fetched from {mirror.as_uri()}\n" in shown.out
    assert json.loads(run_cli(store, "--json", "show", "demo:v1").out)["source"] == {"command": "fetch", "sources": [mirror.as_uri()]}
    assert "source: added from " + str(model) in run_cli(mirror, "show", "demo:v1").out

    log = run_cli(store, "log")
    assert log.code == 0 and log.err == ""
    lines = log.out.splitlines()
    assert len(lines) == 2 and "  fetch  demo:v1  " in lines[0] and lines[0].endswith(f"  ok  {mirror.as_uri()}")
    assert "  fetch  demo:v9  -  0 B in " in lines[1] and "  failed (exit 3, NotFound)  " in lines[1]
    assert json.loads(run_cli(store, "--json", "log", "--limit", "1").out) == {"records": [failed]}
    assert json.loads(run_cli(store, "--json", "log", "demo:v1").out) == {"records": [fetch]}
    assert json.loads(run_cli(store, "--json", "log", "demo").out) == {"records": [fetch, failed]}
    assert json.loads(run_cli(store, "--json", "log", "other").out) == {"records": []}
    assert [r.to_json() for r in Store(store).history("demo", limit=5)] == [fetch, failed]


def test_up_to_date_and_present_by_digest_write_nothing(tmp_path: Path, model: Path) -> None:
    mirror, store = tmp_path / "mirror", tmp_path / "store"
    digest = str(Store(mirror).add("demo:v1", [model]).digest)
    assert run_cli(store, "fetch", "--remote", mirror, "demo:v1").code == 0
    before = lines_of(store)
    again = run_cli(store, "fetch", "--remote", mirror, "demo:v1")
    assert again.code == 0 and "demo:v1: up to date" in again.err
    assert run_cli(store, "fetch", "--remote", mirror, f"demo@{digest}").code == 0  # no bytes, no name moved
    assert run_cli(store, "fetch", f"demo@{digest}").code == 0  # the start-up path: no remote at all
    assert lines_of(store) == before
    # A new name for the same manifest is news, though no byte came.
    Store(mirror).tag("demo:v1", "demo:stable")
    assert run_cli(store, "fetch", "--remote", mirror, "demo:stable").code == 0
    last = records_of(store)[-1]
    assert (last["name"], last["digest"], last["bytes"]) == ("demo:stable", digest, 0)


def test_sync_records_the_pins_it_fetched_and_not_the_present_ones(tmp_path: Path, model: Path) -> None:
    mirror, store = tmp_path / "mirror", tmp_path / "store"
    Store(mirror).add("demo:v1", [model])
    lockfile = tmp_path / "odai.lock"
    assert run_cli(store, "lock", "demo:v1", "--remote", mirror, "--lockfile", lockfile).code == 0
    assert run_cli(store, "sync", "--lockfile", lockfile).code == 0
    [record] = records_of(store)
    assert (record["command"], record["name"], record["sources"], record["outcome"]) == ("sync", "demo:v1", [mirror.as_uri()], "ok")
    assert record["reference"].startswith("demo@sha256:") and record["bytes"] > 0
    assert run_cli(store, "sync", "--lockfile", lockfile).code == 0
    assert len(records_of(store)) == 1


def test_credentials_never_reach_the_history(tmp_path: Path) -> None:
    origin, data = one_file_origin(tmp_path / "origin", "api:v1", 1 << 20, seed=3)
    store = tmp_path / "store"
    secret = "s3cr3t-t0ken"
    with serve_counting(origin) as served:
        ok = run_cli(store, "fetch", "--remote", served.url, "api:v1", env={"ODAI_STORE_TOKEN": secret})
        assert ok.code == 0, ok.err
    host = served.url.removeprefix("http://")
    refused = run_cli(store, "fetch", "--remote", f"http://me:{secret}@{host}/models?token={secret}#{secret}", "api:v2", "--retries", "0")
    assert refused.code == 4
    text = (store / "meta" / "history.jsonl").read_text()
    assert secret not in text and "me:" not in text
    assert [r["sources"] for r in records_of(store)] == [[served.url], [f"http://{host}/models"]]
    assert secret not in run_cli(store, "log").out


def test_an_interrupted_fetch_is_recorded_cancelled_with_its_bytes(tmp_path: Path) -> None:
    origin, _ = one_file_origin(tmp_path / "origin", "api:v1", 8 << 20, seed=5)
    store = Store(tmp_path / "store")
    with serve_counting(origin, rate=4e6) as served:
        download = store.start_fetch("api:v1", remotes=[served.url], connections=1)
        while not (download.progress and download.progress.done > 1 << 20):
            time.sleep(0.02)
        download.cancel()
    [record] = store.history()
    assert (record.outcome, record.exit, record.error, record.name) == ("cancelled", 130, None, "api:v1")
    assert record.digest is not None and record.bytes >= 1 << 20 and record.seconds > 0


# -- many writers, torn lines, hostile files ------------------------------------------------


def test_eight_concurrent_adds_each_leave_one_whole_record(tmp_path: Path, flock: str) -> None:
    store = tmp_path / "store"
    Store(store)
    trees = [write_tree(tmp_path / f"m{i}", {"f.bin": bytes([i]) * (1000 + i)}) for i in range(8)]
    results = run_cli_many(store, [("add", f"m{i}:v1", str(tree)) for i, tree in enumerate(trees)])
    assert all(r.code == 0 for r in results), [r.err for r in results]
    records = records_of(store)
    assert sorted(r["name"] for r in records) == [f"m{i}:v1" for i in range(8)]
    assert all(r["outcome"] == "ok" for r in records)


def _appender(root: str, worker: int, count: int) -> None:
    layout = Store(root).layout
    for i in range(count):
        append(layout, [new_record("add", f"w{worker}:r{i}", None, None, ["x" * (i % 700)], i, 0.5, None)])


def test_processes_appending_at_once_never_tear_or_interleave_a_line(tmp_path: Path) -> None:
    Store(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_appender, args=(str(tmp_path / "store"), w, 200)) for w in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    # Empty lines are allowed: a writer that looked at the last byte while another's line was being written ends it again.
    lines = [line for line in lines_of(tmp_path / "store") if line]
    assert len(lines) == 6 * 200
    records = [history.parse_record(line) for line in lines]
    assert None not in records
    for w in range(6):  # each writer's records in its own order
        assert [r.reference for r in records if r.reference.startswith(f"w{w}:")] == [f"w{w}:r{i}" for i in range(200)]  # type: ignore[union-attr]


def test_a_line_torn_by_a_kill_is_skipped_and_the_next_record_kept(tmp_path: Path, model: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "add", "a:v1", model).code == 0
    path = store / "meta" / "history.jsonl"
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(whole[: len(whole) // 2])  # what a writer killed mid-line leaves
    assert run_cli(store, "add", "b:v1", model).code == 0
    with open(path, "ab") as f:
        f.write(b"\0" * 300)  # a power loss's tail
    assert run_cli(store, "add", "c:v1", model).code == 0
    log = json.loads(run_cli(store, "--json", "log").out)["records"]
    assert [r["name"] for r in log] == ["a:v1", "b:v1", "c:v1"]


def test_writers_killed_at_any_instant_leave_a_history_the_next_one_appends_to(tmp_path: Path, model: Path) -> None:
    import signal

    store = tmp_path / "store"
    Store(store)
    # spawn, not fork: a pytest worker has threads (xdist's), and a child forked while one held a lock can hang on it.
    context = multiprocessing.get_context("spawn")
    written = store / "meta" / "history.jsonl"
    for delay in (0.05, 0.1, 0.2):
        workers = [context.Process(target=_appender, args=(str(store), w, 100_000)) for w in range(3)]
        size = written.stat().st_size if written.exists() else 0
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while (written.stat().st_size if written.exists() else 0) == size and time.monotonic() < deadline:
            time.sleep(0.005)  # the kills land while the writers write, not while they start
        time.sleep(delay)
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)  # type: ignore[arg-type]
            w.join()
    assert run_cli(store, "add", "last:v1", model).code == 0
    # Both files: a fast machine's writers fill ROTATE_AT within the kills' delays, and the last add may be the one that rotates.
    old = store / "meta" / "history.1.jsonl"
    lines = [line for line in (old.read_bytes().splitlines() if old.exists() else []) + lines_of(store) if line]
    # A write cut by SIGKILL between two pages may leave one torn line per writer killed: ended by the next writer, skipped by readers.
    torn = [line for line in lines if history.parse_record(line) is None]
    assert len(lines) > 9 and len(torn) <= 9
    assert [r["name"] for r in json.loads(run_cli(store, "--json", "log", "--limit", "1").out)["records"]] == ["last:v1"]


def test_a_symlink_at_the_history_is_not_followed_and_the_command_succeeds(tmp_path: Path, model: Path) -> None:
    store = tmp_path / "store"
    Store(store)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"private\n")
    (store / "meta" / "history.jsonl").symlink_to(victim)
    first = run_cli(store, "add", "a:v1", model)
    assert first.code == 0 and first.out.strip()
    [warning] = first.err.splitlines()[:-1]  # then 'added ...'
    assert warning.startswith("warning: the store's history was not written (") and "symbolic link" in warning
    assert victim.read_bytes() == b"private\n"
    assert run_cli(store, "-q", "add", "b:v1", model).err == ""
    shown = run_cli(store, "show", "a:v1")
    assert shown.code == 0 and "source:" not in shown.out
    message = assert_error(run_cli(store, "log"), 6)
    assert "history.jsonl (the history) is a symbolic link" in message
    # The Python API: one warning per process, through say.
    said: list[str] = []
    api = Store(store)
    history._warned = False
    api.add("c:v1", [model], say=said.append)
    api.add("d:v1", [model], say=said.append)
    assert len(said) == 1 and "symbolic link" in said[0]


def test_rotation_keeps_one_old_file_and_log_reads_both(tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "ROTATE_AT", 2000)
    store = Store(tmp_path / "store")
    names = [f"m{i}:v1" for i in range(12)]
    for name in names:
        store.add(name, [model])
    old, current = store.layout.old_history, store.layout.history
    assert old.exists() and current.exists()
    assert current.stat().st_size < 2000 + 1000 and old.stat().st_size < 2000 + 1000
    kept = [r.name for r in store.history()]
    assert kept == names[-len(kept) :] and len(kept) >= 5  # the oldest rotated out, the order kept


def test_a_huge_history_is_read_from_its_end_only(tmp_path: Path, model: Path) -> None:
    store = Store(tmp_path / "store")
    with open(store.layout.history, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of NUL bytes, sparse: reading it whole would be noticed
    store.add("a:v1", [model])
    assert store.layout.old_history.stat().st_size == 1 << 30  # rotated away whole
    started = time.monotonic()
    assert [r.name for r in store.history()] == ["a:v1"]
    assert time.monotonic() - started < 5
    assert store.origin("a:v1").sources == (str(model),)  # type: ignore[union-attr]


def _line(name: str, pad: int = 0, **members: object) -> bytes:
    """A record's line for ``name``, as a writer writes it (its LF included), its one source ``pad`` characters long, ``members`` replaced."""
    doc = new_record("add", name, name, None, ["s" * pad], 7, 0.5, None).to_json()
    return json.dumps({**doc, **members}, separators=(",", ":")).encode() + b"\n"


def _logged(store: Path) -> list[str]:
    result = run_cli(store, "--json", "log")
    assert result.code == 0, result.err
    text = run_cli(store, "log")
    assert text.code == 0 and text.err == "", text.err
    return [r["name"] for r in json.loads(result.out)["records"]]


def test_log_reads_the_last_read_max_bytes_and_drops_the_line_the_bound_cuts(tmp_path: Path) -> None:
    """A current history over READ_MAX (no writer came to rotate it): the records in its last 8 MiB only; the line the
    bound cuts is dropped even where its tail is a whole record, and a line over RECORD_MAX between them is skipped."""
    store = tmp_path / "store"
    Store(store)
    old, cut, new = _line("old:v1"), _line("cut:v1"), _line("new:v1")
    long_line = b"#" * (history.READ_MAX - len(cut) - len(new) - 1) + b"\n"  # 8 MiB of one line, far over RECORD_MAX
    window = cut + long_line + new
    assert len(window) == history.READ_MAX
    # The bound falls where cut:v1's record begins, inside a line that began with "x" before it.
    store.joinpath("meta", "history.jsonl").write_bytes(old + b"x" * 100 + window)
    assert _logged(store) == ["new:v1"]
    # One byte more in the window: the bound falls on the "x", and the line it cuts is no record anyway.
    store.joinpath("meta", "history.jsonl").write_bytes(old + b"x" * 100 + window + _line("last:v1"))
    assert _logged(store) == ["new:v1", "last:v1"]


def test_a_line_of_record_max_with_its_lf_is_read_and_one_byte_longer_skipped(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Store(store)
    bare = len(_line("max:v1"))
    at_max, over = _line("max:v1", history.RECORD_MAX - bare), _line("ovr:v1", history.RECORD_MAX - bare + 1)
    assert (len(at_max), len(over)) == (history.RECORD_MAX, history.RECORD_MAX + 1)
    store.joinpath("meta", "history.jsonl").write_bytes(at_max + over + _line("after:v1"))
    assert _logged(store) == ["max:v1", "after:v1"]
    # What the writer would not write, it does not: the same longest line is appended, one more byte is not.
    layout = Store(store).layout
    for pad, name in ((history.RECORD_MAX - bare, "max:v2"), (history.RECORD_MAX - bare + 1, "ovr:v2")):
        append(layout, [new_record("add", name, name, None, ["s" * pad], 7, 0.5, None)])
    assert _logged(store) == ["max:v1", "after:v1", "max:v2"]


# Lines that are no record, each a failure of log before (exit 1, or NaN and Infinity printed as no JSON number) or a type not checked.
NO_RECORDS = {
    "nested-within-16-KiB": b"[" * 8000 + b"]" * 8000,
    "bytes-past-a-float": _line("x:v1", bytes=10**400).rstrip(),
    "rate-past-a-float": _line("x:v1", bytes=10**18, seconds=1e-300).rstrip(),
    "seconds-nan": _line("x:v1").replace(b'"seconds":0.5', b'"seconds":NaN').rstrip(),
    "seconds-infinite": _line("x:v1").replace(b'"seconds":0.5', b'"seconds":1e999').rstrip(),
    "seconds-negative": _line("x:v1", seconds=-1).rstrip(),
    "exit-negative": _line("x:v1", exit=-1).rstrip(),
    "pid-past-int64": _line("x:v1", pid=1 << 64).rstrip(),
    "sources-a-string": _line("x:v1", sources="abc").rstrip(),
    "bytes-a-boolean": _line("x:v1", bytes=True).rstrip(),
    "another-version": _line("x:v1", v=2).rstrip(),
    "nul": b"\0" * 300,
    "not-utf8": b"\xff\xfe{",
    "members-missing": b'{"v":1}',
}


def test_log_skips_the_lines_that_are_no_record_and_shows_the_others(tmp_path: Path, model: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "add", "a:v1", model).code == 0
    with open(store / "meta" / "history.jsonl", "ab") as f:
        f.write(b"".join(line + b"\n" for line in NO_RECORDS.values()))
    assert all(history.parse_record(line) is None for line in NO_RECORDS.values()), [k for k, v in NO_RECORDS.items() if history.parse_record(v)]
    assert run_cli(store, "add", "b:v1", model).code == 0
    assert _logged(store) == ["a:v1", "b:v1"]
    assert [r.name for r in Store(store).history()] == ["a:v1", "b:v1"]  # the Python API reads the same
    shown = run_cli(store, "show", "b:v1")
    assert shown.code == 0 and f"source: added from {model}" in shown.out, shown.out + shown.err


def test_a_read_only_store_writes_no_history(tmp_path: Path, model: Path) -> None:
    from tests.support.privileges import bound_by_permissions

    mirror, store = tmp_path / "mirror", tmp_path / "store"
    Store(mirror).add("demo:v1", [model])
    Store(store).add("a:v1", [model])
    before = lines_of(store)
    os.chmod(store, 0o555)  # meta/ stays writable: only the check of the store itself keeps the failure out
    try:
        result = run_cli(store, "fetch", "--remote", mirror, "demo:v1", prefix=bound_by_permissions())
    finally:
        os.chmod(store, 0o755)
    assert_error(result, 6)  # the two lines and nothing else: no warning about the history either
    assert lines_of(store) == before


def test_log_refuses_what_is_not_a_name_or_a_count(tmp_path: Path) -> None:
    assert "invalid model name" in assert_error(run_cli(tmp_path / "store", "log", "Bad"), 2)
    assert_error(run_cli(tmp_path / "store", "log", "--limit", "-1"), 2)
    with pytest.raises(UsageError):
        Store(tmp_path / "store").history(limit=True)


def test_records_parse_only_when_whole() -> None:
    record = new_record("fetch", "a:v1", "a:v1", None, ["http://h/x"], 10, 2.0, None)
    line = history.encode_record(record)
    assert history.parse_record(line) == record and record.rate == 5
    for bad in (line[:-10], b"", b"[]", line.replace(b'"v":1', b'"v":2'), line.replace(b'"bytes":10', b'"bytes":"10"'), b"\0" * 40):
        assert history.parse_record(bad) is None, bad
    assert isinstance(read_records, object) and Record._fields[0] == "time"
    assert scrub("https://u:p@h.example:8443/a/b?sig=1#f") == "https://h.example:8443/a/b"
    assert scrub("/srv/models") == "/srv/models"


# -- pause_all and resume_all -------------------------------------------------------------


def test_pause_all_stops_every_download_and_resume_all_completes_them(tmp_path: Path) -> None:
    a, data_a = one_file_origin(tmp_path / "a", "a:v1", 6 << 20, seed=1)
    b, data_b = one_file_origin(tmp_path / "b", "b:v1", 6 << 20, seed=2)
    store = Store(tmp_path / "store", max_downloads=2)
    with serve_counting(a, rate=3e6) as served_a, serve_counting(b, rate=3e6) as served_b:
        first = store.start_fetch("a:v1", remotes=[served_a.url], connections=1)
        second = store.start_fetch("b:v1", remotes=[served_b.url], connections=1)
        while not all(d.progress and d.progress.done > 1 << 20 for d in (first, second)):
            time.sleep(0.02)
        store.pause_all()
        assert first.state is second.state is DownloadState.PAUSED
        time.sleep(0.3)  # a block already on its way may still land
        sent = served_a.bytes_sent + served_b.bytes_sent
        time.sleep(1.0)
        assert served_a.bytes_sent + served_b.bytes_sent == sent
        store.resume_all()
        assert first.wait(60).path and second.wait(60).path
    assert (first.wait().path / "weights.bin").read_bytes() == data_a
    assert (second.wait().path / "weights.bin").read_bytes() == data_b
    assert store.verify().report.corrupt == ()


def test_pause_all_holds_a_queued_download_too(tmp_path: Path) -> None:
    a, _ = one_file_origin(tmp_path / "a", "a:v1", 4 << 20, seed=1)
    store = Store(tmp_path / "store", max_downloads=1)
    with serve_counting(a, rate=3e6) as served:
        running = store.start_fetch("a:v1", remotes=[served.url], connections=1)
        queued = store.start_fetch("a:v1", remotes=[served.url], connections=1)
        assert queued.state is DownloadState.PENDING
        time.sleep(0.3)
        store.pause_all()
        # The slot the first one freed must not start the second.
        time.sleep(0.5)
        assert running.state is queued.state is DownloadState.PAUSED
        store.resume_all()
        assert running.wait(60).digest == queued.wait(60).digest


def test_a_download_paused_while_queued_is_not_started_by_a_free_slot(tmp_path: Path) -> None:
    a, _ = one_file_origin(tmp_path / "a", "a:v1", 1 << 20, seed=1)
    store = Store(tmp_path / "store", max_downloads=1)
    with serve_counting(a) as served:
        running = store.start_fetch("a:v1", remotes=[served.url], connections=1)
        queued = store.start_fetch("a:v1", remotes=[served.url], connections=1)
        queued.pause()
        running.wait(60)
        time.sleep(0.3)
        assert queued.state is DownloadState.PAUSED
        store.resume_all()
        assert queued.wait(60).digest == running.wait().digest
