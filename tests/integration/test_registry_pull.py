"""Pull from a real OCI registry (docker-registry on loopback): manifests by tag and digest, blobs with ranges (spec/remotes.md#registries).

Models get there the way other tools put them: skopeo copies a store's model.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import assert_error, cli_command, run_cli
from tests.support.registry import Registry, running_registry, skopeo_copy
from tests.support.trees import read_tree, sample_model, write_tree


@pytest.fixture(scope="module")
def pushed(registry: Registry, skopeo: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model added to a store and copied by skopeo to repository team/llama, tag q4."""
    base = tmp_path_factory.mktemp("pull")
    files = sample_model(seed=21)
    store = base / "store"
    added = run_cli(store, "--json", "add", "llama:q4", write_tree(base / "model", files))
    assert added.code == 0, added.err
    skopeo_copy(skopeo, f"oci:{store}:llama:q4", registry.ref("team/llama", "q4"))
    return {"files": files, "digest": json.loads(added.out)["digest"]}


def test_fetch_by_tag_from_a_namespace(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "--json", "fetch", "--remote", f"oci://{registry.host}/team", "llama:q4")
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert model["digest"] == pushed["digest"]  # the manifest skopeo copied, byte for byte
    assert read_tree(Path(model["path"])) == pushed["files"]


