"""Reading back and scoring one stored cell of a bench (BENCHMARKS.md §13): the seconds of each step, and with
`--save` the metrics, breakdowns, predictions table and item table pickled, to compare two commits' results.

    .venv/bin/python scripts/score_bench.py --data /tmp/i24/full/bench --run /tmp/rb5/knn-one/bench/f1-h58-knn \
        --history 58 --save /tmp/score-new.pkl
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

from valuesim.data.benchmark import Benchmark, items
from valuesim.programs.statistical import country_majorities
from valuesim.run.predict import open_store, result_of
from valuesim.score.results import country_floor
from valuesim.score.stats import item_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the built benchmark the cell ran on")
    ap.add_argument("--run", type=Path, required=True, help="the cell's run folder (predictions.sqlite)")
    ap.add_argument("--history", type=int, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--save", type=Path, help="pickle the results here")
    args = ap.parse_args()
    bench = Benchmark(args.data)
    selected = items(bench, "values", args.split, 1, args.history, None, None)
    seconds: dict[str, float] = {}

    def timed(name: str, step: Any) -> Any:
        t0 = time.perf_counter()
        out = step()
        seconds[name] = round(time.perf_counter() - t0, 2)
        return out

    with open_store(args.run) as store:
        frame = timed("store.frame", store.frame)
    result = timed("result_of", lambda: result_of(frame, selected, 1000, 0))
    timed("country_majorities (first: fits)", lambda: country_majorities(bench, selected))
    majority = timed("country_majorities", lambda: country_majorities(bench, selected))
    floor = timed("country_floor", lambda: country_floor(result.predictions, majority))
    scored = timed("item_table", lambda: item_table(result.predictions))
    print(seconds)
    if args.save:
        saved = (result.metrics | floor, result.by_country, result.by_category, result.predictions, scored)
        args.save.write_bytes(pickle.dumps(saved))


if __name__ == "__main__":
    main()
