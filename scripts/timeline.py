"""Once a second, the machine's busy cores and each process's CPU seconds in that second, by its title (the `--ray`
driver, `ray::_fit`, `ray::_answer_batch`, ...), read from /proc: where a core idles during a run (BENCHMARKS.md
§13). One JSON line per second; stop it with Ctrl-C or kill.

    .venv/bin/python scripts/timeline.py /tmp/timeline.jsonl &
    .venv/bin/python scripts/ray_bench.py --data /tmp/i24/full/bench --programs ml --modes=--ray; kill %1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def processes() -> dict[int, tuple[str, float]]:
    """pid -> (its title, CPU seconds so far)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:  # ended meanwhile
                continue
            found[int(proc.name)] = (title[-40:], (int(fields[11]) + int(fields[12])) / TICK)
    return found


def cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine."""
    times = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
    return sum(times), times[3] + times[4]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the JSON lines file")
    args = ap.parse_args()
    before, machine, t0 = processes(), cpu_times(), time.time()
    with args.out.open("w") as out:
        while True:
            time.sleep(1)
            now, machine_now = processes(), cpu_times()
            used = {
                f"{pid}:{title}": round(cpu - before.get(pid, (title, 0.0))[1], 2) for pid, (title, cpu) in now.items()
            }
            busy = (os.cpu_count() or 1) * (1 - (machine_now[1] - machine[1]) / max(machine_now[0] - machine[0], 1))
            line = {
                "t": round(time.time() - t0, 1),
                "busy": round(busy, 2),
                "cpu": {k: v for k, v in used.items() if v > 0.02},
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
            before, machine = now, machine_now


if __name__ == "__main__":
    main()
