"""Programs that need no LM run in batches (valuesim.run.predict.evaluate_batch); the batch path and the per-item path
(`forward` through `evaluate`, what `simulate` and dspy use) give the same answers, store rows and metrics."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.run.predict import BATCH_INPUTS, RunStopped, evaluate, evaluate_batch, read_stored
from valuesim.run.store import COLUMNS, RunStore, values_db

NO_LM = [name for name in PROGRAMS if not needs_lm(name)]


@pytest.fixture(scope="module")
def bench(bench_small: Path) -> Benchmark:
    return Benchmark(bench_small)


@pytest.fixture(scope="module")
def fitted(bench: Benchmark) -> dict:
    """Each program fitted once for the module (ml fits a model per question)."""
    return {name: PROGRAMS[name].from_benchmark(bench) for name in NO_LM}


def stored_rows(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        return db.execute(
            "SELECT key, person_id, question, gold, answer, status, error, detail, lm_calls, prompt_tokens, "
            "completion_tokens, cached_tokens, probs, probs_method FROM predictions ORDER BY key"
        ).fetchall()


@pytest.mark.parametrize("name", NO_LM)
@pytest.mark.parametrize("history", [0, 58])
def test_batch_and_per_item_paths_are_identical(
    bench: Benchmark, fitted: dict, name: str, history: int, tmp_path: Path
) -> None:
    """The whole per-item path (dspy Examples with rendered statements, one forward each) against the batch path
    on a country-stratified sample: the same answer for every (person, question), the same rows, the same metrics.
    History 0 is the tie-heavy case (kNN similarities then depend on demographics and country only)."""
    program = fitted[name]
    selection = ("values", "dev", 1, history, 12, 10)
    batch = evaluate_batch(program, items(bench, *selection), tmp_path / "batch", resamples=50)
    examples = bench.examples(*selection)
    per_item = evaluate(program, examples, tmp_path / "item", progress=False, resamples=50)
    assert len(batch.predictions) == len(examples) > 50
    answers = dict(zip(batch.predictions["key"], batch.predictions["answer"], strict=True))
    assert answers == dict(zip(per_item.predictions["key"], per_item.predictions["answer"], strict=True))
    assert all(a in ex.options for ex in examples if (a := answers[f"{ex.person_id}|{ex.question_code}"]) is not None)
    assert stored_rows(tmp_path / "batch") == stored_rows(tmp_path / "item")
    for key, value in per_item.metrics.items():
        if "seconds" not in key:
            assert batch.metrics[key] == pytest.approx(value, nan_ok=True), key
    pd.testing.assert_frame_equal(batch.by_country, per_item.by_country)
    pd.testing.assert_frame_equal(batch.by_category, per_item.by_category)


@pytest.mark.parametrize("name", ["knn", "ml", "cell", "random"])
def test_a_run_scores_its_batches_tables_as_the_store_reads_them_back(
    bench: Benchmark, fitted: dict, name: str, tmp_path: Path
) -> None:
    """A run that predicts every item joins the tables its batches made where they were predicted
    (`batch_table`) instead of reading its store back: the same predictions table (values, order, dtypes) and
    metrics as the store read back, also with items that failed."""
    selected = items(bench, "values", "dev", 1, 58, 12, 10)

    class LastPersonFails:
        def predict_batch(self, inputs):
            if any(i["person_id"] == selected[-1]["person_id"] for i in inputs):
                raise RuntimeError("boom")
            return fitted[name].predict_batch(inputs)

    for program, run_dir in ((fitted[name], tmp_path / "ok"), (LastPersonFails(), tmp_path / "failed")):
        fresh = evaluate_batch(program, selected, run_dir, resamples=50, batch_persons=3, progress=False)
        again = read_stored(selected, run_dir, retry_failed=False, resamples=50, seed=0)
        assert again is not None and len(fresh.predictions) == len(selected)
        pd.testing.assert_frame_equal(fresh.predictions, again.predictions)
        assert fresh.metrics.keys() == again.metrics.keys()
        for key, value in again.metrics.items():
            assert fresh.metrics[key] == pytest.approx(value, rel=0, abs=0, nan_ok=True), key
    assert (fresh.predictions["status"] == "failed").sum() == 30  # the last person's batch: 3 persons, 10 questions
    store = RunStore(tmp_path / "ok")
    assert tuple(store.frame().columns[: len(COLUMNS)]) == COLUMNS  # a new store's columns, as rows_frame has them
    store.close()


@pytest.mark.parametrize("name", NO_LM)
def test_one_item_alone_or_in_a_batch(bench: Benchmark, fitted: dict, name: str) -> None:
    """An item's answer does not depend on what else is in the batch (order, other persons)."""
    program = fitted[name]
    selected = [{k: i[k] for k in BATCH_INPUTS} for i in items(bench, "values", "dev", 1, 58, 8, 6)]
    together = program.predict_batch(selected)
    assert program.predict_batch(selected[::-1]) == together[::-1]
    assert [program.predict_batch([item])[0] for item in selected[::7]] == together[::7]


