"""`valuesim ui`: MLflow's UI on this project's runs, stopped cleanly.

MLflow's server is a tree of processes (the server, its gunicorn/uvicorn workers, a job queue). It is started in
its own session and process group, and the whole group is stopped when `valuesim ui` ends: on SIGTERM or SIGINT
(Ctrl-C), on an error, or when the server exits by itself. Stopping sends SIGTERM to the group, waits up to
STOP_GRACE seconds, then sends SIGKILL. A stop asked by SIGTERM/SIGINT exits 0; a server that exits by itself with
an error exits with its code and one line. A port already in use is refused before anything starts (exit 1).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from valuesim.cli.options import console, fail
from valuesim.files import first_line

if TYPE_CHECKING:
    import subprocess

# MLflow 3.17's UI opens experiments on its GenAI pages unless its "Model training" toggle is on: the toggle (kept in
# the browser's storage) or the URL parameter workflowType decides, and with the toggle shown the UI ignores the
# experiment's mlflow.experimentKind tag. So every link printed carries the parameter; an experiment's own link
# goes to its runs table (the route /experiments/<id>/runs).
ML_VIEW = "?workflowType=machine_learning"
RUNS_PAGE = f"#/experiments{ML_VIEW}"


def experiment_links(base: str) -> list[str]:
    """One line per ValueSim experiment in the store: its name and the link to its runs table."""
    from valuesim.tracking import valuesim_experiments

    return [f"  {name}: {base}/#/experiments/{eid}/runs{ML_VIEW}" for name, eid in valuesim_experiments().items()]


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE = 10.0  # seconds MLflow's processes get to exit after SIGTERM before SIGKILL


def check_port(host: str, port: int) -> None:
    """Refuse (one line, exit 1) unless a server could listen on (host, port) now. SO_REUSEADDR, as MLflow's
    servers set it: connections of a stopped server still in TIME_WAIT do not count as "in use"."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        fail(f"--host {host}: cannot resolve it ({e.strerror})")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fail(f"{host}:{port} is already in use (another `valuesim ui`?); choose another with --port")
            fail(f"cannot serve on {host}:{port}: {e.strerror}")


def group_alive(server: subprocess.Popen) -> bool:
    """Whether any process of the server's process group is left (the server itself is reaped here)."""
    server.poll()
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by another user's process: ours are gone
        return False
    return True


def stop_group(server: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """Stop the server's whole process group: SIGTERM, up to `grace` seconds, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not group_alive(server):
            return
        try:
            os.killpg(server.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while group_alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 to reach it from other machines)")] = "127.0.0.1",
) -> None:
    """Open MLflow's UI on this project's runs (mlruns/ under VALUESIM_HOME, or MLFLOW_TRACKING_URI).

    With MLFLOW_TRACKING_URI set to a tracking server (http:// or https://), nothing is started: the link to that
    server's own UI is printed.

    Open a printed link: it switches MLflow's "Model training" view on, so experiments open on their runs table
    (one link per ValueSim experiment). Add the columns accuracy, accuracy_ci_low, accuracy_ci_high and
    n_predictions from "Columns" to compare runs.
    Ctrl-C or SIGTERM stops the server and all its workers (exit 0).

    Example:
        valuesim ui --port 5000
    """
    import subprocess

    from valuesim.tracking import is_server, setup_tracking, tracking_uri

    if is_server():  # MLFLOW_TRACKING_URI names a tracking server: its UI is already served there
        url = tracking_uri().rstrip("/")
        # one quick try: MLflow's client otherwise retries a server that is down for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            links = experiment_links(url)
        except Exception as e:  # noqa: BLE001 - MLflow raises several kinds for a server it cannot reach
            fail(f"MLFLOW_TRACKING_URI={url}: the tracking server does not answer ({first_line(e)})")
        console.print(f"MLflow UI of the tracking server {url}: open {url}/{RUNS_PAGE}")
        console.print("\n".join(links), highlight=False)
        return
    check_port(host, port)
    setup_tracking()  # creates the store (and its schema) if no run was logged yet
    env = dict(os.environ)  # with config's LITELLM_LOCAL_MODEL_COST_MAP: no network for LiteLLM's price table
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", host]
    cmd += ["--port", str(port)]

    # The handlers only note the signal: the loop below sees it and the `finally` stops the group, so a signal
    # arriving at any moment (even while the server is being started) leaves no process behind.
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    server: subprocess.Popen | None = None
    try:
        server = subprocess.Popen(cmd, env=env, start_new_session=True)
        console.print(f"MLflow UI for {tracking_uri()}: open http://{host}:{port}/{RUNS_PAGE} (Ctrl-C to stop)")
        console.print("\n".join(experiment_links(f"http://{host}:{port}")), highlight=False)
        while not stop and server.poll() is None:
            time.sleep(0.2)
    finally:
        if server is not None:
            stop_group(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop:
        console.print(f"Stopped MLflow's UI ({signal.Signals(stop[0]).name})")
        return
    code = server.returncode
    if code != 0:
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        console.print(
            f"[red]Error:[/red] MLflow's UI server exited with code {code}; its log is above", highlight=False
        )
        raise typer.Exit(code)
