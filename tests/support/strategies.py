"""Hypothesis strategies shared by the property and unit tests: names, tags, model paths, trees, garbage."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from store.lockfile import Lockfile, Pin, PinnedFile
from store.oci.digest import Digest

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
    "hostile_bytes",
    "http_answers",
    "challenges",
    "challenge_answers",
    "remotes",
    "pinned_files",
    "pins",
    "lockfiles",
]

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_TAG_FIRST = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_TAG_REST = _TAG_FIRST + ".-"


def _spelled(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # Bytes mapped onto the alphabet: much cheaper to draw than text, and they shrink alike.
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: "".join(alphabet[x % len(alphabet)] for x in b))


@st.composite
def names(draw, max_runs: int = 4) -> str:
    """A valid model name: lowercase alphanumeric runs joined by single '.', '_', '-' or '/'."""
    runs = draw(st.lists(_spelled(_ALNUM, 1, 8), min_size=1, max_size=max_runs))
    seps = draw(_spelled("._-/", len(runs) - 1, len(runs) - 1))
    return runs[0] + "".join(sep + run for sep, run in zip(seps, runs[1:], strict=True))


def tags() -> st.SearchStrategy[str]:
    """A valid tag, as the OCI distribution spec has it, up to its full 128 characters."""
    return st.builds(lambda first, rest: first + rest, _spelled(_TAG_FIRST, 1, 1), _spelled(_TAG_REST, 0, 127))


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
    # From 32 random bytes: far cheaper to draw than 64 characters one by one.
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


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


# -- hostile versions of a valid file ------------------------------------------------

# Values a careless or hostile writer puts where ours go, as raw text of the file's syntax:
# wrong types, numbers past every bound (past Python's 4300-digit int conversion too,
# infinities that int() cannot take), nesting past the recursion limit, strings a path
# or the terminal must not take (NUL, a lone surrogate, a long one), digests that are
# almost right. Nesting twice: past the recursion limit within a 4 KiB bound, and far past it.
_DEEP, _DEEP_IN_4_KIB = 5000, 2000
_HOSTILE_JSON = (
    "null", "true", "false", "0", "-1", "1.5", "-0.0", "1e999", "-1e999", "NaN", "Infinity",
    "9223372036854775807", "9223372036854775808", "18446744073709551616", "1" + "0" * 5000,
    '""', '"\\u0000x"', '"a\\u0000b"', '"\\ud800"', '"\\u001b[2J"', '"../../../etc/passwd"', '"/"', '"' + "x" * 70_000 + '"',
    '"sha256:' + "0" * 64 + '"', '"sha256:' + "A" * 64 + '"', '"sha256:' + "0" * 63 + '"', '"sha512:' + "0" * 128 + '"',
    "[]", "{}", "[null]", '{"":{}}', "[" * _DEEP + "]" * _DEEP, '{"a":' * _DEEP + "1" + "}" * _DEEP,
    "[" * _DEEP_IN_4_KIB + "]" * _DEEP_IN_4_KIB,
)
_HOSTILE_TOML = (
    '""', '"x"', "0", "-1", "1.5", "inf", "nan", "true", "1979-05-27T07:32:00Z", "07:32:00",
    "9223372036854775807", "1" + "0" * 5000, "[]", "{}", '"\\u0000"', '"\\ud800"', '"../../etc/passwd"',
    '"sha256:' + "0" * 64 + '"', '"sha256:' + "0" * 63 + '"', "[" * _DEEP + "]" * _DEEP, "{a=" * _DEEP + "1" + "}" * _DEEP,
    "[" * _DEEP_IN_4_KIB + "]" * _DEEP_IN_4_KIB,
)
_HOSTILE_BYTES = (b"\0", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\r", b"\n", b"\x1b[2J", b"\xef\xbb\xbf", b"{", b"}", b"[", b'"', b",", b"=")
_SENTINEL = "\x00hostile\x00"


def _paths(doc: object, at: tuple = ()) -> list[tuple]:
    """Every place in a parsed JSON document: key paths from the root (the root itself is ``()``)."""
    found = [at]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*at, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*at, i))
    return found


def _replaced(doc: object, at: tuple, value: object) -> object:
    if not at:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)  # type: ignore[call-overload]
    copy[at[0]] = _replaced(copy[at[0]], at[1:], value)
    return copy


def _dropped(doc: object, at: tuple) -> object:
    if len(at) == 1:
        copy = dict(doc) if isinstance(doc, dict) else list(doc)  # type: ignore[call-overload]
        del copy[at[0]]
        return copy
    copy = dict(doc) if isinstance(doc, dict) else list(doc)  # type: ignore[call-overload]
    copy[at[0]] = _dropped(copy[at[0]], at[1:])
    return copy


@st.composite
def _json_near_miss(draw, valid: bytes) -> bytes:
    """``valid`` (a JSON document) with one value replaced by a hostile token, or one member dropped or added."""
    doc = json.loads(valid)
    at = draw(st.sampled_from(_paths(doc)))
    how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
    if how == "drop" and at:
        return json.dumps(_dropped(doc, at)).encode()
    if how == "add":
        return json.dumps(_replaced(doc, at, {"unknown": _SENTINEL, "extra": [1, 2]})).encode().replace(
            json.dumps(_SENTINEL).encode(), draw(st.sampled_from(_HOSTILE_JSON)).encode()
        )
    token = draw(st.sampled_from(_HOSTILE_JSON))
    return json.dumps(_replaced(doc, at, _SENTINEL)).encode().replace(json.dumps(_SENTINEL).encode(), token.encode())


@st.composite
def _toml_near_miss(draw, valid: bytes) -> bytes:
    """``valid`` (TOML) with the value of one ``key = value`` line replaced by a hostile token, or the line dropped or doubled."""
    lines = valid.split(b"\n")
    assignments = [i for i, line in enumerate(lines) if b" = " in line] or [0]
    i = draw(st.sampled_from(assignments))
    how = draw(st.sampled_from(["replace", "replace", "drop", "double"]))
    if how == "drop":
        del lines[i]
    elif how == "double":
        lines.insert(i, lines[i])
    else:
        key = lines[i].partition(b" = ")[0] or b"version"
        lines[i] = key + b" = " + draw(st.sampled_from(_HOSTILE_TOML)).encode()
    return b"\n".join(lines)


@st.composite
def _damaged(draw, valid: bytes) -> bytes:
    """``valid`` as a disk, an editor or a torn write leaves it: cut short, with bytes flipped, inserted, removed or doubled."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "double", "nul-fill"]))
        if how == "truncate":
            del data[at:]
        elif how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.sampled_from(_HOSTILE_BYTES) | st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "double":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        elif how == "nul-fill":  # what a power loss leaves in a file's last pages
            end = min(len(data), at + draw(st.integers(1, 4096)))
            data[at:end] = bytes(end - at)
    return bytes(data)


