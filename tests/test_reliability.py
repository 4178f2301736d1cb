"""Long runs survive faults: kill -9 and resume, a server that is down, two runs sharing one MLflow store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

VALUESIM = [sys.executable, "-m", "valuesim.cli"]


def cli(args: list[str], home: Path, **kw) -> subprocess.CompletedProcess:
    # a key, so a local "server" is reached (without one LiteLLM stops before connecting: a different error)
    env = {"OPENAI_API_KEY": "none", **os.environ, "VALUESIM_HOME": str(home), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([*VALUESIM, *args], env=env, capture_output=True, text=True, timeout=600, **kw)


def stored(run_dir: Path) -> int:
    db = run_dir / "predictions.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def test_kill_9_mid_run_then_resume_equals_uninterrupted(bench_small: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--program", "knn", "--data", str(bench_small), "--split", "dev", "--history", "232"]
    # Uninterrupted reference run.
    ref = cli([*args, "--run-dir", str(tmp_path / "ref"), "--json"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    expected = json.loads(ref.stdout)["metrics"]
    total = stored(tmp_path / "ref")
    assert total == expected["n"] and total > 100

    # Same run, killed with SIGKILL once some predictions are stored.
    run_dir = tmp_path / "killed"
    # one person per stored batch, so the kill lands between batches (programs without an LM store in batches)
    env = {**os.environ, "VALUESIM_HOME": str(tmp_path), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "VALUESIM_BATCH_PERSONS": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [*VALUESIM, *args, "--run-dir", str(run_dir), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while stored(run_dir) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before_resume = stored(run_dir)
    assert 0 < before_resume < total, "the kill must land mid-run"

    resumed = cli([*args, "--run-dir", str(run_dir), "--resume", "--json"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads(resumed.stdout)["metrics"]
    assert stored(run_dir) == total  # nothing lost, nothing duplicated (the key is the primary key)
    for key in ("n", "accuracy", "within_one", "nmae", "invalid", "macro_accuracy"):
        assert metrics[key] == pytest.approx(expected[key]), key


def test_existing_run_dir_needs_resume(bench_small: Path, tmp_path: Path) -> None:
    args = [
        "evaluate",
        "--program",
        "majority",
        "--data",
        str(bench_small),
        "--persons",
        "2",
        "--questions",
        "3",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert cli(args, tmp_path).returncode == 0
    again = cli(args, tmp_path)
    assert again.returncode != 0 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_server_down_at_start_is_one_line_error(bench_small: Path, tmp_path: Path) -> None:
    # Nothing listens on port 9 of the loopback: connection refused.
    res = cli(
        [
            "evaluate",
            "--program",
            "demographics",
            "--data",
            str(bench_small),
            "--persons",
            "1",
            "--questions",
            "1",
            "--lm",
            "openai/test-model",
            "--api-base",
            "http://127.0.0.1:9/v1",
        ],
        tmp_path,
    )
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "not reachable" in res.stderr and "127.0.0.1:9" in res.stderr


def test_two_runs_at_once_share_the_mlflow_store(bench_small: Path, tmp_path: Path) -> None:
    env = {**os.environ, "VALUESIM_HOME": str(tmp_path), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    procs = [
        subprocess.Popen(
            [*VALUESIM, "evaluate", "--program", program, "--data", str(bench_small), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for program in ("knn", "country")
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    run_ids = [json.loads(o[0])["params"]["mlflow_run_id"] for o in outs]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    for run_id, (stdout, _) in zip(run_ids, outs, strict=True):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["accuracy"] == pytest.approx(json.loads(stdout)["metrics"]["accuracy"])
        assert run.data.params["dataset"]
        assert any(a.path == "predictions.json" for a in client.list_artifacts(run_id))


def test_a_server_that_never_answers_is_a_bounded_error(bench_small: Path, tmp_path: Path) -> None:
    """A server that accepts connections and never answers used to hang `evaluate` forever."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    held: list[socket.socket] = []

    def accept_and_hold() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never read, never answered

    threading.Thread(target=accept_and_hold, daemon=True).start()
    args = ["evaluate", "--program", "demographics", "--data", str(bench_small), "--persons", "1",
            "--lm", "openai/stuck", "--api-base", f"http://127.0.0.1:{port}/v1", "--timeout", "2"]  # fmt: skip
    r = cli(args, tmp_path)  # a hang would end in cli's subprocess timeout (TimeoutExpired)
    server.close()
    assert r.returncode == 1
    assert "is not reachable" in r.stderr and "Traceback" not in r.stderr
