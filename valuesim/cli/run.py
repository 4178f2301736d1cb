"""`valuesim evaluate`, `compile` and `simulate`: run a program on the benchmark or on one person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from valuesim import config
from valuesim.cli.options import (
    LM,
    LM_PROGRAM_NAMES,
    ApiBase,
    AsJson,
    Data,
    Fold,
    History,
    Persons,
    Program,
    Protocol,
    Questions,
    RayAddress,
    Resamples,
    RunDir,
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
    make_setup,
    open_benchmark,
    out,
)


def evaluate(
    program: Program = "knn",
    data: Data = None,
    split: Split = "dev",
    fold: Fold = 1,
    history: History = 232,
    protocol: Protocol = "values",
    persons: Persons = None,
    questions: Questions = None,
    lm: LM = config.DEFAULT_LM,
    api_base: ApiBase = None,
    threads: Threads = 1,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    timeout: Timeout = config.TIMEOUT,
    samples: Samples = 0,
    run_dir: RunDir = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir, skipping finished predictions")] = False,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="On --resume, keep failed predictions instead of retrying them")
    ] = False,
    resamples: Resamples = config.RESAMPLES,
    seed: Seed = 0,
    settings: Settings = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate a program on the benchmark, print its metrics and log an MLflow run.

    Example:
        valuesim evaluate --program knn --split dev --fold 1 --history 232
        valuesim evaluate --program valuesim --lm gemma --persons 5 --questions 10
        valuesim evaluate --program valuesim --lm dummy --persons 2 --questions 3   # dry run, no model
    """
    from valuesim.run.runner import run_evaluate

    if resume and not run_dir:
        fail("--resume needs --run-dir, the folder of the run to continue")
    if run_dir and Path(run_dir, "predictions.sqlite").exists() and not resume:
        fail(f"{run_dir} already holds a run; add --resume to continue it or choose another --run-dir")
    # --resume on a folder that does not exist yet (killed before it was created) simply starts the run
    setup = make_setup(
        settings,
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
        ray=ray,
        ray_address=ray_address,
        timeout=timeout,
        samples=samples,
    )
    with handled(as_json):
        result, params = run_evaluate(setup, open_benchmark(data), run_dir=run_dir, progress=not as_json)
    if as_json:
        keys = ("metrics", "by_country", "by_category")
        columns = ["key", "person_id", "question", "gold", "answer", "status", "probs", "probs_method"]
        predictions = result.predictions[[c for c in columns if c in result.predictions]].copy()
        predictions["probs"] = [json.loads(p) if isinstance(p, str) else None for p in predictions["probs"]]
        emit_json({"params": params} | {k: getattr(result, k) for k in keys} | {"predictions": predictions})
        return
    title = f"{params['program']} on {params['split']}, fold {params['fold']}, history {params['history']}"
    out.print(metrics_table(f"{title} ({params['protocol']})", result.metrics))
    out.print(f"{params['n_persons']} persons ({params['persons_by_country']})")
    out.print(result.by_country.round(3).to_string(index=False))
    console.print(f"Predictions: {params['run_dir']}/predictions.sqlite; MLflow run {params.get('mlflow_run_id')}")


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    """One row per metric; a metric with a CI shows it beside the value ("0.603 [0.597, 0.609]")."""
    from valuesim.score.stats import format_ci

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


