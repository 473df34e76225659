"""store/oci/huggingface.py: what fetch hf:// and import-hf-cache share of a Hub model."""

from __future__ import annotations

from store.oci.huggingface import git_blob_sha1


def test_a_git_files_id_is_git_hash_object() -> None:
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
