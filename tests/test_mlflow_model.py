"""The model `valuesim compile` logs, as an MLflow user calls it: a pyfunc model from code (no pickle) named after
the program, with a signature and an input example, registered with --register; `pyfunc.load_model(...).predict`
takes one dict, a list of dicts or a DataFrame; a real `mlflow models serve --env-manager local` answers the REST
payloads, and the compile prints no pickle warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from test_lm import needs_smollm2

from valuesim.cli.ui import stop_group
from valuesim.testing.servers import free_port

BIN = Path(sys.executable).parent
PERSON = {"demographics": ["You are a woman.", "You live in Japan."], "profile": ["You pray every day."]}
ROWS = [
    {**PERSON, "question": "How important is God in your life?", "options": {"1": "Very", "2": "Not at all"}},
    {**PERSON, "question": "Do you trust your neighbours?", "options": {"3": "Somewhat", "4": "Not"}},
]
ANSWERS = ["1", "3"]  # --lm dummy answers the first option


@pytest.fixture(scope="module")
def compiled(bench_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`valuesim compile --lm dummy --register valuesim-backstory` in its own home (a local SQLite store)."""
    home = tmp_path_factory.mktemp("model-home")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"VALUESIM_HOME": str(home)}
    cmd = [str(BIN / "valuesim"), "compile", "--program", "backstory", "--lm", "dummy", "--data", str(bench_small),
           "--train", "3", "--dev", "2", "--questions", "2", "--history", "20", "--register", "valuesim-backstory",
           "--json"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return {"home": home, "summary": json.loads(r.stdout), "stderr": r.stderr}


@pytest.fixture
def store(compiled: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    from valuesim.tracking import setup_tracking

    monkeypatch.setenv("VALUESIM_HOME", str(compiled["home"]))
    setup_tracking()
    return compiled


def test_model_has_a_name_signature_example_and_registry_version(store: dict) -> None:
    s = store["summary"]
    info = mlflow.models.get_model_info(s["model_uri"])
    assert info.name == "valuesim-backstory" and set(info.flavors) == {"python_function"}
    assert info.signature.inputs.input_names() == ["demographics", "profile", "question", "options"]
    assert info.signature.outputs.input_names() == ["answer"]
    assert info.saved_input_example_info is not None
    example = mlflow.models.Model.load(s["model_uri"]).load_input_example()
    assert set(example) == {"demographics", "profile", "question", "options"}  # a real person and question
    assert s["registered_model"] == "valuesim-backstory"
    [version] = mlflow.MlflowClient().search_model_versions("name = 'valuesim-backstory'")
    assert version.run_id == s["mlflow_run_id"]
    run = mlflow.MlflowClient().get_run(s["mlflow_run_id"])
    models = mlflow.MlflowClient().search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.name for m in models] == ["valuesim-backstory"]  # no empty or deleted models beside it


def test_no_pickle_written_or_warned(store: dict) -> None:
    assert not list((store["home"] / "mlruns").rglob("*.pkl"))
    assert ".pkl" not in store["stderr"] and "cloudpickle" not in store["stderr"], store["stderr"]


def test_pyfunc_predict_takes_a_dict_a_list_and_a_dataframe(store: dict) -> None:
    model = mlflow.pyfunc.load_model(store["summary"]["model_uri"])
    assert model.predict(ROWS[0])["answer"].tolist() == ANSWERS[:1]
    assert model.predict(ROWS)["answer"].tolist() == ANSWERS
    assert model.predict(pd.DataFrame(ROWS))["answer"].tolist() == ANSWERS
    with pytest.raises(mlflow.MlflowException, match="missing inputs"):
        model.predict("How important is God in your life?")


def post(port: int, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                     headers={"content-type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_mlflow_models_serve_answers_every_payload(compiled: dict, tmp_path: Path) -> None:
    """`mlflow models serve` from .venv/bin (its uvicorn found on PATH, as the README says), on the registered model."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"PATH": f"{BIN}:{env['PATH']}", "MLFLOW_TRACKING_URI": f"sqlite:///{compiled['home']}/mlruns/mlflow.db",
            "VALUESIM_HOME": str(compiled["home"])}  # fmt: skip
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/valuesim-backstory/1", "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(cmd, env=env, stdout=sink, stderr=sink, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        frame = pd.DataFrame(ROWS)
        for payload, expected in [
            ({"inputs": ROWS[0]}, ANSWERS[:1]),
            ({"inputs": ROWS}, ANSWERS),
            ({"dataframe_records": ROWS}, ANSWERS),
            ({"dataframe_split": frame.to_dict(orient="split")}, ANSWERS),
        ]:
            status, body = post(port, payload)
            assert status == 200, body
            assert [p["answer"] for p in body["predictions"]] == expected, (payload, body)
        # TF-serving rows: MLflow 3.17's parser stacks each column into one numpy array and its schema check
        # refuses the resulting 2-D array for a list-valued input: a 400 naming the schema, never a crash inside
        status, body = post(port, {"instances": ROWS})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
        assert "ndarray" not in body["message"] and "schema" in body["message"], body
    finally:
        stop_group(server)


@pytest.mark.llm
@needs_smollm2
def test_the_model_answers_with_smollm2_given_at_load_time(store: dict) -> None:
    """The compile's LM is only the default: `model_config={"lm": ...}` loads the same program on SmolLM2 (mechanics
    only: a 135M model says nothing about people), and its answers are option codes of each row."""
    model = mlflow.pyfunc.load_model(store["summary"]["model_uri"], model_config={"lm": "smollm2"})
    answers = model.predict(ROWS)["answer"].tolist()
    assert [a in row["options"] for a, row in zip(answers, ROWS, strict=True)] == [True, True], answers
