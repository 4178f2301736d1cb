"""MLflow as a team uses it: a real `mlflow server` (SQLite backend, proxied artifacts in its own folder) started
on a free loopback port and stopped by process group. A compile on one machine puts its program and model on the
server, not on the client's disk; a client with another (empty) VALUESIM_HOME loads the program from the server;
`valuesim ui` with the server's URI prints the server's UI instead of starting one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from valuesim.cli.ui import stop_group
from valuesim.testing.servers import free_port, start_mlflow_server

VALUESIM = Path(sys.executable).parent / "valuesim"


def client_env(home: Path, uri: str) -> dict[str, str]:
    return {**os.environ, "VALUESIM_HOME": str(home), "MLFLOW_TRACKING_URI": uri}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_mlflow_server(port, folder)
    try:
        yield {"uri": f"http://127.0.0.1:{port}", "folder": folder}
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def compiled(server: dict, bench_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`valuesim compile --lm dummy` of the backstory program, logged to the server from its own home."""
    home = tmp_path_factory.mktemp("client-home")
    cmd = [str(VALUESIM), "compile", "--program", "backstory", "--lm", "dummy", "--data", str(bench_small),
           "--train", "3", "--dev", "2", "--questions", "2", "--history", "20", "--register", "valuesim-backstory",
           "--json"]  # fmt: skip
    r = subprocess.run(cmd, env=client_env(home, server["uri"]), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return {"home": home, "summary": json.loads(r.stdout)}


def test_artifacts_and_model_land_on_the_server(server: dict, compiled: dict) -> None:
    import mlflow

    run_id = compiled["summary"]["mlflow_run_id"]
    client = mlflow.MlflowClient(tracking_uri=server["uri"])
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/"), experiment.artifact_location
    on_server = {p.relative_to(server["folder"] / "artifacts").as_posix() for p in
                 (server["folder"] / "artifacts").rglob("*") if p.is_file()}  # fmt: skip
    assert any(p.endswith(f"{run_id}/artifacts/program/program.json") for p in on_server), sorted(on_server)
    assert any(p.endswith("/MLmodel") for p in on_server), sorted(on_server)  # the logged model's files
    assert not (compiled["home"] / "mlruns").exists()  # nothing of the run on the client's disk


LOAD = """
import sys, mlflow, valuesim
inputs = {"demographics": ["You are a woman."], "profile": ["You pray every day."],
          "question": "How important is God in your life?", "options": {"1": "Very", "2": "Not at all"}}
for uri in sys.argv[1:]:
    program = valuesim.load(uri, lm="dummy")
    print(uri, type(program).__name__, len(program.answer.demos), program(**inputs).answer)
print("pyfunc", mlflow.pyfunc.load_model(sys.argv[-1]).predict(inputs)["answer"].tolist())
"""


def test_another_machine_loads_the_program_from_the_server(server: dict, compiled: dict, tmp_path: Path) -> None:
    """A teammate: same server, a home that does not exist (none of the compile's files)."""
    s = compiled["summary"]
    uris = [s["program_uri"], s["model_uri"], "models:/valuesim-backstory/1"]
    elsewhere = tmp_path / "teammate-home"
    r = subprocess.run([sys.executable, "-c", LOAD, *uris], env=client_env(elsewhere, server["uri"]),
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    demos = len(json.loads((Path(s["program_dir"]) / "program.json").read_text())["answer"]["demos"])
    assert r.stdout.splitlines() == [*(f"{uri} Backstory {demos} 1" for uri in uris), "pyfunc ['1']"]
    assert not (elsewhere / "mlruns").exists()


def test_ui_with_a_server_uri_prints_the_servers_ui(server: dict, compiled: dict, tmp_path: Path) -> None:
    """No server started; the links go to the server's UI, each experiment's to its runs table."""
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri=server["uri"]).get_experiment_by_name("valuesim-compile")
    r = subprocess.run([str(VALUESIM), "ui", "--port", str(free_port())], env=client_env(tmp_path, server["uri"]),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    printed = r.stdout + r.stderr
    links = [word for word in printed.split() if word.startswith(f"{server['uri']}/#/")]
    assert links, printed
    runs_table = f"{server['uri']}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    assert runs_table in links, printed
    with urllib.request.urlopen(links[0], timeout=30) as page:
        assert page.status == 200 and b'id="root"' in page.read()


def test_ui_with_a_server_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    r = subprocess.run([str(VALUESIM), "ui"], env=client_env(tmp_path, f"http://127.0.0.1:{port}"),
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0] and str(port) in lines[0], r.stderr
