"""Run a program over benchmark examples, keep every prediction, compute the metrics with their uncertainty
(results.py).

Every finished prediction goes to the run's SQLite store (valuesim/run/store.py) together with what the modules
said, LM calls, tokens and seconds; a resumed run skips what is stored and retries what failed. An exception
inside the program does not stop the run: the item is stored as failed with its reason, and counts as a wrong
answer. Two things do stop it, with one line and what was stored kept: the store cannot be written (disk full,
read-only, damaged database), or the first predictions all failed (a dead model or server: no point in going on).

`threads` predictions run at once in a thread pool (each in a copy of the caller's context, so `dspy.context`
overrides and usage tracking reach the workers); results are written by the calling thread only. DSPy's own
Evaluate is not used: its progress bookkeeping rescans every result after each item (quadratic on 60k items) and
it logs whole examples on errors.
"""

from __future__ import annotations

import contextvars
import functools
import math
import sqlite3
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import dspy
import numpy as np
import pandas as pd

from valuesim.errors import ValueSimError
from valuesim.programs.statistical import Guess
from valuesim.progress import bars
from valuesim.run.store import RunStore, probs_json, rows_frame
from valuesim.score.metrics import breakdown
from valuesim.score.results import cost_summary, only_keys, predictions_table_of, score
from valuesim.score.stats import N_RESAMPLES

BATCH_INPUTS = ("person_id", "country", "known", "question_code", "options")  # what a batch program may read
# how a prediction's probabilities were made: smoothed counts, a classifier, an LM's log-probabilities, the shares of
# K sampled answers, or none (a point mass on the answer)
PROB_METHODS = ("counts", "model", "logprobs", "samples", "point")
FAIL_FAST = 20  # a run whose first this many predictions all failed stops: the model or server is broken


class RunStopped(ValueSimError):
    """A run stopped early; the predictions stored so far are kept and --resume continues."""


def example_key(ex: dspy.Example | dict) -> str:
    """A prediction's key in the store: person and question (a dspy.Example, or an item dict of the batch path)."""
    if isinstance(ex, dict):
        return f"{ex['person_id']}|{ex['question_code']}"
    return f"{ex.person_id}|{ex.question_code}"


def meta_of(examples: list) -> list[tuple]:
    """(key, country, category, ordinal, option codes) per example or item, what scoring joins to stored rows."""
    get = (lambda ex, k: ex[k]) if examples and isinstance(examples[0], dict) else getattr
    return [(example_key(ex), get(ex, "country"), get(ex, "category"), get(ex, "ordinal"), list(get(ex, "options")))
            for ex in examples]  # fmt: skip


def result_of(stored: pd.DataFrame, examples: list, resamples: int, seed: int) -> EvalResult:
    """Score the stored rows of these examples: predictions table, metrics with CIs and cost, breakdowns."""
    meta = meta_of(examples)
    return scored(predictions_table_of(only_keys(stored, {m[0] for m in meta}), meta), resamples, seed)


def scored(preds: pd.DataFrame, resamples: int, seed: int) -> EvalResult:
    """A predictions table's metrics with CIs and cost, and its breakdowns."""
    return EvalResult(
        predictions=preds,
        metrics=score(preds, resamples, seed) | cost_summary(preds),
        by_country=breakdown(preds, "country"),
        by_category=breakdown(preds, "category"),
    )


def read_stored(
    examples: list, run_dir: str | Path, retry_failed: bool, resamples: int, seed: int
) -> EvalResult | None:
    """The result of a finished run read back from its store without predicting; None when a prediction of these
    examples is missing, or failed and would be retried."""
    if not (Path(run_dir) / "predictions.sqlite").exists():
        return None
    keys = {example_key(ex) for ex in examples}
    with open_store(run_dir) as store:
        if examples and isinstance(examples[0], dict) and keys - store.done(need_probs=True):
            return None  # a batch program's answers stored before distributions: predicted again
        stored = only_keys(store.frame(), keys)
    if not examples or len(stored) < len(examples) or (retry_failed and (stored["status"] == "failed").any()):
        return None
    return result_of(stored, examples, resamples, seed)


class CallLog:
    """Collects the LM history entries of one prediction: DSPy appends each call's entry (with the price it put
    on the response, `cost`) to the `history` of every module in `caller_modules`, and that list is per thread."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def dollars(self) -> float | None:
        """What the billed calls cost; None when a billed call has no price (a model missing from the price table,
        a self-hosted server, the embedded engine). Cache hits keep the original call's cost but no usage: free."""
        billed = [e for e in self.history if e.get("usage")]
        if any(e.get("cost") is None for e in billed):
            return None
        return float(sum(e["cost"] for e in billed))


