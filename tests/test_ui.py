"""`valuesim ui` as a user runs it, with real processes: stopped by SIGTERM or SIGINT it leaves no process of
MLflow's server behind and frees its port; a port in use is one line and exit 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from valuesim.testing.servers import free_port

VALUESIM = Path(sys.executable).parent / "valuesim"
START_TIMEOUT = 90.0  # seconds MLflow's server may take to answer
STOP_TIMEOUT = 60.0  # seconds `valuesim ui` may take to stop it (it waits up to 10 s, then SIGKILLs the group)

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid reused by a new process is not the same process


def ui_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"VALUESIM_HOME": str(home)}


def stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, session id, start time) of a process from /proc, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return fields[0], int(fields[1]), int(fields[3]), int(fields[19])


def processes() -> dict[int, tuple[str, int, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := stat(int(entry))) is not None:
            found[int(entry)] = s
    return found


def tree(root: int) -> set[Proc]:
    """`root`'s descendants, and every process in a session one of them leads (MLflow's server's own session)."""
    table = processes()
    pids, grew = {root}, True
    while grew:
        more = {pid for pid, (_, ppid, sid, _) in table.items() if ppid in pids or sid in pids - {root}}
        grew = not more <= pids
        pids |= more
    return {(pid, table[pid][3]) for pid in pids - {root} if pid in table}


def alive(proc: Proc) -> bool:
    s = stat(proc[0])
    return s is not None and s[3] == proc[1] and s[0] not in "ZXx"  # a zombie holds no port and runs nothing


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def can_listen(port: int) -> bool:
    """Whether a server could listen on the port (SO_REUSEADDR as servers do: TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def kill_all(ui: subprocess.Popen, procs: set[Proc]) -> None:
    """Whatever is left of a test's processes, by pid (and the ui's own process group)."""
    for proc in procs:
        if alive(proc):
            os.kill(proc[0], signal.SIGKILL)
    if ui.poll() is None:
        os.killpg(ui.pid, signal.SIGKILL)
        ui.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_ui_leaves_no_process_and_frees_the_port(sig: signal.Signals, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "ui.log"
    recorded: set[Proc] = set()
    with log.open("wb") as sink:
        ui = subprocess.Popen(
            [str(VALUESIM), "ui", "--port", str(port)], env=ui_env(tmp_path / "home"), stdout=sink, stderr=sink,
            start_new_session=True,  # the test's own group for cleaning up; the ui starts MLflow in another
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(port):
            assert ui.poll() is None, f"valuesim ui exited with {ui.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"MLflow's UI did not answer on port {port}:\n{log.read_text()}"
            time.sleep(0.5)
        # workers and the job queue start a while after the first answer: record until nothing new for 5 s
        deadline, quiet_since = time.monotonic() + START_TIMEOUT, time.monotonic()
        while time.monotonic() - quiet_since < 5 and time.monotonic() < deadline:
            if not (now := tree(ui.pid)) <= recorded:
                recorded, quiet_since = recorded | now, time.monotonic()
            time.sleep(0.5)
        sessions = {sid for pid, _ in recorded if (s := stat(pid)) and (sid := s[2]) != ui.pid}
        assert sessions, "MLflow's server does not run in a session of its own"

        os.kill(ui.pid, sig)
        assert ui.wait(timeout=STOP_TIMEOUT) == 0, log.read_text()
        left = [pid for pid, start in recorded if alive((pid, start))]
        assert not left, f"processes left after {sig.name}: {left} of {sorted(p for p, _ in recorded)}"
        in_session = [pid for pid, (state, _, sid, _) in processes().items() if sid in sessions and state not in "ZXx"]
        assert not in_session, f"processes left in MLflow's session after {sig.name}: {in_session}"
        assert can_listen(port), f"port {port} still held after {sig.name}"
        assert "Traceback" not in log.read_text()
    finally:
        kill_all(ui, recorded)


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ui = subprocess.Popen(
            [str(VALUESIM), "ui", "--port", str(port)], env=ui_env(tmp_path / "home"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        recorded: set[Proc] = set()
        try:
            stdout, stderr = ui.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            recorded = tree(ui.pid)
            kill_all(ui, recorded)
            raise
    assert ui.returncode == 1, stderr
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "--port" in lines[0], stderr
    assert stdout == ""
