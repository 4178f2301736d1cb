"""Faults during a run never end in a wrong result: a broken model stops the run after its first predictions, a
resumed run retries what failed, a store that cannot be written stops the run with one line and keeps what was
stored; metrics carry 95% CIs over persons and the exact random floor."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dspy
import pytest
from helpers import make_ex

from valuesim.run.predict import FAIL_FAST, RunStopped, evaluate
from valuesim.run.store import RunStore


class Flaky(dspy.Module):
    """Answers the first option, or raises while `broken` is set."""

    def __init__(self, broken: bool) -> None:
        super().__init__()
        self.broken = broken
        self.calls = 0

    def forward(self, options: dict, **_) -> dspy.Prediction:
        self.calls += 1
        if self.broken:
            raise ConnectionError("server went away")
        return dspy.Prediction(answer=next(iter(options)))


def examples(n: int) -> list[dspy.Example]:
    return [make_ex(f"Q{1 + i % 5}", "1", person_id=f"p{i // 5}") for i in range(n)]


def test_a_run_whose_first_predictions_all_fail_stops(catalog, tmp_path: Path) -> None:
    program = Flaky(broken=True)
    with pytest.raises(RunStopped, match=f"the first {FAIL_FAST} predictions all failed .*ConnectionError"):
        evaluate(program, examples(100), tmp_path, progress=False)
    assert program.calls < 100  # stopped early, not after every item failed
    assert len(RunStore(tmp_path).frame()) >= FAIL_FAST


def test_resume_retries_failed_predictions(catalog, tmp_path: Path) -> None:
    items = examples(10)  # under FAIL_FAST: the run finishes with every item failed
    failed = evaluate(Flaky(broken=True), items, tmp_path, progress=False, resamples=0)
    assert failed.metrics["failed"] == 10 and failed.metrics["accuracy"] == 0.0
    kept = evaluate(Flaky(broken=False), items, tmp_path, progress=False, resamples=0, retry_failed=False)
    assert kept.metrics["failed"] == 10
    fixed = evaluate(Flaky(broken=False), items, tmp_path, progress=False, resamples=0)
    assert fixed.metrics["failed"] == 0 and fixed.metrics["accuracy"] == 1.0 and fixed.metrics["n"] == 10
    assert len(RunStore(tmp_path).frame()) == 10  # replaced, not duplicated


def test_a_store_that_cannot_be_written_stops_the_run(catalog, tmp_path: Path, monkeypatch) -> None:
    real_add, calls = RunStore.add, {"n": 0}

    def disk_full(self, row):
        calls["n"] += 1
        if calls["n"] > 3:
            raise sqlite3.OperationalError("database or disk is full")
        real_add(self, row)

    monkeypatch.setattr(RunStore, "add", disk_full)
    with pytest.raises(RunStopped, match="cannot store predictions .*disk is full.*--resume") as info:
        evaluate(Flaky(broken=False), examples(40), tmp_path, progress=False)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(RunStore, "add", real_add)
    assert len(RunStore(tmp_path).frame()) == 3  # what was committed is kept
    resumed = evaluate(Flaky(broken=False), examples(40), tmp_path, progress=False, resamples=0)
    assert resumed.metrics["n"] == 40


def test_a_damaged_store_is_a_clear_error(catalog, tmp_path: Path) -> None:
    (tmp_path / "predictions.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStopped, match="predictions.sqlite: not a readable predictions store"):
        evaluate(Flaky(broken=False), examples(5), tmp_path, progress=False)


def test_metrics_carry_intervals_and_the_random_floor(catalog, tmp_path: Path) -> None:
    result = evaluate(Flaky(broken=False), examples(40), tmp_path, progress=False, resamples=200)
    m = result.metrics
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
    assert m["random_accuracy"] == pytest.approx(0.25)  # every hand-made question has 4 options
