"""The `valuesim` command line: build the benchmark, evaluate programs, compile, simulate.

Every command that prints results takes --json and then prints exactly one JSON object on stdout. User errors
(`ValueSimError`: a bad file, flag or setting, an unreachable LM) are one line and exit 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from valuesim import config
from valuesim.errors import ValueSimError

# LiteLLM fetches its price table from the internet at import unless told to use the copy it ships; prices then work
# offline (and on clusters without network) and the "Failed to fetch remote model cost map" lines go away.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    help="Simulate how one person answers value questions (WVS-7), with DSPy programs.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Build and inspect the benchmark.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # tables and progress go to stderr so --json stdout stays clean
out = Console(soft_wrap=True)

PROGRAM_NAMES = "majority, country, cell, knn, demographics, rag, full-info, backstory, valuesim"

# Options shared by several commands, declared once.
Data = Annotated[Path | None, typer.Option(help="Built benchmark [default: data/benchmark]")]
Split = Annotated[Literal["train", "dev", "test"], typer.Option(help="Respondent split")]
Fold = Annotated[int, typer.Option(min=1, max=5, help="Question fold 1-5")]
History = Annotated[int, typer.Option(min=0, help="Number of known profile answers (0, 58, 116, 174, 232 or any)")]
Protocol = Annotated[
    Literal["values", "reference"],
    typer.Option(help="values (demographics known, value questions held out) or reference (the paper's)"),
]
Questions = Annotated[int | None, typer.Option(min=1, help="Only the first M held-out questions per person")]
LM = Annotated[str, typer.Option(help="LM: gemma, smollm2, a .gguf path, or any LiteLLM model string")]
ApiBase = Annotated[
    str | None, typer.Option(help="API base URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama)")
]
Threads = Annotated[int, typer.Option(min=1, help="Parallel predictions (use >1 only for remote LMs)")]
Timeout = Annotated[
    float, typer.Option(min=1, help="Seconds a remote LM call may take; then retried 3 times, then the item fails")
]
Settings = Annotated[
    list[str] | None,
    typer.Option("--set", help="Program setting key=value, repeatable (backstory_words=200, analysis_tokens=120, k=5)"),
]
Resamples = Annotated[
    int, typer.Option(min=0, help="Bootstrap draws over persons for the 95% confidence intervals (0: none)")
]
Seed = Annotated[int, typer.Option(help="Seed for the person sample and the bootstrap")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout")]

# Warnings users cannot act on, hidden by the start of their message; every other warning shows.
QUIET_WARNINGS = [
    r"Workbook contains no default style",  # openpyxl, on WVS exports
    r"Pydantic serializer warnings",  # LiteLLM's response objects
    r"The ``noload`` loader strategy is deprecated",  # SQLAlchemy, inside MLflow's store
    r"For backward compatibility, 'str' dtypes are included",  # pandas 3, inside mlflow.log_table
]


def fail(message: str) -> None:
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


def parse_settings(pairs: list[str] | None) -> dict:
    """--set key=value pairs; values read as JSON when they parse (numbers, true/false), else as text."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--set takes key=value, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict(orient="records") if hasattr(o, "columns") else o.to_dict()
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)


