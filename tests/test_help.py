"""Byte snapshots of every command's `--help`: a change to the command line's look (an option, its help, the layout
typer gives it) shows up in review as a diff of a text file under snapshots/help/.

Rendered at a fixed width (100 columns) without colour, so the files do not depend on the terminal. After a change
on purpose, rewrite the files and commit them with the change:

    VALUESIM_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_help.py -q
"""

from __future__ import annotations

import re

import click
import pytest
import typer
import typer.rich_utils
from test_prompts import check_snapshot
from typer.testing import CliRunner

from valuesim.cli import app

WIDTH = 100


def command_paths() -> list[tuple[str, ...]]:
    """() for the app itself, then every command and subcommand, depth first in registration order."""
    paths: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


PATHS = command_paths()


@pytest.fixture
def fixed_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rendering on any machine: TERMINAL_WIDTH, GITHUB_ACTIONS and FORCE_COLOR are read by typer at import,
    so its module settings are pinned too."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", WIDTH)
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", False)
    monkeypatch.setattr(typer.rich_utils, "COLOR_SYSTEM", None)


def render_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="valuesim")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_covered() -> None:
    assert {p[:1] for p in PATHS} >= {(), ("evaluate",), ("bench",), ("compile",), ("simulate",), ("data",)}
    assert ("data", "build") in PATHS and ("data", "person") in PATHS


@pytest.mark.usefixtures("fixed_terminal")
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "valuesim")
def test_help_snapshot(path: tuple[str, ...]) -> None:
    text = render_help(path)
    assert "\x1b[" not in text  # no colour codes in a snapshot
    check_snapshot(f"help/{'_'.join(('valuesim', *path))}.txt", text)


@pytest.mark.usefixtures("fixed_terminal")
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "valuesim")
def test_flags_show_no_value(path: tuple[str, ...]) -> None:
    """`--help`, `--json`, `--force`: a flag takes no value, so its row shows no type (typer 0.29 prints <bool>)."""
    text = render_help(path)
    assert "<bool>" not in text
    assert re.search(r"--help\s+Show this message and exit", text), text
