"""store.cli.quick: whatever the quick path accepts, click parses to the same call.

The quick path runs the usual spellings of every command without importing
click (spec/cli.md, "Start-up"); both parsers derive from one table,
store/cli/declarations.py. It may hand any argument list to click; what it
must never do is run one that click would refuse or read differently.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from store.cli import quick
from store.cli.commands import cli, split_options
from store.cli.declarations import BY_NAME, Option
from store.cli.main import main


def click_call(args: list[str]) -> tuple | None:
    """(command, global options, parameters) as click would call the command; None where click stops."""
    made = []

    def capture(**params) -> None:
        ctx = click.get_current_context()
        made.append((ctx.info_name, *split_options(ctx.parent.params, params)))

    callbacks = {name: command.callback for name, command in cli.commands.items()}
    try:
        for command in cli.commands.values():
            command.callback = capture
        with contextlib.redirect_stdout(None):  # the help of a bare 'odai-store'
            cli.main(args=list(args), prog_name="odai-store", standalone_mode=False)
    except (click.ClickException, click.exceptions.Exit):
        return None
    finally:
        for name, command in cli.commands.items():
            command.callback = callbacks[name]
    return made[0] if made else None


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Working directories where ./odai.lock is missing, a file, or a directory (click refuses the last).

    Each holds 'file', a regular file, and 'dir', a directory: DEST must not
    be a file, --lockfile must not be a directory.
    """
    root = tmp_path_factory.mktemp("quick")
    found = {}
    for kind in ("missing", "file", "dir"):
        place = root / kind
        (place / "dir").mkdir(parents=True)
        (place / "file").write_text("x")
        if kind == "file":
            (place / "odai.lock").write_text("")
        elif kind == "dir":
            (place / "odai.lock").mkdir()
        found[kind] = place
    return found


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


GLOBAL = [
    "--store", "--store=s", "--store=", "--shared", "--json", "--json=1", "-q", "--quiet", "-v", "--verbose", "-qv", "-h", "--help", "--version", "--stor", "s",
    "--lock-timeout", "--lock-timeout=0", "--lock-timeout=30", "--lock-timeout=-1", "--lock-timeout=1.5", "--lock-timeout=+5", "--lock-timeout=",
    "--timeout", "--timeout=30", "--timeout=2.5", "--timeout=0", "--timeout=1e3", "--timeout=", "--timeout=2s",
]
COMMANDS = [*sorted(BY_NAME), "pat", ""]
# Every command's own options, from the table: what the quick path may accept.
OWN = {command.name: sorted(name for option in command.params if isinstance(option, Option) for name in option.names) for command in BY_NAME.values()}
OPTIONS = [
    *sorted({option for options in OWN.values() for option in options}),
    "--link=hardlink", "--link=", "--connections=64", "--retries=0", "--progress=json", "--file=f", "--remote=r", "--limit-rate=10M",
    "--", "-", "-h", "--help", "--json", "-q", "--lin", "--verify=1",
    # Global options after the command (spec/cli.md, "Synopsis").
    "--store", "--store=s2", "--shared", "--quiet", "-v", "--verbose", "-qv", "--lock-timeout=7", "--lock-timeout", "--timeout=5", "--json=1",
]
VALUES = [
    "auto", "reflink", "hardlink", "symlink", "copy", "Auto", "bar", "json", "none",
    "0", "1", "8", "64", "65", "100", "101", "+8", " 8", "08", "\u0668", "-1", "1e1", "65535", "65536",
    "10M", "500k", "10MB", "2.5", "1.", ".5", "nan", "inf",
    "m", "m:v1", "m@sha256:" + "a" * 64, "file", "dir", "missing", "odai.lock", "-", "",
]
# What argv can hold: Python decodes its bytes with surrogateescape, so a lone surrogate is one of U+DC80..U+DCFF (a
# byte that is not UTF-8), never another ('\ud800' cannot be encoded back, and no user can type it).
ARGV_TEXT = st.binary(max_size=6).filter(lambda b: b"\x00" not in b).map(os.fsdecode) | st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=4
)
anything = st.builds(
    lambda g, c, rest: g + c + rest,
    st.lists(st.sampled_from(GLOBAL), max_size=3),
    st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=1),
    st.lists(st.sampled_from(OPTIONS) | st.sampled_from(VALUES) | ARGV_TEXT, max_size=7),
)
AFTER = ["--store=s2", "--json", "-q", "--verbose", "--shared", "--lock-timeout=9", "--timeout=7"]  # global options after the command
# Mostly the command's own options with values that may fit, spelled apart or with '='.
nearly_right = st.sampled_from(sorted(OWN)).flatmap(
    lambda c: st.builds(
        lambda g, rest: g + [c] + rest,
        st.lists(st.sampled_from(["--store=s", "--store=", "--shared", "--json", "-q", "--quiet", "-v", "--verbose", "--lock-timeout=0", "--lock-timeout=7", "--timeout=5"]), max_size=3),
        st.lists(
            st.sampled_from(OWN[c] or ["--json"])
            | st.sampled_from(VALUES)
            | st.builds(lambda o, v: f"{o}={v}", st.sampled_from(OWN[c] or ["--json"]), st.sampled_from(VALUES))
            | st.sampled_from(AFTER),
            max_size=4,
        ),
    )
)
arguments = nearly_right | anything


