"""`valuesim bench`: every program x fold x history on the same persons and questions, the results and cost
tables with CIs and paired differences, the accuracy-by-history plot, one MLflow parent run."""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from valuesim import files, tracking
from valuesim.data.benchmark import Benchmark
from valuesim.data.benchmark import items as benchmark_items
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.programs.settings import check_settings
from valuesim.run.folder import _locked
from valuesim.run.predict import EvalResult
from valuesim.run.runner import (
    Setup,
    build_ahead,
    on_ray,
    params_of,
    predict_ahead,
    read_finished,
    run_evaluate,
    sample_params,
)
from valuesim.score.plots import reliability_png
from valuesim.score.stats import item_table, paired_difference

RESULT_COLUMNS = ["accuracy", "macro_accuracy", "within_one", "nmae", "wasserstein", "invalid", "failed", "n"]
PROB_COLUMNS = ["log_loss", "brier", "rps", "ece"]  # scores of the distributions, with CIs
PROB_EXTRA = [
    "prob_n", "prob_point", "prob_missing", "probs_note", "jsd", "jsd_probs", "wasserstein_probs", "kendall_tau",
    "kendall_tau_probs", "uniform_log_loss", "uniform_brier", "uniform_rps", "country_log_loss", "country_brier",
    "country_rps",
]  # fmt: skip
PAIRED = {"accuracy": "vs_reference", "log_loss": "vs_reference_log_loss"}  # metric -> column of the difference
COST_COLUMNS = [
    "lm_calls_per_pred",
    "prompt_tokens_per_pred",
    "cached_tokens_per_pred",
    "evaluated_tokens_per_pred",
    "completion_tokens_per_pred",
    "usd_total",
    "usd_per_1000_preds",
    "seconds_per_pred",
]


def run_bench(
    setup: Setup,
    bench: Benchmark,
    programs: list[str],
    histories: list[int],
    folds: list[int],
    out_dir: Path,
    progress: bool = True,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """Every program x fold x history on the same persons and questions; tables, plot and one MLflow parent run.

    Each cell keeps its predictions in out_dir/f<fold>-h<history>-<program>/, so rerunning with the same out_dir
    resumes: finished cells are read back from their stores and keep their MLflow child runs (bench.json records
    each finished cell's child run), unfinished ones continue where they stopped in a new child run. The bench
    holds a lock on out_dir while it runs: a second bench on the same folder stops at once.
    """
    check_reference(reference, programs)
    for program in programs:  # before any cell runs (compiled programs carry their own settings)
        if program in PROGRAMS:
            check_settings(program, setup.settings)
    for fold in folds:
        for history in histories:
            bench.check_history(fold, history)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir), on_ray(setup.ray):  # one Ray connection for every cell
        return _run_bench(setup, bench, programs, histories, folds, out_dir, progress, on_done, reference)


def check_reference(reference: str | None, programs: list[str]) -> None:
    """--reference must be one of the bench's programs (it is compared with the others on the same items)."""
    if reference is not None and reference not in programs:
        shown = files.quoted(reference, 80)
        raise ValueSimError(f"--reference {shown} is not a program of this bench; use one of {', '.join(programs)}")


