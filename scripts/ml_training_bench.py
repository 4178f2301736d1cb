"""`ml`'s training inputs for fold 1 (BENCHMARKS.md §13): seconds and peak memory, and with `--save` the inputs,
targets, ranked items and 300 dev persons' answers pickled, to compare two commits' results.

    /usr/bin/time -v .venv/bin/python scripts/ml_training_bench.py --data /tmp/i24/full/bench --save /tmp/ml.pkl
"""

from __future__ import annotations

import argparse
import pickle
import resource
import time
from pathlib import Path

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs.ml import TrainedModel
from valuesim.run.predict import BATCH_INPUTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a built benchmark")
    ap.add_argument("--model", default="hgb", choices=["hgb", "logreg"])
    ap.add_argument("--save", type=Path, help="pickle the results here")
    args = ap.parse_args()
    bench = Benchmark(args.data)
    t0 = time.perf_counter()
    program = TrainedModel.from_benchmark(bench, model=args.model)
    x, targets, ranked = program.training(1)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"training inputs of fold 1: {seconds:.1f} s, x {x.shape}, peak {peak:.2f} GB")
    selected = items(bench, "values", "dev", 1, 58, 300, 8)
    answers = program.predict_batch([{k: i[k] for k in BATCH_INPUTS} for i in selected])
    if args.save:
        dense = x.toarray() if hasattr(x, "toarray") else x
        # commits before the arrays kept a question's targets as (row, answer) pairs
        pairs = {q: tuple(zip(*v, strict=True)) if isinstance(v, list) else v for q, v in targets.items()}
        lists = {q: (list(map(int, rows)), list(map(int, a))) for q, (rows, a) in pairs.items()}
        args.save.write_bytes(pickle.dumps((dense, lists, {q: v.tolist() for q, v in ranked.items()}, answers)))


if __name__ == "__main__":
    main()
