"""The `valuesim` command line: build the benchmark, evaluate programs, compile, simulate.

Every command that prints results takes --json and then prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from valuesim import config

app = typer.Typer(
    help="Simulate how one person answers value questions (WVS-7), with DSPy programs.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Build and inspect the benchmark.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # tables and progress go to stderr so --json stdout stays clean
out = Console(soft_wrap=True)


def fail(message: str) -> None:
    """A user error: one line, exit 1, no traceback."""
    console.print(f"[red]Error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def quiet_stdout(enabled: bool):
    """Route library prints (DSPy optimizers print to stdout) to stderr so --json output stays one JSON object."""
    if enabled:
        with redirect_stdout(sys.stderr):
            yield
    else:
        yield


def parse_settings(pairs: list[str] | None) -> dict:
    """--set key=value pairs; values read as JSON when they parse (numbers, true/false), else as text."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--set takes key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(o):
    if hasattr(o, "to_dict"):
        return o.to_dict(orient="records") if hasattr(o, "columns") else o.to_dict()
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)


@data_app.command("build")
def data_build(
    wvs: Path = typer.Option(
        ...,
        help="WVS-7 folder: countries/*.xlsx (or the cross-national CSV), codebook.json, "
        "questions.json, question_metadata.json, protocol/fold_*.json",
    ),
    out_dir: Path = typer.Option(None, "--out", help="Where to write the benchmark [default: data/benchmark]"),
    seed: int = typer.Option(0, help="Seed for the person split and the profile orders"),
    report_unknown: bool = typer.Option(
        False, "--report-unknown", help="List every unmapped label instead of stopping at the first"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON"),
) -> None:
    """Build the benchmark from WVS-7 respondent files.

    Example:
        valuesim data build --wvs ../shared/data/wvs7
    """
    from valuesim.data.benchmark import build
    from valuesim.data.ingest import WVSFormatError

    try:
        manifest = build(wvs, out_dir or config.data_dir(), seed=seed, report_unknown=report_unknown)
    except (WVSFormatError, FileNotFoundError, ValueError) as e:
        fail(str(e))
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
    person_id: str = typer.Argument(..., help="Respondent id, e.g. BGD-50070001 (see predictions tables)"),
    data: Path = typer.Option(None, help="Built benchmark [default: data/benchmark]"),
    protocol: str = typer.Option("values", help="values or reference"),
    fold: int = typer.Option(1, help="Question fold 1-5"),
    history: int = typer.Option(232, help="Number of known profile answers"),
) -> None:
    """Print a benchmark respondent as a person file (what the programs know; held-out answers left out).

    Example:
        valuesim data person BGD-50070001 --history 58 > person.json
    """
    from valuesim.data.benchmark import PROTOCOLS, Benchmark

    try:
        bench = Benchmark(data or config.data_dir())
        if protocol not in PROTOCOLS:
            fail(f"unknown protocol {protocol!r}")
        for split in ("train", "dev", "test"):
            rows = bench.rows(protocol, split, fold).filter(lambda r: r["person_id"] == person_id)
            if len(rows):
                row = rows[0]
                break
        else:
            fail(f"no respondent {person_id!r} in fold {fold} of {bench.path}")
    except FileNotFoundError as e:
        fail(str(e))
    known = [*row["demographics"], *row["profile"][:history]]
    emit_json({"id": person_id, "country": row["country"], "answers": {i["q"]: i["a"] for i in known}})


def metrics_table(title: str, metrics: dict) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return t


