"""The `valuesim` command line: build the benchmark, evaluate programs, compile, simulate.

Every command that prints results takes --json and then prints exactly one JSON object on stdout. User errors
(`ValueSimError`: a bad file, flag or setting, an unreachable LM) are one line and exit 1; anything else is a bug
and keeps its traceback. Shared options and that handling live in `options.py`; a command is a plain function in
one of the modules, registered here.
"""

from __future__ import annotations

import typer

from valuesim.cli import bench, estimate, run, ui
from valuesim.cli.data import data_app
from valuesim.cli.help import Command, Group
from valuesim.cli.options import fail, handled, parse_settings

app = typer.Typer(
    cls=Group,
    help="Simulate how one person answers value questions (WVS-7), with DSPy programs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.command(cls=Command)(run.evaluate)
app.command("compile", cls=Command)(run.compile_cmd)
app.command(cls=Command)(run.simulate)
app.command(cls=Command)(bench.bench)
app.command(cls=Command)(ui.ui)
app.command(cls=Command, context_settings=estimate.TAKES_RUN_FLAGS)(estimate.estimate)

__all__ = ["app", "fail", "handled", "parse_settings"]
