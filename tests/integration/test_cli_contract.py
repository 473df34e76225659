"""The command-line contract: literal output after normalising paths and digests (spec/cli.md).

Digests are replaced by labels computed here with hashlib from the files the
test wrote, so the output is checked exactly without hard-coding any hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import store as store_package
from store.cli.commands import cli
from store.oci.descriptor import Descriptor
from store.oci.index import REF_NAME, Index
from tests.support.cli import CliResult, assert_error, run_cli_many
from tests.support.cli import run_cli as run_in
from tests.support.trees import store_files, write_tree

DEMO = {
    "a.txt": b"hello\n",  # 6 B
    "sub/b.bin": b"x" * 3000,  # 2.9 KiB
    "sub/deeper/c": bytes(range(256)) * 8,  # 2.0 KiB
}
OTHER = {"other.txt": b"unique"}  # 6 B, shares nothing with DEMO


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Normaliser:
    """Replaces store paths and known digests in command output by stable labels."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.labels: dict[str, str] = {}

    def label(self, hex_: str, label: str) -> None:
        self.labels[hex_] = label

    def __call__(self, text: str) -> str:
        text = text.replace(str(self.store_dir), "[STORE]")
        for hex_, label in self.labels.items():
            text = text.replace(hex_, f"<{label}>").replace(hex_[:12], f"<{label}>")
        return text


