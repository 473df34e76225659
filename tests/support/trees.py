"""Model trees on disk: write a {relative path: bytes} mapping, and read one back."""

from __future__ import annotations

import os
import random
from pathlib import Path

__all__ = ["write_tree", "read_tree", "sample_model", "store_files", "appended_history", "one_file_origin"]


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``root`` holding ``files`` (model paths use '/'); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = root.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks followed) as {model path: bytes}."""
    found: dict[str, bytes] = {}
    for directory, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(directory, name)
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def sample_model(seed: int = 0) -> dict[str, bytes]:
    """A small model as an app would ship it: a config, weights, nested tokenizer files, an empty file."""
    rng = random.Random(seed)
    return {
        "config.json": b'{"architecture": "test", "seed": %d}\n' % seed,
        "model.bin": rng.randbytes(96 * 1024 + 7),
        "tokenizer/vocab.txt": "\n".join(f"tok{i}" for i in range(200)).encode(),
        "tokenizer/merges/en.txt": b"a b\nc d\n",
        "empty.txt": b"",
    }


def store_files(root: Path) -> dict[str, bytes]:
    """Every regular file of a store (not following links) as {relative path: bytes}: a snapshot
    to prove that a failed command changed nothing. Lock files are left out (their holder record
    changes whenever a lock is taken)."""
    snapshot: dict[str, bytes] = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            rel = path.relative_to(root).as_posix()
            if rel.startswith("locks/"):
                continue
            snapshot[rel] = b"-> " + os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return snapshot


HISTORY = "meta/history.jsonl"


def appended_history(before: dict[str, bytes], after: dict[str, bytes]) -> list[dict]:
    """The history records a command appended between two store_files snapshots, asserting that nothing
    else changed: a failed fetch or sync alters nothing in the store but for the records of its failure
    (spec/store-layout.md#history)."""
    import json

    old, new = before.get(HISTORY, b""), after.get(HISTORY, b"")
    assert {k: v for k, v in after.items() if k != HISTORY} == {k: v for k, v in before.items() if k != HISTORY}
    assert new.startswith(old), "the history was rewritten, not appended to"
    return [json.loads(line) for line in new[len(old) :].splitlines() if line]


def one_file_origin(root: Path, ref: str, size: int, seed: int) -> tuple[Path, bytes]:
    """A store at ``root/store`` holding ``ref`` as one random ``weights.bin`` of ``size`` bytes; (store, bytes)."""
    from store import Store

    data = random.Random(seed).randbytes(size)
    write_tree(root / "model", {"weights.bin": data})
    Store(root / "store").add(ref, [root / "model"])
    return root / "store", data
