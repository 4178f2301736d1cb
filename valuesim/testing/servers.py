"""A real OpenAI-compatible server for the tests and scripts: llama-cpp-python's own server with SmolLM2, on a free
loopback port (the served-LM tests, scripts/estimate_vs_actual.py). The caller stops it by PID."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

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
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("llama_cpp.server exited at start") from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not answer /v1/models within 120 s")
