"""Resident memory after each prediction of one program on the embedded model (checks the prefix cache's bound).

.venv/bin/python scripts/memory_check.py demographics ram      # program, prefix cache (off/last/ram)
.venv/bin/python scripts/memory_check.py valuesim ram --persons 2 --questions 10    # a longer run
"""

import argparse
import time
import warnings

import dspy

from valuesim.data.benchmark import Benchmark
from valuesim.lm import build_lm
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("program", nargs="?", default="demographics")
ap.add_argument("mode", nargs="?", default="ram", help="engine prefix cache: off, last or ram")
ap.add_argument("--persons", type=int, default=1)
ap.add_argument("--questions", type=int, default=4)
args = ap.parse_args()
examples = Benchmark().examples("values", "dev", 1, 232, persons=args.persons, questions=args.questions)
dspy.configure(lm=build_lm("gemma", cache=False, prefix_cache=args.mode), adapter=OptionsAdapter())
program = PROGRAMS[args.program]()


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


print(f"start rss {rss_mb():.0f} MB", flush=True)
for ex in examples:
    t0 = time.perf_counter()
    pred = program(**ex.inputs())
    print(f"{ex.question_code} -> {pred.answer} {time.perf_counter() - t0:.1f}s rss {rss_mb():.0f} MB", flush=True)
