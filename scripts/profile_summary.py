"""A py-spy profile (speedscope format) summed per process by the ValueSim functions the samples were in: where a
`--ray` run's driver and workers spend their time (BENCHMARKS.md §13, tenth time).

    py-spy record --nonblocking --subprocesses -r 20 -o sub.json --format speedscope -- .venv/bin/valuesim bench ...
    .venv/bin/python scripts/profile_summary.py sub.json --depth 3

py-spy counts a runnable process waiting for a core as busy: the seconds are busy samples, not CPU seconds.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path, help="py-spy's speedscope file")
    ap.add_argument("--depth", type=int, default=3, help="ValueSim functions per call path (outermost first)")
    ap.add_argument("--top", type=int, default=15, help="call paths shown per process")
    args = ap.parse_args()
    found = json.loads(args.profile.read_text())
    frames = found["shared"]["frames"]
    for profile in found["profiles"]:
        paths: Counter = Counter()
        for sample, seconds in zip(profile["samples"], profile["weights"], strict=True):
            ours = [frames[i]["name"] for i in sample if "/valuesim/" in (frames[i].get("file") or "")]
            paths[" > ".join(ours[: args.depth]) or "(outside ValueSim)"] += seconds
        total = sum(paths.values())
        if total < 1:  # Ray's helper threads and processes
            continue
        print(f"{profile['name']}: {total:.1f} s busy")
        for path, seconds in paths.most_common(args.top):
            print(f"  {seconds:7.1f} s {100 * seconds / total:5.1f}%  {path}")


if __name__ == "__main__":
    main()
