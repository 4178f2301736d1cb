"""MLflow as a user meets it: experiments open on their runs table, a small well-named metric set, the bench's
history curve drawn by MLflow (step = history size), parameters that describe what ran, no empty logged models."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from helpers import ScriptedLM, make_ex, use, views_reply
from test_compile import compile_run, in_compile_home  # noqa: F401  (module fixtures: one compile with a DummyLM)
from test_rag import BagOfWords
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.programs import PROGRAMS
from valuesim.tracking import KIND, KIND_TAG, setup_tracking

ROOT = Path(__file__).resolve().parents[1]


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
    assert {"accuracy", "n_predictions", "n_distinct_questions", "n_persons", "country_majority_floor"} <= set(
        child.metrics
    )
    # what was asked (params) apart from what was used (metrics n_*), one name each
    assert child.params["persons_asked"] == "6" and child.params["questions_per_person"] == "3"
    assert not {"persons", "questions", "n_persons", "program_name", "run_dir"} & set(child.params)
    assert child.params["program"] in ("majority", "knn") and "program_uri" not in child.params
    assert child.metrics["n_predictions"] == 6 * 3 and child.metrics["n_persons"] == 6
    for run in children:  # step = history: grouped by program, MLflow draws the bench's curves in one chart
        [point] = client.get_metric_history(run.info.run_id, "accuracy")
        assert point.step == int(run.data.params["history"])
    assert Path(child.tags["valuesim.run_dir"]).is_dir()  # a local path: a tag, not a param
    for tags in (child.tags, parent.data.tags):
        assert tags["valuesim.version"] and len(tags["git.commit"]) == 40  # the tests run from a git checkout
    assert not {"lm_calls_per_pred", "prompt_tokens_per_pred"} & set(child.metrics)  # no LM, no LM cost
    # accuracy-like metrics and distribution scores with CIs, population measures, counts, floors
    assert {"log_loss", "log_loss_ci_low", "brier", "rps", "ece", "uniform_log_loss"} <= set(child.metrics)
    assert len(child.metrics) <= 40


SIGTERMED = """
import faulthandler, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal (a background job ignores it)
faulthandler.register(signal.SIGUSR1)  # a child that does not stop shows its stack (see the test's finally)
from valuesim import tracking
with tracking.run("valuesim-evaluate", "stopped", {"program": "knn"}) as active:
    print("run", active.info.run_id, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_by_a_signal_ends_killed(sig: signal.Signals, tmp_path: Path) -> None:
    """`kill <pid>` or Ctrl-C of an evaluate or compile: the MLflow run ends KILLED (not RUNNING forever)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"VALUESIM_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERMED], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # the line the child prints inside the run (not whatever else might reach its stdout first)
        run_id = next((line.split()[1] for line in proc.stdout if line.startswith("run ")), "")
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        # SIGTERM: exit 143 as the default handler's death would show; SIGINT: Python's KeyboardInterrupt exit
        assert code == (128 + sig if sig == signal.SIGTERM else -sig), code
    finally:
        if proc.poll() is None:  # it did not stop (once in CI, not reproduced in 60 tries): its stack, then kill it
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            proc.wait()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None


def test_compile_leaves_no_pending_models_and_no_prompt_traces(in_compile_home) -> None:  # noqa: F811
    from mlflow.entities import LoggedModelStatus

    setup_tracking()
    client = mlflow.MlflowClient()
    run = client.get_run(in_compile_home["summary"]["mlflow_run_id"])
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models and all(m.status != LoggedModelStatus.PENDING for m in models)
    # every model the run lists as an output exists (none deleted behind it): the program's model only
    outputs = [client.get_logged_model(m.model_id) for m in run.outputs.model_outputs]
    assert [m.name for m in outputs] == ["valuesim-valuesim"] and f"models:/{outputs[0].model_id}" == (
        in_compile_home["summary"]["model_uri"]
    )
    traces = mlflow.search_traces(locations=[run.info.experiment_id], return_type="list")
    roots = [s.name for t in traces for s in t.data.spans if s.parent_id is None]
    assert roots and not [n for n in roots if n.endswith(".format")]  # rendering prompt files is not traced


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (`from a import b` counts as a and a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_tracking_imports_no_program_and_programs_import_no_tracking() -> None:
    assert not {m for m in imported_modules(ROOT / "valuesim" / "tracking.py") if m.startswith("valuesim.programs")}
    for path in sorted((ROOT / "valuesim" / "programs").glob("*.py")):
        assert "valuesim.tracking" not in imported_modules(path), path.name


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("valuesim", {"backstory_words": 80}),
        ("backstory", {}),
        ("full-info", {}),
        ("demographics", {}),
        ("rag", {"embedder": BagOfWords()}),
    ],
)
def test_logged_prompt_is_what_the_program_sends(name: str, settings: dict) -> None:
    """The prompt a program logs for its first module (the backstory writer, or the only answer module) is byte for
    byte the one it sends: with the program's own word budget, and for rag the retrieved statements only."""
    replies = {
        "write": {"backstory": "You grew up in Osaka."},
        **views_reply("1", "1", "1"),
        **{module: {"answer": "1"} for module in ("from_backstory", "from_profile", "from_demographics")},
    }
    lm = use(ScriptedLM(replies))
    program = PROGRAMS[name].from_benchmark(None, **settings)
    example = make_ex(
        question="How often do you pray to God?",
        options={"1": "Every day", "2": "Never"},
        profile=["You pray to God every day.", "You trust your neighbours.", "Work is important."],
    )
    logged = program.prompts(example)
    assert set(logged) == {predictor for predictor, _ in program.named_predictors()}
    program(**example.inputs())
    _, sent = lm.calls[0]
    first = "story.write" if "story.write" in logged else "answer"
    assert logged[first] == "\n\n".join(f"--- {m['role']} ---\n{m['content']}" for m in sent)
    if "story.write" in logged:
        assert f"[[ ## word_budget ## ]]\n{settings.get('backstory_words', 120)}" in logged["story.write"]
    if name == "rag":
        assert "You pray to God every day." in logged["answer"] and "Work is important." not in logged["answer"]