class Recorded(dspy.Module):
    """Wraps a program: times it, counts its LM calls, tokens and dollars, and turns an exception into a failed
    item."""

    def __init__(self, program: dspy.Module):
        super().__init__()
        self.program = program

    def forward(self, **inputs: Any) -> dspy.Prediction:
        t0 = time.perf_counter()
        log = CallLog()
        with dspy.track_usage() as usage, dspy.context(caller_modules=[*(dspy.settings.caller_modules or []), log]):
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
            "cost_usd": log.dollars(),
            "seconds": time.perf_counter() - t0,
            "error": error,
        }
        return pred


def valid_answer(pred: dspy.Prediction, options: dict[str, str]) -> str | None:
    answer = getattr(pred, "answer", None)
    answer = None if answer is None else str(answer).strip()
    return answer if answer in options else None


@dataclass
class EvalResult:
    predictions: pd.DataFrame
    metrics: dict
    by_country: pd.DataFrame
    by_category: pd.DataFrame


@contextmanager
def open_store(run_dir: str | Path) -> Iterator[RunStore]:
    """The run's prediction store; a store that cannot be opened or written (disk full, read-only, damaged) stops
    the run with one line, keeping what was committed."""
    try:
        store = RunStore(run_dir)
    except sqlite3.Error as e:
        raise RunStopped(f"{Path(run_dir) / 'predictions.sqlite'}: not a readable predictions store ({e})") from None
    try:
        yield store
    except sqlite3.Error as e:
        raise RunStopped(
            f"{store.path}: cannot store predictions ({e}); what was stored is kept: free space or fix the folder, "
            "then rerun with --resume"
        ) from None
    finally:
        store.close()


def evaluate(
    program: dspy.Module,
    examples: list[dspy.Example],
    run_dir: str | Path,
    threads: int = 1,
    progress: bool = True,
    resamples: int = N_RESAMPLES,
    seed: int = 0,
    retry_failed: bool = True,
    predict: Predictor | None = None,
) -> EvalResult:
    """Predict every example not yet in `run_dir`'s store (and, with `retry_failed`, the ones that failed), then
    score all of them; accuracy-like metrics get 95% CIs from `resamples` bootstrap draws over persons.

    `predict(todo, store, threads, progress)` predicts and stores them: `predict_all` with this program by default,
    Ray workers in a --ray run (valuesim/run/cluster.py)."""
    with open_store(run_dir) as store:
        done = store.done(include_failed=not retry_failed)
        todo = [ex for ex in examples if example_key(ex) not in done]
        if todo:
            (predict or functools.partial(predict_all, program))(todo, store, threads, progress)
        stored = store.frame()
    return result_of(stored, examples, resamples, seed)


def evaluate_batch(
    program: dspy.Module,
    items: list[dict],
    run_dir: str | Path,
    resamples: int = N_RESAMPLES,
    seed: int = 0,
    batch_persons: int = 256,
    retry_failed: bool = True,
    progress: bool = True,
    batches: BatchRunner | None = None,
) -> EvalResult:
    """`evaluate` for programs that need no LM (`program.predict_batch(inputs) -> answers`), on the items of
    `valuesim.data.benchmark.items` (plain dicts: no dspy.Example, no rendered statements).

    `batch_persons` persons at a time are predicted in one call and stored in one transaction, so a killed run
    keeps its finished batches and a rerun on the same `run_dir` predicts only what is missing. The program sees
    only BATCH_INPUTS, never the gold answer. Store rows, predictions table and metrics are those `evaluate`
    writes and computes for the same items (seconds: the batch's time shared among its items). `batches` runs
    the batches (`in_order` by default; parallel Ray tasks in a --ray run) and yields them as they finish.

    Each batch comes with its part of the predictions table, made where it was predicted (`batch_table`): when
    every item was predicted now, the table is those parts joined, and the store is not read back (on a Ray
    cluster the workers, not the driver, then do that work); a resumed run reads the store back."""
    keys = [example_key(item) for item in items]
    with open_store(run_dir) as store:
        done = store.done(include_failed=not retry_failed, need_probs=True)
        todo = [n for n, key in enumerate(keys) if key not in done]
        chunks, batches_in = item_batches(items, todo, batch_persons)
        failures: Counter = Counter()
        tables: dict[int, pd.DataFrame] = {}
        with bars(progress) as bar:
            task = bar.add_task("predicting", total=len(todo))
            for finished, (b, rows, error, table) in enumerate((batches or in_order)(program, batches_in)):
                chunk = chunks[b]
                if error:
                    failures[error.splitlines()[0][:200]] += len(chunk)
                store.add_values(STORED, rows)
                tables[b] = table
                if error and finished == 0:  # a broken program: no point in going on
                    raise RunStopped(
                        f"the first batch of {len(chunk)} predictions failed ({error.splitlines()[0][:200]}); stopped "
                        "with them stored as failed; fix the program and rerun with --resume (failed ones are retried)"
                    )
                bar.advance(task, len(chunk))
        if failures:
            print(f"{sum(failures.values())} of {len(todo)} predictions failed; most often: "
                  f"{failures.most_common(1)[0][0]}", file=sys.stderr)  # fmt: skip
        if todo and len(todo) == len(items):
            return scored(joined(tables, chunks), resamples, seed)
        stored = store.frame()
    return result_of(stored, items, resamples, seed)


