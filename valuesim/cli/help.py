"""How `--help` looks: typer's own layout, with flags shown without a value.

typer 0.29 prints a type for every option, flags included: `--help <bool>`, `--json <bool>`. A flag takes no value,
and click, argparse and earlier typer show none, so a reader would try `--json true`. Every command and group of the
app is built with these classes (`cls=`), which give flags an empty metavar: typer then prints nothing in the type
column, and click's plain formatter never prints a flag's metavar anyway.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


def _without_flag_types(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer shows the metavar when one is set, else the type ("<bool>")
    return params


class Command(TyperCommand):
    """A typer command whose flags show no value in --help."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer's vendored click Context
        # get_params, not __init__: it also returns the --help option, which click creates on first use
        return _without_flag_types(super().get_params(ctx))


class Group(TyperGroup):
    """A typer group (the app, `data`) whose flags, --help included, show no value in --help."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer's vendored click Context
        return _without_flag_types(super().get_params(ctx))
