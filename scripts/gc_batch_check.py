"""What the garbage collector costs a batch of the whole WVS-7 (BENCHMARKS.md §13, ninth time): reading a pickled
batch and its result, and predicting it with `country`, with the collector on and paused, in a process holding a
cell's items as the driver does.

    .venv/bin/python scripts/gc_batch_check.py --data /tmp/i24/full/bench
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from pathlib import Path

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs import PROGRAMS
from valuesim.run.predict import answer_batch, item_batches


def timed(work, paused: bool) -> float:
    """Seconds `work()` takes with the collector on or paused."""
    if paused:
        gc.disable()
    try:
        t0 = time.perf_counter()
        work()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/i24/full/bench"), help="a built benchmark")
    ap.add_argument("--persons", type=int, default=2432, help="persons per batch (a --ray batch of the whole split)")
    args = ap.parse_args()
    bench = Benchmark(args.data)
    cell = items(bench, "values", "test", 1, 58, None, 1000)  # held, as the driver holds a cell's items
    _, batches = item_batches(cell, list(range(len(cell))), args.persons)
    batch = next(batches)
    program = PROGRAMS["country"].from_benchmark(bench)
    program.prepare()
    sent = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    result = pickle.dumps(answer_batch(program, batch), protocol=pickle.HIGHEST_PROTOCOL)
    print(f"batch of {len(batch):,} items ({args.persons:,} persons); seconds with the collector on / paused:")
    steps = {"read the batch": lambda: pickle.loads(sent), "read its result": lambda: pickle.loads(result),
             "predict it (country)": lambda: answer_batch(program, batch)}  # fmt: skip
    for name, work in steps.items():
        print(f"  {name}: {timed(work, False):.2f} / {timed(work, True):.2f}")


if __name__ == "__main__":
    main()
