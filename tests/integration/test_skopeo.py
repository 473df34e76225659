"""Interop: skopeo, an independent OCI tool, reads a model this store holds (issue 2, Formats)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from store import Store
from tests.support.requirements import unavailable
from tests.support.trees import sample_model, write_tree

SKOPEO = shutil.which("skopeo")


@pytest.fixture
def skopeo() -> str:
    if SKOPEO is None:
        unavailable("skopeo is not installed (Debian package skopeo; scripts/test installs it as root)")
    return SKOPEO


def _inspect_raw(skopeo: str, store_dir: Path, ref: str) -> subprocess.CompletedProcess[bytes]:
    # This skopeo inspects artifacts only with --raw; oci:DIR:REF names a ref.name in index.json.
    return subprocess.run([skopeo, "inspect", "--raw", f"oci:{store_dir}:{ref}"], capture_output=True, timeout=60)


@pytest.mark.parametrize("name", ["llama:q4", "org/team/model-3b.v2:Q4_K_M"])
def test_skopeo_reads_the_manifest(name: str, skopeo: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    model = store.add(name, [write_tree(tmp_path / "model", sample_model())])
    store.add("decoy:v1", [write_tree(tmp_path / "decoy", {"x": b"decoy"})])

    proc = _inspect_raw(skopeo, store.root, name)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == store.layout.blob(model.digest).read_bytes()
    assert hashlib.sha256(proc.stdout).hexdigest() == model.digest.hex
    layers = json.loads(proc.stdout)["layers"]
    assert sorted(layer["annotations"]["org.opencontainers.image.title"] for layer in layers) == sorted(sample_model())


def test_skopeo_does_not_find_an_unknown_name(skopeo: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.add("llama:q4", [write_tree(tmp_path / "model", {"a": b"a"})])
    assert _inspect_raw(skopeo, store.root, "llama:q5").returncode != 0
