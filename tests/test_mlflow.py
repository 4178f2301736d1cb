"""MLflow as a user meets it: experiments open on their runs table, a small well-named metric set, the bench's
history curve drawn by MLflow (step = history size), parameters that describe what ran, no empty logged models."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from test_compile import compile_run, in_compile_home  # noqa: F401  (module fixtures: one compile with a DummyLM)
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.tracking import KIND, KIND_TAG, setup_tracking


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bench_of_statistical_programs(bench_small: Path, tmp_path: Path) -> None:
    r = invoke("bench", "--programs", "majority,knn", "--data", bench_small, "--history", "0,58,116",
               "--persons", 6, "--questions", 3, "--out", tmp_path / "b", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    parent_id = json.loads(r.stdout)["mlflow_run_id"]
    setup_tracking()
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags[KIND_TAG] == KIND[KIND_TAG]  # the UI opens the runs table, not the GenAI page
    assert "lm" not in parent.data.params  # no LM ran
    curve = client.get_metric_history(parent_id, "accuracy_knn")
    assert sorted(m.step for m in curve) == [0, 58, 116]
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 6
    child = children[0].data
    assert {"accuracy", "n", "n_questions", "n_persons"} <= set(child.metrics)
    assert "questions" not in child.metrics  # the parameter `questions` is questions per person
    assert not {"lm_calls_per_pred", "prompt_tokens_per_pred"} & set(child.metrics)  # no LM, no LM cost
    assert len(child.metrics) <= 30  # accuracy-like metrics with CIs, population measures, counts, floors


def test_compile_leaves_no_pending_models_and_no_prompt_traces(in_compile_home) -> None:  # noqa: F811
    from mlflow.entities import LoggedModelStatus

    setup_tracking()
    client = mlflow.MlflowClient()
    run = client.get_run(in_compile_home["summary"]["mlflow_run_id"])
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models and all(m.status != LoggedModelStatus.PENDING for m in models)
    traces = mlflow.search_traces(locations=[run.info.experiment_id], return_type="list")
    roots = [s.name for t in traces for s in t.data.spans if s.parent_id is None]
    assert roots and not [n for n in roots if n.endswith(".format")]  # rendering prompt files is not traced