@app.command()
def evaluate(
    program: str = typer.Option(
        "knn",
        help="Program name (majority, country, cell, knn, demographics, rag, full-info, backstory, valuesim) "
        "or a compiled program: runs:/<run_id>, models:/<name>/<version> or a saved folder",
    ),
    data: Path = typer.Option(None, help="Built benchmark [default: data/benchmark]"),
    split: str = typer.Option("dev", help="train, dev or test"),
    fold: int = typer.Option(1, help="Question fold 1-5"),
    history: int = typer.Option(232, help="Number of known profile answers (0, 58, 116, 174, 232 or any)"),
    protocol: str = typer.Option("values", help="values (demographics known, value questions held out) or reference"),
    persons: int = typer.Option(None, help="Only the first N persons"),
    questions: int = typer.Option(None, help="Only the first M held-out questions per person"),
    lm: str = typer.Option("gemma", help="LM: gemma, smollm2, a .gguf path, or any LiteLLM model string"),
    api_base: str = typer.Option(None, help="API base URL for an OpenAI-compatible server (vLLM, llama.cpp)"),
    threads: int = typer.Option(1, help="Parallel predictions (use >1 only for remote LMs)"),
    run_dir: Path = typer.Option(None, help="Folder keeping this run's predictions [default: runs/<name>]"),
    resume: bool = typer.Option(False, help="Continue the run in --run-dir, skipping finished predictions"),
    settings: list[str] = typer.Option(
        None, "--set", help="Program setting key=value, repeatable (backstory_words=200, analysis_tokens=120, k=5)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as one JSON object"),
) -> None:
    """Evaluate a program on the benchmark, print its metrics and log an MLflow run.

    Example:
        valuesim evaluate --program knn --split dev --fold 1 --history 232
        valuesim evaluate --program valuesim --lm gemma --persons 5 --questions 10
    """
    from valuesim.data.benchmark import Benchmark
    from valuesim.programs.saved import ProgramLoadError
    from valuesim.runner import Setup, run_evaluate

    if resume and not (run_dir and Path(run_dir).exists()):
        fail("--resume needs --run-dir pointing at an existing run folder")
    if run_dir and Path(run_dir, "predictions.sqlite").exists() and not resume:
        fail(f"{run_dir} already holds a run; add --resume to continue it or choose another --run-dir")
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
        threads=threads,
    )
    try:
        bench = Benchmark(data or config.data_dir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with quiet_stdout(as_json):
                result, params = run_evaluate(setup, bench, run_dir=run_dir, progress=not as_json)
    except (FileNotFoundError, ProgramLoadError, ValueError, KeyError) as e:
        fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    show_result(result, params, as_json)


@app.command("compile")
def compile_cmd(
    program: str = typer.Option("valuesim", help="LM program to compile (valuesim, backstory, full-info, rag, ...)"),
    optimizer: str = typer.Option("bootstrap", help="bootstrap, random-search, mipro or gepa"),
    train: int = typer.Option(8, help="Training respondents (persons) to compile on"),
    dev: int = typer.Option(4, help="Dev respondents to score before and after compiling"),
    questions: int = typer.Option(5, help="Held-out questions per person, in train and dev"),
    data: Path = typer.Option(None, help="Built benchmark [default: data/benchmark]"),
    fold: int = typer.Option(1, help="Question fold 1-5"),
    history: int = typer.Option(232, help="Number of known profile answers"),
    protocol: str = typer.Option("values", help="values or reference"),
    lm: str = typer.Option("gemma", help="LM: gemma, smollm2, a .gguf path, or any LiteLLM model string"),
    api_base: str = typer.Option(None, help="API base URL for an OpenAI-compatible server"),
    threads: int = typer.Option(1, help="Parallel LM calls (use >1 only for remote LMs)"),
    seed: int = typer.Option(0, help="Optimizer seed"),
    run_dir: Path = typer.Option(None, help="Run folder [default: runs/<name>]"),
    settings: list[str] = typer.Option(
        None, "--set", help="Program setting key=value, repeatable (backstory_words=200, analysis_tokens=120, k=5)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object"),
) -> None:
    """Compile a program's prompts with a DSPy optimizer; evaluate on dev before and after; log to MLflow.

    The compiled program is saved in the run folder (program/) and logged with the MLflow run; load it with
    `valuesim simulate --program runs:/<run_id>` or `valuesim.load("runs:/<run_id>")`.

    Example:
        valuesim compile --program valuesim --optimizer bootstrap --train 8 --dev 4 --lm gemma
    """
    from valuesim.data.benchmark import Benchmark
    from valuesim.optimize.compile import OPTIMIZERS
    from valuesim.runner import Setup, run_compile

    if optimizer not in OPTIMIZERS:
        fail(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
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
        seed=seed,
    )
    try:
        bench = Benchmark(data or config.data_dir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with quiet_stdout(as_json):
                summary = run_compile(setup, bench, optimizer, train, dev, run_dir=run_dir, progress=not as_json)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if as_json:
        emit_json(summary)
        return
    keys = ["accuracy", "within_one", "nmae", "invalid", "lm_calls_per_pred", "seconds_per_pred"]
    t = Table(title=f"{program} compiled with {optimizer}: dev before / after")
    for col in ("metric", "before", "after"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for k in keys:
        b, a = summary["before"].get(k), summary["after"].get(k)
        t.add_row(k, *(f"{v:.3f}" if isinstance(v, float) else str(v) for v in (b, a)))
    out.print(t)
    console.print(f"Saved {summary['program_dir']}; load it with --program {summary['program_uri']}")


@app.command()
def simulate(
    person: Path = typer.Option(..., help="Person file (JSON): country and known answers by question code"),
    question: str = typer.Option(..., help="Question code to answer, e.g. Q164"),
    program: str = typer.Option(
        "valuesim",
        help="Program name, or a compiled program: runs:/<run_id>, models:/<name>/<version>, or a saved folder",
    ),
    data: Path = typer.Option(None, help="Built benchmark, for the question catalog [default: data/benchmark]"),
    lm: str = typer.Option("gemma", help="LM: gemma, smollm2, a .gguf path, or any LiteLLM model string"),
    api_base: str = typer.Option(None, help="API base URL for an OpenAI-compatible server"),
    as_json: bool = typer.Option(False, "--json", help="Print the simulation as one JSON object"),
) -> None:
    """Simulate one person's answer to one question: backstory, each module's view, the final answer.

    Example:
        valuesim simulate --program runs:/<run_id> --person person.json --question Q164
    """
    from valuesim.data.benchmark import Benchmark, make_example
    from valuesim.data.person import PersonFileError, load_person
    from valuesim.programs import PROGRAMS, STATISTICAL
    from valuesim.programs.saved import ProgramLoadError, load
    from valuesim.runner import configure_lm

    try:
        bench = Benchmark(data or config.data_dir())
        catalog = bench.catalog
        if question not in catalog:
            fail(f"unknown question code {question!r} (expected Q1-Q290)")
        if catalog[question].open:
            fail(f"{question} ({catalog[question].label}) is a free-number item and cannot be asked")
        who = load_person(person, catalog)
        example = make_example(catalog, who, question)
        prog = PROGRAMS[program].from_benchmark(bench) if program in PROGRAMS else load(program)
        lm_info = {} if program in STATISTICAL else configure_lm(lm, api_base)
    except (FileNotFoundError, PersonFileError, ProgramLoadError, ValueError) as e:
        fail(str(e))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with quiet_stdout(as_json):
                pred = prog(**example.inputs())
    except Exception as e:  # noqa: BLE001 - an LM fault (unparseable output, server error) is one line, not a trace
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
    programs: str = typer.Option(
        "majority,country,cell,knn,demographics,rag,full-info,backstory,valuesim",
        help="Comma-separated program names or compiled programs (runs:/...)",
    ),
    history: str = typer.Option("0,58,116,174,232", help="Comma-separated history sizes"),
    folds: str = typer.Option("1", help="Comma-separated folds"),
    persons: int = typer.Option(5, help="First N dev persons (the same for every program)"),
    questions: int = typer.Option(10, help="First M held-out questions per person"),
    split: str = typer.Option("dev", help="train, dev or test"),
    protocol: str = typer.Option("values", help="values or reference"),
    data: Path = typer.Option(None, help="Built benchmark [default: data/benchmark]"),
    lm: str = typer.Option("gemma", help="LM: gemma, smollm2, a .gguf path, or any LiteLLM model string"),
    api_base: str = typer.Option(None, help="API base URL for an OpenAI-compatible server"),
    threads: int = typer.Option(1, help="Parallel predictions (use >1 only for remote LMs)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Bypass DSPy's LM cache (to measure real cost)"),
    out_dir: Path = typer.Option(
        None, "--out", help="Bench folder; rerun with the same folder to resume [default: runs/bench-<time>]"
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="Program setting key=value, repeatable (backstory_words=200, analysis_tokens=120, k=5)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results table as JSON"),
) -> None:
    """Compare programs on the same persons and questions across history sizes: table, plot, cost, MLflow.

    Writes <out>/report/{results,cost}.{md,csv} and accuracy_by_history.png and logs a parent MLflow run with
    one child run per program and history. Interrupted? Run the same command with the same --out to resume.

    Example:
        valuesim bench --lm gemma --persons 5 --questions 10 --history 0,58,116,174,232
    """
    from valuesim.data.benchmark import Benchmark
    from valuesim.programs.saved import ProgramLoadError
    from valuesim.runner import Setup, run_bench

    try:
        hist = [int(h) for h in history.split(",")]
        fold_list = [int(f) for f in folds.split(",")]
    except ValueError:
        fail("--history and --folds take comma-separated integers, e.g. --history 0,58,232")
    names = [p.strip() for p in programs.split(",") if p.strip()]
    setup = Setup(
        settings=parse_settings(settings),
        protocol=protocol,
        split=split,
        persons=persons,
        questions=questions,
        lm=lm,
        api_base=api_base,
        threads=threads,
        cache=not no_cache,
    )
    out_dir = out_dir or config.runs_dir() / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"

    def done(row: dict) -> None:
        console.print(
            f"{row['program']:>12} f{row['fold']} h{row['history']:>3}: accuracy {row['accuracy']:.3f}, "
            f"{row['seconds_per_pred']:.2f} s/pred, invalid {row['invalid']}"
        )

    try:
        bench_data = Benchmark(data or config.data_dir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with quiet_stdout(as_json):
                summary = run_bench(setup, bench_data, names, hist, fold_list, Path(out_dir), not as_json, done)
    except (FileNotFoundError, ProgramLoadError, ValueError) as e:
        fail(str(e))
    if as_json:
        emit_json({"results": summary["table"], "files": summary["files"], "mlflow_run_id": summary["mlflow_run_id"]})
        return
    out.print(Path(summary["files"]["results.md"]).read_text())
    out.print(Path(summary["files"]["cost.md"]).read_text())
    console.print(f"Report in {summary['out_dir']}/report; MLflow parent run {summary['mlflow_run_id']}")


def show_result(result, params: dict, as_json: bool) -> None:
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
    out.print(result.by_country.round(3).to_string(index=False))
    console.print(f"Predictions: {params['run_dir']}/predictions.sqlite; MLflow run {params.get('mlflow_run_id')}")


if __name__ == "__main__":  # python -m valuesim.cli, as the tests run it
    app()
