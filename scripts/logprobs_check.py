"""The LM path's answer distributions against the model's own logits, and what asking for logprobs costs.

    python -m valuesim.testing /tmp/wvs_synth && valuesim data build --wvs /tmp/wvs_synth --out /tmp/bench_synth
    .venv/bin/python scripts/logprobs_check.py --data /tmp/bench_synth --persons 4 --questions 5 --server

For every example the `demographics` program answers on SmolLM2 in-process (prefix cache off: the prompt is one
batch, as a fresh server evaluates it) and, with --server, through llama-cpp-python's server (top_logprobs 20).
Each distribution is compared with `valuesim.testing.logits.reference_probs`: a softmax of a second llama.cpp
instance's logits (logits_all=True) over the option codes at the code's position. Printed per path (JSON lines):
how many examples had an option at the floor (not compared), the largest |p - reference| over the rest, apart
for those whose written code starts another code (1 of a 1-10 scale: its split needs the closing-quote tokens
after it), and the seconds and tokens of the same answer calls with and without logprobs (DSPy's cache off,
calls alternated). --no-embedded skips the in-process path.
"""

import argparse
import json
import os
import time
import warnings

import dspy

from valuesim.data.benchmark import Benchmark
from valuesim.lm import build_lm, engine_of
from valuesim.lm import logprobs as lp
from valuesim.programs.options import OptionsAdapter, with_options
from valuesim.signatures import AnswerFromDemographics
from valuesim.testing.logits import prompt_tokens, reference_llama, reference_probs, token_ids
from valuesim.testing.servers import free_port, start_server

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--persons", type=int, default=4)
ap.add_argument("--questions", type=int, default=5)
ap.add_argument("--history", type=int, default=20)
ap.add_argument("--server", action="store_true")
ap.add_argument("--no-embedded", action="store_true")
args = ap.parse_args()

examples = Benchmark(args.data).examples("values", "dev", 1, args.history, args.persons, args.questions)
ref = reference_llama()
predict = dspy.Predict(AnswerFromDemographics)


def answer(ex: dspy.Example, with_logprobs: bool) -> tuple[dspy.Prediction, float]:
    options = {str(k): v for k, v in ex.options.items()}
    config = lp.request(dspy.settings.lm) if with_logprobs else {}
    start = time.perf_counter()
    pred = predict(
        signature=with_options(predict.signature, options),
        demographics=ex.demographics,
        question=ex.question,
        options=options,
        config=config,
    )
    return pred, time.perf_counter() - start


def check(path: str, lm: dspy.LM, tokens_of) -> dict:
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    diffs, split_diffs, floored = [], [], 0
    seconds, completion = {True: 0.0, False: 0.0}, {True: 0, False: 0}
    for ex in examples:
        options = [str(c) for c in ex.options]
        for with_logprobs in (False, True):  # alternated, so load on the machine falls on both alike
            pred, took = answer(ex, with_logprobs)
            seconds[with_logprobs] += took
            completion[with_logprobs] += lm.history[-1]["usage"]["completion_tokens"]
        read = lp.read_codes(pred.logprobs, options, pred.answer)
        if read is None:
            raise SystemExit(f"{path}: no distribution read for {ex.question_code}")
        probs, at_floor = read
        if at_floor:
            floored += 1
            continue
        prompt, generated = tokens_of(lm, pred)
        expected = reference_probs(ref, prompt, generated, options)
        # written code a prefix of another (1 of 1..10): its split needs the closing-quote tokens after it, of which
        # a server's top 20 list only some; reported apart
        split = any(o != pred.answer and o.startswith(pred.answer[0]) for o in options)
        (split_diffs if split else diffs).append(max(abs(probs[c] - expected[c]) for c in options))
    n = len(examples)
    return {
        "path": path,
        "examples": n,
        "with_an_option_at_the_floor": floored,
        "compared": len(diffs),
        "max_abs_diff": max(diffs) if diffs else None,
        "compared_written_code_starts_another": len(split_diffs),
        "max_abs_diff_written_code_starts_another": max(split_diffs) if split_diffs else None,
        "seconds_per_answer_without_logprobs": round(seconds[False] / n, 3),
        "seconds_per_answer_with_logprobs": round(seconds[True] / n, 3),
        "completion_tokens_without": completion[False],
        "completion_tokens_with": completion[True],
    }


def embedded_tokens(lm: dspy.LM, pred: dspy.Prediction) -> tuple[list[int], list[int]]:
    llm = engine_of(lm).loaded.llm
    tokens = [int(t) for t in llm.input_ids[: llm.n_tokens]]
    n = lm.history[-1]["usage"]["prompt_tokens"]
    return tokens[:n], tokens[n:]


def served_tokens(lm: dspy.LM, pred: dspy.Prediction) -> tuple[list[int], list[int]]:
    entry = lm.history[-1]
    raw = pred.logprobs.model_dump() if hasattr(pred.logprobs, "model_dump") else pred.logprobs
    pieces = [t["token"] for t in raw["content"]]
    end = next(i for i in range(len(pieces)) if '"}' in "".join(pieces[: i + 1])[-3:]) + 1
    return prompt_tokens(ref, entry["messages"]), token_ids(ref, pieces[:end])


if not args.no_embedded:
    embedded = build_lm("smollm2", cache=False, prefix_cache="off", n_ctx=4096)  # the prompt in one batch
    print(json.dumps(check("in-process", embedded, embedded_tokens)), flush=True)
if args.server:
    os.environ.setdefault("OPENAI_API_KEY", "local")
    port = free_port()
    proc = start_server(port)
    try:
        lm = build_lm("openai/smollm2", api_base=f"http://127.0.0.1:{port}/v1", cache=False, timeout=900)
        print(json.dumps(check("llama-cpp-python server", lm, served_tokens)), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
ref.close()  # before interpreter teardown, where llama_cpp's globals are already gone
