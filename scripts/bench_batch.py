"""Time the batch path of the programs that need no LM on a built benchmark.

    .venv/bin/python scripts/bench_batch.py --data /tmp/bench-real                  # all dev persons, 5 histories
    .venv/bin/python scripts/bench_batch.py --data DIR --programs knn,ml --persons 200 --history 232

Each cell is what the runner does for one program and history: select the items (valuesim.data.benchmark.items),
build the program from the training respondents, predict in batches, store every prediction in a fresh run
folder, compute the metrics with bootstrap CIs (valuesim.run.predict.evaluate_batch). Prints one row per cell
(program, history, n, accuracy, random floor, log loss, Brier, RPS, ECE, seconds) and the total wall time.
Nothing is logged to MLflow.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.run.predict import evaluate_batch

NO_LM = [name for name in PROGRAMS if not needs_lm(name)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a built benchmark folder (valuesim data build --out)")
    parser.add_argument("--programs", default=",".join(NO_LM))
    parser.add_argument("--history", default="0,58,116,174,232")
    parser.add_argument("--persons", type=int, default=None, help="country-stratified sample (default: all)")
    parser.add_argument("--questions", type=int, default=None, help="first M held-out questions per person")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--protocol", default="values")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap draws for the CIs, as the runner")
    parser.add_argument("--out", default=None, help="run folders go here (default: a temporary folder)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    bench = Benchmark(args.data)
    programs = args.programs.split(",")
    unknown = [p for p in programs if p not in NO_LM]
    if unknown:
        parser.error(f"not a program that needs no LM: {', '.join(unknown)} (choose from {NO_LM})")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-batch-"))
    rows, nan = [], float("nan")
    start = time.perf_counter()
    for history in map(int, args.history.split(",")):
        t0 = time.perf_counter()
        selected = items(bench, args.protocol, args.split, args.fold, history, args.persons, args.questions)
        select_seconds = time.perf_counter() - t0
        for name in programs:
            t0 = time.perf_counter()
            wired = {"protocol": args.protocol} if "protocol" in getattr(PROGRAMS[name], "wired", ()) else {}
            program = PROGRAMS[name].from_benchmark(bench, **wired)
            result = evaluate_batch(
                program, selected, out / f"f{args.fold}-h{history}-{name}", resamples=args.resamples
            )
            m = result.metrics
            rows.append(
                {
                    "program": name,
                    "history": history,
                    "persons": m["persons"],
                    "n": m["n"],
                    "accuracy": round(m["accuracy"], 4),
                    "95% CI": f"[{m.get('accuracy_ci_low', nan):.3f}, {m.get('accuracy_ci_high', nan):.3f}]",
                    "random floor": round(m["random_accuracy"], 4),
                    "log loss": round(m.get("log_loss") or nan, 4),
                    "log loss CI": f"[{m.get('log_loss_ci_low', nan):.3f}, {m.get('log_loss_ci_high', nan):.3f}]",
                    "brier": round(m.get("brier") or nan, 4),
                    "rps": round(m.get("rps") or nan, 4),
                    "ece": round(m.get("ece") or nan, 4),
                    "seconds": round(time.perf_counter() - t0 + select_seconds / len(programs), 1),
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    total = time.perf_counter() - start
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(f"\ntotal {total:.1f} s for {len(rows)} cells ({out})")


if __name__ == "__main__":
    main()