def test_batch_programs_never_see_the_gold_answer(bench: Benchmark, tmp_path: Path) -> None:
    seen = []

    class Spy(PROGRAMS["majority"]):
        def predict_batch(self, inputs):
            seen.extend(inputs)
            return super().predict_batch(inputs)

    evaluate_batch(Spy.from_benchmark(bench), items(bench, "values", "dev", 1, 0, 3, 4), tmp_path)
    assert seen and all(set(i) == set(BATCH_INPUTS) for i in seen)


def test_batches_of_persons_one_transaction_each_and_resume(bench: Benchmark, tmp_path: Path) -> None:
    calls = []

    class Counting(PROGRAMS["country"]):
        def predict_batch(self, inputs):
            calls.append(sorted({i["person_id"] for i in inputs}))
            return super().predict_batch(inputs)

    program = Counting.from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, 58, 7, 5)
    first = evaluate_batch(program, selected[:20], tmp_path, resamples=0, batch_persons=2)
    assert [len(c) for c in calls] == [2, 2]  # 20 items = 4 persons of 5 questions, 2 persons per call
    again = evaluate_batch(program, selected, tmp_path, resamples=0, batch_persons=2)
    assert len(calls) == 4  # only the 3 persons not stored yet: 2 + 1
    assert again.metrics["n"] == len(selected) and first.metrics["n"] == 20
    store = RunStore(tmp_path)
    assert len(store.frame()) == len(selected)
    store.close()


def test_a_failing_program_stops_with_its_items_stored_as_failed(bench: Benchmark, tmp_path: Path) -> None:
    class Broken(PROGRAMS["majority"]):
        def predict_batch(self, inputs):
            raise RuntimeError("boom")

    with pytest.raises(RunStopped, match="boom"):
        evaluate_batch(Broken.from_benchmark(bench), items(bench, "values", "dev", 1, 0, 3, 4), tmp_path)
    rows = stored_rows(tmp_path)
    assert rows and {r[5] for r in rows} == {"failed"} and "RuntimeError: boom" in rows[0][6]


STORE_VALUE = st.one_of(
    st.none(), st.text(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans()
)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(st.sampled_from("abcd"), STORE_VALUE, STORE_VALUE), max_size=6), max_size=4))
def test_rows_sent_as_a_database_are_stored_as_the_rows_themselves(batches: list[list[tuple]]) -> None:
    """A Ray worker sends a batch's rows as a SQLite database (`values_db`): stored, every value and its type are those
    the tuples give when inserted directly, a key already stored is replaced, and each batch's database replaces the
    one before it."""
    columns = ("key", "answer", "seconds")  # TEXT and REAL columns: the store's affinities apply in both ways
    with tempfile.TemporaryDirectory() as tmp:
        direct, sent = RunStore(Path(tmp) / "direct"), RunStore(Path(tmp) / "sent")
        for rows in batches:
            direct.add_values(columns, rows)
            sent.add_values(columns, values_db(columns, rows))
        read = "SELECT key, answer, typeof(answer), seconds, typeof(seconds) FROM predictions ORDER BY rowid"
        assert sent._db.execute(read).fetchall() == direct._db.execute(read).fetchall()
        direct.close()
        sent.close()
