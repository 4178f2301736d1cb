"""Prompt tokens the engine evaluates per ValueSim prediction: naive against the cheap configuration.

    .venv/bin/python scripts/prefix_cache_check.py --lm gemma --persons 1 --questions 10

Modes (comma-separated in --modes):
    naive   a backstory written for every question, every prompt evaluated whole (engine prefix cache off)
    off     backstory once per person, prefix cache off
    last    backstory once per person, llama.cpp reuses the prefix shared with the previous prompt only
    ram     backstory once per person, saved KV states of earlier prompts restored (the default engine setting)
Runs the same examples under each mode with DSPy's cache disabled, and checks that the answers are identical.
"""

import argparse
import json
import time
import warnings

import dspy

from valuesim.data.benchmark import Benchmark
from valuesim.lm import build_lm, engine_of
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--lm", default="gemma")
ap.add_argument("--program", default="valuesim")
ap.add_argument("--persons", type=int, default=1)
ap.add_argument("--questions", type=int, default=4)
ap.add_argument("--history", type=int, default=232)
ap.add_argument("--modes", default="naive,ram")
args = ap.parse_args()

examples = Benchmark().examples("values", "dev", 1, args.history, args.persons, args.questions)
rows, answers = [], {}
for mode in args.modes.split(","):
    lm = build_lm(args.lm, cache=False, prefix_cache="off" if mode == "naive" else mode)
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    program = PROGRAMS[args.program](**({"reuse_backstory": False} if mode == "naive" else {}))
    engine = engine_of(lm)
    engine.stats.reset()
    t0 = time.perf_counter()
    answers[mode] = [program(**ex.inputs()).answer for ex in examples]
    s = engine.stats
    rows.append({"mode": mode, "predictions": len(examples), "calls": s.calls,
                 "prompt_tokens_total": s.prompt_tokens_total, "prompt_tokens_evaluated": s.prompt_tokens_evaluated,
                 "completion_tokens": s.completion_tokens,
                 "evaluated_per_prediction": round(s.prompt_tokens_evaluated / len(examples), 1),
                 "seconds_per_prediction": round((time.perf_counter() - t0) / len(examples), 2)})
    print(json.dumps(rows[-1]), flush=True)
modes = list(answers)
print(json.dumps({"identical_answers": all(answers[m] == answers[modes[0]] for m in modes), "answers": answers}))
