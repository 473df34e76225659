"""The quick path: the usual spellings of every command, read by declarations.py's table without click.

Importing click costs a Python process more than the whole of ``odai-store
path`` or of an export that hardlinks 2 GiB (spec/cli.md, "Start-up"), and
scripts call commands in loops. ``parse`` reads an argument list only where
click, given the same table, would accept it and pass the same parameters:
global options, then a command, its arguments and its options, among which
global options may stand too, each value converted as its click type would
(``_convert``). Everything else (--help, --version, an unknown command or
option, ``--``, combined short flags, a missing or extra argument, a value
click would refuse) returns None and goes to click, which does the rest,
help and errors included.
tests/unit/test_quick.py checks with hypothesis that whatever ``parse``
accepts, click parses to the same parameters.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .declarations import BY_NAME, GLOBAL, Argument, Choice, Flag, FsPath, Integer, Limit, Option, Text

if TYPE_CHECKING:
    from .declarations import Kind

__all__ = ["Call", "flags", "parse"]


# The command's name on the command line (a key of declarations.BY_NAME), the global
# options as click's group passes them, and the command's parameters as click passes
# them. A plain tuple: a named tuple's class costs a start-up a million instructions.
Call = tuple[str, dict[str, Any], dict[str, Any]]


class _Refused(Exception):
    """This argument list is for click."""


def _convert(kind: Kind, text: str) -> Any:
    """``text`` as the click type of ``kind`` (commands._type) converts it, or _Refused where it might not."""
    match kind:
        case Text():
            return text
        case Choice():
            if text in kind.choices:
                return text
        case Integer():
            return _integer(kind, text)
        case FsPath():
            return _path(kind, text)
        case Limit():
            try:
                return kind.parse(text)
            except UsageError:
                pass
    raise _Refused  # a choice not spelled exactly, a limit out of its grammar


def _integer(kind: Integer, text: str) -> int:
    # Plain ASCII digits only: int() also takes "+8", " 8", "1_0" and "٨".
    if not (text.isascii() and text.isdigit()):
        raise _Refused
    try:
        number = int(text)
    except ValueError:  # over sys.get_int_max_str_digits() digits: click says what is wrong
        raise _Refused from None
    if number < kind.low or (kind.high is not None and number > kind.high):
        raise _Refused
    return number


def _path(kind: FsPath, text: str) -> Path | str:
    """click.Path's checks: a path that exists must be of an allowed kind and readable; one that does not, need not exist."""
    try:
        st = os.stat(text)
    except OSError:
        if kind.exists:
            raise _Refused from None
        return Path(text) if kind.as_path else text
    except ValueError:  # an embedded NUL: whatever click makes of it
        raise _Refused from None
    if (not kind.file_okay and stat.S_ISREG(st.st_mode)) or (not kind.dir_okay and stat.S_ISDIR(st.st_mode)) or not os.access(text, os.R_OK):
        raise _Refused
    return Path(text) if kind.as_path else text


def _defaults(options: Iterable[Option]) -> dict[str, Any]:
    """The values click passes for options not given: a default in text is checked and converted as a given value."""
    values: dict[str, Any] = {}
    for option in options:
        if option.multiple:
            values[option.dest] = ()
        else:
            values[option.dest] = _convert(option.kind, option.default) if isinstance(option.default, str) else option.default
    return values


def _by_name(options: Iterable[Option], values: dict[str, Any]) -> dict[str, tuple[Option, dict[str, Any]]]:
    """Each name of ``options``, with the option and where its value goes."""
    return {name: (option, values) for option in options for name in option.names}


def _options(args: list[str], table: dict[str, tuple[Option, dict[str, Any]]], interspersed: bool) -> list[str]:
    """Take the options in ``args`` into the values ``table`` gives with each; return the arguments.

    Without ``interspersed`` (the global options), the first argument ends
    the options and it and everything after it are returned. An option given
    twice keeps its last value, as click does.
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
        option, values = table.get(name) or (None, {})
        if option is None:
            raise _Refused
        if isinstance(option.kind, Flag):
            if eq:
                raise _Refused
            values[option.dest] = True
            continue
        text = inline if eq else next(rest, None)
        if text is None:
            raise _Refused
        value = _convert(option.kind, text)
        values[option.dest] = values[option.dest] + (value,) if option.multiple else value
    return found


def _arguments(declared: list[Argument], given: list[str]) -> dict[str, Any]:
    """The ``declared`` arguments' values from ``given``, as click assigns them; the one that takes ``many`` comes last."""
    single = [a for a in declared if not a.many]
    many = declared[-1] if declared and declared[-1].many else None
    if len(given) < sum(a.required for a in single) + (many is not None and many.required):
        raise _Refused  # click says what is missing
    if many is None and len(given) > len(single):
        raise _Refused  # click names the extra argument
    values: dict[str, Any] = dict.fromkeys(a.dest for a in single)  # None: an optional one not given
    for argument, text in zip(single, given, strict=False):
        values[argument.dest] = _convert(argument.kind, text)
    if many is not None:
        values[many.dest] = tuple(_convert(many.kind, text) for text in given[len(single) :])
    return values


def parse(args: list[str]) -> Call | None:
    """The call click would make for ``args``, when the quick path reads them; else None."""
    try:
        options = _defaults(GLOBAL)
        rest = _options(args, _by_name(GLOBAL, options), interspersed=False)
        command = BY_NAME.get(rest[0]) if rest else None
        if command is None:
            return None
        own = [p for p in command.params if isinstance(p, Option)]
        params = _defaults(own)
        # After the command, global options too; a name the command declares is its own (spec/cli.md, "Synopsis").
        given = _options(rest[1:], {**_by_name(GLOBAL, options), **_by_name(own, params)}, interspersed=True)
        return command.name, options, {**params, **_arguments([p for p in command.params if isinstance(p, Argument)], given)}
    except _Refused:
        return None


def flags(args: list[str]) -> set[str]:
    """The ``dest`` of each global flag (``as_json``, ``quiet``, ``verbose``, ``shared``) ``args`` give, before or after the command.

    For the form of an error, where ``args`` may be what no parser reads (an
    unknown option, a missing value): a lenient read by the same table, which
    agrees with ``parse`` and with click wherever they read ``args``
    (tests/unit/test_quick.py). Combined short flags (``-qv``) count;
    nothing after ``--`` does.
    """
    table = _by_name(GLOBAL, {})
    found: set[str] = set()
    rest = iter(args)
    command = None
    for token in rest:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            if command is None and (command := BY_NAME.get(token)) is not None:
                table = {**table, **_by_name((p for p in command.params if isinstance(p, Option)), {})}
            continue
        name, eq, _ = token.partition("=") if token.startswith("--") else (token, "", "")
        option, _values = table.get(name) or (None, None)
        if option is None:
            if not token.startswith("--"):  # -qv: each letter a flag, as click reads it
                letters = [table.get("-" + letter, (None, None))[0] for letter in token[1:]]
                found.update(o.dest for o in letters if o is not None and isinstance(o.kind, Flag) and o in GLOBAL)
            continue
        if not isinstance(option.kind, Flag):
            if not eq:
                next(rest, None)  # its value, whatever it looks like
        elif not eq and option in GLOBAL:
            found.add(option.dest)
    return found
