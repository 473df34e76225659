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

__all__ = ["cli"]


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


def _command(command: Command) -> click.Command:
    @click.pass_obj
    def run(c: Context, **params: Any) -> None:
        command.body(c, SimpleNamespace(**params))

    return click.Command(command.name, callback=run, params=[_parameter(p) for p in command.params], help=command.help)


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
    ctx.obj = Context(options)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
