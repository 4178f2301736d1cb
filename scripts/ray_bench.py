"""One process against `--ray`: wall time and the peak memory of every process of a `valuesim bench` of statistical
programs over a built benchmark (BENCHMARKS.md §13).

    .venv/bin/python scripts/ray_bench.py --data /tmp/wvs7-full-bench --programs knn,ml --persons 2000 --history 0,232
    .venv/bin/python scripts/ray_bench.py --data /tmp/wvs7-full-bench           # every program, whole test split

Each program runs twice in a fresh VALUESIM_HOME: `valuesim bench` in one process, then the same with `--ray` (a
local Ray cluster started by the command, one worker per core). While a command runs, every process it started
(the CLI, and under --ray the Ray head processes and workers it spawns) is sampled every 0.5 s; a process's peak
is the kernel's high-water mark of its resident memory (VmHWM, /proc/<pid>/status), so a peak between two samples
is still seen. Shared memory (Ray's object store) counts in each process that touches it. The two runs' accuracies
must be equal (the script stops otherwise). Build the benchmark as BENCHMARKS.md §9 does
(`scripts/build_bench.py`). The machine's load average is printed before and after each command, with the CPU
seconds its processes used and the machine's busy cores while it ran: a one-process run uses more than one core
where numpy's BLAS runs threads (kNN's similarity products), so on a 2-core machine `--ray` can gain at most
(one process's wall) / (`--ray`'s CPU seconds / 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

BIN = Path(sys.executable).parent


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux /proc)."""
    parent_of: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent_of[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parent_of.items() if parent in frontier]
        found += frontier
    return found


def peak_gb(pid: int) -> tuple[str, float] | None:
    """(process name, peak resident GB) of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    name = title if title.startswith("ray::") else Path(title).name or fields["Name"].strip()
    return name, int(fields.get("VmHWM", "0 kB").split()[0]) / 1024**2


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a live process has used (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the whole machine since boot (/proc/stat)."""
    ticks = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
    return sum(ticks), ticks[3] + ticks[4]


