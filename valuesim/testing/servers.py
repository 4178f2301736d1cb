"""Real servers for the tests and scripts, on free loopback ports: llama-cpp-python's own OpenAI-compatible server
with SmolLM2 (the served-LM tests, scripts/estimate_vs_actual.py) and a real `mlflow server` (the tracking-server
tests). The caller stops them by PID (MLflow's by process group)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from valuesim.lm.check import smollm2_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, n_ctx: int = 4096) -> subprocess.Popen:
    """llama-cpp-python's server with SmolLM2 as `smollm2` on 127.0.0.1:`port`; returns once /v1/models answers."""
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_file()), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_ready(proc, "llama_cpp.server", f"http://127.0.0.1:{port}/v1/models", 120, stop=subprocess.Popen.kill)


def start_mlflow_server(port: int, folder: Path) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:`port`, as a team runs one: a SQLite backend (`folder/mlflow.db`) and
    proxied artifacts in `folder/artifacts`. In a session of its own (its workers too), so the caller stops the
    whole process group by `os.killpg(proc.pid, ...)` (valuesim.cli.ui.stop_group). Returns once /health answers."""
    from valuesim.cli.ui import stop_group

    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server writes it while it runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return wait_ready(proc, "mlflow server", f"http://127.0.0.1:{port}/health", 180, stop_group, folder / "server.log")


def wait_ready(
    proc: subprocess.Popen,
    name: str,
    url: str,
    seconds: float,
    stop: Callable[[subprocess.Popen], object],
    log: Path | None = None,
) -> subprocess.Popen:
    """`proc` once `url` answers. If it exits first, an error naming the server `name` (with its `log`); if it does
    not answer within `seconds`, `stop(proc)` and an error."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start" + (f":\n{log.read_text()}" if log else "")) from None
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{name} did not answer {url} within {seconds:.0f} s")