@settings(max_examples=2500, deadline=None)
@given(args=arguments, place=st.sampled_from(["missing", "file", "dir"]))
@example(args=["sync"], place="dir")  # ./odai.lock, the default lockfile, is a directory
@example(args=["export", "m", "file"], place="missing")  # DEST is a file
@example(args=["--store", "--json", "path", "m"], place="missing")  # an option's value may look like an option
@example(args=["fetch", "--ca-bundle", "dir", "m"], place="missing")  # a CA bundle must be a file
@example(args=["fetch", "--ca-bundle", "missing", "m"], place="missing")  # ... that exists
@example(args=["init", "file"], place="missing")  # DIRECTORY is a file
@example(args=["add", "m"], place="missing")  # no PATH
def test_what_the_quick_path_accepts_click_reads_the_same(places: dict[str, Path], args: list[str], place: str) -> None:
    with working_directory(places[place]):
        call = quick.parse(args)
        if call is not None:
            assert click_call(args) == call
        read = call or click_call(args)
        if read is not None:  # the flags that decide an error's form, as the parser that reads args sees them
            assert quick.flags(args) == {dest for dest in ("as_json", "quiet", "verbose", "shared") if read[1][dest]}


USUAL = [
    ["list"],
    ["--json", "list"],
    ["path", "llama-3b:q4"],
    ["--json", "path", "llama-3b:q4", "--file", "config.json"],
    ["--store", "/srv/models", "-q", "fetch", "llama-3b@sha256:" + "a" * 64],
    ["fetch", "a", "b:v2", "--remote", "https://mirror.example/models", "--remote", "/mnt/mirror", "--connections", "4", "--retries=0", "--progress", "json"],
    ["--timeout", "30", "fetch", "m", "--limit-rate", "10M", "--ca-bundle", "file"],
    ["fetch", "m", "--url", "https://example/f", "--sha256", "0" * 64, "--filename", "f.bin"],
    ["fetch"],  # the body says what is missing, in click's words
    ["push", "m:v1", "oci://localhost:5000/team", "--as", "n:v2", "--retries", "2", "--progress", "none"],
    ["sync"],
    ["-v", "sync", "llama-3b", "--lockfile", "app/odai.lock", "--progress", "none"],
    ["sync", "--verify"],
    ["path", "--verify", "llama-3b:q4", "--file", "config.json"],
    ["--lock-timeout", "30", "sync"],
    ["--timeout=2.5", "sync", "--connections=64"],
    ["export", "llama-3b:q4", "out"],
    ["--store=/srv/models", "export", "--link", "hardlink", "llama-3b:q4", "out"],
    ["add", "m:v1", "dir", "file", "--follow-links"],
    ["-q", "add", "--move", "m:v1", "dir", "--progress", "json"],
    ["show", "m"],
    ["rm", "a", "b"],
    ["tag", "a:v1", "b"],
    ["gc", "--dry-run", "--partials"],
    ["verify"],
    ["verify", "m", "--fast"],
    ["du"],
    ["doctor", "--repair"],
    ["serve", "--host", "::1", "--port", "65535", "--read-only"],
    ["lock", "m", "--lockfile", "app.lock", "--remote", "r"],
    ["lock", "--check"],
    ["roots"],
    ["log"],
    ["--json", "log", "m:v1", "--limit", "20"],
    ["init"],
    ["--shared", "init", "dir", "--shared"],
    ["import-hf-cache", "--cache-dir", "hub", "--link", "org/repo"],
    # Global options after the command: the last value given wins, as for any option given twice.
    ["list", "--json"],
    ["fetch", "-q", "m", "--timeout", "30"],
    ["--store", "/srv/a", "path", "m", "--store", "/srv/b", "--lock-timeout=5", "--verbose"],
    ["export", "m", "out", "--shared", "--quiet"],
]


