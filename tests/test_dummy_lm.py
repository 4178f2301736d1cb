"""`--lm dummy`: every LM program runs end to end without a model, answering each question's first option; the
dry-run LM reads the output schema DSPy sends, so it follows whatever fields a signature declares."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.lm.dummy import DRY_RUN_TEXT, first_value

LM_PROGRAMS = ["demographics", "full-info", "backstory", "valuesim", "rag"]


def test_first_value_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "analysis": {"type": "string", "maxLength": 9},
            "answer": {"type": "string", "enum": ["3", "1", "2"]},
            "score": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "maybe": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            "choice": {"$ref": "#/$defs/Choice"},
        },
    }
    defs = {"Choice": {"enum": ["b", "a"]}}
    assert first_value(schema, defs) == {
        "analysis": DRY_RUN_TEXT[:9],
        "answer": "3",  # the first option in the order given, not the smallest code
        "score": 0,
        "tags": [],
        "maybe": False,
        "choice": "b",
    }


@pytest.mark.parametrize("program", LM_PROGRAMS)
def test_every_lm_program_dry_runs(program: str, bench_small: Path) -> None:
    """Each program through the runner with --lm dummy: valid answers, each its question's first option."""
    from valuesim.data.benchmark import Benchmark
    from valuesim.run.runner import build_program, configure_lm

    bench = Benchmark(bench_small)
    prog, _, _ = build_program(program, bench)
    info = configure_lm("dummy")
    assert info["model"] == "dummy" and info["engine"] == "dummy"
    for ex in bench.examples("values", "dev", 1, 20, persons=2, questions=2):
        pred = prog(**ex.inputs())
        assert pred.answer == next(iter(ex.options)), (program, ex.options, pred)
        for field in ("backstory", "cognitive_analysis", "affective_analysis", "behavioral_analysis"):
            if field in pred:
                assert pred[field] == DRY_RUN_TEXT, (program, field)
    assert dspy.settings.lm.engine.calls > 0


def test_evaluate_with_dummy_lm(bench_small: Path, tmp_path: Path) -> None:
    """The whole evaluate command (store, metrics, MLflow) without a model."""
    from valuesim.data.benchmark import Benchmark

    run_dir = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [str(a) for a in ("evaluate", "--program", "valuesim", "--lm", "dummy", "--data", bench_small,
                          "--persons", 2, "--questions", 3, "--history", 20, "--resamples", 0,
                          "--run-dir", run_dir, "--json")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["params"]["lm"] == "dummy"
    assert out["metrics"]["n"] == 6 and out["metrics"]["invalid"] == 0 and out["metrics"]["failed"] == 0
    selected = Benchmark(bench_small).examples("values", "dev", 1, 20, persons=2, questions=3)
    first = {(ex.person_id, ex.question_code): next(iter(ex.options)) for ex in selected}
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        stored = {(p, q): a for p, q, a in db.execute("SELECT person_id, question, answer FROM predictions")}
    assert stored == first