@data_app.command("build")
def data_build(
    wvs: Annotated[
        Path,
        typer.Option(
            help="WVS-7 folder: countries/*.xlsx (or the cross-national CSV), codebook.json, "
            "questions.json, question_metadata.json, protocol/fold_*.json",
        ),
    ],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write [default: data/benchmark]")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the person split and the profile orders")] = 0,
    report_unknown: Annotated[
        bool, typer.Option("--report-unknown", help="List every unmapped label instead of stopping at the first")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a benchmark built from other inputs; build even if under 99% of answers map"
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Build the benchmark from WVS-7 respondent files.

    The build is atomic: it is written beside --out and moved into place only when complete.

    Example:
        valuesim data build --wvs ../shared/data/wvs7
    """
    from valuesim.data.benchmark import build

    with handled(as_json):
        manifest = build(wvs, out_dir or config.data_dir(), seed, report_unknown=report_unknown, force=force)
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
    console.print(f"Wrote {out_dir or config.data_dir()} (fingerprint {manifest['fingerprint']})")


@data_app.command("person")
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
    from valuesim.data.benchmark import Benchmark

    with handled():
        bench = Benchmark(data or config.data_dir())
        for split in ("train", "dev", "test"):
            rows = bench.rows(protocol, split, fold).filter(lambda r: r["person_id"] == person_id)
            if len(rows):
                row = rows[0]
                break
        else:
            fail(f"no respondent {person_id!r} in fold {fold} of {bench.path}")
    known = [*row["demographics"], *row["profile"][:history]]
    emit_json({"id": person_id, "country": row["country"], "answers": {i["q"]: i["a"] for i in known}})


def metrics_table(title: str, metrics: dict) -> Table:
    """One row per metric; a metric with a CI shows it beside the value ("0.603 [0.597, 0.609]")."""
    from valuesim.stats import format_ci

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value (95% CI over persons)", justify="right")
    for k, v in metrics.items():
        if k.endswith(("_ci_low", "_ci_high")):
            continue
        if f"{k}_ci_low" in metrics:
            t.add_row(k, format_ci(v, metrics[f"{k}_ci_low"], metrics[f"{k}_ci_high"]))
        else:
            t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return t


@app.command()
def evaluate(
    program: Annotated[
        str,
        typer.Option(
            help=f"Program name ({PROGRAM_NAMES}) or a compiled program: runs:/<run_id>, "
            "models:/<name>/<version> or a saved folder"
        ),
    ] = "knn",
    data: Data = None,
    split: Split = "dev",
    fold: Fold = 1,
    history: History = 232,
    protocol: Protocol = "values",
    persons: Annotated[
        int | None, typer.Option(min=1, help="A country-stratified sample of N persons [default: all]")
    ] = None,
    questions: Questions = None,
    lm: LM = "gemma",
    api_base: ApiBase = None,
    threads: Threads = 1,
    timeout: Timeout = 120.0,
    run_dir: Annotated[
        Path | None, typer.Option(help="Folder keeping this run's predictions [default: runs/<name>]")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir, skipping finished predictions")] = False,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="On --resume, keep failed predictions instead of retrying them")
    ] = False,
    resamples: Resamples = 1000,
    seed: Seed = 0,
    settings: Settings = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate a program on the benchmark, print its metrics and log an MLflow run.

    Example:
        valuesim evaluate --program knn --split dev --fold 1 --history 232
        valuesim evaluate --program valuesim --lm gemma --persons 5 --questions 10
    """
    from valuesim.data.benchmark import Benchmark
    from valuesim.runner import Setup, run_evaluate

    if resume and not run_dir:
        fail("--resume needs --run-dir, the folder of the run to continue")
    if run_dir and Path(run_dir, "predictions.sqlite").exists() and not resume:
        fail(f"{run_dir} already holds a run; add --resume to continue it or choose another --run-dir")
    # --resume on a folder that does not exist yet (killed before it was created) simply starts the run
    setup = Setup(
        settings=parse_settings(settings),
        program=program,
        protocol=protocol,
        split=split,
        fold=fold,
        history=history,
        persons=persons,
        questions=questions,
        lm=lm,
        api_base=api_base,
        resamples=resamples,
        seed=seed,
        retry_failed=not keep_failed,
        threads=threads,
        timeout=timeout,
    )
    with handled(as_json):
        bench = Benchmark(data or config.data_dir())
        result, params = run_evaluate(setup, bench, run_dir=run_dir, progress=not as_json)
    show_result(result, params, as_json)


@app.command("compile")
def compile_cmd(
    program: Annotated[
        str, typer.Option(help="LM program to compile (valuesim, backstory, full-info, rag, demographics)")
    ] = "valuesim",
    optimizer: Annotated[
        Literal["bootstrap", "random-search", "mipro", "gepa"], typer.Option(help="DSPy optimizer")
    ] = "bootstrap",
    train: Annotated[int, typer.Option(min=1, help="Training respondents (persons) to compile on")] = 8,
    dev: Annotated[int, typer.Option(min=1, help="Dev respondents to score before and after compiling")] = 4,
    questions: Annotated[int, typer.Option(min=1, help="Held-out questions per person, in train and dev")] = 5,
    data: Data = None,
    fold: Fold = 1,
    history: History = 232,
    protocol: Protocol = "values",
    lm: LM = "gemma",
    api_base: ApiBase = None,
    threads: Threads = 1,
    timeout: Timeout = 120.0,
    seed: Annotated[int, typer.Option(help="Optimizer and sampling seed")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder [default: runs/<name>]")] = None,
    resamples: Resamples = 1000,
    settings: Settings = None,
    as_json: AsJson = False,
) -> None:
    """Compile a program's prompts with a DSPy optimizer; evaluate on dev before and after; log to MLflow.

    The compiled program is saved in the run folder (program/) and logged with the MLflow run; load it with
    `valuesim simulate --program runs:/<run_id>` or `valuesim.load("runs:/<run_id>")`.

    Example:
        valuesim compile --program valuesim --optimizer bootstrap --train 8 --dev 4 --lm gemma
    """
    from valuesim.data.benchmark import Benchmark
    from valuesim.runner import Setup, run_compile

    setup = Setup(
        settings=parse_settings(settings),
        program=program,
        protocol=protocol,
        split="dev",
        fold=fold,
        history=history,
        questions=questions,
        lm=lm,
        api_base=api_base,
        threads=threads,
        timeout=timeout,
        resamples=resamples,
        seed=seed,
    )
    with handled(as_json):
        bench = Benchmark(data or config.data_dir())
        summary = run_compile(setup, bench, optimizer, train, dev, run_dir=run_dir, progress=not as_json)
    if as_json:
        emit_json(summary)
        return
    from valuesim.stats import format_ci

    keys = ["accuracy", "within_one", "nmae", "invalid", "lm_calls_per_pred", "seconds_per_pred"]
    t = Table(title=f"{program} compiled with {optimizer}: dev before / after")
    for col in ("metric", "before", "after"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for k in keys:
        cells = []
        for m in (summary["before"], summary["after"]):
            v = m.get(k)
            cells.append(format_ci(v, m.get(f"{k}_ci_low"), m.get(f"{k}_ci_high")) if isinstance(v, float) else str(v))
        t.add_row(k, *cells)
    out.print(t)
    g = summary["gain"]
    console.print(
        f"after - before accuracy: {format_ci(g['difference'], g['ci_low'], g['ci_high'])}, p={g['p_value']:.3f} "
        f"({g['n_items']} dev items of {g['n_persons']} persons; the optimizer trained on "
        f"{len(summary['persons']['train'])} and validated on {len(summary['persons']['val'])} other persons)"
    )
    console.print(f"Saved {summary['program_dir']}; load it with --program {summary['program_uri']}")


@app.command()
def simulate(
    person: Annotated[Path, typer.Option(help="Person file (JSON): country and known answers by question code")],
    question: Annotated[str, typer.Option(help="Question code to answer, e.g. Q164")],
    program: Annotated[
        str,
        typer.Option(
            help="Program name, or a compiled program: runs:/<run_id>, models:/<name>/<version>, or a saved folder"
        ),
    ] = "valuesim",
    data: Annotated[
        Path | None, typer.Option(help="Built benchmark, for the question catalog [default: data/benchmark]")
    ] = None,
    lm: LM = "gemma",
    api_base: ApiBase = None,
    timeout: Timeout = 120.0,
    as_json: AsJson = False,
) -> None:
    """Simulate one person's answer to one question: backstory, each module's view, the final answer.

    Example:
        valuesim simulate --program runs:/<run_id> --person person.json --question Q164
    """
    from valuesim.data.benchmark import Benchmark, make_example
    from valuesim.data.person import load_person
    from valuesim.programs import STATISTICAL
    from valuesim.runner import build_program, configure_lm

    with handled(as_json):
        bench = Benchmark(data or config.data_dir())
        catalog = bench.catalog
        if question not in catalog:
            fail(f"unknown question code {question!r} (expected Q1-Q290)")
        if catalog[question].open:
            fail(f"{question} ({catalog[question].label}) is a free-number item and cannot be asked")
        who = load_person(person, catalog)
        example = make_example(catalog, who, question)
        prog, name, _ = build_program(program, bench)
        lm_info = {} if name in STATISTICAL else configure_lm(lm, api_base, timeout=timeout)
        try:
            pred = prog(**example.inputs())
        except Exception as e:  # noqa: BLE001 - an LM fault (unparseable output, server error) is one line
            fail(f"the program failed on {question}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
    answer = getattr(pred, "answer", None)
    result = {
        "question": question,
        "question_text": example.question_text,
        "options": example.options,
        "answer": answer,
        "answer_label": example.options.get(str(answer)),
        "valid": str(answer) in example.options,
        **{k: v for k, v in pred.items() if k != "answer"},
        "lm": lm_info.get("model"),  # None for statistical programs
    }
    if as_json:
        emit_json(result)
        return
    if "backstory" in result:
        out.print("[bold]Backstory[/bold]\n" + str(result["backstory"]) + "\n")
    for view in ("cognitive", "affective", "behavioral"):
        if f"{view}_answer" in result:
            a = result[f"{view}_answer"]
            out.print(f"[bold]{view.title()}[/bold]: {a} ({example.options.get(str(a), '?')})")
            out.print(f"  {result.get(view + '_analysis', '')}")
    out.print(f"\n[bold]{question}[/bold] {example.question_text}")
    out.print(f"[bold]Answer[/bold]: {answer} ({result['answer_label'] or 'not an option'})")


@app.command()
def bench(
    programs: Annotated[
        str, typer.Option(help="Comma-separated program names or compiled programs (runs:/..., models:/...)")
    ] = "majority,country,cell,knn,demographics,rag,full-info,backstory,valuesim",
    history: Annotated[str, typer.Option(help="Comma-separated history sizes")] = "0,58,116,174,232",
    folds: Annotated[str, typer.Option(help="Comma-separated folds")] = "1",
    persons: Annotated[
        int, typer.Option(min=1, help="A country-stratified sample of N persons, the same for every program")
    ] = 5,
    questions: Annotated[int, typer.Option(min=1, help="First M held-out questions per person")] = 10,
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
    from valuesim.data.benchmark import Benchmark
    from valuesim.runner import Setup, run_bench

    hist, fold_list = int_list("--history", history, 0, None), int_list("--folds", folds, 1, 5)
    names = [p.strip() for p in programs.split(",") if p.strip()]
    if not names:
        fail("--programs needs at least one program name, e.g. --programs knn,valuesim")
    setup = Setup(
        settings=parse_settings(settings),
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
    out_dir = out_dir or config.runs_dir() / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"

    def done(row: dict) -> None:
        console.print(
            f"{row['program']:>12} f{row['fold']} h{row['history']:>3}: accuracy {row['accuracy']:.3f}, "
            f"{row['seconds_per_pred']:.2f} s/pred, invalid {row['invalid']}"
        )

    with handled(as_json):
        bench_data = Benchmark(data or config.data_dir())
        summary = run_bench(setup, bench_data, names, hist, fold_list, Path(out_dir), not as_json, done, reference)
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


@app.command()
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
    # MLflow 3.17's UI opens experiments on its GenAI pages unless the "Model training" toggle is on (remembered by
    # the browser); this link turns it on, so each experiment opens on its runs table.
    console.print(f"MLflow UI for {tracking_uri()}: open http://{host}:{port}/{RUNS_PAGE} (Ctrl-C to stop)")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no network: LiteLLM's bundled price table
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", host]
    raise typer.Exit(subprocess.call([*cmd, "--port", str(port)], env=env))


RUNS_PAGE = "#/experiments?workflowType=machine_learning"


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


def show_result(result: Any, params: dict, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "params": params,
                "metrics": result.metrics,
                "by_country": result.by_country,
                "by_category": result.by_category,
            }
        )
        return
    title = f"{params['program']} on {params['split']}, fold {params['fold']}, history {params['history']}"
    out.print(metrics_table(f"{title} ({params['protocol']})", result.metrics))
    out.print(f"{params['n_persons']} persons ({params['persons_by_country']})")
    out.print(result.by_country.round(3).to_string(index=False))
    console.print(f"Predictions: {params['run_dir']}/predictions.sqlite; MLflow run {params.get('mlflow_run_id')}")


if __name__ == "__main__":  # python -m valuesim.cli, as the tests run it
    app()
