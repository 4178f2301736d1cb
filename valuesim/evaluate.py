"""Run a program over benchmark examples with dspy.Evaluate, keep every prediction, compute the metrics.

Every finished prediction goes to the run's SQLite store (valuesim/store.py) together with what the modules
said, LM calls, tokens and seconds; a resumed run skips what is stored. An exception inside the program does
not stop the run: the item is stored as failed with its reason, and counts as a wrong answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dspy
import pandas as pd

from valuesim.data.catalog import Catalog
from valuesim.metrics import breakdown, summarize
from valuesim.store import RunStore


def example_key(ex: dspy.Example) -> str:
    return f"{ex.person_id}|{ex.question}"


class Recorded(dspy.Module):
    """Wraps a program: times it, counts its LM calls and tokens, and turns an exception into a failed item."""

    def __init__(self, program: dspy.Module):
        super().__init__()
        self.program = program

    def forward(self, **inputs) -> dspy.Prediction:
        t0 = time.perf_counter()
        with dspy.track_usage() as usage:
            try:
                pred = self.program(**inputs)
                error = None
            except Exception as e:  # noqa: BLE001 - any program fault is recorded, the run goes on
                pred, error = dspy.Prediction(answer=None), f"{type(e).__name__}: {e}"
        calls = [u for entries in usage.usage_data.values() for u in entries]
        pred.cost = {
            "lm_calls": len(calls),
            "prompt_tokens": sum(u.get("prompt_tokens") or 0 for u in calls),
            "completion_tokens": sum(u.get("completion_tokens") or 0 for u in calls),
            "cached_tokens": sum((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0 for u in calls),
            "seconds": time.perf_counter() - t0,
            "error": error,
        }
        return pred


def valid_answer(pred: dspy.Prediction, options: dict) -> str | None:
    answer = getattr(pred, "answer", None)
    answer = None if answer is None else str(answer).strip()
    return answer if answer in options else None


@dataclass
class EvalResult:
    predictions: pd.DataFrame
    metrics: dict
    by_country: pd.DataFrame
    by_category: pd.DataFrame


def evaluate(
    program: dspy.Module,
    examples: list[dspy.Example],
    catalog: Catalog,
    run_dir: str | Path,
    threads: int = 1,
    progress: bool = True,
) -> EvalResult:
    """Predict every example not yet in `run_dir`'s store, then score all of them."""
    store = RunStore(run_dir)
    done = store.done()
    todo = [ex for ex in examples if example_key(ex) not in done]

    def record(example, pred, trace=None) -> bool:
        answer = valid_answer(pred, example.options)
        cost = getattr(pred, "cost", {})
        detail = {k: v for k, v in pred.items() if k not in ("answer", "cost")}
        store.add(
            {
                "key": example_key(example),
                "person_id": example.person_id,
                "question": example.question,
                "gold": example.answer,
                "answer": answer,
                "status": "failed" if cost.get("error") else "ok" if answer is not None else "invalid",
                "error": cost.get("error") or (None if answer else f"not an option: {getattr(pred, 'answer', None)!r}"),
                "detail": detail,
                "lm_calls": cost.get("lm_calls", 0),
                "prompt_tokens": cost.get("prompt_tokens", 0),
                "completion_tokens": cost.get("completion_tokens", 0),
                "cached_tokens": cost.get("cached_tokens", 0),
                "seconds": cost.get("seconds", 0.0),
            }
        )
        return answer == example.answer

    if todo:
        dspy.Evaluate(
            devset=todo, metric=record, num_threads=threads, display_progress=progress, max_errors=len(todo) + 1
        )(Recorded(program))
    stored = store.frame()
    store.close()
    keys = {example_key(ex) for ex in examples}
    stored = stored[stored["key"].isin(keys)]
    preds = predictions_table(stored, examples, catalog)
    return EvalResult(
        predictions=preds,
        metrics=summarize(preds) | cost_summary(stored),
        by_country=breakdown(preds, "country"),
        by_category=breakdown(preds, "category"),
    )


def predictions_table(stored: pd.DataFrame, examples: list[dspy.Example], catalog: Catalog) -> pd.DataFrame:
    """Stored rows joined with example metadata; answers as scale positions for the metrics."""
    meta = pd.DataFrame(
        [
            {
                "key": example_key(ex),
                "country": ex.country,
                "category": ex.category,
                "ordinal": ex.ordinal,
                "n_options": len(ex.options),
                "options": list(ex.options),
            }
            for ex in examples
        ]
    )
    p = stored.merge(meta, on="key", how="inner")

    def pos(row, col):
        value = row[col]
        return row["options"].index(value) if value is not None and value in row["options"] else None

    p["gold_pos"] = p.apply(lambda r: pos(r, "gold"), axis=1).astype("float64")
    p["pred_pos"] = p.apply(lambda r: pos(r, "answer"), axis=1).astype("float64")
    return p.drop(columns=["options"])


def cost_summary(stored: pd.DataFrame) -> dict:
    n = max(len(stored), 1)
    return {
        "failed": int((stored["status"] == "failed").sum()),
        "lm_calls_per_pred": float(stored["lm_calls"].sum() / n),
        "prompt_tokens_per_pred": float(stored["prompt_tokens"].sum() / n),
        # tokens the engine really evaluated (prompt minus what its prefix cache reused); NULL in older stores
        "evaluated_tokens_per_pred": float((stored["prompt_tokens"] - stored["cached_tokens"].fillna(0)).sum() / n),
        "completion_tokens_per_pred": float(stored["completion_tokens"].sum() / n),
        "seconds_per_pred": float(stored["seconds"].sum() / n),
    }
