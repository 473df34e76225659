"""The quick path: the usual spellings of list, path, fetch, sync and export, parsed without click.

Importing click costs a Python process more than the whole of ``odai-store
path`` or of an export that hardlinks 2 GiB (spec/cli.md, "Start-up"), and
scripts call these commands in loops. ``parse`` recognizes an argument list
only where click would accept it and pass the same parameters: global
options, then one of these five commands, its arguments and its options
(the table below).
Everything else (--help, --version, another command, an option of another
command, ``--``, combined short flags, a missing or extra argument, a value
click would refuse) returns None and goes to click, which does the rest,
help and errors included. tests/unit/test_quick.py checks with hypothesis
that whatever ``parse`` accepts, click parses to the same parameters.
"""

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..export import LINK_MODES
from . import actions

__all__ = ["Call", "parse"]


class Call(NamedTuple):
    command: str  # its name on the command line, a key of actions.BY_NAME
    options: dict[str, Any]  # the global options, as click's group passes them
    params: dict[str, Any]  # the command's parameters, as click passes them


class _Refused(Exception):
    """This argument list is for click."""


def _text(value: str) -> str:
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value not in choices:
            raise _Refused
        return value

    return convert


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        # Plain ASCII digits only: int() also takes "+8", " 8" and "٨".
        if not (value.isascii() and value.isdigit()):
            raise _Refused
        try:
            number = int(value)
        except ValueError:  # over sys.get_int_max_str_digits() digits: click says what is wrong
            raise _Refused from None
        if not low <= number <= high:
            raise _Refused
        return number

    return convert


def _path(file_okay: bool = True, dir_okay: bool = True) -> Callable[[str], Path]:
    """click.Path(path_type=Path)'s checks: a path that exists must be of an allowed kind and readable."""

    def convert(value: str) -> Path:
        try:
            st = os.stat(value)
        except OSError:
            return Path(value)
        except ValueError:  # an embedded NUL: whatever click makes of it
            raise _Refused from None
        if (not file_okay and stat.S_ISREG(st.st_mode)) or (not dir_okay and stat.S_ISDIR(st.st_mode)) or not os.access(value, os.R_OK):
            raise _Refused
        return Path(value)

    return convert


class _Option(NamedTuple):
    dest: str
    convert: Callable[[str], Any] | None  # None: a flag
    multiple: bool = False


class _Command(NamedTuple):
    arguments: tuple[tuple[str, Callable[[str], Any]], ...]  # one value each, in order
    variadic: str | None  # or the name that takes all arguments, as a tuple
    at_least: int  # arguments the quick path needs, else click says what is missing
    options: dict[str, _Option]
    # The values click passes for what is not given. A function: click checks
    # a default as it checks a given value, here on every call.
    defaults: Callable[[], dict[str, Any]]


_GLOBAL = {
    "--store": _Option("store_dir", _text),
    "--shared": _Option("shared", None),
    "--json": _Option("as_json", None),
    "-q": _Option("quiet", None),
    "--quiet": _Option("quiet", None),
    "-v": _Option("verbose", None),
    "--verbose": _Option("verbose", None),
    # Any bound: a larger value goes to click, which takes it too.
    "--lock-timeout": _Option("lock_timeout", _int_range(0, 10**9)),
}
# --timeout is click's: a script that bounds the network pays for click's import.
_GLOBAL_DEFAULTS = {"store_dir": None, "shared": False, "as_json": False, "quiet": False, "verbose": False, "lock_timeout": actions.LOCK_TIMEOUT, "timeout": None}

_REMOTE = _Option("remotes", _text, multiple=True)
_CONNECTIONS = _Option("connections", _int_range(1, 64))
_RETRIES = _Option("retries", _int_range(0, 100))
_PROGRESS = _Option("progress_mode", _choice(actions.PROGRESS_MODES))
_VERIFY = _Option("verify", None)
_LOCKFILE = _path(dir_okay=False)

_COMMANDS = {
    "list": _Command((), None, 0, {}, dict),
    "path": _Command((("name", _text),), None, 1, {"--file": _Option("file", _text), "--verify": _VERIFY}, lambda: {"file": None, "verify": False}),
    "export": _Command(
        (("name", _text), ("dest", _path(file_okay=False))), None, 2, {"--link": _Option("link", _choice(LINK_MODES))}, lambda: {"link": actions.LINK}
    ),
    # fetch with no NAME, or with --url, --limit-rate or --ca-bundle, is for click.
    "fetch": _Command(
        (),
        "names",
        1,
        {"--remote": _REMOTE, "--connections": _CONNECTIONS, "--retries": _RETRIES, "--progress": _PROGRESS},
        lambda: {
            "remotes": (),
            "url": None,
            "sha256": None,
            "filename": None,
            "connections": actions.CONNECTIONS,
            "retries": actions.RETRIES,
            "limit_rate": None,
            "ca_bundle": None,
            "progress_mode": None,
        },
    ),
    "sync": _Command(
        (),
        "names",
        0,
        {"--lockfile": _Option("lockfile", _LOCKFILE), "--remote": _REMOTE, "--connections": _CONNECTIONS, "--retries": _RETRIES, "--progress": _PROGRESS, "--verify": _VERIFY},
        lambda: {"lockfile": _LOCKFILE(actions.LOCKFILE), "remotes": (), "connections": actions.CONNECTIONS, "retries": actions.RETRIES, "ca_bundle": None, "progress_mode": None, "verify": False},
    ),
}


def _options(args: list[str], table: dict[str, _Option], values: dict[str, Any], interspersed: bool) -> list[str]:
    """Take the options in ``args`` into ``values``; return the arguments.

    Without ``interspersed`` (the global options), the first argument ends
    the options and it and everything after it are returned.
    """
    found: list[str] = []
    rest = iter(args)
    for token in rest:
        if not token.startswith("-") or token == "-":
            if not interspersed:
                return [token, *rest]
            found.append(token)
            continue
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        option = table.get(name)
        if option is None:
            raise _Refused
        if option.convert is None:
            if eq:
                raise _Refused
            values[option.dest] = True
            continue
        text = inline if eq else next(rest, None)
        if text is None:
            raise _Refused
        value = option.convert(text)
        values[option.dest] = values[option.dest] + (value,) if option.multiple else value
    return found


def parse(args: list[str]) -> Call | None:
    """The call click would make for ``args``, when this is one the quick path knows; else None."""
    try:
        options = dict(_GLOBAL_DEFAULTS)
        rest = _options(args, _GLOBAL, options, interspersed=False)
        if not rest or rest[0] not in _COMMANDS:
            return None
        command = _COMMANDS[rest[0]]
        params = command.defaults()
        arguments = _options(rest[1:], command.options, params, interspersed=True)
        if len(arguments) < command.at_least or (command.variadic is None and len(arguments) > len(command.arguments)):
            return None
        for (name, convert), value in zip(command.arguments, arguments, strict=False):
            params[name] = convert(value)
        if command.variadic is not None:
            params[command.variadic] = tuple(arguments)
        return Call(rest[0], options, params)
    except _Refused:
        return None
