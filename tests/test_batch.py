"""Programs that need no LM run in batches (valuesim.evaluate.evaluate_batch); the batch path and the per-item path
(`forward`, what `simulate` and dspy use) give the same answers and the same metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from valuesim.data.benchmark import Benchmark, items
from valuesim.evaluate import BATCH_INPUTS, evaluate, evaluate_batch
from valuesim.programs import PROGRAMS, STATISTICAL


@pytest.fixture(scope="module")
def bench(bench_small: Path) -> Benchmark:
    return Benchmark(bench_small)


@pytest.mark.parametrize("name", sorted(STATISTICAL))
@pytest.mark.parametrize("history", [0, 58])
def test_batch_and_per_item_answers_are_identical(bench: Benchmark, name: str, history: int) -> None:
    program = PROGRAMS[name].from_benchmark(bench)
    selected = items(bench, "values", "dev", 1, history, persons=8, questions=12)
    inputs = [{k: item[k] for k in BATCH_INPUTS} for item in selected]
    batch = program.predict_batch(inputs)
    one_by_one = [program(**item).answer for item in inputs]
    assert batch == one_by_one
    assert all(a in item["options"] for a, item in zip(batch, selected, strict=True))


def test_batch_evaluation_equals_per_item_evaluation(bench: Benchmark, tmp_path: Path) -> None:
    program = PROGRAMS["knn"].from_benchmark(bench)
    selection = ("values", "dev", 1, 58, 6, 10)
    a = evaluate_batch(program, items(bench, *selection), bench.catalog, tmp_path / "batch", resamples=100)
    b = evaluate(program, bench.examples(*selection), bench.catalog, tmp_path / "item", progress=False, resamples=100)
    cols = ["key", "answer", "gold", "status"]
    assert (
        a.predictions[cols].sort_values("key").values.tolist() == b.predictions[cols].sort_values("key").values.tolist()
    )
    for key in ("n", "accuracy", "macro_accuracy", "within_one", "nmae", "accuracy_ci_low", "accuracy_ci_high"):
        assert a.metrics[key] == pytest.approx(b.metrics[key]), key


def test_batch_programs_never_see_the_gold_answer(bench: Benchmark, tmp_path: Path) -> None:
    seen = []

    class Spy(PROGRAMS["majority"]):
        def predict_batch(self, inputs):
            seen.extend(inputs)
            return super().predict_batch(inputs)

    evaluate_batch(Spy.from_benchmark(bench), items(bench, "values", "dev", 1, 0, 3, 4), bench.catalog, tmp_path)
    assert seen and all(set(i) == set(BATCH_INPUTS) for i in seen)