def joined(tables: dict[int, pd.DataFrame], chunks: list[list[int]]) -> pd.DataFrame:
    """The batches' predictions tables as one, in the items' order (as `predictions_table_of` orders a run's)."""
    order = np.argsort(np.concatenate([chunks[b] for b in tables]), kind="stable")
    # a column without a value in one batch (no errors, every answer failed) is of objects there, strings in the
    # others and in the store read back: strings again here, as the store reads them
    return pd.concat(tables.values(), ignore_index=True).iloc[order].reset_index(drop=True).infer_objects()


Batch = list[dict]  # a batch's items (valuesim.data.benchmark.items): the program sees their BATCH_INPUTS only
# batch index, its STORED rows (or their `values_db`: from a Ray worker), error, batch_table
BatchResult = tuple[int, list[tuple] | bytes, str | None, pd.DataFrame]
BatchRunner = Callable[[Any, Iterable[Batch]], Iterator[BatchResult]]
Predictor = Callable[[list, RunStore, int, bool], None]  # (todo, store, threads, progress), as predict_all


def answer_batch(program: Any, batch: Batch) -> tuple[list[tuple], str | None, pd.DataFrame]:
    """The program's answers to one batch (or failed items and the error when it raised) as the store's rows
    (STORED: `batch_rows` and the gold answer) and the batch's part of the predictions table (`batch_table`).
    Made where the batch is predicted (a Ray worker), so the driver only inserts and joins them. The program
    sees the items' BATCH_INPUTS only (`program_inputs`), never the gold answer."""
    inputs = program_inputs(batch)
    t0 = time.perf_counter()
    try:
        guesses, error = program.predict_batch(inputs), None
    except Exception as e:  # noqa: BLE001 - as in `evaluate`: the items are stored as failed, with the reason
        guesses, error = [Guess(None, None)] * len(inputs), f"{type(e).__name__}: {e}"
    seconds = (time.perf_counter() - t0) / max(len(inputs), 1)
    rows, probs = batch_rows(inputs, guesses, seconds, error)
    rows = [(*row, item["answer"]) for row, item in zip(rows, batch, strict=True)]
    return rows, error, batch_table(batch, rows, probs)


def program_inputs(batch: Batch) -> list[dict]:
    """What a program sees of a batch's items: their BATCH_INPUTS (new dicts: not the gold answer)."""
    visible = itemgetter(*BATCH_INPUTS)
    return [dict(zip(BATCH_INPUTS, visible(item), strict=True)) for item in batch]


def batch_table(batch: Batch, rows: list[tuple], probs: list[dict | None]) -> pd.DataFrame:
    """The predictions table of a batch's stored rows (`probs`: their distributions as dicts, which their JSON text
    reads back as): what `result_of` makes of the same rows read back."""
    return predictions_table_of(rows_frame(STORED, rows, probs), meta_of(batch))


def in_order(program: Any, batches: Iterable[Batch]) -> Iterator[BatchResult]:
    """The batches predicted one after another in this process."""
    for b, batch in enumerate(batches):
        yield b, *answer_batch(program, batch)


def item_batches(items: list[dict], todo: list[int], batch_persons: int) -> tuple[list[list[int]], Iterator[Batch]]:
    """The batches of the `todo` items (`person_batches`): their indices, and each batch's items (the same dicts,
    so that a Ray task's batch is pickled from them directly and a batch started ahead is known by them)."""
    chunks = person_batches(items, todo, batch_persons)
    return chunks, ([items[n] for n in chunk] for chunk in chunks)


