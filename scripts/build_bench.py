"""The whole WVS-7 at scale: `valuesim data build` on 97,220 synthetic respondents, then the batch baselines.

    .venv/bin/python scripts/build_bench.py                                  # generate (once), build, measure
    .venv/bin/python scripts/build_bench.py --baselines random,majority,knn  # then these over all test persons
    .venv/bin/python scripts/build_bench.py --wvs DIR --out DIR --home DIR
    .venv/bin/python scripts/build_bench.py --format sav --wvs /tmp/wvs7-full-sav    # the same as SPSS (or dta, rds)

The folder is the synthetic whole WVS-7 (`python -m valuesim.testing DIR --full`: the official
cross-national CSV's shape, 66 countries, 600 columns), generated when DIR holds no CSV. Every step runs as its
own command under `/usr/bin/time -v`; the script prints the command and what it measured: wall time, CPU time
(user + system), peak resident memory, and the load average before and after (the cores may be shared: CPU time
is then the steadier figure). For the build it also prints the benchmark's size on disk and checks the targets of
issue 11 (under 3 minutes, under 8 GB). Each baseline is one `valuesim bench` over the whole test split (every
test person, every held-out question of fold 1) at the given history sizes. Runs and MLflow records go to --home,
not the project.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CSV = "WVS_Cross-National_Wave_7_csv_v6_0.csv"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(cmd: list[str], home: Path) -> dict:
    """Run `cmd` under /usr/bin/time -v; its figures, stdout and exit status."""
    print("$ " + " ".join(map(str, cmd)), flush=True)
    before = load()
    env = os.environ | {"VALUESIM_HOME": str(home)}
    t0 = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *map(str, cmd)], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0

    def field(name: str) -> float:
        return float(re.search(rf"{re.escape(name)}: ([\d.]+)", run.stderr).group(1))

    figures = {
        "wall_s": round(wall, 1),
        "cpu_s": round(field("User time (seconds)") + field("System time (seconds)"), 1),
        "peak_rss_gb": round(field("Maximum resident set size (kbytes)") / 2**20, 2),
        "load_before": before,
        "load_after": load(),
        "exit": run.returncode,
    }
    print("  " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    if run.returncode:
        print(run.stderr[-3000:], file=sys.stderr)
    return figures | {"stdout": run.stdout}


def disk_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wvs", type=Path, default=Path("/tmp/wvs7-full"), help="synthetic WVS-7 folder (made if absent)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/wvs7-full-bench"), help="where the benchmark is built")
    ap.add_argument("--home", type=Path, default=Path("/tmp/wvs7-full-home"), help="VALUESIM_HOME of the runs")
    ap.add_argument("--skip-build", action="store_true", help="use the benchmark already at --out")
    formats = ("csv", "sav", "dta", "rds")
    ap.add_argument("--format", choices=formats, default="csv", help="the cross-national file's format")
    ap.add_argument("--baselines", default="", help="comma-separated programs to run over the whole test split")
    ap.add_argument("--history", default="0,58,116,174,232", help="history sizes of the baseline runs")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap draws of the baseline runs")
    args = ap.parse_args()
    results: dict = {}
    if not (args.wvs / CSV.replace("csv", args.format)).exists():
        print(f"Generating the synthetic whole WVS-7 ({args.format})", flush=True)
        generate = [sys.executable, "-m", "valuesim.testing", args.wvs, "--full", "--format", args.format]
        results["generate"] = timed(generate, args.home)
    if not args.skip_build:
        print("Building the benchmark", flush=True)
        build = timed([BIN / "valuesim", "data", "build", "--wvs", args.wvs, "--out", args.out, "--force", "--json"],
                      args.home)  # fmt: skip
        manifest = json.loads(build.pop("stdout")) if build["exit"] == 0 else {}
        build["disk_gb"] = round(disk_gb(args.out), 2)
        build |= {k: manifest.get(k) for k in ("respondents", "splits")}
        targets = f"under 3 minutes: {build['wall_s'] < 180}, under 8 GB: {build['peak_rss_gb'] < 8}"
        print(f"  {build['respondents']:,} respondents, splits {build['splits']}, {build['disk_gb']} GB on disk; "
              f"{targets}", flush=True)  # fmt: skip
        results["build"] = build
    for program in filter(None, args.baselines.split(",")):
        print(f"Baseline {program} over the whole test split", flush=True)
        cmd = [BIN / "valuesim", "bench", "--programs", program, "--split", "test", "--persons", "1000000",
               "--questions", "1000", "--history", args.history, "--resamples", args.resamples, "--data", args.out,
               "--out", args.home / "runs" / f"bench-test-{program}", "--json"]  # fmt: skip
        run = timed(cmd, args.home)
        out = json.loads(run.pop("stdout")) if run["exit"] == 0 else {}
        cells = [r for r in out.get("results", []) if r.get("program") == program]
        run["cells"] = [{k: r.get(k) for k in ("history", "n", "persons", "accuracy", "wall_seconds")} for r in cells]
        for cell in run["cells"]:
            print(f"  history {cell['history']}: {cell['n']:,} predictions, {cell['persons']:,} persons, "
                  f"accuracy {cell['accuracy']:.3f}, {cell['wall_seconds']:.0f} s", flush=True)  # fmt: skip
        results[f"bench {program}"] = run
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
