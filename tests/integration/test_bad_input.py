"""Bad input through the command line: one error line, one hint line, the documented exit
code, nothing on stdout, no traceback, and the store exactly as it was (issue 2, Guarantees)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from store import Store
from store.errors import UsageError
from tests.support.cli import assert_error, run_cli_many
from tests.support.cli import run_cli as run_in
from tests.support.privileges import bound_by_permissions
from tests.support.trees import sample_model, store_files, write_tree


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one model, built once; each test works on its own copy."""
    root = tmp_path_factory.mktemp("template")
    Store(root / "store").add("held:v1", [write_tree(root / "model", sample_model())])
    return root / "store"


@pytest.fixture
def held(template: Path, store_dir: Path) -> dict[str, bytes]:
    """The test's store, already holding held:v1 (so a failed command has something to damage);
    returns a snapshot of its files."""
    shutil.copytree(template, store_dir, symlinks=True)
    return store_files(store_dir)


def _unchanged(store_dir: Path, snapshot: dict[str, bytes], *, new_blobs: bool = False) -> None:
    """Nothing in the store was lost or altered. With ``new_blobs``, a command that failed
    half-way may have published blobs of its own: unnamed, so the next gc drops them."""
    now = store_files(store_dir)
    if new_blobs:
        now = {k: v for k, v in now.items() if k in snapshot or not k.startswith(("blobs/", "meta/xxh3/"))}
    assert now == snapshot
    # A failed command leaves no partial data and no lease behind.
    assert os.listdir(store_dir / "ingest") == [] and os.listdir(store_dir / "leases") == []


# -- what to add ----------------------------------------------------------------