def person_batches(items: list[dict], todo: list[int], batch_persons: int) -> list[list[int]]:
    """Indices of `todo` items grouped into batches of `batch_persons` persons (a person's items stay together)."""
    batches: list[list[int]] = []
    seen: dict[str, int] = {}
    for n in todo:
        person = items[n]["person_id"]
        if person not in seen:
            seen[person] = len(seen)
            if seen[person] % batch_persons == 0:
                batches.append([])
        batches[seen[person] // batch_persons].append(n)
    return batches


# what `batch_rows` gives per item, in this order, and the gold answer `answer_batch` adds (the store's other
# columns: NULL)
STORED = ("key", "person_id", "question", "answer", "status", "error", "detail", "probs", "probs_method",
          "lm_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "seconds", "gold")  # fmt: skip


def batch_rows(
    inputs: list[dict], guesses: list[Guess], seconds: float, error: str | None = None
) -> tuple[list[tuple], list[dict | None]]:
    """Per item, the values `row_of` stores for a batch program's Guess (STORED but the gold answer; no detail, no
    LM; `detail` and `probs` as the store's JSON text), and the distribution stored (as a dict)."""
    pairs = [batch_row(item, guess, seconds, error) for item, guess in zip(inputs, guesses, strict=True)]
    return [row for row, _ in pairs], [probs for _, probs in pairs]


def batch_row(item: dict, guess: Guess, seconds: float, error: str | None = None) -> tuple[tuple, dict | None]:
    raw = guess.answer
    answer = None if raw is None else str(raw).strip()
    answer = answer if answer in item["options"] else None
    probs, method, bad = checked_probs(guess.probs, guess.method, answer, item["options"])
    error = error or bad
    status = "failed" if error else "ok" if answer is not None else "invalid"
    error = error or (None if answer else f"not an option: {raw!r}")
    return (example_key(item), item["person_id"], item["question_code"], answer, status, error, "{}",
            probs_json(probs), method, 0, 0, 0, 0, seconds), probs  # fmt: skip


def row_of(example: dspy.Example, pred: dspy.Prediction) -> dict:
    """What the store keeps of one prediction."""
    answer = valid_answer(pred, example.options)
    cost = getattr(pred, "cost", {})
    given, how = getattr(pred, "probs", None), getattr(pred, "probs_method", None)
    probs, method, bad = checked_probs(given, how, answer, example.options)
    if bad and not cost.get("error"):
        cost = {**cost, "error": bad}
    return {
        "key": example_key(example),
        "person_id": example.person_id,
        "question": example.question_code,
        "gold": example.answer,
        "answer": answer,
        "status": "failed" if cost.get("error") else "ok" if answer is not None else "invalid",
        "error": cost.get("error") or (None if answer else f"not an option: {getattr(pred, 'answer', None)!r}"),
        "detail": {k: v for k, v in pred.items() if k not in ("answer", "cost", "probs", "probs_method")},
        "probs": probs,
        "probs_method": method,
        "lm_calls": cost.get("lm_calls", 0),
        "prompt_tokens": cost.get("prompt_tokens", 0),
        "completion_tokens": cost.get("completion_tokens", 0),
        "cached_tokens": cost.get("cached_tokens", 0),
        "cost_usd": cost.get("cost_usd"),
        "seconds": cost.get("seconds", 0.0),
    }


def probs_of(
    probs: dict | None, method: str | None, answer: str | None, options: dict[str, str]
) -> tuple[dict[str, float] | None, str | None]:
    """(probability per option, method) a row stores: a program's distribution over exactly the item's options
    (missing options 0, renormalized unless it sums to 1 within 1e-9), or a point mass on the answer (method
    "point") when the program gave none; (None, None) without a valid answer (failed and invalid predictions). A
    distribution that is not one (negative, not finite, all zero) is an error: a program bug, not something to
    score."""
    if answer is None:
        return None, None
    if probs is None:
        return {code: float(code == answer) for code in options}, "point"
    if method not in PROB_METHODS:
        raise ValueError(f"probs_method must be one of {', '.join(PROB_METHODS)}, got {method!r}")
    # plain floats, not numpy: this runs for every stored prediction (numpy's per-call overhead was 9 us of it)
    p = [float(probs.get(code, 0.0)) for code in options]
    if not all(math.isfinite(v) and v >= 0 for v in p) or not sum(p) > 0:
        raise ValueError(f"not a probability distribution over the options: {probs!r}")
    if abs(sum(p) - 1) > 1e-9:  # a sum off by rounding stays as given (a renormalized copy differs by an ulp)
        a = np.array(p)
        p = (a / a.sum()).tolist()
    return dict(zip(options, p, strict=True)), method


def checked_probs(
    probs: dict | None, method: str | None, answer: str | None, options: dict[str, str]
) -> tuple[dict[str, float] | None, str | None, str | None]:
    """`probs_of`, with a malformed distribution as the prediction's error (the item is stored as failed)."""
    try:
        return (*probs_of(probs, method, answer, options), None)
    except ValueError as e:
        return None, None, f"ValueError: {e}"


class PersonQueue:
    """The examples to predict, in order, with each person's later items held back until their first item is done.

    Person-level work (ValueSim's and backstory's story, written once per person and cached) then happens once,
    in the person's first item, while the other threads take other persons' items: handing out a person's items
    together made every thread that got one write the same backstory at once (measured: 26 backstory calls for 5
    persons at 16 threads). Threads idle only when every remaining person's first item is still running."""

    def __init__(self, todo: list[dspy.Example]):
        self.unstarted: dict[str, deque] = {}  # person -> items, in the order of the persons' first items
        for example in todo:
            self.unstarted.setdefault(example.person_id, deque()).append(example)
        self.held: dict[str, deque] = {}  # persons whose first item is running -> their other items
        self.ready: deque = deque()  # items of persons whose first item is done

    def next(self) -> dspy.Example | None:
        """The next item to start (finishing started persons first), or None if none can start now."""
        if self.ready:
            return self.ready.popleft()
        if not self.unstarted:
            return None
        person = next(iter(self.unstarted))
        items = self.unstarted.pop(person)
        first = items.popleft()
        if items:
            self.held[person] = items
        return first

    def done(self, example: dspy.Example) -> None:
        self.ready.extend(self.held.pop(example.person_id, ()))

    def remaining(self) -> list[dspy.Example]:
        """The items not handed out yet (started persons' first)."""
        return [*self.ready, *(ex for items in self.held.values() for ex in items),
                *(ex for items in self.unstarted.values() for ex in items)]  # fmt: skip


class Tally:
    """What a prediction loop does with each finished row: store it, count it, advance the bar; stop a run whose
    first FAIL_FAST predictions all failed; the closing line on failures. `predict_all` and the Ray workers' loop
    (valuesim/run/cluster.py) share it."""

    def __init__(self, store: RunStore, advance: Callable[[], None]):
        self.store, self.advance = store, advance
        self.failures: Counter = Counter()
        self.finished = 0

    def add(self, row: dict) -> None:
        self.store.add(row)  # a commit costs ~0.5 ms: not what limits a run (see BENCHMARKS.md)
        self.finished += 1
        if row["status"] == "failed":
            self.failures[row["error"].splitlines()[0][:200]] += 1
        self.advance()

    def stop_if_all_failed(self, before: int) -> None:
        """Raise RunStopped when the rows added since `before` finished predictions took the count to FAIL_FAST
        and every one failed."""
        if before < FAIL_FAST <= self.finished and sum(self.failures.values()) == self.finished:
            reason, count = self.failures.most_common(1)[0]
            raise RunStopped(
                f"the first {self.finished} predictions all failed ({count}x {reason}); stopped with them stored "
                "as failed. Fix the model or server and rerun with --resume: failed predictions are retried"
            )

    def summary(self) -> None:
        if self.failures:
            print(f"{sum(self.failures.values())} of {self.finished} predictions failed; most often: "
                  f"{self.failures.most_common(1)[0][0]}", file=sys.stderr)  # fmt: skip


def predict_all(program: dspy.Module, todo: list[dspy.Example], store: RunStore, threads: int, progress: bool) -> None:
    """Keep `threads` predictions in flight (a person's first item before their others, see PersonQueue); store
    each as it finishes; stop early if the first ones all fail."""
    recorded = Recorded(program)
    queue = PersonQueue(todo)
    with bars(progress) as bar, ThreadPoolExecutor(max_workers=threads) as pool:
        task = bar.add_task("predicting", total=len(todo))
        tally = Tally(store, functools.partial(bar.advance, task))
        in_flight: dict = {}

        def fill() -> None:
            while len(in_flight) < threads and (example := queue.next()) is not None:
                # mypy cannot carry the ParamSpec of Context.run through Executor.submit
                future = pool.submit(contextvars.copy_context().run, recorded, **example.inputs())  # type: ignore[arg-type]
                in_flight[future] = example

        fill()
        while in_flight:
            ready, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            before = tally.finished
            for future in ready:
                example = in_flight.pop(future)
                queue.done(example)
                tally.add(row_of(example, future.result()))
            try:
                tally.stop_if_all_failed(before)
            except RunStopped:
                for future in in_flight:
                    future.cancel()
                raise
            fill()
    tally.summary()
