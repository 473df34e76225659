"""push: a model of the store to a real registry (docker-registry on loopback), read back by odai-store and by skopeo (spec/cli.md#push)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from store import Store
from tests.support.cli import assert_error, run_cli
from tests.support.registry import Registry
from tests.support.trees import read_tree, sample_model, write_tree

FILES = sample_model(seed=31)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    assert run_cli(root, "add", "llama:q4", write_tree(tmp_path / "model", FILES)).code == 0
    return root


def test_push_under_a_namespace_then_fetch_it_back(store: Path, registry: Registry, tmp_path: Path) -> None:
    pushed = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/pushns")
    assert pushed.code == 0, pushed.err
    doc = json.loads(pushed.out)
    digest = str(Store(store).resolve("llama:q4")[0])
    assert (doc["digest"], doc["name"], doc["tag"], doc["tagged"]) == (digest, "llama", "q4", True)
    assert doc["sent"] == sum(len(data) for data in FILES.values()) + 2  # every file once, and the empty config {}
    fetched = run_cli(tmp_path / "other", "fetch", "--remote", f"oci://{registry.host}/pushns", "llama:q4")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == FILES
    # Again: the tag names that manifest already, and nothing goes.
    again = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/pushns")
    assert again.code == 0 and json.loads(again.out)["tagged"] is False and json.loads(again.out)["sent"] == 0, again.err
    assert "up to date" in run_cli(store, "push", "llama:q4", f"oci://{registry.host}/pushns").err


def test_push_to_a_full_reference_and_skopeo_reads_it(store: Path, registry: Registry, tmp_path: Path, skopeo: str) -> None:
    pushed = run_cli(store, "push", "llama:q4", f"oci://{registry.host}/elsewhere/llama-copy:v9")
    assert pushed.code == 0, pushed.err
    digest = pushed.out.strip()
    assert digest == str(Store(store).resolve("llama:q4")[0])
    pulled = tmp_path / "pulled"
    proc = subprocess.run(
        [skopeo, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", registry.ref("elsewhere/llama-copy", "v9"), f"oci:{pulled}:m:v9"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    fetched = run_cli(tmp_path / "from-skopeo", "fetch", "--remote", pulled, "m:v9")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == FILES


def test_a_file_of_over_16_mib_goes_in_one_patch(registry: Registry, tmp_path: Path) -> None:
    # Distribution fsyncs an upload at the end of every request; push sent 16 MiB per PATCH, a third of its time waiting.
    data = random.Random(3).randbytes((16 << 20) + 1)
    store = tmp_path / "store"
    assert run_cli(store, "add", "big:v1", write_tree(tmp_path / "model", {"w.bin": data})).code == 0
    pushed = run_cli(store, "push", "big:v1", f"oci://{registry.host}/onepatch")
    assert pushed.code == 0, pushed.err
    log = (registry.base / "console.log").read_text(errors="replace").splitlines()
    assert len([line for line in log if '"PATCH /v2/onepatch/big/blobs/uploads/' in line]) == 1  # the config goes with its PUT
    fetched = run_cli(tmp_path / "other", "fetch", "--remote", f"oci://{registry.host}/onepatch", "big:v1")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == {"w.bin": data}


def test_push_as_another_name_under_the_namespace(store: Path, registry: Registry, tmp_path: Path) -> None:
    renamed = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/asns", "--as", "renamed:v1")
    assert renamed.code == 0, renamed.err
    assert (json.loads(renamed.out)["name"], json.loads(renamed.out)["tag"]) == ("renamed", "v1")
    assert registry.manifest("asns/renamed", "v1").status == 200
    assert_error(run_cli(store, "push", "llama:q4", f"oci://{registry.host}/asns/x:v1", "--as", "y:v2"), 2)  # DEST names its own


@pytest.mark.parametrize(
    "dest",
    ["http://127.0.0.1:5000/x", "oci://127.0.0.1:5000/team/llama@sha256:" + "0" * 64, "oci:///nohost", "oci://127.0.0.1:5000/ns?x=1"],
)
def test_a_destination_that_is_no_registry_reference_is_refused(store: Path, dest: str) -> None:
    assert_error(run_cli(store, "push", "llama:q4", dest), 2)


def test_a_model_the_store_lacks_is_not_found(store: Path, registry: Registry) -> None:
    assert_error(run_cli(store, "push", "nope:v1", f"oci://{registry.host}/ns"), 3)