@pytest.mark.parametrize("args", USUAL)
def test_the_usual_spellings_take_the_quick_path(places: dict[str, Path], args: list[str]) -> None:
    with working_directory(places["missing"]):
        call = quick.parse(args)
        assert call is not None
        assert click_call(args) == call


def test_every_command_has_a_usual_spelling_that_takes_the_quick_path(places: dict[str, Path]) -> None:
    with working_directory(places["missing"]):
        assert {quick.parse(args)[0] for args in USUAL} == set(BY_NAME) == set(cli.commands)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["--version"],
        ["path", "--help"],
        ["list", "extra"],
        ["nosuch", "m"],
        ["path", "a", "b"],
        ["path", "m", "--", "x"],
        ["-qv", "path", "m"],
        ["export", "m", "out", "--link", "Copy"],
        ["sync", "--connections", "0"],
        ["--lock-timeout", "9" * 5000, "list"],  # more digits than int() converts
        ["fetch", "m", "--retries=" + "0" * 5000],
        ["--timeout", "0", "fetch", "m"],
        ["fetch", "m", "--limit-rate", "10MB"],
        ["fetch", "m", "--ca-bundle", "missing"],
        ["add", "m"],
        ["rm"],
        ["init", "a", "b"],
        ["serve", "--port", "65536"],
        ["gc", "--dry-run=1"],
    ],
)
def test_everything_else_goes_to_click(places: dict[str, Path], args: list[str]) -> None:
    with working_directory(places["missing"]):
        assert quick.parse(args) is None


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    return done.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args", [["fetch"], ["fetch", "m", "--url", "https://example/f"], ["fetch", "m", "n", "--url", "https://example/f", "--sha256", "0" * 64], ["lock"]])
def test_a_body_refuses_a_combination_in_the_words_click_would(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    store = ["--store", str(tmp_path / "store")]
    assert quick.parse([*store, *args]) is not None and quick.parse([*store, *args, "--"]) is None
    quick_said = _main([*store, *args], capsys)
    assert quick_said[0] == 2 and quick_said[1].endswith(f"hint: see 'odai-store {args[0]} --help'\n"), quick_said
    assert _main([*store, *args, "--"], capsys) == quick_said  # by click


def test_a_number_longer_than_int_takes_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(["--store", str(tmp_path / "store"), "--lock-timeout", "9" * 5000, "list"], capsys)
    assert code == 2
    assert err.startswith("odai-store: error: Invalid value for '--lock-timeout'")


def test_a_quick_command_never_imports_click(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 1000)
    store = ["--store", str(tmp_path / "store")]

    def run(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
        """The command's result, and the modules it imported (from -X importtime on stderr)."""
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "store", *store, *args], capture_output=True, text=True)
        return done, {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}

    added, modules = run("--json", "add", "m:v1", str(model))
    assert added.returncode == 0 and "click" not in modules, added.stderr
    digest = json.loads(added.stdout)["digest"]
    listed, modules = run("-qv", "list")
    assert listed.returncode == 0 and "click" in modules  # -qv is click's: the check sees click when it is there
    usual = [
        ["list"],
        ["path", "m:v1"],
        ["export", "m:v1", str(tmp_path / "out")],
        ["fetch", f"m@{digest}"],
        ["--timeout", "30", "fetch", f"m@{digest}"],
        ["show", "m:v1"],
        ["path", digest[7:19], "--json"],  # a short digest, and a global option after the command
        ["show", digest[:19]],
        ["export", digest[7:19], str(tmp_path / "out2")],
        ["du"],
        ["roots"],
        ["gc", "--dry-run"],
        ["verify", "--fast"],
    ]
    for args in usual:
        done, modules = run(*args)
        assert done.returncode == 0, done.stderr
        assert "store.cli.actions" in modules and "click" not in modules, args