class Demo:
    """A store holding demo:v1 and org/other:latest, added through the CLI, with its normaliser."""

    def __init__(self, store_dir: Path, sources: Path) -> None:
        self.store_dir = store_dir
        self.sources = sources
        self.norm = Normaliser(store_dir)
        self.manifests: dict[str, str] = {}
        for rel, data in {**DEMO, **OTHER}.items():
            self.norm.label(_sha(data), rel)
        for name, files, label in (("demo:v1", DEMO, "demo"), ("org/other", OTHER, "other")):
            code, out, err = run_in(store_dir, "add", name, write_tree(sources / label, files))
            assert code == 0, err
            self.manifests[label] = re.fullmatch(r".*/views/sha256/([0-9a-f]{64})\n", out).group(1)
            self.norm.label(self.manifests[label], label)

    def run(self, *args: str | Path) -> tuple[int, str, str]:
        return run_in(self.store_dir, *args)

    def blob(self, hex_: str) -> Path:
        return self.store_dir / "blobs" / "sha256" / hex_


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One demo store for the tests that only read it (building it costs a few CLI runs)."""
    root = tmp_path_factory.mktemp("demo")
    return Demo(root / "store", root / "src")


@pytest.fixture
def demo(shared_demo: Demo, tmp_path: Path) -> Demo:
    """A private copy of the demo store, for tests that change it."""
    copy = Demo.__new__(Demo)
    copy.__dict__.update(shared_demo.__dict__)
    copy.store_dir = tmp_path / "store"
    shutil.copytree(shared_demo.store_dir, copy.store_dir, symlinks=True)
    copy.norm = Normaliser(copy.store_dir)
    copy.norm.labels = dict(shared_demo.norm.labels)
    return copy


def test_add_prints_only_the_view_path(tmp_path: Path, store_dir: Path, run_cli) -> None:
    code, out, err = run_cli("add", "demo:v1", write_tree(tmp_path / "demo", DEMO))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 and out == lines[0] + "\n"
    path = Path(lines[0])
    assert path.is_dir() and path.is_relative_to(store_dir)
    # Progress and messages go to stderr, never stdout.
    assert err.startswith("added demo:v1 (")
    # -q silences messages but not data.
    code, out_q, err_q = run_cli("-q", "add", "demo:v1", tmp_path / "demo")
    assert (code, out_q, err_q) == (0, out, "")


def test_list(shared_demo: Demo) -> None:
    code, out, err = shared_demo.run("list")
    assert (code, err) == (0, "")
    assert shared_demo.norm(out) == (
        "demo:v1           <demo>     4.9 KiB  3 files\n"
        "org/other:latest  <other>         6 B  1 file\n"
    )


def test_show(shared_demo: Demo) -> None:
    code, out, err = shared_demo.run("show", "demo:v1")
    assert (code, err) == (0, "")
    assert shared_demo.norm(out) == (
        "digest: sha256:<demo>\n"
        "size: 4.9 KiB in 3 files (complete)\n"
        f"source: added from {shared_demo.sources / 'demo'}\n"
        "present  <a.txt>         6 B  a.txt\n"
        "present  <sub/b.bin>     2.9 KiB  sub/b.bin\n"
        "present  <sub/deeper/c>     2.0 KiB  sub/deeper/c\n"
    )


def test_show_by_digest_with_a_missing_file(demo: Demo) -> None:
    demo.blob(_sha(DEMO["sub/b.bin"])).unlink()
    code, out, err = demo.run("show", f"demo@sha256:{demo.manifests['demo']}")
    assert (code, err) == (0, "")
    assert demo.norm(out) == (
        "digest: sha256:<demo>\n"
        "size: 4.9 KiB in 3 files (incomplete)\n"
        f"source: added from {demo.sources / 'demo'}\n"
        "present  <a.txt>         6 B  a.txt\n"
        "missing  <sub/b.bin>     2.9 KiB  sub/b.bin\n"
        "present  <sub/deeper/c>     2.0 KiB  sub/deeper/c\n"
    )


def test_path(shared_demo: Demo) -> None:
    norm, run = shared_demo.norm, shared_demo.run
    assert norm(run("path", "demo:v1").out) == "[STORE]/views/sha256/<demo>\n"
    assert norm(run("path", "demo:v1", "--file", "sub/b.bin").out) == "[STORE]/views/sha256/<demo>/sub/b.bin\n"
    assert norm(run("path", "org/other").out) == "[STORE]/views/sha256/<other>\n"
    assert norm(run("path", f"x@sha256:{shared_demo.manifests['other']}").out) == "[STORE]/views/sha256/<other>\n"
    code, out, err = run("path", "demo:v1", "--file", "sub/deeper/c")
    assert (code, err) == (0, "")
    assert Path(out.rstrip("\n")).read_bytes() == DEMO["sub/deeper/c"]


def test_rm_then_gc(demo: Demo) -> None:
    manifest_size = demo.blob(demo.manifests["other"]).stat().st_size
    assert manifest_size < 1024
    freed = manifest_size + len(OTHER["other.txt"])

    assert demo.run("rm", "org/other") == (0, "", "removed org/other:latest\n")
    before = store_files(demo.store_dir)
    unkept = f"sha256:{demo.manifests['other']}: no name, gc root or lease keeps it\n"
    assert demo.run("gc", "--dry-run") == (0, f"would free {freed} B: 2 blobs, 1 views, 0 partial files, 0 quarantined blobs\nwould free {unkept}", "")
    assert store_files(demo.store_dir) == before
    assert demo.run("gc") == (0, f"freed {freed} B: 2 blobs, 1 views, 0 partial files, 0 quarantined blobs\nfreed {unkept}", "")
    assert demo.run("gc") == (0, "freed 0 B: 0 blobs, 0 views, 0 partial files, 0 quarantined blobs\n", "")
    assert not demo.blob(demo.manifests["other"]).exists()
    assert not (demo.store_dir / "views" / "sha256" / demo.manifests["other"]).exists()
    assert demo.norm(demo.run("list").out) == "demo:v1  <demo>     4.9 KiB  3 files\n"


def test_verify_clean(shared_demo: Demo) -> None:
    blobs = list((shared_demo.store_dir / "blobs" / "sha256").iterdir())
    total = sum(b.stat().st_size for b in blobs)
    assert shared_demo.run("verify") == (0, f"checked {len(blobs)} blobs, {total / 1024:.1f} KiB: 0 corrupt\n", "")
    assert shared_demo.run("verify", "--fast") == (0, f"checked {len(blobs)} blobs, {total / 1024:.1f} KiB: 0 corrupt\n", "")
    # Only the model's blobs: its manifest, the empty config and its one file.
    other = shared_demo.blob(shared_demo.manifests["other"]).stat().st_size + len(b"{}") + len(OTHER["other.txt"])
    assert shared_demo.run("verify", "org/other") == (0, f"checked 3 blobs, {other} B: 0 corrupt\n", "")


def test_du(shared_demo: Demo) -> None:
    blobs = list((shared_demo.store_dir / "blobs" / "sha256").iterdir())
    total = sum(b.stat().st_size for b in blobs)
    code, out, err = shared_demo.run("du")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    # A label column of 20, a space, values right-aligned in 10. The filesystem's
    # own figures vary: only their form is fixed.
    for line, label in zip(lines[:2], ("filesystem size", "filesystem free"), strict=True):
        assert line.startswith(f"{label:<20} ") and len(line) == 31
        assert re.fullmatch(r" *\d+(\.\d)? (B|KiB|MiB|GiB|TiB)", line[21:])
    assert lines[2:] == [
        f"{f'blobs ({len(blobs)})':<20} {f'{total / 1024:.1f} KiB':>10}",
        "reclaimable by gc           0 B",
        "partial data                0 B",
        "quarantine (0)              0 B",
    ]


# -- --json: one document with the documented keys ------------------------------


def _json(run, *args: str | Path) -> dict:
    code, out, err = run("--json", *args)
    assert code == 0, err
    doc = json.loads(out)  # exactly one document: json.loads refuses trailing data
    assert isinstance(doc, dict)
    # Indented by two spaces, non-ASCII escaped, one newline at the end.
    assert out == json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
    return doc


def _same(doc: dict, expected: dict) -> None:
    """Equal, and with members in the documented order (spec/cli.md)."""
    assert doc == expected
    assert json.dumps(doc) == json.dumps(expected)


def test_json_documents(demo: Demo) -> None:
    run, demo_hex = demo.run, demo.manifests["demo"]
    view = str(demo.store_dir / "views" / "sha256" / demo_hex)
    files = [{"path": p, "digest": f"sha256:{_sha(d)}", "size": len(d)} for p, d in sorted(DEMO.items())]

    _same(_json(run, "add", "demo:again", demo.sources / "demo"), {"name": "demo:again", "digest": f"sha256:{demo_hex}", "path": view, "size": 5054, "files": files})

    _same(_json(run, "list"), {
        "models": [
            {"name": "demo:again", "digest": f"sha256:{demo_hex}", "size": 5054, "files": 3, "complete": True, "damaged": False, "pinned_in": None, "by_digest": False},
            {"name": "demo:v1", "digest": f"sha256:{demo_hex}", "size": 5054, "files": 3, "complete": True, "damaged": False, "pinned_in": None, "by_digest": False},
            {"name": "org/other:latest", "digest": f"sha256:{demo.manifests['other']}", "size": 6, "files": 1, "complete": True, "damaged": False, "pinned_in": None, "by_digest": False},
        ]
    })

    _same(_json(run, "show", "demo:v1"), {
        "name": "demo:v1",
        "digest": f"sha256:{demo_hex}",
        "size": 5054,
        "complete": True,
        "source": {"command": "add", "sources": [str(demo.sources / "demo")]},  # the newest record: the add of demo:again
        "source_format": "odai",  # the store's own format: read from itself
        "source_digest": f"sha256:{demo_hex}",
        "source_repository": None,
        "files": [{**f, "present": True} for f in files],
    })

    _same(_json(run, "path", "demo:v1"), {"path": view})
    _same(_json(run, "path", "demo:v1", "--file", "a.txt"), {"path": view + "/a.txt"})
    _same(_json(run, "show", f"demo@sha256:{demo_hex}"), {**_json(run, "show", "demo:v1"), "name": None})

    blobs = list((demo.store_dir / "blobs" / "sha256").iterdir())
    _same(_json(run, "verify"), {
        "checked": len(blobs),
        "bytes": sum(b.stat().st_size for b in blobs),
        "corrupt": [],
        "quarantined": [],
        "damaged_models": [],
        "incomplete_models": [],
    })

    usage = _json(run, "du")
    assert list(usage) == ["filesystem_size", "filesystem_free", "blobs", "blob_bytes", "reclaimable_bytes", "partial_bytes", "quarantined", "quarantine_bytes"]
    assert (usage["quarantined"], usage["quarantine_bytes"]) == (0, 0)
    assert (usage["blobs"], usage["blob_bytes"]) == (len(blobs), sum(b.stat().st_size for b in blobs))
    assert (usage["reclaimable_bytes"], usage["partial_bytes"]) == (0, 0)
    assert 0 < usage["filesystem_free"] <= usage["filesystem_size"]

    _same(_json(run, "rm", "demo:again", "org/other"), {"removed": ["demo:again", "org/other:latest"]})
    other_bytes = demo.blob(demo.manifests["other"]).stat().st_size + 6
    assert _json(run, "du")["reclaimable_bytes"] == other_bytes
    expected = {
        "bytes_freed": other_bytes,
        "blobs": sorted([f"sha256:{demo.manifests['other']}", f"sha256:{_sha(OTHER['other.txt'])}"]),
        "views": [f"sha256:{demo.manifests['other']}"],
        "partials": [],
        "quarantined": [],
        "kept": [],
        "freed": [{"name": None, "digest": f"sha256:{demo.manifests['other']}", "lockfile": None, "why": "no name, gc root or lease keeps it", "until": None}],
    }
    _same(_json(run, "gc", "--dry-run"), {"dry_run": True, **expected})
    _same(_json(run, "gc"), {"dry_run": False, **expected})
    _same(_json(run, "list"), {"models": [{"name": "demo:v1", "digest": f"sha256:{demo_hex}", "size": 5054, "files": 3, "complete": True, "damaged": False, "pinned_in": None, "by_digest": False}]})


def test_json_escapes_non_ascii(tmp_path: Path, run_cli) -> None:
    code, out, _ = run_cli("--json", "add", "m", write_tree(tmp_path / "m", {"modèle/权重.bin": b"w"}))
    assert code == 0 and out.isascii()
    assert '"path": "mod\\u00e8le/\\u6743\\u91cd.bin"' in out
    assert json.loads(out)["files"][0]["path"] == "modèle/权重.bin"


def test_a_reader_that_goes_away_is_not_an_error(store, model_tree: Path) -> None:
    # Enough names that the output overflows the pipe after the reader has left.
    model = store.add("m", [model_tree])
    entry = Index.parse(store.layout.index.read_bytes()).lookup("m:latest")
    names = [(f"n{i:05d}:v1", entry) for i in range(3000)]
    index = Index(tuple(Descriptor(d.media_type, d.digest, d.size, {**d.annotations, REF_NAME: n}, d.artifact_type) for n, d in names))
    store.layout.index.write_bytes(index.to_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "store", "--store", str(store.root), "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().startswith(b"n00000:v1 ")
    proc.stdout.close()
    assert proc.wait(60) == 0
    assert proc.stderr.read() == b""
    assert model.path.is_dir()


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("gc", "--help")])
def test_a_reader_gone_before_help_or_version_is_not_an_error(args: tuple[str, ...]) -> None:
    """These go through click, whose own main() turns a broken pipe into exit 1."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "store", *args], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (0, b"")


