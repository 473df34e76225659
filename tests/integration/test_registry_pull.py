"""Pull from a real OCI registry (docker-registry on loopback): manifests by tag and digest, blobs with ranges (spec/remotes.md#registries).

Models get there the way other tools put them: skopeo copies a store's model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import assert_error, run_cli
from tests.support.registry import Registry, skopeo_copy
from tests.support.requirements import unavailable
from tests.support.trees import read_tree, sample_model, write_tree


@pytest.fixture(scope="module")
def skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        unavailable("skopeo is not installed (Debian package skopeo; scripts/test installs it as root)")
    return found


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
