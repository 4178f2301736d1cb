"""`valuesim bench` (programs x history sizes on the same persons) and `valuesim ui` (MLflow's UI)."""

from __future__ import annotations

import os
import sys
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
    Resamples,
    Seed,
    Settings,
    Split,
    Threads,
    Timeout,
    console,
    emit_json,
    fail,
    handled,
    int_list,
    make_setup,
    open_benchmark,
    out,
)

# MLflow 3.17's UI opens experiments on its GenAI pages unless the "Model training" toggle is on (remembered by the
# browser); this link turns it on, so each experiment opens on its runs table.
RUNS_PAGE = "#/experiments?workflowType=machine_learning"


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
    lm: LM = "gemma",
    api_base: ApiBase = None,
    threads: Threads = 1,
    timeout: Timeout = 120.0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass DSPy's LM cache (to measure cost)")] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Bench folder; rerun with the same folder to resume [default: runs/bench-<time>]"),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Program every other is compared with (paired, same items) [default: best statistical]"),
    ] = None,
    resamples: Resamples = 1000,
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
    from valuesim.bench import run_bench

    hist, fold_list = int_list("--history", history, 0, None), int_list("--folds", folds, 1, 5)
    names = [p.strip() for p in programs.split(",") if p.strip()]
    if not names:
        fail("--programs needs at least one program name, e.g. --programs knn,valuesim")
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
        timeout=timeout,
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


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 to reach it from other machines)")] = "127.0.0.1",
) -> None:
    """Open MLflow's UI on this project's runs (mlruns/ under VALUESIM_HOME, or MLFLOW_TRACKING_URI).

    Open the printed link: it switches MLflow's "Model training" view on, so each experiment opens on its runs
    table. Add the columns accuracy, accuracy_ci_low, accuracy_ci_high and n from "Columns" to compare runs.

    Example:
        valuesim ui --port 5000
    """
    import subprocess

    from valuesim.tracking import setup_tracking, tracking_uri

    setup_tracking()  # creates the store (and its schema) if no run was logged yet
    console.print(f"MLflow UI for {tracking_uri()}: open http://{host}:{port}/{RUNS_PAGE} (Ctrl-C to stop)")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no network: LiteLLM's bundled price table
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", host]
    raise typer.Exit(subprocess.call([*cmd, "--port", str(port)], env=env))
