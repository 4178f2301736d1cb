"""Resident memory after each prediction of one program on the embedded model (checks the prefix cache's bound).

    .venv/bin/python scripts/memory_check.py demographics ram      # program, prefix cache (off/last/ram)
"""

import sys
import time
import warnings

import dspy

from valuesim.data.benchmark import Benchmark
from valuesim.lm import build_lm
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter

warnings.filterwarnings("ignore")
program_name, mode = (sys.argv[1:3] + ["demographics", "ram"][len(sys.argv[1:3]) :])[:2]
examples = Benchmark().examples("values", "dev", 1, 232, persons=1, questions=4)
dspy.configure(lm=build_lm("gemma", cache=False, prefix_cache=mode), adapter=OptionsAdapter())
program = PROGRAMS[program_name]()


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


print(f"start rss {rss_mb():.0f} MB", flush=True)
for ex in examples:
    t0 = time.perf_counter()
    pred = program(**ex.inputs())
    print(f"{ex.question_code} -> {pred.answer} {time.perf_counter() - t0:.1f}s rss {rss_mb():.0f} MB", flush=True)