def compile_cmd(
    program: Annotated[str, typer.Option(help=f"LM program to compile ({LM_PROGRAM_NAMES})")] = "valuesim",
    optimizer: Annotated[
        Literal["bootstrap", "random-search", "mipro", "gepa"], typer.Option(help="DSPy optimizer")
    ] = "bootstrap",
    train: Annotated[int, typer.Option(min=1, help="Training respondents (persons) to compile on")] = 8,
    dev: Annotated[int, typer.Option(min=1, help="Dev respondents to score before and after compiling")] = 4,
    questions: Questions = 5,
    data: Data = None,
    fold: Fold = 1,
    history: History = 232,
    protocol: Protocol = "values",
    lm: LM = config.DEFAULT_LM,
    reflection_lm: Annotated[
        str | None,
        typer.Option(help="LM that writes new instructions (GEPA's reflection, MIPROv2's proposer) \\[default: --lm]"),
    ] = None,
    api_base: ApiBase = None,
    threads: Threads = 1,
    ray: UseRay = False,
    ray_address: RayAddress = None,
    timeout: Timeout = config.TIMEOUT,
    seed: Seed = 0,
    run_dir: RunDir = None,
    resamples: Resamples = config.RESAMPLES,
    settings: Settings = None,
    register: Annotated[
        str | None,
        typer.Option(help="Register the logged model under this name in MLflow's model registry (a new version)"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Compile a program's prompts with a DSPy optimizer; evaluate on dev before and after; log to MLflow.

    The compiled program is saved in the run folder (program/) and logged with the MLflow run, also as the MLflow
    model valuesim-<program> (registered when --register is given); load it with
    `valuesim simulate --program runs:/<run_id>` or `valuesim.load("runs:/<run_id>")`.

    Example:
        valuesim compile --program valuesim --optimizer bootstrap --train 8 --dev 4 --lm gemma
    """
    from valuesim.run.runner import run_compile
    from valuesim.score.stats import format_ci

    setup = make_setup(
        settings,
        program=program,
        protocol=protocol,
        split="dev",
        fold=fold,
        history=history,
        questions=questions,
        lm=lm,
        api_base=api_base,
        threads=threads,
        ray=ray,
        ray_address=ray_address,
        timeout=timeout,
        resamples=resamples,
        seed=seed,
    )
    with handled(as_json):
        summary = run_compile(
            setup, open_benchmark(data), optimizer, train, dev, run_dir, not as_json, reflection_lm, register
        )
    if as_json:
        emit_json(summary)
        return
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
    registered = f", registered as {summary['registered_model']}" if summary["registered_model"] else ""
    console.print(f"MLflow model valuesim-{program}: {summary['model_uri']}{registered}")


def simulate(
    person: Annotated[Path, typer.Option(help="Person file (JSON): country and known answers by question code")],
    question: Annotated[str, typer.Option(help="Question code to answer, e.g. Q164")],
    program: Program = "valuesim",
    data: Data = None,
    lm: LM = config.DEFAULT_LM,
    api_base: ApiBase = None,
    timeout: Timeout = config.TIMEOUT,
    samples: Samples = 0,
    as_json: AsJson = False,
) -> None:
    """Simulate one person's answer to one question: backstory, each module's view, the final answer.

    --data is read for the question catalog.

    Example:
        valuesim simulate --program runs:/<run_id> --person person.json --question Q164
    """
    from valuesim.data.person import ask
    from valuesim.run.runner import Setup, ready_program

    with handled(as_json):
        bench = open_benchmark(data)
        example = ask(person, question, bench.catalog)
        prog, _, lm_info = ready_program(
            Setup(program=program, lm=lm, api_base=api_base, timeout=timeout, samples=samples), bench
        )
        try:
            pred = prog(**example.inputs())
        except Exception as e:  # noqa: BLE001 - an LM fault (unparseable output, server error) is one line
            fail(f"the program failed on {question}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
    answer = getattr(pred, "answer", None)
    result = {
        "question": question,
        "question_text": example.question,
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
    out.print(f"\n[bold]{question}[/bold] {example.question}")
    out.print(f"[bold]Answer[/bold]: {answer} ({result['answer_label'] or 'not an option'})")
    if isinstance(result.get("probs"), dict):
        out.print(distribution_table(example.options, result["probs"], result.get("probs_method"), answer))


def distribution_table(options: dict[str, str], probs: dict[str, float], method: Any, answer: Any) -> Table:
    """The answer's distribution as a bar per option, in option order, the chosen one in bold."""
    from rich.bar import Bar

    t = Table(title=f"Answer distribution ({method})", title_justify="left", box=None, padding=(0, 1))
    for col, justify in (("code", "right"), ("option", "left"), ("", "left"), ("p", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for code, label in options.items():
        p = float(probs.get(str(code), 0.0))
        style = "bold" if str(code) == str(answer) else ""
        t.add_row(str(code), str(label), Bar(1.0, 0.0, p, width=30, color="green"), f"{p:.3f}", style=style)
    return t