def test_fetch_by_digest(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{registry.host}/team", f"llama@{pushed['digest']}")
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == pushed["files"]


def test_a_tag_the_registry_lacks_is_not_found(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{registry.host}/team", "llama:nope"), 3)


# -- a registry that wants a login ---------------------------------------------------

USERS = {"ann": "s3cret-pass"}


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, skopeo: str) -> Iterator[Registry]:
    """A second registry, with Basic auth (htpasswd), holding llama:q4 in repository team/llama."""
    with running_registry(tmp_path_factory.mktemp("private-registry"), users=USERS) as server:
        base = tmp_path_factory.mktemp("private-model")
        store = base / "store"
        assert run_cli(store, "add", "llama:q4", write_tree(base / "model", {"w.bin": b"private" * 1000})).code == 0
        subprocess.run(
            [skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", "ann:s3cret-pass", f"oci:{store}:llama:q4", server.ref("team/llama", "q4")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield server


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> dict[str, str]:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(config)}


def test_a_login_from_the_docker_config_is_used_and_never_shown(private: Registry, tmp_path: Path) -> None:
    env = _docker_config(tmp_path, private.host, *next(iter(USERS.items())))
    result = run_cli(tmp_path / "store", "--json", "fetch", "--remote", f"oci://{private.host}/team", "llama:q4", env=env)
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert read_tree(Path(model["path"])) == {"w.bin": b"private" * 1000}
    assert "s3cret-pass" not in result.out + result.err


def test_without_a_login_the_registry_refuses_and_nothing_is_shown(private: Registry, tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "none")}
    message = assert_error(run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{private.host}/team", "llama:q4", env=env), 4)
    assert "401" in message


def test_a_wrong_password_is_refused_without_showing_it(private: Registry, tmp_path: Path) -> None:
    env = _docker_config(tmp_path, private.host, "ann", "wrong-pass")
    result = run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{private.host}/team", "llama:q4", env=env)
    message = assert_error(result, 4)
    assert "401" in message and "wrong-pass" not in result.err


def test_list_and_show_a_registry_namespace(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    listed = run_cli(tmp_path / "store", "--json", "list", "--remote", f"oci://{registry.host}/team")
    assert listed.code == 0, listed.err
    models = json.loads(listed.out)["models"]
    assert [(m["name"], m["digest"]) for m in models] == [("llama:q4", pushed["digest"])]
    shown = run_cli(tmp_path / "store", "--json", "show", "--remote", f"oci://{registry.host}/team", "llama:q4")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["digest"] == pushed["digest"]


# -- docker-style references ----------------------------------------------------------


@pytest.mark.parametrize("spelling", ["{host}/team/llama:q4", "oci://{host}/team/llama:q4"])
def test_a_registry_reference_is_fetched_from_its_registry_and_keeps_its_name(registry: Registry, pushed: dict[str, Any], tmp_path: Path, spelling: str) -> None:
    store = tmp_path / "store"
    result = run_cli(store, "fetch", spelling.format(host=registry.host), env={"ODAI_STORE_REMOTE": ""})  # no remote of the store's: the reference names one
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == pushed["files"]
    local = f"{registry.host}/team/llama:q4"
    path = run_cli(store, "path", local)
    assert path.code == 0 and path.out == result.out, path.err
    assert [m["name"] for m in json.loads(run_cli(store, "--json", "list").out)["models"]] == [local]


def test_a_registry_reference_by_digest(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "fetch", f"{registry.host}/team/llama@{pushed['digest']}")
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == pushed["files"]


def test_lock_and_sync_pin_a_registry_reference(registry: Registry, pushed: dict[str, Any], tmp_path: Path) -> None:
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    ref = f"{registry.host}/team/llama:q4"
    assert run_cli(tmp_path / "store", "lock", "--lockfile", lockfile, ref).code == 0
    text = lockfile.read_text()
    assert f'remote = "oci://{registry.host}"' in text and pushed["digest"] in text
    synced = run_cli(tmp_path / "other", "--json", "sync", "--lockfile", lockfile)
    assert synced.code == 0, synced.err
    (model,) = json.loads(synced.out)["models"]
    assert (model["name"], model["digest"]) == (ref, pushed["digest"])
    assert read_tree(Path(model["path"])) == pushed["files"]


@pytest.mark.parametrize("bad", ["Localhost:5000/llama", "registry.example.com/Team/llama", "oci://llama:v1", "localhost:5000/"])
def test_a_malformed_registry_reference_is_a_usage_error(bad: str, tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path / "store", "fetch", bad), 2)


# -- faults of a real registry ---------------------------------------------------------


def test_a_registry_stopped_mid_blob_and_restarted_is_resumed_not_restarted(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The registry goes away with a third of the blob in; back a moment later, the download asks for the rest (Range), not all of it again."""
    with running_registry(tmp_path_factory.mktemp("restarted-registry")) as server:
        size = 48 << 20
        source = tmp_path / "source"
        assert run_cli(source, "add", "big:v1", write_tree(tmp_path / "model", {"w.bin": random.Random(5).randbytes(size)})).code == 0
        assert run_cli(source, "push", "big:v1", f"oci://{server.host}/faults").code == 0
        command, env = cli_command(tmp_path / "store", ["--json", "fetch", "--connections", "1", "--limit-rate", "12M", "--progress", "json", "--remote", f"oci://{server.host}/faults", "big:v1"], None, ())
        fetch = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert fetch.stderr is not None
            for line in fetch.stderr:  # progress lines: wait for a third of the blob
                if line.startswith("{") and json.loads(line)["done"] >= size // 3:
                    break
            server.stop()
            time.sleep(1.0)  # refused meanwhile: the fetch waits to retry
            server.restart()
            out, err = fetch.communicate(timeout=120)
        finally:
            fetch.kill()
        assert fetch.returncode == 0, err
        (model,) = json.loads(out)["models"]
        assert read_tree(Path(model["path"]))["w.bin"] == random.Random(5).randbytes(size)
        # Resumed: what came over the wire is about one blob, not a third more (a restart from byte 0).
        assert model["downloaded"] < size * 1.1, model["downloaded"]
        assert "retrying in" in err


def test_limit_rate_holds_for_a_registry_s_blobs(registry: Registry, tmp_path: Path) -> None:
    size = 12 << 20
    source = tmp_path / "source"
    assert run_cli(source, "add", "paced:v1", write_tree(tmp_path / "model", {"w.bin": random.Random(6).randbytes(size)})).code == 0
    assert run_cli(source, "push", "paced:v1", f"oci://{registry.host}/paced").code == 0
    began = time.monotonic()
    result = run_cli(tmp_path / "store", "fetch", "--limit-rate", "6M", "--remote", f"oci://{registry.host}/paced", "paced:v1")
    assert result.code == 0, result.err
    assert time.monotonic() - began >= 1.5  # 12 MiB at 6 MB/s: two seconds, less the bucket's first second