def measured(cmd: list[str], env: dict[str, str], logs: Path) -> dict:
    """Run `cmd`; wall time, its stdout, the peak memory and CPU seconds of each process it started, and how many
    of the machine's cores were busy on average while it ran. Its stdout and stderr are kept in `logs` (a file
    each: a pipe nobody reads while it runs would fill and stop it), and a failed command's last lines printed."""
    load = os.getloadavg()
    t0, busy0 = time.perf_counter(), machine_busy()
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(cmd, env=env, stdout=o, stderr=e, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    cpu: dict[int, float] = {}  # pid -> CPU seconds at its last sample (a process's last half second is missed)
    while proc.poll() is None:
        for pid in [proc.pid, *children(proc.pid)]:
            seen = peak_gb(pid)
            if seen and seen[1] >= peaks.get(pid, ("", 0.0))[1]:
                peaks[pid] = seen
            used = cpu_seconds(pid)
            if used is not None:
                cpu[pid] = used
        time.sleep(0.5)
    busy1 = machine_busy()
    stdout = out.read_text()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(err.read_text().splitlines()[-15:])
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); the end of {err}:\n{tail}")
    by_name: dict[str, list[float]] = defaultdict(list)
    cpu_by_name: dict[str, list[float]] = defaultdict(list)
    for pid, (name, gb) in peaks.items():
        by_name[name].append(gb)
        cpu_by_name["driver" if pid == proc.pid else name].append(cpu.get(pid, 0.0))
    return {
        "wall_s": round(wall, 1),
        "load_before": load,
        "load_after": os.getloadavg(),
        "max_process_gb": round(max(gb for _, gb in peaks.values()), 2),
        "cli_gb": round(peaks[proc.pid][1], 2),
        "cpu_s": round(sum(cpu.values()), 1),
        "cli_cpu_s": round(cpu.get(proc.pid, 0.0), 1),
        # the whole machine, so other work shows here too (the load averages say whether there was any)
        "cores_busy": round((os.cpu_count() or 1) * (1 - (busy1[1] - busy0[1]) / max(busy1[0] - busy0[0], 1)), 2),
        "processes": {n: [round(g, 2) for g in sorted(v, reverse=True)] for n, v in sorted(by_name.items())},
        # where the CPU seconds went: the CLI (the driver under --ray), Ray's workers (ray::IDLE, ray::_fit: named by
        # what they ran at their last sample) and Ray's own processes
        "cpu_s_by_process": {n: round(sum(v), 1) for n, v in sorted(cpu_by_name.items()) if sum(v) >= 0.5},
        "results": json.loads(stdout)["results"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/wvs7-full-bench"), help="a built benchmark")
    ap.add_argument("--programs", default="random,majority,country,cell,knn,ml")
    ap.add_argument("--persons", type=int, default=1_000_000, help="test persons (default: all)")
    ap.add_argument("--history", default="0,58,116,174,232")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ray-bench"), help="homes and bench folders")
    ap.add_argument("--modes", default="one process,--ray", help="`--ray` alone: compared with the one-process "
                    "run already in --work")  # fmt: skip
    args = ap.parse_args()
    modes = args.modes.split(",")
    rows = []
    for program in args.programs.split(","):
        runs = {}
        for mode in modes:
            home = args.work / f"{program}-{'ray' if mode == '--ray' else 'one'}"
            cmd = [str(BIN / "valuesim"), "bench", "--programs", program, "--split", "test", "--persons",
                   str(args.persons), "--questions", "1000", "--history", args.history, "--resamples",
                   str(args.resamples), "--data", str(args.data), "--out", str(home / "bench"), "--json",
                   *(["--ray"] if mode == "--ray" else [])]  # fmt: skip
            env = os.environ | {"VALUESIM_HOME": str(home)}
            runs[mode] = run = measured(cmd, env, home)
            (home / "measured.json").write_text(json.dumps(run))
            print(json.dumps({"program": program, "mode": mode} | {k: v for k, v in run.items() if k != "results"}),
                  flush=True)  # fmt: skip
        for mode in {"one process", "--ray"} - set(modes):
            runs[mode] = json.loads((args.work / f"{program}-{'ray' if mode == '--ray' else 'one'}" / "measured.json")
                                    .read_text())  # fmt: skip
        one, spread = ([{k: v for k, v in r.items() if "seconds" not in k} for r in runs[m]["results"]]
                       for m in ("one process", "--ray"))  # fmt: skip
        if one != spread:
            sys.exit(f"{program}: --ray results differ from one process")
        n = sum(r["n"] for r in runs["one process"]["results"])
        persons = runs["one process"]["results"][0]["persons"]
        rows.append((program, persons, n, runs["one process"], runs["--ray"]))
    print("| program | persons | predictions | one process wall | --ray wall | speed-up | one process peak GB | "
          "--ray peak GB per process | CPU s (one / ray: all processes, driver) | cores busy (one / ray) | "
          "load before (one / ray) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for program, persons, n, one, spread in rows:
        per = "; ".join(f"{k} {'/'.join(map(str, v))}" for k, v in spread["processes"].items() if max(v) >= 0.2)
        cpu = f"{one.get('cpu_s', '?')} / {spread.get('cpu_s', '?')}, {spread.get('cli_cpu_s', '?')}"
        busy = f"{one.get('cores_busy', '?')} / {spread.get('cores_busy', '?')}"
        print(f"| {program} | {persons:,} | {n:,} | {one['wall_s']:.0f} s | {spread['wall_s']:.0f} s | "
              f"{one['wall_s'] / spread['wall_s']:.2f}x | {one['max_process_gb']} | {per} | {cpu} | {busy} | "
              f"{one['load_before'][0]:.1f} / {spread['load_before'][0]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
