"""Hypothesis strategies shared by the property and unit tests: names, tags, model paths, trees, garbage."""

from __future__ import annotations

import json

from hypothesis import strategies as st

__all__ = [
    "names",
    "tags",
    "ref_names",
    "model_path_parts",
    "model_paths",
    "file_trees",
    "digests_hex",
    "garbage",
    "json_garbage",
]

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_TAG_FIRST = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_TAG_REST = _TAG_FIRST + ".-"


@st.composite
def names(draw, max_runs: int = 4) -> str:
    """A valid model name: lowercase alphanumeric runs joined by single '.', '_', '-' or '/'."""
    runs = draw(st.lists(st.text(_ALNUM, min_size=1, max_size=8), min_size=1, max_size=max_runs))
    seps = draw(st.lists(st.sampled_from("._-/"), min_size=len(runs) - 1, max_size=len(runs) - 1))
    out = runs[0]
    for sep, run in zip(seps, runs[1:]):
        out += sep + run
    return out


def tags() -> st.SearchStrategy[str]:
    """A valid tag, as the OCI distribution spec has it, up to its full 128 characters."""
    return st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_TAG_FIRST),
        st.text(_TAG_REST, max_size=127),
    )


def ref_names() -> st.SearchStrategy[str]:
    """``NAME:TAG`` as it appears in index.json."""
    return st.builds(lambda n, t: f"{n}:{t}", names(), tags())


# Characters a file name may hold on Linux and in our manifests: any Unicode scalar value
# (no lone surrogates, which are not UTF-8) except NUL, '/' (the separator) and '\\'
# (another OS's separator, refused by the manifest rules).
_PATH_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/\\")


def model_path_parts() -> st.SearchStrategy[str]:
    """One component of a model path: never empty, '.' or '..'."""
    return st.text(_PATH_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


def model_paths(max_depth: int = 3) -> st.SearchStrategy[str]:
    """A valid relative model path of 1..max_depth components."""
    return st.lists(model_path_parts(), min_size=1, max_size=max_depth).map("/".join)


def _drop_directories(paths: list[str]) -> list[str]:
    # A path that is also the directory of another cannot be both a file and a
    # directory: keep the deeper one, which leaves at least one path.
    prefixes = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return [p for p in paths if p not in prefixes]


def file_trees(max_files: int = 6, max_bytes: int = 2048) -> st.SearchStrategy[dict[str, bytes]]:
    """{model path: bytes}: a set of files that can be a model, with any bytes (often repeated)."""
    paths = st.lists(model_paths(), min_size=1, max_size=max_files, unique=True).map(_drop_directories)
    # Repeated contents on purpose: dedup inside one model must hold too.
    pool = st.lists(st.binary(max_size=max_bytes), min_size=1, max_size=3)
    return st.tuples(paths, pool, st.randoms(use_true_random=False)).map(
        lambda t: {p: t[2].choice(t[1]) for p in t[0]}
    )


def digests_hex() -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=64, max_size=64)


def garbage(max_size: int = 512) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, as a damaged or hostile file holds."""
    return st.binary(max_size=max_size)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=20,
)


@st.composite
def json_garbage(draw, keys: tuple[str, ...] = ()) -> bytes:
    """JSON documents that look a little like ours: an object using some of ``keys`` with any values."""
    doc = draw(st.dictionaries(st.sampled_from(keys) if keys else st.text(max_size=10), _json_values, max_size=6))
    return json.dumps(doc).encode()
