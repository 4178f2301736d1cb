"""What the commands share: every option declared once (typer `Annotated` aliases), the consoles, and the one
place where errors, warnings and stdout are handled."""

from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console

from valuesim import config, files
from valuesim.errors import ValueSimError

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark
    from valuesim.run.runner import Setup

console = Console(stderr=True, soft_wrap=True)  # tables and progress go to stderr so --json stdout stays clean
out = Console(soft_wrap=True)

PROGRAM_NAMES = "random, majority, country, cell, knn, ml, demographics, rag, full-info, backstory, valuesim"
LM_PROGRAM_NAMES = "valuesim, backstory, full-info, rag, demographics"

# Help texts are rich markup (typer's default): a literal "[default: ...]" is written \\[ or rich takes it for a
# style tag and drops it from --help.

# Data selection
Data = Annotated[Path | None, typer.Option(help="Built benchmark \\[default: data/benchmark]")]
Split = Annotated[Literal["train", "dev", "test"], typer.Option(help="Respondent split")]
Fold = Annotated[int, typer.Option(min=1, max=5, help="Question fold 1-5")]
History = Annotated[int, typer.Option(min=0, help="Number of known profile answers (0, 58, 116, 174, 232 or any)")]
Protocol = Annotated[
    Literal["values", "reference"],
    typer.Option(help="values (demographics known, value questions held out) or reference (the paper's)"),
]
Persons = Annotated[
    int | None,
    typer.Option(
        min=1, help="A seeded, country-stratified sample of N persons (the same for every program and history)"
    ),
]
Questions = Annotated[int | None, typer.Option(min=1, help="Only the first M held-out questions per person")]
Seed = Annotated[int, typer.Option(help="Seed for sampling (persons, splits, optimizer) and the bootstrap")]

# Program and LM
Program = Annotated[
    str,
    typer.Option(
        help=f"Program name ({PROGRAM_NAMES}) or a compiled program: runs:/<run_id>, models:/<name>/<version>, "
        "models:/<name>@<alias> or a saved folder"
    ),
]
LM = Annotated[
    str,
    typer.Option(
        help="LM: gemma, smollm2, a .gguf path, any LiteLLM model string, or dummy (no model: answers the first "
        "option, a dry run of the program and the harness)"
    ),
]
ApiBase = Annotated[
    str | None, typer.Option(help="API base URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama)")
]
Threads = Annotated[int, typer.Option(min=1, help="Parallel predictions (use >1 only for remote LMs)")]
Timeout = Annotated[
    float, typer.Option(min=1, help="Seconds a remote LM call may take; then retried 3 times, then the item fails")
]
Samples = Annotated[
    int,
    typer.Option(
        min=0,
        help="LM programs: when the LM gives no log-probabilities, draw N answers at temperature 1 and use their "
        "shares as the answer's distribution (N+1 runs of the program per item; 0: a point mass)",
    ),
]
UseRay = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Spread the persons over a Ray cluster started for the run (one worker per CPU, each keeping --threads "
        "predictions in flight); needs pip install 'valuesim\\[ray]'",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(help="Run on the existing Ray cluster at this address (auto, ray://head:10001); implies --ray"),
]
Settings = Annotated[
    list[str] | None,
    typer.Option("--set", help="Program setting key=value, repeatable (backstory_words=200, analysis_tokens=120, k=5)"),
]

