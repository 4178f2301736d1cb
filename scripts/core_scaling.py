"""How much two processes at once get out of this machine's cores (BENCHMARKS.md §13): the same work timed in one
process alone, then in two processes at once (each single-threaded, as a Ray worker is).

    .venv/bin/python scripts/core_scaling.py --data /tmp/i24/full/bench

Three kinds of work: kNN's predictions for a batch of test persons (numpy: similarity products and a sort of every
training respondent per person, memory-heavy), fitting `ml`'s models of a few questions (gradient boosting on the
fold's training inputs, as its Ray fit tasks do) and a pure-Python loop (no memory traffic). Each is built
once, then forked: the children share them and start together at a barrier. `pair speed-up` is
2 x (seconds alone) / (seconds of the slower of the pair): 2.00 when the two cores are as fast as one each.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread per process, as Ray gives a worker of 1 CPU
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402


def timed(work: Callable[[], object], barrier, out) -> None:  # noqa: ANN001 - multiprocessing objects
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    work()
    out.put((time.perf_counter() - t0, time.process_time() - c0))


def run(work: Callable[[], object], processes: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of `processes` forked children doing `work` at once."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    children = [ctx.Process(target=timed, args=(work, barrier, out)) for _ in range(processes)]
    for c in children:
        c.start()
    got = [out.get() for _ in children]
    for c in children:
        c.join()
    return got


def python_loop() -> int:
    total = 0
    for i in range(30_000_000):
        total += i % 7
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a built benchmark")
    ap.add_argument("--persons", type=int, default=600, help="test persons in the kNN batch")
    ap.add_argument("--history", type=int, default=116)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fits", type=int, default=4, help="ml models fitted, from the middle of its list by cost")
    args = ap.parse_args()

    from valuesim.data.benchmark import Benchmark, items
    from valuesim.programs import PROGRAMS
    from valuesim.programs.ml import fit_one
    from valuesim.run.predict import item_batches, program_inputs

    bench = Benchmark(args.data)
    program = PROGRAMS["knn"].from_benchmark(bench)
    program.prepare()
    chosen = items(bench, split="test", history=args.history, persons=args.persons, questions=1000)
    _, batches = item_batches(chosen, list(range(len(chosen))), args.persons)
    [chunk] = list(batches)
    batch = program_inputs(chunk)  # what the program sees (not the gold answer)
    ml = PROGRAMS["ml"].from_benchmark(bench)
    asked = {item["question_code"] for item in chosen}
    todo = [(x, fit) for x, by_question in ml.fits_to_make(asked) for fit in by_question.values()]
    middle = todo[len(todo) // 2 :][: args.fits]
    kinds = {
        "knn": lambda: program.predict_batch(batch),
        f"ml: {len(middle)} fits": lambda: [fit_one(x, *a) for x, a in middle],
        "python loop": python_loop,
    }
    for name, work in kinds.items():
        for _ in range(args.repeats):
            [(alone, alone_cpu)] = run(work, 1)
            pair = run(work, 2)
            slower = max(wall for wall, _ in pair)
            print(json.dumps({"work": name, "alone_s": round(alone, 2), "alone_cpu_s": round(alone_cpu, 2),
                              "pair_s": [round(w, 2) for w, _ in pair], "pair_cpu_s": [round(c, 2) for _, c in pair],
                              "pair_speed_up": round(2 * alone / slower, 2)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
