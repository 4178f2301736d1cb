"""`valuesim bench`: programs x history sizes on the same persons."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from valuesim import config
from valuesim.cli.options import (
    LM,
    ApiBase,
    AsJson,
    Data,
    Persons,
    Protocol,
    Questions,
    RayAddress,
    Resamples,
    Samples,
    Seed,
    Settings,
    Split,
    Threads,
    Timeout,
    UseRay,
    console,
    emit_json,
    fail,
    handled,
    int_list,
    make_setup,
    open_benchmark,
    out,
)


def bench(
    programs: Annotated[
        str, typer.Option(help="Comma-separated program names or compiled programs (runs:/..., models:/...)")
    ] = "random,majority,country,cell,knn,ml,demographics,rag,full-info,backstory,valuesim",
    history: Annotated[str, typer.Option(help="Comma-separated history sizes")] = "0,58,116,174,232",
    folds: Annotated[str, typer.Option(help="Comma-separated folds")] = "1",
    persons: Persons = 5,
    questions: Questions = 10,
    split: Split = "dev",
    protocol: Protocol = "values",
    data: Data = None,
    lm: LM = config.DEFAULT_LM,
    api_base: ApiBase = None,
    threads: Threads = 1,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    timeout: Timeout = config.TIMEOUT,
    samples: Samples = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass DSPy's LM cache (to measure cost)")] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Bench folder; rerun with the same folder to resume \\[default: runs/bench-<time>]"),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Program every other is compared with (paired, same items) \\[default: best statistical]"),
    ] = None,
    resamples: Resamples = config.RESAMPLES,
    seed: Seed = 0,
    settings: Settings = None,
    as_json: AsJson = False,
) -> None:
    """Compare programs on the same persons and questions across history sizes: table, plot, cost, MLflow.

    Writes <out>/report/{results,cost}.{md,csv} and accuracy_by_history.png and logs a parent MLflow run with
    one child run per program and history. Interrupted? Run the same command with the same --out to resume.

    Example:
        valuesim bench --lm gemma --persons 5 --questions 10 --history 0,58,116,174,232
    """
    from valuesim.run.bench import check_reference, run_bench

    hist, fold_list = int_list("--history", history, 0, None), int_list("--folds", folds, 1, 5)
    names = [p.strip() for p in programs.split(",") if p.strip()]
    if not names:
        fail("--programs needs at least one program name, e.g. --programs knn,valuesim")
    with handled(as_json):  # before any work: the reference is compared with the others, so it must run
        check_reference(reference, names)
    setup = make_setup(
        settings,
        protocol=protocol,
        split=split,
        persons=persons,
        questions=questions,
        lm=lm,
        api_base=api_base,
        resamples=resamples,
        seed=seed,
        threads=threads,
        ray=ray,
        ray_address=ray_address,
        timeout=timeout,
        samples=samples,
        cache=not no_cache,
    )
    folder = out_dir or config.runs_dir() / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"

    def done(row: dict[str, Any]) -> None:
        console.print(
            f"{row['program']:>12} f{row['fold']} h{row['history']:>3}: accuracy {row['accuracy']:.3f}, "
            f"{row['seconds_per_pred']:.2f} s/pred, invalid {row['invalid']}"
        )

    with handled(as_json):
        summary = run_bench(setup, open_benchmark(data), names, hist, fold_list, folder, not as_json, done, reference)
    if as_json:
        keys = ("persons", "reference", "files", "mlflow_run_id")
        emit_json({"results": summary["table"]} | {k: summary[k] for k in keys})
        return
    who = summary["persons"]
    out.print(f"{who['n_persons']} {split} persons ({who['persons_by_country']})")
    out.print(Path(summary["files"]["results.md"]).read_text())
    if summary["reference"]:
        console.print(f"vs reference: accuracy minus {summary['reference']}'s on the same items, 95% CI, p-value")
    if any(r.get("lm_calls_per_pred") for r in summary["table"].to_dict("records")):
        out.print(Path(summary["files"]["cost.md"]).read_text())
    console.print(f"Report in {summary['out_dir']}/report; MLflow parent run {summary['mlflow_run_id']}")
