"""`valuesim estimate`: LM calls, tokens and dollars of an evaluate, bench or compile, before any LM call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from typer.core import TyperGroup

from valuesim import config
from valuesim.cli.options import (
    LM,
    ApiBase,
    AsJson,
    Data,
    Persons,
    Protocol,
    Seed,
    Settings,
    Split,
    console,
    emit_json,
    fail,
    handled,
    int_list,
    open_benchmark,
    out,
    parse_settings,
)

COMPILE_QUESTIONS = 5  # `valuesim compile`'s default --questions

TAKES_RUN_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}
RUN_COMMANDS = ("evaluate", "bench", "compile")


def check_run_flags(ctx: typer.Context) -> None:
    """Fail on the first extra argument that is not an option of evaluate, bench or compile (typos stay errors).
    Those options change how a run goes, not what it sends (estimate's own options are parsed before this), so a
    run's command line estimates unchanged; they are read from the commands themselves, so a new one is taken too."""
    group = ctx.find_root().command
    assert isinstance(group, TyperGroup)  # the valuesim app
    commands = group.commands
    takes_value = {
        opt: not getattr(param, "is_flag", False)
        for name in RUN_COMMANDS
        for param in commands[name].params
        for opt in param.opts
    }
    rest = iter(ctx.args)
    for arg in rest:
        name = arg.split("=", 1)[0]
        if name not in takes_value:
            fail(f"No such option for estimate: {arg} (see valuesim estimate --help)")
        if takes_value[name] and "=" not in arg:
            next(rest, None)


def estimate(
    ctx: typer.Context,
    programs: Annotated[
        str, typer.Option("--programs", "--program", help="Comma-separated program names or compiled programs")
    ] = "valuesim",
    history: Annotated[str, typer.Option(help="Comma-separated history sizes")] = "232",
    folds: Annotated[str, typer.Option("--folds", "--fold", help="Comma-separated folds")] = "1",
    persons: Persons = None,
    questions: Annotated[
        int | None,
        typer.Option(min=1, help="Only the first M held-out questions per person \\[with --optimizer: 5, as compile]"),
    ] = None,
    split: Split = "dev",
    protocol: Protocol = "values",
    data: Data = None,
    lm: LM = config.DEFAULT_LM,
    api_base: ApiBase = None,
    optimizer: Annotated[
        Literal["bootstrap", "random-search", "mipro", "gepa"] | None,
        typer.Option(help="Estimate `valuesim compile` with this optimizer (one program, fold and history)"),
    ] = None,
    train: Annotated[int, typer.Option(min=2, help="With --optimizer: training respondents, as compile")] = 8,
    dev: Annotated[int, typer.Option(min=1, help="With --optimizer: dev respondents, as compile")] = 4,
    tokenize_url: Annotated[
        str | None,
        typer.Option(
            help="Count tokens with a llama-cpp-python server's tokenizer: http://HOST:PORT/extras/tokenize/count"
        ),
    ] = None,
    actual: Annotated[
        Path | None,
        typer.Option(help="Compare with what a finished run recorded: its evaluate --run-dir or bench --out folder"),
    ] = None,
    seed: Seed = 0,
    settings: Settings = None,
    as_json: AsJson = False,
) -> None:
    """Before a run: LM calls per program, prompt tokens (the prompts the run would send, rendered by its adapter
    on its examples and counted with the model's tokenizer through LiteLLM), a bound on completion tokens
    (calls x max_tokens) and dollars from LiteLLM's price table. Nothing is sent to the LM.

    An evaluate, bench or compile command line estimates unchanged with `estimate` in place of the command: their
    run flags (--api-base, --threads, --timeout, --no-cache, --out, --run-dir, --resume, --reference...) are taken
    and ignored. The selection defaults are evaluate's (one history, 232); a bench's defaults differ, so give a bench
    its --persons, --questions and --history explicitly in both commands.

    Prompts that quote earlier outputs (ValueSim's backstory and views) are bounds: those outputs are counted at
    their full token budget, and the coordinator as if the views always disagreed.

    Example:
        valuesim estimate --programs valuesim,full-info --lm openai/gpt-4o-mini --persons 100 --questions 10
        valuesim estimate --program valuesim --optimizer mipro --train 8 --dev 4 --lm openai/gpt-4o-mini
    """
    from valuesim.estimate.compile import estimate_compile
    from valuesim.estimate.runs import compare
    from valuesim.estimate.runs import estimate as estimate_run

    check_run_flags(ctx)
    names = [p.strip() for p in programs.split(",") if p.strip()]
    hist, fold_list = int_list("--history", history, 0, None), int_list("--folds", folds, 1, 5)
    if optimizer and (len(names) != 1 or len(hist) != 1 or len(fold_list) != 1):
        fail("--optimizer estimates one compile: give one --program, --history and --folds")
    if optimizer and actual:
        fail("--actual compares evaluate and bench runs; a compile's own output lists its before/after cost")
    with handled(as_json):
        bench = open_benchmark(data)
        if optimizer:
            q = questions if questions is not None else COMPILE_QUESTIONS
            result = estimate_compile(bench, names[0], optimizer, train, dev, lm, protocol, fold_list[0], hist[0], q,
                                      seed, parse_settings(settings), tokenize_url)  # fmt: skip
        else:
            result = estimate_run(bench, names, lm, protocol, split, fold_list, hist, persons, questions, seed,
                                  parse_settings(settings), tokenize_url)  # fmt: skip
            if actual:
                compare(result, actual)
    result["api_base"] = api_base
    if as_json:
        emit_json(result)
        return
    out.print(compile_table(result) if optimizer else run_table(result))
    price = result["price"]
    if price["known"]:
        rates = price["usd_per_million"]
        console.print(f"Price of {lm} per million tokens: ${rates['input']:g} prompt, ${rates['output']:g} completion "
                      f"({price['source']}); prompts priced uncached.")  # fmt: skip
    else:
        console.print(f"No price: {price['reason']}.")
    console.print(f"Tokens counted with {result['tokenizer']}. ≤: upper bounds (completions at max_tokens; prompts "
                  "quoting earlier outputs at their full budget, the coordinator always called).")  # fmt: skip


def has_actual(result: dict[str, Any]) -> bool:
    return any("actual" in r for r in result.get("programs", []))


def usd(v: float | None) -> str:
    return "unknown" if v is None else f"${v:,.4f}"


def run_table(result: dict[str, Any]) -> Table:
    """One row per program, fold and history; with --actual, each cell reads "estimate / recorded"."""
    t = Table(title=f"Estimate on {result['lm']}" + (" / recorded by the run" if has_actual(result) else ""))
    for col in ("program", "fold", "history", "examples", "LM calls", "prompt tokens", "completion tokens", "dollars"):
        t.add_column(col, justify="left" if col == "program" else "right")
    if has_actual(result):
        for r in result["programs"]:
            if r["lm_calls"] and "actual" in r:
                a = r["actual"]
                t.add_row(r["program"], str(r["fold"]), str(r["history"]), f"{r['examples']} / {a['predictions']}",
                          f"{r['lm_calls']:,} / {a['lm_calls']:,}", f"{r['prompt_tokens']:,} / {a['prompt_tokens']:,}"
                          + (f" ({a['cached_tokens']:,} cached)" if a["cached_tokens"] else ""),
                          f"≤ {r['completion_tokens_max']:,} / {a['completion_tokens']:,}",
                          f"≤ {usd(r['usd_max'])} / {usd(a['usd'])}")  # fmt: skip
        return t
    for r in result["programs"]:
        if not r["lm_calls"]:  # a program that needs no LM
            t.add_row(r["program"], str(r["fold"]), str(r["history"]), "", "0", "0", "0", "$0")
            continue
        bound = "≤ " if r.get("prompt_tokens_are_bound") else ""
        t.add_row(r["program"], str(r["fold"]), str(r["history"]), str(r.get("examples", "")),
                  f"{bound}{r['lm_calls']:,}", f"{bound}{r['prompt_tokens']:,}", f"≤ {r['completion_tokens_max']:,}",
                  f"≤ {usd(r['usd_max'])}")  # fmt: skip
    tot = result["total"]
    t.add_row("total", "", "", "", f"{tot['lm_calls']:,}", f"{tot['prompt_tokens']:,}",
              f"≤ {tot['completion_tokens_max']:,}", f"≤ {usd(tot['usd_max'])}")  # fmt: skip
    return t


def compile_table(result: dict[str, Any]) -> Table:
    ex = result["examples"]
    t = Table(title=f"Estimate of compiling {result['program']} with {result['optimizer']} on {result['lm']} "
                    f"({ex['train']} train, {ex['val']} validation, {ex['dev']} dev examples)")  # fmt: skip
    for col in ("stage", "LM calls", "prompt tokens", "completion tokens", "dollars"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for stage in ("before", "optimizer_calls", "after", "total"):
        r = result[stage]
        t.add_row(stage.replace("_calls", ""), f"≤ {r['lm_calls']:,}", f"≤ {r['prompt_tokens']:,}",
                  f"≤ {r['completion_tokens_max']:,}", f"≤ {usd(r['usd_max'])}")  # fmt: skip
    opt = result["optimizer_calls"]
    runs = opt["program_runs"]
    evals = runs["eval_plain"] + runs["eval_demos"]
    t.caption = f"optimizer: {runs['bootstrap']} bootstrapping and {evals} candidate-evaluation program runs; "
    t.caption += f"{opt['proposer_calls']} instruction-proposer calls, not priced"
    return t