def _run_bench(
    setup: Setup,
    bench: Benchmark,
    programs: list[str],
    histories: list[int],
    folds: list[int],
    out_dir: Path,
    progress: bool,
    on_done: Callable[[dict[str, Any]], None] | None,
    reference: str | None,
) -> dict[str, Any]:
    state_file = out_dir / "bench.json"
    state = files.read_json(state_file) if state_file.exists() else {}
    if not isinstance(state, dict):
        raise ValueSimError(f"{state_file}: not a bench state (a JSON object); use another --out")
    params = {
        "programs": ",".join(programs),
        "histories": ",".join(map(str, histories)),
        "folds": ",".join(map(str, folds)),
        "persons": setup.persons,
        "questions": setup.questions,
        "protocol": setup.protocol,
        "split": setup.split,
        # the LM only when a program uses one: a bench of statistical programs ran no LM
        "lm": setup.lm if any(needs_lm(p) for p in programs) else None,
        "dataset": bench.fingerprint,
    }
    params = {k: v for k, v in params.items() if v is not None}
    if setup.ray is not None and not needs_lm(programs[0]) and "parent_run_id" not in state:
        # a new bench: the first cell's program builds while MLflow is set up (seconds)
        build_ahead(dataclasses.replace(setup, program=programs[0], fold=folds[0], history=histories[0]), bench)
    sample = bench.sample(setup.protocol, setup.split, folds[0], setup.persons, setup.seed)  # the same in every cell
    params |= sample_params(zip(sample["person_id"], sample["country"], strict=True))
    rows: list[dict] = []
    preds: dict[tuple[int, int, str], pd.DataFrame] = {}  # item tables (valuesim.score.stats.item_table)
    items_of = functools.lru_cache(maxsize=2 if setup.ray is None else 3)(  # one selection per fold and history,
        # shared by the programs (and under --ray the next two cells', whose batches start ahead)
        lambda fold, history: benchmark_items(bench, **setup.selection(fold=fold, history=history))
    )
    # (fold, program, what it reads) -> (history, result) of the first history that had them (the result without
    # its predictions table, which that history's child run holds)
    seen_inputs: dict = {}
    if "parent_run_id" in state:  # a rerun: children of the earlier process that died mid-run are marked KILLED
        tracking.end_orphans(state["parent_run_id"])
    with tracking.parent_run("valuesim-bench", out_dir.name, state.get("parent_run_id")) as parent:
        if "parent_run_id" not in state:
            tracking.log_params(params)
            state["parent_run_id"] = parent.info.run_id
            files.write_json(state_file, state)
        cells: dict[str, str] = state.setdefault("cells", {})  # "f<fold>-h<history>-<program>" -> its child run
        logged = tracking.finished_children(parent.info.run_id)

        queued: dict[int, tuple | None] = {}  # --ray: cells (by their place in `order`) queued ahead -> inputs

        def ahead(n: int, running: Setup, before: list[tuple | None]) -> None:
            """--ray: the batches of cell `n`, after the `running` one, start on the workers while that one
            finishes and is scored, when it will predict every item (runner.predict_ahead); `before`: the inputs of
            the cells run before it (a cell with the same inputs reuses their predictions)."""
            fold, history, program = order[n]
            run_dir = out_dir / f"f{fold}-h{history}-{program.replace('/', '_')}"
            if needs_lm(program) or cells.get(f"f{fold}-h{history}-{program}") in logged:
                return
            if (run_dir / "predictions.sqlite").exists():  # some stored: its batches will be others
                return
            items = items_of(fold, history)
            reads = getattr(PROGRAMS.get(program), "reads", None)
            inputs = queued[n] = None if reads is None else (fold, program, inputs_seen(items, reads))
            if inputs is None or (inputs not in seen_inputs and inputs not in before):
                after = dataclasses.replace(setup, program=program, fold=fold, history=history)
                predict_ahead(after, bench, items, running)

        order = [(fold, history, program) for fold in folds for history in histories for program in programs]
        for n, (fold, history, program) in enumerate(order):
            cell = dataclasses.replace(setup, program=program, fold=fold, history=history)
            t0 = time.perf_counter()
            key = f"f{fold}-h{history}-{program}"
            kept = cells.get(key) in logged  # finished in an earlier bench, its child run still there
            if setup.ray is not None and not needs_lm(program) and not kept:
                build_ahead(cell, bench)  # before the items: the cluster builds (ml: fits) while the driver makes them
            items = items_of(fold, history) if not needs_lm(program) else None
            reads = getattr(PROGRAMS.get(program), "reads", None)
            inputs = None if items is None or reads is None else (fold, program, inputs_seen(items, reads))
            run_id: str | None = None
            if inputs in seen_inputs:  # same inputs as at an earlier history: the same predictions
                first, result = seen_inputs[inputs]
                scored = preds[fold, first, program]
                if not kept:  # the same persons as that history's: those of these items
                    persons = sample_params((i["person_id"], i["country"]) for i in items or [])
                    run_id = log_same_predictions(cell, bench, first, result, persons)
            else:
                run_dir = out_dir / f"f{fold}-h{history}-{program.replace('/', '_')}"
                result = read_finished(cell, bench, run_dir, items) if kept else None
                if result is None:
                    if setup.ray is not None and items is not None:
                        build_ahead(cell, bench)
                        # the next two cells: the one after next starts while the driver scores this one and
                        # the next one's batches, started meanwhile, are done
                        for m in (n + 1, n + 2):
                            if m < len(order) and m not in queued:
                                ahead(m, running=cell, before=[inputs, *(queued.get(k) for k in range(n + 1, m))])
                    result, cell_params = run_evaluate(
                        cell,
                        bench,
                        run_dir,
                        experiment="valuesim-bench",
                        progress=progress,
                        nested=True,
                        items=items,
                    )
                    run_id = cell_params["mlflow_run_id"]
                scored, table = item_table(result.predictions), result.predictions
                # the metrics, not the predictions table (a million rows each: memory)
                result = dataclasses.replace(result, predictions=table.head(0).copy())
                if inputs is not None:
                    seen_inputs[inputs] = (history, result)
                del table
            if run_id is not None:  # computed (or logged) anew: record its child run
                if kept:  # its predictions were gone or had failures to retry: the old run says so
                    tracking.mark_superseded(cells[key], run_id)
                cells[key] = run_id
                files.write_json(state_file, state)
            row = {
                "program": program,
                "fold": fold,
                "history": history,
                **result.metrics,
                "wall_seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            preds[(fold, history, program)] = scored
            if on_done:
                on_done(row)
        table = pd.DataFrame(rows)
        reference = reference or best_statistical(table)
        table = table.merge(
            paired_table(preds, reference, setup.resamples, setup.seed), on=["program", "fold", "history"], how="left"
        )
        if "reference" not in parent.data.params:
            tracking.log_params({"reference": reference})
        # the latest comparison: a rerun may compare with another program, and MLflow keeps a parameter's first value
        tracking.set_tags({"reference": str(reference)})
        outputs = write_bench_outputs(table, out_dir, preds)
        tracking.log_folder(out_dir / "report", "report")
        # one curve per program, drawn by MLflow's own charts: accuracy at step = history size (mean over folds)
        for (program, history), acc in table.groupby(["program", "history"], sort=False)["accuracy"].mean().items():
            name = re.sub(r"[^\w\-. /]", "_", program)  # compiled programs are named runs:/<id>
            tracking.log_metrics({f"accuracy_{name}": float(acc)}, step=int(history))
    return {
        "table": table,
        "files": outputs,
        "mlflow_run_id": state["parent_run_id"],
        "out_dir": str(out_dir),
        "persons": {k: params[k] for k in ("n_persons", "persons_by_country")},
        "reference": reference,
    }


def inputs_seen(items: list[dict], reads: tuple[str, ...]) -> tuple:
    """What a program that reads only the `reads` answers sees of these items (it always sees the person, the
    question, its options and the country)."""
    return tuple(
        (i["person_id"], i["question_code"], i["country"], tuple(i["known"].get(c) for c in reads)) for i in items
    )


def log_same_predictions(cell: Setup, bench: Benchmark, history: int, result: EvalResult, persons: dict) -> str:
    """A bench cell whose program saw exactly the inputs it saw at `history` (the country majority at any history
    size): its child run logs that result's metrics and breakdowns again (`persons`: its sample_params) and says
    which history's run holds the predictions. Returns its run id."""
    params = params_of(cell, bench, cell.program, {}) | {"predictions_from_history": history} | persons
    with tracking.run("valuesim-bench", f"f{cell.fold}-h{cell.history}-{cell.program}", params, nested=True) as run:
        tracking.log_result(result, with_cost=False, step=cell.history, with_table=False)
        return str(run.info.run_id)


def best_statistical(table: pd.DataFrame) -> str | None:
    """The statistical program with the highest mean accuracy in the bench (None when the bench has none)."""
    stat = table[~table["program"].map(needs_lm)]
    return None if stat.empty else str(stat.groupby("program")["accuracy"].mean().idxmax())


def paired_table(preds: dict, reference: str | None, resamples: int, seed: int) -> pd.DataFrame:
    """Each program minus the reference on the same persons and questions, per fold and history: difference in
    accuracy (vs_reference) and in log loss (vs_reference_log_loss, on the items both scored), each with its 95% CI
    (paired bootstrap over persons) and a sign-flip permutation p-value (p_value, p_value_log_loss)."""
    columns = ["program", "fold", "history"]
    for metric, col in PAIRED.items():
        p_col = "p_value" if metric == "accuracy" else f"p_value_{metric}"
        columns += [col, f"{col}_ci_low", f"{col}_ci_high", p_col]
    rows = []
    for (fold, history, program), p in preds.items():
        ref = preds.get((fold, history, reference))
        if reference is None or ref is None or program == reference:
            continue
        row: dict = {"program": program, "fold": fold, "history": history}
        for metric, col in PAIRED.items():
            d = paired_difference(p, ref, metric, n_resamples=max(resamples, 200), seed=seed)
            p_col = "p_value" if metric == "accuracy" else f"p_value_{metric}"
            row |= {col: d["difference"], f"{col}_ci_low": d["ci_low"], f"{col}_ci_high": d["ci_high"],
                    p_col: d["p_value"]}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def p_text(p: float) -> str:
    if pd.isna(p):
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def fixed(v: float, digits: int = 3) -> str:
    """v with `digits` decimals; an undefined value (NaN, None) is an empty cell, not "nan"."""
    return "" if pd.isna(v) else f"{v:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    """table as a markdown table with empty cells where a value is undefined (tabulate writes NaN as "nan")."""
    return table.astype(object).where(table.notna(), None).to_markdown(index=False)


def results_markdown(table: pd.DataFrame) -> str:
    """The results table as a person reads it: "0.603 [0.597, 0.609]" cells, the difference to the reference."""
    from valuesim.score.stats import format_ci

    out = table[["program", "fold", "history", "n", "n_persons" if "n_persons" in table else "persons"]].copy()
    out.columns = ["program", "fold", "history", "n", "persons"]
    for m in ("accuracy", "macro_accuracy", "within_one", "nmae"):
        if m in table:
            out[m] = [
                "" if pd.isna(r[m]) else format_ci(r[m], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"))
                for _, r in table.iterrows()
            ]
    if "random_accuracy" in table:
        out["random floor"] = table["random_accuracy"].map(fixed)
    if "country_majority_floor" in table:
        out["country floor"] = table["country_majority_floor"].map(fixed)
    if "normalized_accuracy" in table:
        out["normalized"] = table["normalized_accuracy"].map(fixed)
    if "vs_reference" in table:
        out["vs reference"] = [
            "" if pd.isna(r["vs_reference"])
            else f"{format_ci(r['vs_reference'], r['vs_reference_ci_low'], r['vs_reference_ci_high'])}, "
            + p_text(r["p_value"])
            for _, r in table.iterrows()
        ]  # fmt: skip
    out["invalid"], out["failed"] = table.get("invalid", 0), table.get("failed", 0)
    return markdown(out)


def distributions_markdown(table: pd.DataFrame) -> str:
    """The distribution scores as a person reads them: log loss, Brier, RPS, ECE with CIs, the difference in log
    loss to the reference, the uniform and country-share floors, the population metrics (JSD, 1-Wasserstein,
    Kendall tau) from the answers and from the averaged probabilities. A program with point masses only shows its
    note instead of scores."""
    from valuesim.score.stats import format_ci

    out = table[["program", "fold", "history"]].copy()
    for m in PROB_COLUMNS:
        if m in table:
            out[m] = [
                "" if pd.isna(r[m]) else format_ci(r[m], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"))
                for _, r in table.iterrows()
            ]
    if "vs_reference_log_loss" in table:
        d = "vs_reference_log_loss"
        out["log loss vs reference"] = [
            "" if pd.isna(r[d])
            else f"{format_ci(r[d], r[f'{d}_ci_low'], r[f'{d}_ci_high'])}, " + p_text(r["p_value_log_loss"])
            for _, r in table.iterrows()
        ]  # fmt: skip
    for col, name in (("uniform_log_loss", "uniform log loss"), ("country_log_loss", "country log loss"),
                      ("uniform_brier", "uniform Brier"), ("country_brier", "country Brier"),
                      ("uniform_rps", "uniform RPS"), ("country_rps", "country RPS"),
                      ("jsd", "JSD answers"), ("jsd_probs", "JSD probs"), ("wasserstein", "W1 answers"),
                      ("wasserstein_probs", "W1 probs"), ("kendall_tau", "tau answers"),
                      ("kendall_tau_probs", "tau probs")):  # fmt: skip
        if col in table:
            out[name] = table[col].map(fixed)
    if "probs_note" in table:
        out["note"] = table["probs_note"].fillna("")
    if "prob_point" in table:
        out["point rows left out"] = table["prob_point"].fillna(0).astype(int)
    return markdown(out)


def write_bench_outputs(table: pd.DataFrame, out_dir: Path, preds: dict | None = None) -> dict[str, str]:
    """results.md/.csv, distributions.md, cost.md/.csv, accuracy_by_history.png and reliability.png (the
    reliability diagram of every program with distributions, one panel per history of the first fold) under
    out_dir/report/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    keys = ["program", "fold", "history"]
    with_ci = [
        f"{m}_ci_{e}"
        for m in ("accuracy", "macro_accuracy", "within_one", "nmae", *PROB_COLUMNS)
        for e in ("low", "high")
    ]
    extra = [
        "random_accuracy",
        "country_majority_floor",
        "vs_reference",
        "vs_reference_ci_low",
        "vs_reference_ci_high",
        "p_value",
        "vs_reference_log_loss",
        "vs_reference_log_loss_ci_low",
        "vs_reference_log_loss_ci_high",
        "p_value_log_loss",
        *PROB_EXTRA,
    ]
    columns = [c for c in [*RESULT_COLUMNS, *PROB_COLUMNS, *with_ci, *extra] if c in table]
    results = table[keys + columns].round(4)
    cost = table[keys + [c for c in COST_COLUMNS if c in table]].round(2)
    if "usd_total" in cost:  # small runs cost fractions of a cent
        cost["usd_total"] = table["usd_total"].astype(float).round(6)
    files.write_atomic(report / "results.csv", results.to_csv(index=False, na_rep=""))  # undefined: empty, not nan
    files.write_atomic(report / "cost.csv", cost.to_csv(index=False, na_rep=""))
    files.write_atomic(report / "results.md", results_markdown(table) + "\n")
    files.write_atomic(report / "distributions.md", distributions_markdown(table) + "\n")
    files.write_atomic(report / "cost.md", markdown(cost) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for program, g in table.groupby("program", sort=False):
        g = g.groupby("history")[["accuracy", "accuracy_ci_low", "accuracy_ci_high"]].mean()
        (line,) = ax.plot(g.index, g["accuracy"], marker="o", label=program)
        ax.fill_between(g.index, g["accuracy_ci_low"], g["accuracy_ci_high"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("known answers (history size)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Accuracy against interaction history (bands: 95% CI over persons)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    files.write_atomic(report / "accuracy_by_history.png", png.getvalue())
    plt.close(fig)
    names = ["results.md", "results.csv", "distributions.md", "cost.md", "cost.csv", "accuracy_by_history.png"]
    fold = min((k[0] for k in preds), default=None) if preds else None
    first = {(h, p): v for (f, h, p), v in (preds or {}).items() if f == fold}
    if first:
        files.write_atomic(report / "reliability.png", reliability_png(first))
        names.append("reliability.png")
    return {name: str(report / name) for name in names}
