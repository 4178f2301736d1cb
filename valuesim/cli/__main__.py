"""`python -m valuesim.cli`, as the tests and scripts run it."""

from valuesim.cli import app

app(prog_name="valuesim")
