"""The embedded engine dying mid-run (a segfault, as a CPU-incompatible llama.cpp build does) costs only the
predictions in flight: the finished ones stay in the run store and --resume finishes the run without duplicates.
And a build that cannot run on this CPU is a clear error before the run (valuesim.lm.check)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_lm import _smollm2_available
from test_reliability import VALUESIM, cli, stored

from valuesim.lm.check import EngineCheckError, check_engine


@pytest.mark.llm
@pytest.mark.skipif(not _smollm2_available(), reason="llama_cpp or the SmolLM2 GGUF is not installed")
def test_engine_segfault_mid_run_then_resume(bench_small: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--program", "demographics", "--lm", "smollm2", "--data", str(bench_small),
            "--persons", "4", "--questions", "3", "--run-dir", str(tmp_path / "run"), "--json"]  # fmt: skip
    env = {**os.environ, "VALUESIM_HOME": str(tmp_path), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen([*VALUESIM, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while stored(tmp_path / "run") < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGSEGV)  # what a llama.cpp built for another CPU does inside decode
    assert proc.wait() == -signal.SIGSEGV
    kept = stored(tmp_path / "run")
    assert 3 <= kept < 12, "the crash must land mid-run, after some predictions were committed"

    resumed = cli([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads(resumed.stdout)["metrics"]
    assert metrics["n"] == stored(tmp_path / "run") == 12  # finished once each, nothing lost
    assert metrics["failed"] == 0


def test_engine_check_names_the_file_and_the_reason(tmp_path: Path) -> None:
    fake = tmp_path / "broken.gguf"
    fake.write_text("this is not a GGUF file")
    with pytest.raises(EngineCheckError, match=f"llama.cpp cannot run {fake}"):
        check_engine(fake, timeout=120)


def test_engine_check_reports_a_crash_by_its_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies by SIGILL/SIGSEGV (an AVX-512 or AMX instruction on a CPU without it) is named as such."""
    import valuesim.lm.check as lm_check

    monkeypatch.setattr(lm_check, "_ONE_TOKEN", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    with pytest.raises(EngineCheckError, match="died with SIGILL .*another CPU"):
        check_engine(tmp_path / "any.gguf")


def test_engine_check_command_line() -> None:
    """`python -m valuesim.lm.check FILE` exits 1 with one line for a file llama.cpp cannot run."""
    done = subprocess.run([sys.executable, "-m", "valuesim.lm.check", "/nonexistent.gguf"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("Error: llama.cpp cannot run /nonexistent.gguf")
