"""scripts/mlflow_check.py cannot report OK for the wrong store: it checks the home it is given (VALUESIM_HOME or
--home), fails on a run its process left RUNNING, fails when another server holds its port, and leaves no process
of `valuesim ui` or MLflow's server behind. Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from test_ui import VALUESIM, answers, can_listen, kill_all, tree, ui_env

from valuesim.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
CHECK = [sys.executable, str(ROOT / "scripts" / "mlflow_check.py")]

DIES_RUNNING = """
import os
from valuesim import tracking
with tracking.run("valuesim-evaluate", "died", {"program": "knn"}):
    os._exit(0)  # a process killed hard (SIGKILL, OOM): no chance to end its run
"""


def stale_home(home: Path) -> None:
    """A store whose only run was left RUNNING by a process that died."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"VALUESIM_HOME": str(home)}
    subprocess.run([sys.executable, "-c", DIES_RUNNING], env=env, check=True, timeout=300)


def left_behind(*marks: str) -> list[str]:
    """Command lines of live processes that mention any of `marks` (a home path, a port)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if any(mark in cmd for mark in marks) and entry.name != str(os.getpid()):
            found.append(f"{entry.name}: {cmd}")
    return found


def test_a_stale_running_run_fails_the_check_of_valuesim_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stale_home(home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"VALUESIM_HOME": str(home)}
    r = subprocess.run([*CHECK, "--port", str(port)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "still RUNNING" in r.stdout and f"checked the MLflow store in {home}" in r.stdout, r.stdout
    assert can_listen(port)
    assert not left_behind(str(home), f"--port {port}")


def test_another_server_on_the_port_is_a_failure_not_its_store(tmp_path: Path) -> None:
    """An orphaned `valuesim ui` of another home holds the port: the check says so instead of checking it."""
    port = free_port()
    other = subprocess.Popen([str(VALUESIM), "ui", "--port", str(port)], env=ui_env(tmp_path / "other"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    recorded: set = set()
    try:
        deadline = time.monotonic() + 120
        while not answers(port):
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        recorded = tree(other.pid)
        home = tmp_path / "home"
        stale_home(home)
        r = subprocess.run([*CHECK, "--home", str(home), "--port", str(port)], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert "OK" not in r.stdout.split(), r.stdout
        # whichever it meets first: its own ui refusing the port, or the other server's runs not being its store's
        assert f"--port {port}` exited" in r.stdout or f"does not serve the store in {home}" in r.stdout, r.stdout
        assert not left_behind(str(home))
    finally:
        kill_all(other, recorded | tree(other.pid))
