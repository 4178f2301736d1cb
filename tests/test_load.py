"""One resolver for compiled programs: a saved folder, `runs:/<id>`, `models:/<name>/<version>`, `models:/<name>@alias`
and `models:/<model id>` work in `valuesim.load` and in every command that takes a program (evaluate, bench,
simulate), and none of them unpickles anything unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from test_compile import compile_run, in_compile_home  # noqa: F401  (module fixtures: one compile with a DummyLM)
from typer.testing import CliRunner

import valuesim
from valuesim.cli import app
from valuesim.errors import ProgramLoadError
from valuesim.programs.valuesim import ValueSim


@pytest.fixture(scope="module")
def uris(compile_run) -> dict[str, str]:  # noqa: F811
    """Every form of URI for the one compiled program, with the model registered twice (version 1 and an alias)."""
    import mlflow

    from valuesim.tracking import setup_tracking

    s = compile_run["summary"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VALUESIM_HOME", str(compile_run["home"]))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        setup_tracking()
        version = mlflow.register_model(s["model_uri"], "valuesim-test")
        mlflow.MlflowClient().set_registered_model_alias("valuesim-test", "champion", version.version)
    return {
        "folder": s["program_dir"],
        "run": s["program_uri"],
        "model-version": f"models:/valuesim-test/{version.version}",
        "model-alias": "models:/valuesim-test@champion",
        "model-id": s["model_uri"],
    }


@pytest.fixture
def home(in_compile_home):  # noqa: F811
    """The compile run's home (its MLflow store); commands that run the program use --lm dummy."""
    return in_compile_home


def demos_reached_prompts() -> bool:
    """The compiled demos carry the compile's backstories ("STORY of <person>"): seen in a prompt of --lm dummy."""
    return any("STORY of" in str(h["messages"]) for h in dspy.settings.lm.history)


FORMS = ["folder", "run", "model-version", "model-alias", "model-id"]


@pytest.mark.parametrize("form", FORMS)
def test_valuesim_load_every_form(home, uris, form: str) -> None:
    program = valuesim.load(uris[form])
    reference = valuesim.load(uris["folder"])
    assert isinstance(program, ValueSim)
    assert program.dump_state() == reference.dump_state()
    assert len(program.cognitive.demos) == 2  # the compiled demos came along


def test_unknown_models_are_one_line_errors(home, uris) -> None:
    with pytest.raises(ProgramLoadError, match="models:/no-such-model/1: no such model"):
        valuesim.load("models:/no-such-model/1")
    with pytest.raises(ProgramLoadError, match="no such model"):
        valuesim.load("models:/valuesim-test/99")


def test_load_never_unpickles(home, uris) -> None:
    """The logged model is MLflow's models-from-code (a Python file and the program's JSON state): no pickle is
    written, every form loads the JSON state, and allow_pickle=True (for models logged with MLflow's dspy flavor by
    an older ValueSim) is a one-line error on it."""
    assert not list(Path(home["home"], "mlruns").rglob("*.pkl"))
    program = valuesim.load(uris["model-id"])
    assert isinstance(program, ValueSim)
    with pytest.raises(ProgramLoadError, match="cannot be loaded"):
        valuesim.load(uris["model-id"], allow_pickle=True)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("form", FORMS)
def test_evaluate_takes_every_form(home, uris, form: str, tmp_path: Path) -> None:
    bench = home["bench"]
    r = invoke(
        "evaluate", "--program", uris[form], "--data", bench.path, "--persons", 2, "--questions", 3,
        "--history", 20, "--run-dir", tmp_path / "run", "--lm", "dummy", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["params"]["program"] == "valuesim" and out["params"]["program_uri"] == uris[form]
    assert out["metrics"]["n"] == 6
    assert out["metrics"]["invalid"] == 0 and out["metrics"]["failed"] == 0
    assert demos_reached_prompts()


@pytest.mark.parametrize("form", ["run", "model-version", "model-id"])
def test_bench_takes_every_form(home, uris, form: str, tmp_path: Path) -> None:
    bench = home["bench"]
    r = invoke(
        "bench", "--programs", f"country,{uris[form]}", "--data", bench.path, "--persons", 2, "--questions", 3,
        "--history", 20, "--out", tmp_path / "bench", "--lm", "dummy", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = {row["program"]: row for row in json.loads(r.stdout)["results"]}
    assert rows[uris[form]]["n"] == 6 and rows[uris[form]]["invalid"] == 0
    assert demos_reached_prompts()


@pytest.mark.parametrize("form", FORMS)
def test_simulate_takes_every_form(home, uris, form: str, tmp_path: Path) -> None:
    bench = home["bench"]
    ex = bench.examples("values", "dev", 1, 20, 1, 1)[0]
    person = tmp_path / "p.json"
    person.write_text(json.dumps({"country": ex.country, "answers": ex.known}))
    r = invoke(
        "simulate", "--program", uris[form], "--data", bench.path, "--person", person, "--question", ex.question_code,
        "--lm", "dummy", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert demos_reached_prompts()
    assert out["valid"] and set(out) >= {"cognitive_answer", "affective_answer", "behavioral_answer"}
