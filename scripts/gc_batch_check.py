"""What a batch of the whole WVS-7 costs, with the garbage collector on and paused (BENCHMARKS.md §13, ninth and
eleventh times), in a process holding a cell's items as the driver does: reading a pickled batch and its result,
predicting it with `country`, and storing its rows, as tuples (one process) or as the database a Ray task sends
(`values_db`: made by the task, inserted by the driver).

    .venv/bin/python scripts/gc_batch_check.py --data /tmp/i24/full/bench
"""

from __future__ import annotations

import argparse
import gc
import pickle
import tempfile
import time
from pathlib import Path

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs import PROGRAMS
from valuesim.run.predict import STORED, answer_batch, item_batches
from valuesim.run.store import RunStore, values_db


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
    print(f"batch of {len(batch):,} items ({args.persons:,} persons); seconds with the collector on / paused:")
    rows, error, table = answer_batch(program, batch)
    # what a Ray task sends back (valuesim.run.cluster._answer_batch)
    result = pickle.dumps((values_db(STORED, rows), error, table), protocol=pickle.HIGHEST_PROTOCOL)
    as_tuples = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    as_db = values_db(STORED, rows)
    steps = {"read the batch": lambda: pickle.loads(sent), "read its result": lambda: pickle.loads(result),
             "predict it (country)": lambda: answer_batch(program, batch),
             "pickle its rows (worker)": lambda: pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL),
             "read and insert them (driver)": lambda: stored(pickle.loads(as_tuples)),
             "make their database (worker)": lambda: values_db(STORED, rows),
             "insert it (driver)": lambda: stored(as_db)}  # fmt: skip
    for name, work in steps.items():
        print(f"  {name}: {timed(work, False):.2f} / {timed(work, True):.2f}")


def stored(rows: list[tuple] | bytes) -> None:
    """The rows inserted into a new run store, as the driver inserts a batch's."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        store.add_values(STORED, rows)
        store.close()


if __name__ == "__main__":
    main()
