"""The command line's grammar (spec/cli.md, "Synopsis"): global options before or after the command, and --json errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import Store
from store.cli.declarations import COMMANDS, GLOBAL, Option
from tests.support.cli import assert_error, run_cli
from tests.support.trees import write_tree


@pytest.fixture
def demo(store_dir: Path, tmp_path: Path) -> Store:
    store = Store(store_dir)
    store.add("demo:v1", write_tree(tmp_path / "demo", {"a.txt": b"hello\n"}))
    return store


# -- global options after the command ------------------------------------------


@pytest.mark.parametrize("command", [("list",), ("show", "demo:v1"), ("path", "demo:v1"), ("du",), ("roots",)])
def test_json_after_the_command_is_the_same_as_before(demo: Store, command: tuple[str, ...]) -> None:
    before = run_cli(demo.root, "--json", *command)
    after = run_cli(demo.root, *command, "--json")
    assert before.code == 0 and json.loads(before.out)
    if command != ("du",):  # free space changes between two runs
        assert after == before


def test_store_after_the_command_replaces_the_one_before(demo: Store, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert run_cli(None, "path", "demo:v1", "--store", str(demo.root)).out == f"{demo.path('demo:v1')}\n"
    assert run_cli(None, "--store", str(demo.root), "path", "demo:v1", "--store", str(other)).code == 3  # the last one given
    assert run_cli(None, "--store", str(other), "path", "demo:v1", f"--store={demo.root}").code == 0


def test_quiet_after_the_command_silences_its_messages(demo: Store) -> None:
    assert run_cli(demo.root, "tag", "demo:v1", "demo:a").err.startswith("tagged demo:a")
    assert run_cli(demo.root, "tag", "demo:v1", "demo:b", "-q") == (0, "", "")
    assert run_cli(demo.root, "rm", "-q", "demo:a", "demo:b") == (0, "", "")


def test_quiet_after_fetch(demo: Store, tmp_path: Path) -> None:
    """fetch -q NAME: no 'up to date' on stderr (spec/cli.md, "fetch")."""
    mine = tmp_path / "mine"
    assert run_cli(mine, "fetch", "--remote", str(demo.root), "demo:v1").code == 0
    again = run_cli(mine, "fetch", "--remote", str(demo.root), "demo:v1")
    assert again.err == "demo:v1: up to date\n"
    assert run_cli(mine, "fetch", "-q", "--remote", str(demo.root), "demo:v1") == (0, again.out, "")


def test_a_lock_timeout_after_the_command_is_read_and_checked(demo: Store) -> None:
    assert run_cli(demo.root, "rm", "demo:v1", "--lock-timeout", "0").code == 0
    message = assert_error(run_cli(demo.root, "list", "--lock-timeout", "-1"), 2)
    assert "--lock-timeout" in message


def test_init_shared_after_the_command_is_inits_own(tmp_path: Path) -> None:
    """The one clash of names (spec/cli.md, "Synopsis"): after 'init', --shared is init's option, with the same meaning."""
    result = run_cli(None, "--json", "init", str(tmp_path / "team"), "--shared")
    assert result.code == 0 and json.loads(result.out)["shared"] is True


def test_the_only_name_both_global_and_a_commands_own_is_inits_shared() -> None:
    """A new clash must be resolved on purpose and written in spec/cli.md, "Synopsis"."""
    global_names = {name for option in GLOBAL for name in option.names}
    clashes = {(c.name, name) for c in COMMANDS for p in c.params if isinstance(p, Option) for name in p.names if name in global_names}
    assert clashes == {("init", "--shared")}
    global_dests = {option.dest for option in GLOBAL}
    assert not [(c.name, p.dest) for c in COMMANDS for p in c.params if p.dest in global_dests]


def test_help_of_a_command_shows_the_global_options() -> None:
    out = run_cli(None, "path", "--help").out
    options, _, global_options = out.partition("\nGlobal options:\n")
    assert "--file F" in options and "--json" not in options
    for option in GLOBAL:
        assert option.names[-1] in global_options
    assert "--shared" not in run_cli(None, "init", "--help").out.partition("\nGlobal options:\n")[2]


# -- --json errors: one document on stdout ---------------------------------------


@pytest.mark.parametrize(
    "args, code",
    [
        (("--json", "path", "nope"), 3),  # raised by the body, quick path
        (("path", "nope", "--json"), 3),
        (("show", "--json", "Nope"), 2),  # an invalid reference
        (("--json", "fetch"), 2),  # a usage error the body finds, in click's words
        (("fetch", "--json"), 2),
        (("--json", "path"), 2),  # click: a missing argument
        (("list", "--json", "--nosuch"), 2),  # click: an unknown option
        (("--json", "nosuch"), 2),  # click: an unknown command
        (("list", "--json", "--lock-timeout=x"), 2),  # click: a value it refuses
        (("export", "demo:v1", "", "--json"), 2),
    ],
)
def test_with_json_an_error_is_one_document_on_stdout(demo: Store, args: tuple[str, ...], code: int) -> None:
    assert_error(run_cli(demo.root, *args), code, json=True)


def test_without_json_an_error_leaves_stdout_empty(demo: Store) -> None:
    assert_error(run_cli(demo.root, "path", "nope"), 3)
    assert_error(run_cli(demo.root, "path", "nope", "--file", "--json"), 3)  # the value of --file, not the option


def test_the_error_document_holds_the_exact_words(tmp_path: Path) -> None:
    """stderr escapes what is not printable; the document has the exact string, as JSON writes it."""
    odd = tmp_path / "new\nline\x1b[2J"
    result = run_cli(odd, "--json", "path", "nope")
    assert_error(result, 3, json=True)
    assert json.loads(result.out)["error"] == f"no model named nope:latest in {odd}"
    assert "\\n" in result.err.splitlines()[0]
