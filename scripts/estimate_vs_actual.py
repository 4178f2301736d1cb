"""Estimate, run and compare on a real OpenAI-compatible server, then tabulate estimated against recorded cost.

Runs the README's three commands (`valuesim estimate`, `valuesim bench`, `valuesim estimate --actual`) against
llama-cpp-python's server with SmolLM2 on 127.0.0.1, exactly as a user runs them against vLLM, then prints one
markdown row per program: LM calls, prompt tokens (LiteLLM's count and the server tokenizer's count against what
the server reported), completion tokens (bound against actual), cached prompt tokens, and dollars at a listed
model's rates (SmolLM2 has no price). SmolLM2's answers mean nothing about persons: only the accounting is measured.

    .venv/bin/python scripts/estimate_vs_actual.py [--programs demographics,full-info,valuesim] [--persons 2]
        [--questions 2] [--history 58] [--price-as openai/gpt-4o-mini] [--data data/benchmark] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from valuesim.estimate.runs import dollars, price
from valuesim.testing.servers import free_port, start_server

VALUESIM = str(Path(sys.executable).with_name("valuesim"))


def run(args: list[str], env: dict[str, str]) -> str:
    """Print the command, run it (its stderr passes through), print and return its stdout."""
    print("\n$ " + " ".join(args), flush=True)
    done = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"failed with exit code {done.returncode}")
    print(done.stdout, flush=True)
    return done.stdout


def pct(estimate: int, actual: int) -> str:
    return f"{100 * (estimate - actual) / actual:+.1f}%" if actual else "n/a"


def usd(v: float | None) -> str:
    return "n/a" if v is None else f"${v:.5f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", default="demographics,full-info,valuesim")
    ap.add_argument("--persons", default="2")
    ap.add_argument("--questions", default="2")
    ap.add_argument("--history", default="58")
    ap.add_argument("--price-as", default="openai/gpt-4o-mini", help="LiteLLM model whose rates price the tokens")
    ap.add_argument("--data", default="data/benchmark")
    ap.add_argument("--home", help="VALUESIM_HOME (a rerun resumes its bench) [default: a new temp folder]")
    a = ap.parse_args()

    home = a.home or tempfile.mkdtemp(prefix="estimate-vs-actual-")
    env = {
        **os.environ,
        "OPENAI_API_KEY": "local",  # any key: the local server checks none
        "VALUESIM_HOME": home,
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "COLUMNS": "160",  # tables unwrapped in a log
    }
    sel = ["--programs", a.programs, "--persons", a.persons, "--questions", a.questions, "--history", a.history,
           "--data", str(Path(a.data).resolve())]  # fmt: skip
    port = free_port()
    lm = ["--lm", "openai/smollm2", "--api-base", f"http://127.0.0.1:{port}/v1"]
    bench = str(Path(home, "bench"))
    server = start_server(port, n_ctx=8192)  # full-info at history 232 takes about 4,600 tokens
    try:
        t0 = time.perf_counter()
        run([VALUESIM, "estimate", *sel, *lm], env)
        print(f"(estimate: {time.perf_counter() - t0:.1f} s)")
        t0 = time.perf_counter()
        run([VALUESIM, "bench", *sel, *lm, "--threads", "2", "--timeout", "900", "--no-cache", "--out", bench], env)
        print(f"(bench: {time.perf_counter() - t0:.0f} s)")
        run([VALUESIM, "estimate", *sel, *lm, "--actual", bench], env)
        litellm = json.loads(run([VALUESIM, "estimate", *sel, *lm, "--actual", bench, "--json"], env))
        tokenize = ["--tokenize-url", f"http://127.0.0.1:{port}/extras/tokenize/count"]
        served = json.loads(run([VALUESIM, "estimate", *sel, *lm, *tokenize, "--actual", bench, "--json"], env))
    finally:
        server.terminate()
        server.wait(timeout=30)

    rates = price(a.price_as)
    print(f"\nPrompt tokens counted by {litellm['tokenizer']} (LiteLLM) and by {served['tokenizer']}; dollars at "
          f"{a.price_as}'s rates per million tokens {rates.get('usd_per_million')}:\n")  # fmt: skip
    print(
        "| program | LM calls: estimate / recorded | prompt tokens: LiteLLM / server tokenizer / recorded "
        "| completion tokens: bound / recorded | cached prompt tokens | dollars: bound / recorded |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for est, tok in zip(litellm["programs"], served["programs"], strict=True):
        act = est.get("actual")
        if not act or not act["lm_calls"]:
            continue
        b = "≤ " if est["prompt_tokens_are_bound"] else ""
        est_usd = dollars(rates, est["prompt_tokens"], est["completion_tokens_max"])
        act_usd = dollars(rates, act["prompt_tokens"], act["completion_tokens"], act["cached_tokens"])
        print(f"| {est['program']} | {b}{est['lm_calls']} / {act['lm_calls']} "
              f"| {b}{est['prompt_tokens']:,} ({pct(est['prompt_tokens'], act['prompt_tokens'])}) / "
              f"{b}{tok['prompt_tokens']:,} ({pct(tok['prompt_tokens'], act['prompt_tokens'])}) / "
              f"{act['prompt_tokens']:,} | ≤ {est['completion_tokens_max']:,} / {act['completion_tokens']:,} "
              f"| {act['cached_tokens']:,} | ≤ {usd(est_usd)} / {usd(act_usd)} |")  # fmt: skip


if __name__ == "__main__":
    main()
