"""`valuesim data build` and `valuesim data person`: the benchmark and its respondents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from valuesim import config
from valuesim.cli.help import Command, Group
from valuesim.cli.options import (
    AsJson,
    Data,
    Fold,
    History,
    Protocol,
    Seed,
    console,
    emit_json,
    fail,
    handled,
    open_benchmark,
)

data_app = typer.Typer(cls=Group, help="Build and inspect the benchmark.", no_args_is_help=True)


@data_app.command("build", cls=Command)
def data_build(
    wvs: Annotated[
        Path,
        typer.Option(
            help="WVS-7 folder: countries/*.xlsx (or the cross-national .csv, .sav, .dta or .rds), codebook.json, "
            "questions.json, question_metadata.json, protocol/fold_*.json",
        ),
    ],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write \\[default: data/benchmark]")] = None,
    seed: Seed = 0,
    report_unknown: Annotated[
        bool, typer.Option("--report-unknown", help="List every unmapped label instead of stopping at the first")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a benchmark built from other inputs (never a folder that is not a benchmark); "
            "build even if under 99% of answers map",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Build the benchmark from WVS-7 respondent files.

    --out must be a new or empty folder or a benchmark built before; anything else is refused and left as it is.
    The build is atomic: it is written beside --out and moved into place only when complete. --seed fixes the
    person split and the profile orders.

    Example:
        valuesim data build --wvs ../shared/data/wvs7
    """
    from valuesim.data.build import build

    with handled(as_json):
        manifest = build(
            wvs, out_dir or config.data_dir(), seed, report_unknown=report_unknown, force=force, progress=not as_json
        )
    report = manifest.pop("report")
    if as_json:
        emit_json(manifest | {"unmapped": [u.__dict__ for u in report.unmapped]})
        return
    ing = manifest["ingest"]
    console.print(
        f"Read {manifest['respondents']} respondents from {len(ing['files'])} files in "
        f"{manifest['seconds']}s; splits {manifest['splits']}"
    )
    answered = ing["cells"] - ing["missing"]
    console.print(
        f"Mapped {ing['mapped']:,} of {answered:,} answered cells ({report.mapped_share:.2%}); "
        f"{ing['missing']:,} missing answers"
    )
    for u in report.unmapped:
        console.print(f"  unmapped: {u.file} column {u.column!r}: {u.value!r} ({u.count} rows)")
    for line in report.label_conflicts:
        console.print(f"  value label: {line}", highlight=False)
    console.print(f"Wrote {out_dir or config.data_dir()} (fingerprint {manifest['fingerprint']})")


@data_app.command("person", cls=Command)
def data_person(
    person_id: Annotated[str, typer.Argument(help="Respondent id, e.g. BGD-50070001 (see predictions tables)")],
    data: Data = None,
    protocol: Protocol = "values",
    fold: Fold = 1,
    history: History = 232,
) -> None:
    """Print a benchmark respondent as a person file (what the programs know; held-out answers left out).

    Example:
        valuesim data person BGD-50070001 --history 58 > person.json
    """
    with handled():
        bench = open_benchmark(data)
        bench.check_history(fold, history)
        for split in ("train", "dev", "test"):
            rows = bench.rows(protocol, split, fold).filter(lambda r: r["person_id"] == person_id)
            if len(rows):
                row = rows[0]
                break
        else:
            fail(f"no respondent {person_id!r} in fold {fold} of {bench.path}")
    known = [*row["demographics"], *row["profile"][:history]]
    emit_json({"id": person_id, "country": row["country"], "answers": {i["q"]: i["a"] for i in known}})
