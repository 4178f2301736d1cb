"""Prompt and generation speed of the embedded engine (the installed llama-cpp-python build) on one model.

    .venv/bin/python scripts/engine_speed.py [--model gemma] [--prompt-tokens 512] [--gen-tokens 64] [--repeats 3]

Prints the build's CPU features (llama_print_system_info) and tokens/s for prompt evaluation and generation, the
median of the repeats; the KV cache is reset between repeats so every prompt is evaluated whole. A benchmark, not
a test: record its output with the command in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import llama_cpp

from valuesim.lm import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    path = resolve_model(args.model)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=args.threads, verbose=False)
    words = "You strongly agree that people should take more responsibility to provide for themselves. "
    tokens = llm.tokenize((words * 200).encode())[: args.prompt_tokens]
    prompt_rates, gen_rates = [], []
    for _ in range(args.repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        prompt_rates.append(len(tokens) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = 0
        for token in llm.generate([], temp=0.0, reset=False):
            n += 1
            if n >= args.gen_tokens or token == llm.token_eos():
                break
        gen_rates.append(n / (time.perf_counter() - t0))
    print(llama_cpp.llama_print_system_info().decode().strip())
    print(f"model {path.name}, {args.threads} threads, {len(tokens)} prompt tokens, {args.gen_tokens} generated")
    for name, rates in (("prompt", prompt_rates), ("generation", gen_rates)):
        runs = ", ".join(f"{r:.1f}" for r in rates)
        print(f"{name:<10} {statistics.median(rates):8.1f} tokens/s  (runs: {runs})")


if __name__ == "__main__":
    main()
