"""click's odai-store: the group and its commands, built from declarations.py; for help, version, errors and every spelling.

The entry point comes here for what the quick path does not read
(quick.py); the commands run the same bodies (actions.py) either way.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..errors import UsageError
from .actions import Context
from .declarations import ABOUT, COMMANDS, GLOBAL, Argument, Choice, Command, Flag, FsPath, Integer, Limit, Option, Text

if TYPE_CHECKING:
    from .declarations import Kind

__all__ = ["cli", "split_options"]

_GLOBAL_DESTS = {option.dest: option for option in GLOBAL}


class _Limit(click.ParamType):
    """A value that store/limits.py reads from its spelling, with its words when it refuses one."""

    def __init__(self, kind: Limit) -> None:
        self.name = kind.name
        self._parse = kind.parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self._parse(value)
        except UsageError as err:
            self.fail(err.message, param, ctx)


def _type(kind: Kind) -> click.ParamType:
    """The click type that checks what ``kind`` declares; quick.py's _convert mirrors each one."""
    match kind:
        case Text():
            return click.STRING
        case Choice():
            return click.Choice(kind.choices)
        case Integer():
            return click.IntRange(kind.low, kind.high)
        case FsPath():
            return click.Path(exists=kind.exists, file_okay=kind.file_okay, dir_okay=kind.dir_okay, path_type=Path if kind.as_path else None)
        case Limit():
            return _Limit(kind)
    raise TypeError(f"no click type for {kind!r}")


def _parameter(param: Argument | Option) -> click.Parameter:
    if isinstance(param, Argument):
        return click.Argument([param.dest], type=_type(param.kind), nargs=-1 if param.many else 1, required=param.required, metavar=param.metavar)
    if isinstance(param.kind, Flag):
        return click.Option([param.dest, *param.names], is_flag=True, help=param.help)
    return click.Option(
        [param.dest, *param.names],
        type=_type(param.kind),
        default=param.default,
        multiple=param.multiple,
        metavar=param.metavar,
        show_default=param.show_default,
        help=param.help,
    )


def _global_after(command: Command) -> list[click.Option]:
    """The global options as ``command`` takes them after its name (spec/cli.md, "Synopsis").

    Less any name the command declares itself, which is the command's (init's
    --shared); with no default, so that only what is given there replaces
    what was given before the command.
    """
    own = {name for p in command.params if isinstance(p, Option) for name in p.names}
    after = []
    for option in GLOBAL:
        names = [name for name in option.names if name not in own]
        if names and isinstance(option.kind, Flag):
            after.append(click.Option([option.dest, *names], is_flag=True, help=option.help))
        elif names:
            after.append(click.Option([option.dest, *names], type=_type(option.kind), default=None, multiple=option.multiple, metavar=option.metavar, help=option.help))
    return after


def split_options(before: dict[str, Any], params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The global options (as given ``before`` the command, then after it) and the command's own ``params``, apart.

    A flag given on either side is set; a value given after the command
    replaces one given before, as a second use of an option does, except
    that a repeatable option collects both.
    """
    options, own = dict(before), {}
    for dest, value in params.items():
        option = _GLOBAL_DESTS.get(dest)
        if option is None:
            own[dest] = value
        elif isinstance(option.kind, Flag):
            options[dest] = options[dest] or value
        elif option.multiple:
            options[dest] = (*options[dest], *value)  # each use counts, before the command and after it
        elif value is not None:
            options[dest] = value
    return options, own


class _Command(click.Command):
    """A command whose help shows the global options it takes after its name apart from its own."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records: dict[bool, list[tuple[str, str]]] = {True: [], False: []}  # global or not: the help record of each option
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and not isinstance(param, click.Argument):
                records[param.name in _GLOBAL_DESTS].append(record)
        for heading, rows in (("Options", records[False]), ("Global options", records[True])):
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)


def _command(command: Command) -> click.Command:
    @click.pass_context
    def run(ctx: click.Context, **params: Any) -> None:
        options, own = split_options(ctx.parent.params if ctx.parent else {}, params)
        command.body(Context(options), SimpleNamespace(**own))

    params = [_parameter(p) for p in command.params] + _global_after(command)
    return _Command(command.name, callback=run, params=params, help=command.help)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    params=[_parameter(o) for o in GLOBAL],
    commands=[_command(c) for c in COMMANDS],
    help=ABOUT,
)
@click.version_option(__version__, "--version", prog_name="odai-store", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    # The command builds its Context: global options may follow its name too.
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
