"""store/oci/huggingface.py: the name and git id of a Hub model, the same whichever way it came in (fetch hf://, import-hf-cache)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from store.oci.huggingface import REPO_PART, git_blob_sha1, hub_reference
from store.oci.reference import parse_reference
from store.remote.hub import HubSpec

_PARTS = st.from_regex(REPO_PART, fullmatch=True).filter(lambda p: ".." not in p)
_REVISIONS = st.one_of(st.sampled_from(["main", "v1.0", "refs/pr/1", "-x", "." * 3, "0" * 40]), st.text(min_size=1, max_size=200))


@given(_PARTS, _PARTS, _REVISIONS)
def test_the_name_is_the_one_fetch_gives_and_the_grammar_takes(org: str, name: str, revision: str) -> None:
    # Two copies until hub.py's local_reference calls hub_reference: they must not drift apart meanwhile.
    ref = hub_reference(f"{org}/{name}", revision)
    assert ref == HubSpec(f"{org}/{name}", revision).local_reference()
    assert parse_reference(str(ref)) == ref


def test_a_git_files_id_is_git_hash_object() -> None:
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