def hostile_bytes(valid: bytes, syntax: str = "json") -> st.SearchStrategy[bytes]:
    """What may be found where ``valid`` should be: random bytes, ``valid`` damaged, or a near miss in its ``syntax``
    ("json", "toml" or "text"): valid syntax with a value of the wrong type, a number past every bound, nesting past
    the recursion limit, a wrong digest, a NUL or a lone surrogate in a string.

    Every strategy shrinks towards ``valid``'s neighbours, so a failure reads as "this one change broke it".
    """
    choices = [garbage(), st.just(b""), st.just(valid[: len(valid) // 2]), _damaged(valid)]
    if syntax == "json":
        choices += [_json_near_miss(valid), _json_near_miss(valid), json_garbage(tuple(_keys(valid)))]
        choices += [st.sampled_from(_HOSTILE_JSON).map(str.encode)]
    elif syntax == "toml":
        choices += [_toml_near_miss(valid), _toml_near_miss(valid)]
    return st.one_of(choices)


def _keys(valid: bytes) -> set[str]:
    """The member names of a JSON document, at any depth."""
    return {str(at[-1]) for at in _paths(json.loads(valid)) if at and isinstance(at[-1], str)} or {"a"}


# -- what a remote answers ---------------------------------------------------------

_STATUS_LINES = (
    b"HTTP/1.1 200 OK", b"HTTP/1.1 206 Partial Content", b"HTTP/1.0 200 OK", b"HTTP/1.1 204 No Content", b"HTTP/1.1 301 Moved",
    b"HTTP/1.1 302 Found", b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 307 Temporary Redirect", b"HTTP/1.1 400 Bad Request",
    b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 416 Range Not Satisfiable",
    b"HTTP/1.1 429 Too Many Requests", b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.1 503 Service Unavailable",
    b"HTTP/1.1 999 Whatever", b"HTTP/1.1 2000 OK", b"HTTP/1.1 abc", b"HTTP/2 200", b"ICY 200 OK", b"", b"HTTP/1.1 200 OK\x00",
)
_HEADERS = (
    b"Content-Length: 0", b"Content-Length: -1", b"Content-Length: abc", b"Content-Length: 1e3", b"Content-Length: 99999999999999999999999",
    b"Content-Length: 18446744073709551616", b"Content-Length: 1, 2",
    b"Content-Range: bytes 0-9/10", b"Content-Range: bytes */*", b"Content-Range: bytes 5-2/1", b"Content-Range: bytes 0-1/-5",
    b"Content-Range: bytes 0-99999999999999999999/99999999999999999999", b"Content-Range: garbage",
    b"Content-Encoding: gzip", b"Content-Encoding: deflate", b"Content-Encoding: br", b"Content-Encoding: x-garbage",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: x-garbage",
    b"Retry-After: 99999999999", b"Retry-After: -5", b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT", b"Retry-After: soon", b"Retry-After: nan",
    b"Location: http://127.0.0.1:1/x", b"Location: ", b"Location: ftp://127.0.0.1/x", b"Location: /index.json", b"Location: http://[::1",
    b"Location: //127.0.0.1:1/x", b"Location: file:///etc/passwd",
    b"ETag: ", b'ETag: "\x01\xff"', b"Last-Modified: yesterday", b"Accept-Ranges: none", b"Accept-Ranges: bytes",
    b"Content-Type: application/vnd.oci.image.index.v1+json", b"Content-Type: application/vnd.oci.image.manifest.v1+json",
    b"Content-Type: text/html", b"Content-Type: \xff\xfe", b"Docker-Content-Digest: sha256:" + b"0" * 64, b"Docker-Content-Digest: garbage",
    b'WWW-Authenticate: Bearer realm="http://127.0.0.1:1/token",service="x"', b"WWW-Authenticate: Basic", b"WWW-Authenticate: \x00",
    b"Link: <http://127.0.0.1:1/x>; rel=next", b'Link: </x>; rel="next"', b'Link: <>; rel="next"', b'Link: <http://[::1>; rel="next"',
    b"X-Error-Code: GatedRepo", b"X-Error-Code: RepoNotFound", b"X-Error-Code: EntryNotFound", b"X-Error-Code: \xff", b"X-Error-Message: " + b"m" * 5000,
    b"X-Repo-Commit: " + b"0" * 40, b"X-Repo-Commit: garbage", b'X-Linked-Etag: "' + b"0" * 64 + b'"', b"X-Linked-Etag: ", b"X-Linked-Size: -1",
    b"X-Linked-Size: 99999999999999999999999", b"Connection: close", b"Connection: keep-alive",
    b"no colon at all", b": no name", b"X-Long: " + b"x" * 70_000, b"X-Nul: a\x00b", b"X-Latin: \xff\xfe",
)


@st.composite
def _answer(draw, honest: bytes, syntax: str) -> bytes:
    body = draw(st.just(honest) | hostile_bytes(honest, syntax))
    status = draw(st.sampled_from(_STATUS_LINES))
    headers = draw(st.lists(st.sampled_from(_HEADERS), max_size=6))
    length = draw(st.sampled_from(["right", "right", "short", "long", "none"]))
    if length != "none":
        stated = {"right": len(body), "short": max(0, len(body) - draw(st.integers(1, 100))), "long": len(body) + draw(st.integers(1, 1 << 20))}[length]
        headers.insert(draw(st.integers(0, len(headers))), b"Content-Length: %d" % stated)
    if draw(st.integers(0, 9)) == 0:
        headers += [b"X-Many-%d: y" % i for i in range(draw(st.integers(100, 300)))]
    return status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def http_answers(honest: bytes, syntax: str = "json") -> st.SearchStrategy[bytes]:
    """What a remote may answer where ``honest`` (a body of ``syntax``, as hostile_bytes takes it) was due: any bytes
    at all, or a status line, headers and a body each of which may be wrong (a length that lies, a range, an encoding,
    a redirect or a wait that makes no sense, a header line that is not one, many or long headers)."""
    return st.one_of(garbage(2048), _answer(honest, syntax), _answer(honest, syntax), _answer(honest, syntax))


# -- what a registry's token service answers ----------------------------------------

# Realms a registry may name: no URL, not one of http(s), one no parser reads, a port past 65535, a host that refuses,
# a login in the URL, a query and fragment, a length past any line.
_HOSTILE_REALMS = (
    b"", b"http://[::1", b"http://", b"http://:80/", b"/token", b"//127.0.0.1/token", b"file:///etc/passwd", b"ftp://127.0.0.1/token",
    b"http://127.0.0.1:1/token", b"https://127.0.0.1:1/token", b"http://127.0.0.1:99999/token", b"http://127.0.0.1:-1/token",
    b"http://u:p@127.0.0.1:1/token", b"http://127.0.0.1:1/t?a=b#f", b"http://\xff\xfe/", b"http://127.0.0.1:1/" + b"x" * 9000,
)
_HOSTILE_PARAMS = (b'""', b'"\\"', b'"a\\\\"', b"\x00", b'"\x00"', b'"' + b"s" * 9000 + b'"', b"=", b'"unterminated', b"a b", b"\xff")
_CHALLENGES = (
    b"", b"Basic", b'Basic realm="registry"', b"Bearer", b"Bearer ", b"bearer realm=", b"Bearer ,,,,", b"Negotiate", b"Bearer realm",
    b"Bearer realm==", b'Bearer realm="a",realm="b"', b"Bearer " + b"k=v," * 5000,
)


def _challenge_params(honest: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The scheme of ``honest`` (``Bearer k="v",...``) and its parameters, values as written (quoted)."""
    scheme, _, rest = honest.partition(b" ")
    return scheme, [tuple(part.split(b"=", 1)) for part in rest.split(b",")]  # type: ignore[misc]


@st.composite
def _challenge_near_miss(draw, honest: bytes) -> bytes:
    """``honest`` with one thing wrong: the realm, another parameter's value, a parameter dropped, the scheme, a second challenge."""
    scheme, params = _challenge_params(honest)
    how = draw(st.sampled_from(["realm", "realm", "value", "drop", "scheme", "unquoted", "second"]))
    at = draw(st.integers(0, len(params) - 1))
    if how == "realm":
        params = [(k, b'"' + draw(st.sampled_from(_HOSTILE_REALMS)) + b'"' if k == b"realm" else v) for k, v in params]
    elif how == "value":
        params[at] = (params[at][0], draw(st.sampled_from(_HOSTILE_PARAMS)))
    elif how == "drop":
        del params[at]
    elif how == "scheme":
        scheme = draw(st.sampled_from([b"Basic", b"bearer", b"BEARER", b"Bearer\t", b"", b"Bearer,", b"Digest"]))
    elif how == "unquoted":
        params[at] = (params[at][0], params[at][1].strip(b'"'))
    value = scheme + b" " + b",".join(k + b"=" + v for k, v in params)
    if how == "second":
        other = draw(st.sampled_from([b'Basic realm="registry"', b'Bearer realm="http://127.0.0.1:1/token"', b"Negotiate"]))
        value = draw(st.sampled_from([value + b", " + other, other + b", " + value]))
    return value


def challenges(honest: bytes) -> st.SearchStrategy[bytes]:
    """What a registry may send as its ``WWW-Authenticate`` where ``honest`` (a Bearer challenge naming a realm) was due:
    random bytes, ``honest`` damaged, a near miss (a realm that is no http(s) URL or that no parser reads, a value
    unterminated or past any length, a parameter missing, another scheme, two challenges), or a known odd one."""
    return st.one_of(garbage(256), _damaged(honest), _challenge_near_miss(honest), _challenge_near_miss(honest), st.sampled_from(_CHALLENGES))


@st.composite
def _challenge_answer(draw, honest: bytes) -> bytes:
    status = draw(st.sampled_from([b"HTTP/1.1 401 Unauthorized"] * 6 + list(_STATUS_LINES)))
    values = draw(st.lists(st.just(honest) | challenges(honest), min_size=draw(st.sampled_from([1, 1, 1, 0, 2])), max_size=2))
    headers = draw(st.permutations([b"WWW-Authenticate: " + v for v in values] + draw(st.lists(st.sampled_from(_HEADERS), max_size=3))))
    body = draw(st.sampled_from([b"", b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}']) | garbage(64))
    return status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Content-Length: %d\r\n\r\n" % len(body) + body


def challenge_answers(honest: bytes) -> st.SearchStrategy[bytes]:
    """What a registry may answer a request it wants a token for, where a 401 with ``honest`` (the value of a Bearer
    ``WWW-Authenticate``) was due: any bytes, or a 401 (or another status) with none, one or two challenges, each of
    which may be wrong (``challenges``), among other headers that may lie."""
    return st.one_of(garbage(512), _challenge_answer(honest), _challenge_answer(honest), _challenge_answer(honest))


# -- lockfiles ---------------------------------------------------------------------


def remotes() -> st.SearchStrategy[str]:
    """What a pin records as its remote: usually a URL, but any string must survive TOML."""
    urls = st.builds("http://127.0.0.1:{}/models".format, st.integers(1, 65535))
    return urls | st.just("") | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def pinned_files(max_files: int = 4) -> st.SearchStrategy[tuple[PinnedFile, ...]]:
    """The files of one pin: distinct valid paths (none also a directory), any digest, any size TOML holds."""
    paths = st.lists(model_paths(), min_size=0, max_size=max_files, unique=True).map(_drop_directories)
    sizes = st.integers(0, 2**63 - 1)  # a TOML integer is a signed 64-bit one
    return paths.flatmap(
        lambda ps: st.tuples(*(st.builds(PinnedFile, st.just(p), digests_hex().map(Digest), sizes) for p in ps))
    )


def _sources() -> st.SearchStrategy[str | None]:
    """A pin's ``source``: none, the digest of a manifest of another format, or a Hub commit."""
    return st.none() | digests_hex().map("sha256:{}".format) | st.binary(min_size=20, max_size=20).map(bytes.hex)


def pins() -> st.SearchStrategy[Pin]:
    """A Pin whose files come in any order (the lockfile must sort them), with or without a source."""
    return st.builds(
        Pin, names(), tags(), remotes(), digests_hex().map(Digest), pinned_files().flatmap(st.permutations).map(tuple), _sources()
    )


def lockfiles(max_pins: int = 4) -> st.SearchStrategy[Lockfile]:
    """A Lockfile of pins with distinct NAME:TAG, in any order."""
    return st.lists(pins(), max_size=max_pins, unique_by=lambda p: (p.name, p.tag)).map(lambda ps: Lockfile(tuple(ps)))
