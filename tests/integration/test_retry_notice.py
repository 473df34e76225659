"""A command that waits to retry says so on stderr, with the count (spec/fetching.md, Retrying)."""

from __future__ import annotations

import random
import re

from store import Store
from store.errors import NetworkError
from tests.support.cli import assert_error
from tests.support.fault_server import Fault, oci_layout

DATA = random.Random(61).randbytes(50_000)
NOTICE = r".*127\.0\.0\.1:9.*: retrying in \d+\.\d s \(attempt [12] of 2\)"


def test_a_refused_connection_says_each_retry_before_the_error(run_cli) -> None:
    result = run_cli("fetch", "--retries", "2", "--remote", "http://127.0.0.1:9", "m:v1")
    assert_error(result, 4, said=NOTICE)
    said = result.err.splitlines()[:-2]
    assert [re.search(r"attempt \d of 2", line).group() for line in said] == ["attempt 1 of 2", "attempt 2 of 2"]


def test_quiet_silences_the_retry_notices(run_cli) -> None:
    assert_error(run_cli("-q", "fetch", "--retries", "2", "--remote", "http://127.0.0.1:9", "m:v1"), 4)


def test_a_blob_read_that_fails_says_its_retry(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    server = fault_server(layout).fail(Fault(status=503, retry_after="0", path=layout.blob_path(DATA), times=1))
    result = run_cli("fetch", "--progress", "none", "--remote", server.url, layout.ref_name)
    assert result.code == 0, result.err
    assert re.search(r"503.*: retrying in \d+\.\d s \(attempt 1 of 5\)", result.err), result.err


def test_the_api_passes_the_notices_to_say(tmp_path) -> None:
    said: list[str] = []
    try:
        Store(tmp_path / "store").fetch("m:v1", remotes="http://127.0.0.1:9", retries=1, say=said.append)
    except NetworkError:
        pass
    else:
        raise AssertionError("fetch from a closed port succeeded")
    assert len(said) == 1 and re.fullmatch(NOTICE.replace("[12] of 2", "1 of 1"), said[0]), said


def test_a_url_s_credentials_are_never_shown(fault_server, run_cli) -> None:
    # A remote written with a password in it (as config.toml of a shared store may hold),
    # and a --url with a signed query: neither appears in the retries or the error.
    result = run_cli("fetch", "--retries", "1", "--remote", "http://ann:s3cret@127.0.0.1:9/models", "m:v1")
    assert_error(result, 4, said=r".*127\.0\.0\.1:9.*: retrying in \d+\.\d s \(attempt 1 of 1\)")
    assert "s3cret" not in result.err and "ann:" not in result.err
    server = fault_server(None, {})
    signed = run_cli("fetch", "--retries", "0", "--url", f"{server.url}/files/w.bin?sig=t0ken", "--sha256", "0" * 64, "one:v1")
    assert_error(signed, 3)
    assert "t0ken" not in signed.err and f"{server.url}/files/w.bin" in signed.err
