"""A run folder belongs to one run: --resume and bench reruns refuse other parameters, a second process on the same
folder fails at once, bench children of a dead process end as KILLED, program settings are checked before a run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from test_reliability import VALUESIM
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.errors import ValueSimError
from valuesim.run.folder import claim


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def evaluate(bench: Path, run_dir: Path, *extra) -> object:
    return invoke("evaluate", "--data", bench, "--persons", 5, "--run-dir", run_dir, "--json", *extra)


@pytest.mark.parametrize(
    "first, second, field",
    [
        (["--program", "majority"], ["--program", "knn"], "program"),
        (["--program", "knn", "--history", "232"], ["--program", "knn", "--history", "0"], "history"),
        (["--program", "knn"], ["--program", "knn", "--set", "k=5"], "settings"),
        (["--program", "country", "--fold", "1"], ["--program", "country", "--fold", "2"], "fold"),
    ],
)
def test_resume_refuses_another_run(bench_small: Path, tmp_path: Path, first, second, field: str) -> None:
    run_dir = tmp_path / "run"
    r = evaluate(bench_small, run_dir, *first)
    assert r.exit_code == 0, r.output
    reference = json.loads(r.stdout)["metrics"]
    r = evaluate(bench_small, run_dir, *second, "--resume")
    assert r.exit_code == 1
    assert "holds another run" in r.output and f"{field}:" in r.output
    # the same parameters resume (nothing to do) and report the same numbers
    r = evaluate(bench_small, run_dir, *first, "--resume")
    assert r.exit_code == 0 and json.loads(r.stdout)["metrics"] == reference


def test_a_second_process_on_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    with claim(tmp_path / "run", {"program": "knn"}):
        with pytest.raises(ValueSimError, match="in use by another valuesim process"):
            with claim(tmp_path / "run", {"program": "knn"}):
                pass
    with claim(tmp_path / "run", {"program": "knn"}):  # released when the first run ends
        pass


def test_two_evaluate_processes_on_one_folder(bench_small: Path, tmp_path: Path) -> None:
    """The finding: `--program majority` and `--program knn` on one --run-dir at once both exited 0 reporting
    majority's accuracy. Now one of them runs and the other fails with a clear line."""
    env = {**os.environ, "VALUESIM_HOME": str(tmp_path), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    base = [*VALUESIM, "evaluate", "--data", str(bench_small), "--run-dir", str(tmp_path / "run"), "--json"]
    procs = [
        subprocess.Popen([*base, "--program", p], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in ("knn", "majority")
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], outs
    loser = outs[codes.index(1)][1]
    assert "in use by another valuesim process" in loser or "holds another run" in loser
    winner = json.loads(outs[codes.index(0)][0])
    assert winner["params"]["program"] == ("knn", "majority")[codes.index(0)]


def test_bench_rerun_with_other_parameters_is_refused(bench_small: Path, tmp_path: Path) -> None:
    args = ["bench", "--programs", "majority", "--data", bench_small, "--history", "0", "--out", tmp_path / "b"]
    assert invoke(*args, "--persons", 3, "--questions", 2).exit_code == 0
    r = invoke(*args, "--persons", 3, "--questions", 4)
    assert r.exit_code == 1 and "holds another run" in r.output and "questions:" in r.output


def test_bench_rerun_marks_children_of_a_dead_process_killed(bench_small: Path, tmp_path: Path) -> None:
    import mlflow

    from valuesim.tracking import setup_tracking

    out = tmp_path / "b"
    args = ["bench", "--programs", "majority", "--data", bench_small, "--history", "0", "--persons", 2,
            "--questions", 2, "--out", out]  # fmt: skip
    assert invoke(*args).exit_code == 0
    parent_id = json.loads((out / "bench.json").read_text())["parent_run_id"]
    setup_tracking("valuesim-bench")
    client = mlflow.MlflowClient()
    experiment = client.get_run(parent_id).info.experiment_id
    # what a process killed mid-cell leaves behind: a child run that stays RUNNING
    orphan = client.create_run(experiment, tags={"mlflow.parentRunId": parent_id}, run_name="died").info.run_id
    time.sleep(0.01)
    assert invoke(*args).exit_code == 0
    assert client.get_run(orphan).info.status == "KILLED"


@pytest.mark.parametrize(
    "setting, message",
    [
        ("k=abc", "--set k='abc': input should be a valid integer (program 'knn')"),
        ("k=2.5", "input should be a valid integer"),
        ("kk=3", "--set kk: program 'knn' takes k"),
    ],
)
def test_settings_are_checked_before_the_run(bench_small: Path, tmp_path: Path, setting: str, message: str) -> None:
    r = evaluate(bench_small, tmp_path / "run", "--program", "knn", "--set", setting)
    assert r.exit_code == 1 and message in r.output
    assert not (tmp_path / "run" / "predictions.sqlite").exists()