# Runs and output
RunDir = Annotated[Path | None, typer.Option(help="Folder keeping this run's predictions \\[default: runs/<name>]")]
Resamples = Annotated[
    int, typer.Option(min=0, help="Bootstrap draws over persons for the 95% confidence intervals (0: none)")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout")]

# Warnings users cannot act on, hidden by the start of their message; every other warning shows.
QUIET_WARNINGS = [
    r"Workbook contains no default style",  # openpyxl, on WVS exports
    r"Pydantic serializer warnings",  # LiteLLM's response objects
    r"The ``noload`` loader strategy is deprecated",  # SQLAlchemy, inside MLflow's store
    r"For backward compatibility, 'str' dtypes are included",  # pandas 3, inside mlflow.log_table
]


def fail(message: str) -> NoReturn:
    """A user error: one line, exit 1, no traceback."""
    console.print(f"[red]Error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def handled(as_json: bool = False) -> Iterator[None]:
    """What every command runs inside: user errors as one line, known-noisy warnings hidden, and library prints
    (DSPy optimizers print to stdout) sent to stderr under --json so stdout stays one JSON object."""
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            if as_json:
                with redirect_stdout(sys.stderr):
                    yield
            else:
                yield
        except ValueSimError as e:
            fail(str(e))
        except Exception as e:
            line = environment_error(e)
            if line is None:
                raise  # a bug: keep the traceback
            fail(line)


# OS errors a user fixes in their environment (a full disk, a read-only or foreign folder), not bugs
FILESYSTEM_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR,
    errno.ENAMETOOLONG, errno.ENOENT,
}  # fmt: skip


def environment_error(error: BaseException) -> str | None:
    """One line for an error of the environment rather than of ValueSim: a filesystem error (named by its path) or
    a database error of MLflow's store, found anywhere in the exception's chain; None for anything else."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FILESYSTEM_ERRNOS:
            where = " -> ".join(str(f) for f in (seen.filename, seen.filename2) if f is not None) or "a file"
            return f"{where}: {seen.strerror or os.strerror(seen.errno or 0)}"
        library = type(seen).__module__.split(".")[0]
        if type(seen).__name__ == "OperationalError" and library in ("sqlite3", "sqlalchemy"):
            detail = str(getattr(seen, "orig", None) or seen).strip().splitlines()[0][:200]
            return f"MLflow's store {config.tracking_uri()} cannot be written: {detail}"
        seen = seen.__cause__ or seen.__context__
    return None


def open_benchmark(data: Path | None) -> Benchmark:
    """The built benchmark at --data (default data/benchmark); call inside `handled` (a missing one is an error)."""
    from valuesim.data.benchmark import Benchmark

    return Benchmark(data or config.data_dir())


def make_setup(settings: list[str] | None, ray: bool = False, ray_address: str | None = None, **fields: Any) -> Setup:
    """The run's Setup from the command's options, with --set pairs parsed and --ray / --ray-address read."""
    from valuesim.run.runner import Setup

    if ray or ray_address:
        try:
            import ray as _  # noqa: F401 - only checked: the run imports it where it uses it
        except ImportError:
            fail("--ray needs Ray: pip install 'valuesim[ray]'")
    where = ray_address or ("local" if ray else None)
    return Setup(settings=parse_settings(settings), ray=where, **fields)


def parse_settings(pairs: list[str] | None) -> dict[str, Any]:
    """--set key=value pairs; values read as JSON when they parse (numbers, true/false), else as text."""
    settings: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--set takes key=value, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def int_list(flag: str, text: str, low: int, high: int | None) -> list[int]:
    """A comma-separated list of integers within [low, high], or a one-line error naming the flag."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{flag} takes comma-separated integers, e.g. {flag} 0,58,232; got {text!r}")
    bad = [v for v in values if v < low or (high is not None and v > high)]
    if not values or bad:
        allowed = f"{low}-{high}" if high is not None else f">= {low}"
        fail(f"{flag} takes comma-separated integers {allowed}; got {text!r}")
    return values


def emit_json(obj: Any) -> None:
    """`obj` on stdout as one strict JSON object (undefined values, such as the reference row's vs_reference in a
    bench, are null: JavaScript, Go and jq refuse Python's NaN)."""
    sys.stdout.write(files.strict_json(obj, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if not hasattr(o, "to_dict") and not hasattr(o, "dtype") and hasattr(o, "__dict__"):
        return o.__dict__  # result objects print as their fields
    return files.jsonable(o)