def _program(store, *args: str, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "store", "--store", str(store.root), *args], stdout=stdout, stderr=stderr, timeout=60)


def _stdout_failed(proc: subprocess.CompletedProcess, why: str) -> None:
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.decode().splitlines()[-2:] == [
        f"odai-store: error: writing the output to stdout failed: {why}",
        "hint: check where stdout goes (a file on a full disk?); what the command did stays done: run it again for its output",
    ]


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_output_to_a_full_disk_is_exit_6_not_a_bug(store, model_tree: Path, json_flag: tuple[str, ...]) -> None:
    store.add("m", [model_tree])
    with open("/dev/full", "wb") as full:
        _stdout_failed(_program(store, *json_flag, "list", stdout=full), "No space left on device")
        # The work is done, only its output is lost: the model is named, and its path is what a rerun prints.
        _stdout_failed(_program(store, *json_flag, "add", "n:v1", str(model_tree), stdout=full), "No space left on device")
    assert store.resolve("n:v1")[0] == store.resolve("m")[0]


def test_output_to_a_closed_stdout_is_exit_6(store, model_tree: Path) -> None:
    store.add("m", [model_tree])
    _stdout_failed(_without(1, store, "path", "m"), "it is closed")


def _without(fd: int, store, *args: str) -> subprocess.CompletedProcess:
    """The program started with descriptor ``fd`` closed, as a shell's ``>&-`` or ``2>&-`` leaves it."""
    code = f"import os, sys; os.close({fd}); os.execv(sys.executable, [sys.executable, '-m', 'store', *sys.argv[1:]])"
    return subprocess.run([sys.executable, "-c", code, "--store", str(store.root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def test_an_error_document_that_cannot_be_written_keeps_the_errors_exit_code(store) -> None:
    with open("/dev/full", "wb") as full:
        proc = _program(store, "--json", "path", "nope", stdout=full)
    assert proc.returncode == 3
    assert [line.split(":")[:2] for line in proc.stderr.decode().splitlines()] == [["odai-store", " error"], ["hint", " 'odai-store list' shows the models this store holds"]]


@pytest.mark.parametrize("stderr", ["full", "closed", "reader gone"])
def test_stderr_that_cannot_be_written_loses_messages_not_the_command(store, model_tree: Path, stderr: str) -> None:
    """Messages for people are dropped where stderr fails; the command's work, stdout and exit code stay."""
    if stderr == "closed":
        proc, missing = _without(2, store, "add", "n:v1", str(model_tree)), _without(2, store, "path", "nope")
    else:
        with contextlib.ExitStack() as stack:
            if stderr == "full":
                target = stack.enter_context(open("/dev/full", "wb"))
            else:
                read, write = os.pipe()
                os.close(read)
                target = stack.enter_context(os.fdopen(write, "wb"))
            proc = _program(store, "add", "n:v1", str(model_tree), stderr=target)
            missing = _program(store, "path", "nope", stderr=target)
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == str(store.path("n:v1"))
    assert missing.returncode == 3 and missing.stdout == b""


def test_json_error_is_one_document_on_stdout(run_cli) -> None:
    result = run_cli("--json", "path", "nope")
    assert_error(result, 3, json=True)
    assert json.loads(result.out)["error"].startswith("no model named nope:latest in ")


# -- help and version -----------------------------------------------------------

REQUIRED_COMMANDS = {"add", "list", "show", "path", "rm", "gc", "verify", "du"}


def test_every_required_command_exists() -> None:
    assert REQUIRED_COMMANDS <= set(cli.commands)


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose default store would be under tmp_path/home (to see whether it is touched)."""
    return {"HOME": str(tmp_path / "home")}


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, CliResult], Path]:
    """``COMMAND --help`` of every command, run at once; and the HOME they ran with."""
    home = tmp_path_factory.mktemp("help") / "home"
    commands = sorted(cli.commands)
    results = run_cli_many(None, [(c, "--help") for c in commands], env={"HOME": str(home)})
    return dict(zip(commands, results, strict=True)), home


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_help_of_every_command(command: str, helps) -> None:
    results, home = helps
    code, out, err = results[command]
    assert (code, err) == (0, "")
    assert out.startswith(f"Usage: odai-store {command} ")
    assert cli.commands[command].help.split("\n")[0].strip().split()[0] in out
    assert not home.exists(), "--help must not create a store"


def test_top_level_help_lists_the_commands(home: dict[str, str]) -> None:
    for args in (["--help"], ["-h"], []):
        code, out, err = run_in(None, *args, env=home)
        assert (code, err) == (0, ""), args
        assert not Path(home["HOME"]).exists(), "help must not create a store"
        assert out.startswith("Usage: odai-store [OPTIONS] ")
        for command in REQUIRED_COMMANDS:
            assert re.search(rf"^  {command} ", out, re.M), command


def test_version(home: dict[str, str]) -> None:
    assert run_in(None, "--version", env=home) == (0, f"odai-store {store_package.__version__}\n", "")
    assert not Path(home["HOME"]).exists(), "--version must not create a store"


# -- where the store is --------------------------------------------------------


def test_store_location_from_the_environment(tmp_path: Path, model_tree: Path) -> None:
    home = tmp_path / "home-store"
    code, out, _ = run_in(None, "-q", "add", "m", model_tree, env={"ODAI_STORE_HOME": str(home)})
    assert code == 0 and Path(out.strip()).is_relative_to(home)
    assert (home / "oci-layout").is_file() and (home / "index.json").is_file()

    xdg = tmp_path / "xdg"
    code, out, _ = run_in(None, "-q", "add", "m", model_tree, env={"XDG_CACHE_HOME": str(xdg)})
    assert code == 0 and Path(out.strip()).is_relative_to(xdg / "odai-store")

    # Without either, the store is ~/.cache/odai-store.
    code, out, _ = run_in(None, "-q", "add", "m", model_tree, env={"HOME": str(tmp_path / "home")})
    assert code == 0 and Path(out.strip()).is_relative_to(tmp_path / "home" / ".cache" / "odai-store")

    # --store wins over the environment.
    explicit = tmp_path / "explicit"
    code, out, _ = run_in(explicit, "-q", "add", "m", model_tree, env={"ODAI_STORE_HOME": str(home)})
    assert code == 0 and Path(out.strip()).is_relative_to(explicit)


# The hot path (issue 2, Performance): 'path' and 'list' must not pay for
# modules only other commands need. -X importtime names every module imported.
_NOT_ON_THE_HOT_PATH = ("urllib3", "ssl", "http", "socket", "blake3", "xxhash", "concurrent", "multiprocessing")


@pytest.mark.parametrize("args", [("path", "demo:v1"), ("list",), ("path", "demo:v1", "--file", "a.txt")])
def test_hot_path_imports_only_what_it_needs(args: tuple[str, ...], shared_demo: Demo) -> None:
    code, out, err = run_in(shared_demo.store_dir, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert code == 0 and out
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert "store.api" in imported  # the report is real
    assert sorted(m for m in imported if m.split(".")[0] in _NOT_ON_THE_HOT_PATH) == []
