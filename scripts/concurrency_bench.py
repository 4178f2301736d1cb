"""Throughput of `valuesim evaluate --threads N` against a served model that answers after a fixed delay.

    .venv/bin/python scripts/concurrency_bench.py                      # demographics and valuesim, N = 1, 4, 16, 64
    .venv/bin/python scripts/concurrency_bench.py --programs demographics --threads 1,16 --delay 0.2
    .venv/bin/python scripts/concurrency_bench.py --threads 64 --ray      # one process against --ray, 64 in flight

A stub OpenAI-compatible server on 127.0.0.1 stands in for vLLM: it answers every chat.completions request after
`--delay` seconds, any number at once (one thread per connection), with a JSON object that fits the schema the
OptionsAdapter sends (an option code for `answer`, picked from a hash of the prompt, so runs are repeatable and the
three ValueSim views sometimes disagree and call the coordinator). Each cell runs the real CLI in a fresh
VALUESIM_HOME (fresh run folder, MLflow store and DSPy cache, so every call reaches the server).

Startup (imports, the benchmark, MLflow) and the metrics afterwards take seconds that have nothing to do with
concurrency, so the rate is measured on the server's side: predictions / (end of the last response - arrival of
the first request), the preflight ping left out. The CLI's whole wall time is shown too. `ideal` is N x the N=1
rate of the same program; `max in flight` is the most requests the server held at once. The stub runs in this
process on the same cores: `stub CPU` is its share, and `machine cores busy` counts every process of the machine
over the window (2.00 on 2 cores: the cores, not the client design, are the limit).

`--ray` adds, after each one-process cell, the same cell with `valuesim evaluate --ray` (a local Ray cluster
started for the run, one worker per core) at the same requests in flight: `--threads N / workers` per worker
(`--workers`, default the machine's cores; `--ray-address` for a running cluster). Its `client CPU` is the
driver's alone (the workers are other processes); `vs one process` is its rate over the one-process cell's.

Items per cell: `--rounds` x N predictions (at least `--min-items`), as persons x `--questions` questions, so a
person's share of backstory work is the same in every cell. Needs a built benchmark (`--data`, default
data/benchmark/); build a synthetic one with `python -m valuesim.testing` and `valuesim data build`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StubServer(ThreadingHTTPServer):
    """chat.completions after a fixed delay; counts requests in flight and the prediction window."""

    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops connections when 64 clients connect at once

    def __init__(self, delay: float):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.delay = delay
        self.client_pid: int | None = None  # the CLI process, whose CPU time the window also measures
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.in_flight = self.max_in_flight = self.requests = 0
            self.first_start = self.last_end = None
            self.cpu_first = self.cpu_last = None  # the client's CPU seconds at the first request and last reply
            self.own_first = self.own_last = None  # this process's (the stub's) CPU seconds, the same instants
            self.machine_first = self.machine_last = None  # the machine's (busy, total) CPU seconds, the same
            self.kinds: Counter = Counter()  # requests per output fields (a backstory, a view, an answer)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def fill(schema: dict, seed: int) -> object:
    """A value valid for this JSON schema (enums pick by seed, strings honour maxLength)."""
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "object":
        return {k: fill(p, seed) for k, p in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [fill(schema.get("items") or {"type": "string"}, seed)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    # the seed in the text: each person's backstory differs, so later prompts differ too and miss DSPy's cache
    return f"Stub text {seed}."[: schema.get("maxLength", 200)]


def machine_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine, all cores, since boot (Linux /proc/stat; None elsewhere)."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), sum(ticks) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, all its threads (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as they would with vLLM
    server: StubServer

    def do_GET(self) -> None:
        self.reply({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        ping = not body.get("response_format")  # the CLI's preflight; every program call sends a schema
        srv = self.server
        start = time.perf_counter()
        with srv.lock:
            if not ping:
                srv.in_flight += 1
                srv.requests += 1
                srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                if srv.first_start is None:
                    srv.first_start, srv.cpu_first = start, cpu_seconds(srv.client_pid)
                    srv.own_first, srv.machine_first = cpu_seconds(os.getpid()), machine_seconds()
        time.sleep(srv.delay)
        rf = body.get("response_format") or {}
        schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema")
        if schema:
            with srv.lock:
                srv.kinds["+".join(sorted(schema.get("properties") or {}))] += 1
        seed = int(hashlib.sha1(json.dumps(body.get("messages")).encode()).hexdigest()[:8], 16)
        content = json.dumps(fill(schema, seed)) if schema else "ok"
        self.reply(
            {
                "id": f"stub-{seed}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            }
        )
        if not ping:
            with srv.lock:
                srv.in_flight -= 1
                srv.last_end, srv.cpu_last = time.perf_counter(), cpu_seconds(srv.client_pid)
                srv.own_last, srv.machine_last = cpu_seconds(os.getpid()), machine_seconds()

    def reply(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # one line per request would flood stderr
        pass


def run_cell(
    server: StubServer, args: argparse.Namespace, program: str, threads: int, work: Path, ray: bool = False
) -> dict:
    items = max(args.min_items, args.rounds * threads)
    persons = math.ceil(items / args.questions)
    home = work / f"{program}-n{threads}{'-ray' if ray else ''}"
    home.mkdir(parents=True)
    cli = Path(sys.executable).parent / "valuesim"
    per_process = max(1, threads // args.workers) if ray else threads
    where = (["--ray-address", args.ray_address] if args.ray_address else ["--ray"]) if ray else []
    cmd = [str(cli), "evaluate", "--program", program, "--lm", "openai/stub", "--api-base", server.api_base,
           "--data", str(args.data), "--split", args.split, "--persons", str(persons), "--questions",
           str(args.questions), "--history", str(args.history), "--threads", str(per_process), "--resamples", "0",
           "--run-dir", str(home / "run"), "--json", *where]  # fmt: skip
    env = {**os.environ, "VALUESIM_HOME": str(home), "OPENAI_API_KEY": "stub", "DSPY_CACHEDIR": str(home / "dspy")}
    server.reset()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server.client_pid = proc.pid
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    metrics = json.loads(stdout)["metrics"]
    window = server.last_end - server.first_start
    cpu = None if server.cpu_first is None or server.cpu_last is None else server.cpu_last - server.cpu_first
    stub_cpu = None if server.own_first is None or server.own_last is None else server.own_last - server.own_first
    machine = None
    if server.machine_first and server.machine_last:
        busy, total = (b - a for a, b in zip(server.machine_first, server.machine_last, strict=True))
        machine = (os.cpu_count() or 1) * busy / total if total else None
    return {
        "program": program,
        "mode": f"--ray, {args.workers} x {per_process}" if ray else "one process",
        "N": threads,
        "items": int(metrics["n"]),
        "persons": persons,
        "failed": int(metrics["failed"]),
        "invalid": int(metrics["invalid"]),
        "requests": server.requests,
        "max_in_flight": server.max_in_flight,
        "wall_s": wall,
        "predict_s": window,
        "pred_per_s": metrics["n"] / window,
        "client_cpu_ms_per_pred": None if cpu is None else 1000 * cpu / metrics["n"],
        "client_cores": None if cpu is None else cpu / window,  # 1.0: one core busy the whole window
        "stub_cpu_ms_per_pred": None if stub_cpu is None else 1000 * stub_cpu / metrics["n"],
        # every process of the machine (Ray's workers, the stub, anything else running): 2.0 = both cores busy
        "machine_cores": machine,
    }


# (header, row key, format) of the printed Markdown table
COLUMNS = [
    ("program", "program", "{}"),
    ("mode", "mode", "{}"),
    ("N", "N", "{}"),
    ("items", "items", "{}"),
    ("LM requests", "requests", "{}"),
    ("max in flight", "max_in_flight", "{}"),
    ("CLI wall s", "wall_s", "{:.1f}"),
    ("prediction s", "predict_s", "{:.2f}"),
    ("predictions/s", "pred_per_s", "{:.2f}"),
    ("ideal (N x N=1)", "ideal", "{:.2f}"),
    ("% of ideal", "pct_ideal", "{:.0f}%"),
    ("vs one process", "vs_one", "{:.2f}x"),
    ("failed+invalid", "bad", "{}"),
    ("client CPU ms/pred", "client_cpu_ms_per_pred", "{:.0f}"),
    ("client cores busy", "client_cores", "{:.2f}"),
    ("stub CPU ms/pred", "stub_cpu_ms_per_pred", "{:.0f}"),
    ("machine cores busy", "machine_cores", "{:.2f}"),
]


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", default="demographics,valuesim")
    ap.add_argument("--threads", default="1,4,16,64")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the stub takes per request")
    ap.add_argument("--rounds", type=int, default=8, help="items per cell = rounds x N (at least --min-items)")
    ap.add_argument("--min-items", type=int, default=40)
    ap.add_argument("--questions", type=int, default=8, help="held-out questions per person")
    ap.add_argument("--history", type=int, default=232)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "benchmark")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON lines")
    ap.add_argument("--ray", action="store_true", help="also run each cell with --ray at the same requests in flight")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ray workers (cores of the cluster)")
    ap.add_argument("--ray-address", help="a running Ray cluster instead of one started per cell")
    args = ap.parse_args()
    if not (args.data / "manifest.json").exists():
        sys.exit(f"{args.data}: no built benchmark (valuesim data build, or --data)")
    server = StubServer(args.delay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ns = [int(n) for n in args.threads.split(",")]
    print(f"stub server {server.api_base}, delay {args.delay * 1000:.0f} ms; load before: {os.getloadavg()}")
    print(markdown_row([c[0] for c in COLUMNS]))
    print(markdown_row(["---"] * len(COLUMNS)))
    with tempfile.TemporaryDirectory(prefix="concurrency-bench-") as tmp:
        for program in args.programs.split(","):
            base = None
            for n in ns:
                one = None
                for ray in (False, True) if args.ray else (False,):
                    row = run_cell(server, args, program, n, Path(tmp), ray)
                    one = one or row
                    base = base or (row["pred_per_s"] / n if n == 1 else None)
                    ideal = base * n if base else float("nan")
                    row |= {
                        "ideal": ideal,
                        "pct_ideal": 100 * row["pred_per_s"] / ideal,
                        "vs_one": row["pred_per_s"] / one["pred_per_s"],
                        "bad": row["failed"] + row["invalid"],
                    }
                    cells = ["n/a" if row[k] is None else f.format(row[k]) for _, k, f in COLUMNS]
                    print(markdown_row(cells), flush=True)
                    if args.json:
                        print(json.dumps(row), flush=True)
    print(f"load after: {os.getloadavg()}")
    server.shutdown()


if __name__ == "__main__":
    main()
