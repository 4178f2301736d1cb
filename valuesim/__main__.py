"""`python -m valuesim`: the same command line as the `valuesim` script."""

from valuesim.cli import app

app(prog_name="valuesim")