def test_missing_path(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    message = assert_error(run_cli("add", "m", tmp_path / "nope"), 2)
    assert "nope" in message
    _unchanged(store_dir, held)


def test_a_path_with_control_characters_keeps_the_error_to_two_lines(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    message = assert_error(run_cli("add", "m", tmp_path / "no\nsuch\x1b[31m"), 2)
    assert message.endswith("no\\nsuch\\x1b[31m")  # escaped as Python writes them
    _unchanged(store_dir, held)


def test_missing_path_among_good_ones(tmp_path: Path, store_dir: Path, run_cli, held, model_tree: Path) -> None:
    assert_error(run_cli("add", "held:v1", model_tree, tmp_path / "nope"), 2)
    _unchanged(store_dir, held)


def test_dangling_symlink_in_a_tree(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    tree = write_tree(tmp_path / "t", {"a": b"a"})
    (tree / "gone").symlink_to(tmp_path / "does-not-exist")
    assert_error(run_cli("add", "m", tree), 2)
    _unchanged(store_dir, held)


def test_symlink_loop(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    tree = write_tree(tmp_path / "t", {"a": b"a"})
    (tree / "self").symlink_to("self")
    (tree / "ping").symlink_to("pong")
    (tree / "pong").symlink_to("ping")
    assert_error(run_cli("add", "m", tree), 2)
    assert_error(run_cli("add", "m", tree / "self"), 2)
    _unchanged(store_dir, held)


def test_directory_loop(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    tree = write_tree(tmp_path / "t", {"a": b"a", "sub/b": b"b"})
    (tree / "sub" / "up").symlink_to("..")
    message = assert_error(run_cli("add", "m", tree), 2)
    assert "loop" in message
    _unchanged(store_dir, held)


def test_symlinks_to_files_and_directories_are_followed(tmp_path: Path, run_cli) -> None:
    outside = write_tree(tmp_path / "outside", {"w.bin": b"weights", "d/x": b"x"})
    tree = write_tree(tmp_path / "t", {"a": b"a", "blobs/w": b"inside"})
    (tree / "link.bin").symlink_to(outside / "w.bin")
    (tree / "dir").symlink_to(outside / "d")
    (tree / "inner.bin").symlink_to("blobs/w")  # inside the tree: followed without asking
    code, out, _ = run_cli("add", "--follow-links", "m", tree)
    assert code == 0
    view = Path(out.strip())
    assert (view / "link.bin").read_bytes() == b"weights" and (view / "dir" / "x").read_bytes() == b"x"
    assert (view / "inner.bin").read_bytes() == b"inside"


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_link_out_of_the_tree_is_refused_without_follow_links(kind: str, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    # The attack: someone else's model directory whose tokenizer.json leads to a
    # secret of the user who adds it (/etc/shadow as root), which became a 0444 blob.
    secret = write_tree(tmp_path / "home", {".ssh/id_ed25519": b"PRIVATE KEY"})
    tree = write_tree(tmp_path / "t", {"config.json": b"{}"})
    target = secret / ".ssh" / "id_ed25519" if kind == "file" else secret / ".ssh"
    (tree / "tokenizer.json").symlink_to(target)
    message = assert_error(run_cli("add", "m", tree), 2)
    assert f"{tree / 'tokenizer.json'} is a link to {target}, outside {tree}" in message
    assert "--follow-links" in run_cli("add", "m", tree).err.splitlines()[1]
    _unchanged(store_dir, held)


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/self", "/dev/stdin", "/sys/kernel/mm", "/dev/zero", "/dev/null"])
def test_pseudo_filesystems_are_refused_even_with_follow_links(target: str, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    # /proc/self/environ holds the remote's token: it would be stored as a world-readable blob.
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    tree = write_tree(tmp_path / "t", {"config.json": b"{}"})
    (tree / "tokenizer.json").symlink_to(target)
    for args in (("add", "m", tree), ("add", "--follow-links", "m", tree), ("add", "m", target)):
        message = assert_error(run_cli(*args, env={"ODAI_STORE_TOKEN": "s3cret"}), 2)
        assert "pseudo-filesystem" in message
    _unchanged(store_dir, held)


def test_directories_reached_many_times_are_walked_once(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    # The attack: 20 nested pairs of links to one directory expanded to 2^20
    # files and kept add busy for minutes. Each directory is walked once, and a
    # second way into one is refused at once.
    tree = write_tree(tmp_path / "t", {"d20/w": b"w"})
    for level in range(20):
        (tree / f"d{level}").mkdir()
        (tree / f"d{level}" / "a").symlink_to(f"../d{level + 1}")
        (tree / f"d{level}" / "b").symlink_to(f"../d{level + 1}")
    for args in (("m", tree), ("--follow-links", "m", tree / "d0")):
        message = assert_error(run_cli("add", *args, timeout=20), 2)
        assert "reached twice" in message
    _unchanged(store_dir, held)


@pytest.mark.parametrize("kind", ["fifo", "fifo-in-tree", "device", "socket-in-tree"])
def test_special_files(kind: str, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    tree = write_tree(tmp_path / "t", {"a": b"a"})
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        source = tmp_path / "fifo"
    elif kind == "fifo-in-tree":
        os.mkfifo(tree / "fifo")
        source = tree
    elif kind == "device":
        source = Path("/dev/null")
    else:
        import socket

        # AF_UNIX paths are short: bind relative to the tree.
        with socket.socket(socket.AF_UNIX) as sock:
            cwd = os.getcwd()
            os.chdir(tree)
            try:
                sock.bind("sock")
            finally:
                os.chdir(cwd)
        source = tree
    # A FIFO must be refused, not opened: opening one blocks until a writer comes.
    result = run_cli("add", "m", source, timeout=20)
    assert "regular" in assert_error(result, 2)
    _unchanged(store_dir, held)


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ({"one/config.json": b"1", "two/config.json": b"2"}, "same model path"),
        ({"one/a": b"1", "two/a/b": b"2"}, "both a file and the directory"),
    ],
)
def test_sources_that_collide(layout, reason: str, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    write_tree(tmp_path / "t", layout)
    message = assert_error(run_cli("add", "m", tmp_path / "t" / "one", tmp_path / "t" / "two"), 2)
    assert reason in message
    _unchanged(store_dir, held)


def test_empty_directory(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert_error(run_cli("add", "m", tmp_path / "empty"), 2)
    _unchanged(store_dir, held)


@pytest.mark.parametrize("name", [b"back\\slash", b"not-utf8-\xff"])
def test_file_names_a_model_cannot_hold(name: bytes, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    tree = write_tree(tmp_path / "t", {"a": b"a"})
    with open(os.path.join(os.fsencode(tree), name), "wb") as f:
        f.write(b"x")
    assert_error(run_cli("add", "m", tree), 2)
    _unchanged(store_dir, held)


# -- unreadable input -------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "file-in-tree", "directory-in-tree"])
def test_unreadable_input(where: str, tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    prefix = bound_by_permissions()
    tree = write_tree(tmp_path / "t", {"ok": b"ok", "secret": b"s", "closed/inner": b"i"})
    target = {"file": tree / "secret", "file-in-tree": tree / "secret", "directory-in-tree": tree / "closed"}[where]
    source = tree / "secret" if where == "file" else tree
    target.chmod(0)
    try:
        result = run_cli("add", "m", source, prefix=prefix)
    finally:
        target.chmod(0o755)
    assert str(target) in assert_error(result, 2)
    # Files read before the unreadable one may be in blobs/ now: unnamed garbage.
    _unchanged(store_dir, held, new_blobs=True)


def test_a_view_that_cannot_be_built_leaves_no_name(tmp_path: Path, store_dir: Path, run_cli, held) -> None:
    # The name was set before the view was built: a failed build left a name
    # whose model had no view. Now the view comes first.
    prefix = bound_by_permissions()
    model_tree = write_tree(tmp_path / "t", {"new.bin": b"a model this store lacks"})
    views = store_dir / "views" / "sha256"
    views.chmod(0o555)
    try:
        assert "Permission denied" in assert_error(run_cli("add", "m", model_tree, prefix=prefix), 6)
    finally:
        views.chmod(0o755)
    _unchanged(store_dir, held, new_blobs=True)
    assert "m:latest" not in (store_dir / "index.json").read_text()


# -- names and references ---------------------------------------------------------

# The grammar itself is tested in tests/unit/test_reference.py; these are a few of each kind.
BAD_NAMES = ["Upper", "a..b", "a//b", "a:-t", "a:" + "t" * 129, "n" * 256, "", "ä"]


def test_invalid_names(store_dir: Path, held, model_tree: Path) -> None:
    argvs = [("add", name, str(model_tree)) for name in BAD_NAMES]
    for command in [("show",), ("path",), ("rm",), ("verify",), ("path", "--file", "x")]:
        argvs += [(command[0], name, *command[1:]) for name in ("Upper", "a..b", "a@sha256:abc")]
    for result in run_cli_many(store_dir, argvs):
        assert_error(result, 2)
    _unchanged(store_dir, held)


def test_add_under_a_digest(store_dir: Path, run_cli, held, model_tree: Path) -> None:
    assert_error(run_cli("add", "m@sha256:" + "0" * 64, model_tree), 2)
    _unchanged(store_dir, held)


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nope"),
        ("path", "nope:v1"),
        ("path", "held"),  # held:latest does not exist, held:v1 does
        ("path", "held:v1", "--file", "nope.txt"),
        ("path", "held:v1", "--file", "../../../../../etc/passwd"),
        ("path", "held:v1", "--file", "tokenizer"),  # a directory of the model, not a file
        ("show", "x@sha256:" + "0" * 64),
        ("path", "x@sha256:" + "0" * 64),
        ("rm", "nope"),
        ("rm", "held:v1", "nope"),  # all or nothing
        ("verify", "nope"),
    ],
)
def test_not_found(args: tuple[str, ...], store_dir: Path, run_cli, held) -> None:
    assert_error(run_cli(*args), 3)
    _unchanged(store_dir, held)


@pytest.mark.parametrize(
    "args",
    [("frobnicate",), ("add",), ("add", "m"), ("show",), ("path",), ("rm",), ("list", "extra"), ("gc", "--bogus"), ("--bogus", "list")],
)
def test_usage_errors(args: tuple[str, ...], store_dir: Path, run_cli, held) -> None:
    assert_error(run_cli(*args), 2)
    _unchanged(store_dir, held)


SHA = "0" * 64
BAD_REMOTES = [
    (("fetch", "m", "--remote", "http://[::1/x"), {}, "invalid remote"),
    (("fetch", "m", "--remote", "http://exa mple.com/x"), {}, "invalid URL"),
    (("fetch", "m", "--remote", "http:///x"), {}, "with a host"),
    (("fetch", "m", "--remote", "gopher://h/x"), {}, "unsupported remote"),
    (("fetch", "m", "--remote", "file:../mirror"), {}, "absolute path"),
    # Issue 13, item 14: an http URL missing its scheme is not a missing directory (exit 3).
    (("fetch", "m", "--remote", "127.0.0.1:8080"), {}, "has no scheme"),
    (("fetch", "m", "--remote", "[::1]:8080/models"), {}, "has no scheme"),
    (("fetch", "m", "--remote", "localhost:8080"), {}, "has no scheme"),
    (("fetch", "m", "--url", "http://[::1/x", "--sha256", SHA), {}, "invalid URL"),
    (("fetch", "m", "--url", "ftp://h/x", "--sha256", SHA), {}, "invalid URL"),
    (("fetch", "m", "--remote", "http://example.invalid/x"), {"http_proxy": "socks5://127.0.0.1:9"}, "set by http_proxy"),
    (("fetch", "m", "--remote", "http://example.invalid/x"), {"HTTP_PROXY": "socks5://127.0.0.1:9"}, "set by HTTP_PROXY"),
]


def test_export_to_an_empty_dest_is_refused(store_dir: Path, run_cli, tmp_path: Path) -> None:
    """Issue 13, item 14: '' (an unset shell variable) would mean the working directory."""
    Store(store_dir).add("e:v1", [write_tree(tmp_path / "src", {"a.txt": b"a"})])
    work = tmp_path / "work"
    work.mkdir()
    assert "empty string" in assert_error(run_cli("export", "e:v1", "", cwd=work), 2)
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("args", "env", "says"), BAD_REMOTES)
def test_remotes_and_proxies_that_cannot_be_used(args, env, says: str, store_dir: Path, run_cli, held) -> None:
    """Refused as bad input (exit 2) before any request: neither a traceback nor a retried 'network failure'."""
    assert says in assert_error(run_cli(*args, env=env), 2)
    _unchanged(store_dir, held)


# -- a damaged store ----------------------------------------------------------------

DAMAGED_INDEXES = {
    "garbage": b"\x00\xffnot json at all",
    "empty": b"",
    "truncated": None,  # the real index cut in half
    "not-an-index": b'{"schemaVersion": 2, "manifests": {"a": 1}}',
    "bad-digest": b'{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}',
}


def _damage_index(store_dir: Path, damage: str) -> bytes:
    index = store_dir / "index.json"
    data = DAMAGED_INDEXES[damage]
    if data is None:
        data = index.read_bytes()[: len(index.read_bytes()) // 2]
    index.write_bytes(data)
    return data


@pytest.mark.parametrize(
    "args", [("list",), ("show", "held:v1"), ("path", "held:v1"), ("rm", "held:v1"), ("gc",), ("du",), ("verify",), ("add", "new")]
)
def test_garbage_index_json(args: tuple[str, ...], store_dir: Path, run_cli, held, model_tree: Path) -> None:
    data = _damage_index(store_dir, "garbage")
    if args[0] == "add":
        args = (*args, model_tree)
    assert "index.json" in assert_error(run_cli(*args), 5)
    # Never rewritten, never "repaired" into an empty index.
    assert (store_dir / "index.json").read_bytes() == data
    _unchanged(store_dir, {**held, "index.json": data}, new_blobs=args[0] == "add")


# 'path' and 'show' look one name up without parsing the whole index
# (spec/names.md), so only commands that read every name are sure to notice
# damage elsewhere in the file.
@pytest.mark.parametrize("damage", sorted(set(DAMAGED_INDEXES) - {"garbage"}))
@pytest.mark.parametrize("args", [("list",), ("rm", "held:v1")])
def test_damaged_index_json(damage: str, args: tuple[str, ...], store_dir: Path, run_cli, held) -> None:
    data = _damage_index(store_dir, damage)
    assert "index.json" in assert_error(run_cli(*args), 5)
    assert (store_dir / "index.json").read_bytes() == data


def test_missing_index_json(store_dir: Path, run_cli, held) -> None:
    (store_dir / "index.json").unlink()
    message = assert_error(run_cli("list"), 6)
    assert "index.json" in message
    assert not (store_dir / "index.json").exists()


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_store_location_that_is_not_a_directory(where: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"not a store")
    message = assert_error(run_in(tmp_path / where, "list"), 6)
    assert "a-file" in message
    assert (tmp_path / "a-file").read_bytes() == b"not a store"


def test_verbose_shows_the_cause_before_the_two_lines(store_dir: Path, run_cli, held) -> None:
    (store_dir / "index.json").unlink()
    code, out, err = run_cli("-v", "list")
    assert (code, out) == (6, "")
    assert err.startswith("Traceback") and "FileNotFoundError" in err
    lines = err.splitlines()
    assert lines[-2].startswith("odai-store: error: ") and lines[-1].startswith("hint: ")


@pytest.mark.parametrize(
    "content", [b"{", b'{"odaiLayoutVersion": true}', b'{"odaiLayoutVersion": "1"}', b'{"odaiLayoutVersion": 1.7}', b'{"odaiLayoutVersion": 0}', b'{"odaiLayoutVersion": 1, "shared": "yes"}']
)
def test_damaged_odai_layout(content: bytes, store_dir: Path, run_cli, held) -> None:
    (store_dir / "odai-layout").write_bytes(content)
    assert "odai-layout is damaged" in assert_error(run_cli("list"), 6)
    assert (store_dir / "odai-layout").read_bytes() == content  # refused, not rebuilt around


def test_damaged_layout_version(store_dir: Path, run_cli, held) -> None:
    (store_dir / "odai-layout").write_bytes(b'{"odaiLayoutVersion": 99}\n')
    message = assert_error(run_cli("list"), 6)
    assert "99" in message


@pytest.mark.parametrize("swap", ["link", "fifo"])
def test_a_file_swapped_after_the_walk_is_not_read(swap: str, tmp_path: Path, store_dir: Path, held, monkeypatch) -> None:
    """Between the walk and the read, someone who may write the tree replaces a file by a link to
    a secret, or by a FIFO (which would hang the read): the file opened must be the one planned."""
    import store.add as add_module
    from store import UsageError

    secret = write_tree(tmp_path / "home", {"id_ed25519": b"PRIVATE KEY"}) / "id_ed25519"
    tree = write_tree(tmp_path / "t", {"config.json": b"{}", "tokenizer.json": b"{}"})
    plan = add_module.plan_sources

    def plan_then_swap(*args, **kwargs):
        planned = plan(*args, **kwargs)
        (tree / "tokenizer.json").unlink()
        if swap == "link":
            (tree / "tokenizer.json").symlink_to(secret)
        else:
            os.mkfifo(tree / "tokenizer.json")
        return planned

    monkeypatch.setattr(add_module, "plan_sources", plan_then_swap)
    with pytest.raises(UsageError, match="tokenizer.json was replaced"):
        Store(store_dir).add("m", [tree])
    _unchanged(store_dir, held, new_blobs=True)
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in (store_dir / "blobs" / "sha256").iterdir())


def test_a_directory_of_files_is_not_made_a_store_unasked(tmp_path: Path) -> None:
    """Issue 13, item 14: --store pointing at a directory that holds other files (a slip) is refused with
    exit 2, and nothing is created there; 'init' makes a store there deliberately (spec/store-layout.md)."""
    home = tmp_path / "projects"
    write_tree(home, {"notes.txt": b"mine\n"})
    refused = run_in(home, "list")
    assert "notes.txt" in assert_error(refused, 2) and f"hint: check --store and $ODAI_STORE_HOME; to make a store in that directory, run 'odai-store init {home}'" in refused.err
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    with pytest.raises(UsageError):
        Store(home)
    assert run_in(None, "init", str(home)).code == 0
    assert run_in(home, "list").code == 0
