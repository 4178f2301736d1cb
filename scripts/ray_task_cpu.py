"""One kNN batch predicted in this process, then three times in a Ray task on the same program put in Ray's object
store: the CPU seconds of each (numpy single-threaded in both, as a Ray worker of 1 CPU runs it).

    .venv/bin/python scripts/ray_task_cpu.py --data /tmp/i24/full/bench

The difference is what the same predictions cost more inside a Ray worker (BENCHMARKS.md §13).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import pickle  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a built benchmark")
    ap.add_argument("--persons", type=int, default=1200)
    ap.add_argument("--history", type=int, default=116)
    args = ap.parse_args()

    import ray

    from valuesim.data.benchmark import Benchmark, items
    from valuesim.programs import PROGRAMS
    from valuesim.run import cluster
    from valuesim.run.predict import item_batches, program_inputs

    bench = Benchmark(args.data)
    program = cluster.prepared(PROGRAMS["knn"].from_benchmark(bench))
    chosen = items(bench, split="test", history=args.history, persons=args.persons, questions=1000)
    [chunk] = list(item_batches(chosen, list(range(len(chosen))), args.persons)[1])
    batch = program_inputs(chunk)  # what the program sees
    c0 = time.process_time()
    program.predict_batch(batch)
    print(f"in this process: {time.process_time() - c0:.2f} CPU s")

    @ray.remote
    def task(p, data: bytes) -> float:
        inputs = pickle.loads(data)
        c = time.process_time()
        p.predict_batch(inputs)
        return time.process_time() - c

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"worker_niceness": 0})
    ref, data = ray.put(program), cluster.pickled(batch)
    for _ in range(3):
        print(f"in a Ray task: {ray.get(task.remote(ref, data)):.2f} CPU s")
    ray.shutdown()


if __name__ == "__main__":
    main()
