"""What a user must see in MLflow's UI, checked through the UI server itself (a check to repeat, not a timed test).

    .venv/bin/python scripts/mlflow_check.py [--home DIR] [--screenshots DIR] [--port PORT]

The store checked is VALUESIM_HOME's (--home wins; with neither, a new temporary home). Creates (unless the home
already holds a store) an evaluate, a bench and a compile run on a synthetic benchmark with a scripted DummyLM,
starts `valuesim ui` on that store (a free port unless --port), and asserts through MLflow's REST API and the UI's
static page: the UI answering is the one started here, on this store (its runs are the store's runs, read
directly); the three experiments exist with the runs-table kind set; every run has the metrics (with CIs), params
and artifacts a user looks for (report/accuracy_by_history.png, prompts/*.txt, program/program.json); no run that
started before the check is still RUNNING; no logged model is left PENDING. The UI is stopped by SIGTERM and
every process of its server must be gone afterwards. With Chromium installed (`apt-get install chromium`) and
--screenshots, it saves screenshots of an experiment's first page, a compile run and the bench plot. Exits 1
listing what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's valuesim, wherever the script is run from

from valuesim.testing.servers import free_port  # noqa: E402


def make_runs(home: Path) -> None:
    """An evaluate, a bench and a compile run in `home`, without a real model."""
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ["VALUESIM_HOME"] = str(home)
    from helpers import ScriptedLM, use  # the tests' scripted DummyLM

    from valuesim.data.benchmark import Benchmark
    from valuesim.data.build import build
    from valuesim.run import bench as bench_runs
    from valuesim.run import runner
    from valuesim.testing.synthetic import write_synthetic_wvs

    wvs = write_synthetic_wvs(home / "wvs", per_country=30)
    build(wvs, home / "data" / "benchmark")
    bench = Benchmark(home / "data" / "benchmark")

    def first_option(messages):
        options = json.loads(messages[-1]["content"].split("[[ ## options ## ]]\n", 1)[1].split("\n", 1)[0])
        return {"analysis": "scripted", "answer": next(iter(options))}

    lm = ScriptedLM({"write": {"backstory": "A scripted backstory."}, "cognitive": first_option,
                     "affective": first_option, "behavioral": first_option, "coordinator": first_option})  # fmt: skip
    runner.configure_lm = lambda *a, **k: (use(lm), {"model": "scripted-dummy"})[1]
    runner.run_evaluate(runner.Setup(program="knn", persons=8), bench, progress=False)
    bench_runs.run_bench(runner.Setup(persons=8, questions=5), bench, ["majority", "knn"], [0, 58, 232], [1],
                     home / "runs" / "bench-check", progress=False)  # fmt: skip
    setup = runner.Setup(program="valuesim", history=20, questions=2, lm="dummy")  # the logged model's LM too
    runner.run_compile(setup, bench, "bootstrap", 3, 2, progress=False)


def api(port: int, path: str, body: dict | None = None) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def artifacts(port: int, run_id: str, path: str = "") -> set[str]:
    q = f"/api/2.0/mlflow/artifacts/list?run_id={run_id}" + (f"&path={path}" if path else "")
    found = set()
    for f in api(port, q).get("files", []):
        found |= artifacts(port, run_id, f["path"]) if f["is_dir"] else {f["path"]}
    return found


def store_runs(home: Path) -> dict[str, str]:
    """Every run in the home's store, read from its database directly (not through the UI): id -> status."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id: r.info.status for r in client.search_runs(experiments, max_results=50_000)}


def served_runs(port: int) -> dict[str, dict]:
    """Every run the UI's server knows, through its REST API: id -> run info."""
    experiments = api(port, "/api/2.0/mlflow/experiments/search", {"max_results": 1000})["experiments"]
    ids = [e["experiment_id"] for e in experiments]
    runs = api(port, "/api/2.0/mlflow/runs/search", {"experiment_ids": ids, "max_results": 50_000}).get("runs", [])
    return {r["info"]["run_id"]: r["info"] for r in runs}


def check_store(port: int, home: Path, started_ms: int) -> list[str]:
    """The UI serves this home's store (the same runs), and no run older than the check is still RUNNING."""
    direct, served = store_runs(home), served_runs(port)
    if set(direct) != set(served):
        return [f"the UI on port {port} does not serve the store in {home} ({len(served)} runs there, "
                f"{len(direct)} in the store)"]  # fmt: skip
    return [f"run {rid} ({info.get('run_name')}) is still RUNNING (started before the check: its process died?)"
            for rid, info in served.items()
            if info["status"] == "RUNNING" and int(info.get("start_time", 0)) < started_ms]  # fmt: skip


def check(port: int) -> list[str]:
    problems = []
    experiments = {e["name"]: e for e in api(port, "/api/2.0/mlflow/experiments/search", {"max_results": 100})
                   ["experiments"]}  # fmt: skip
    for name in ("valuesim-evaluate", "valuesim-bench", "valuesim-compile"):
        e = experiments.get(name)
        if e is None:
            problems.append(f"experiment {name} missing")
            continue
        tags = {t["key"]: t["value"] for t in e.get("tags", [])}
        if tags.get("mlflow.experimentKind") != "custom_model_development":
            problems.append(f"{name}: no runs-table kind tag (opens on the GenAI page)")
        runs = api(port, "/api/2.0/mlflow/runs/search", {"experiment_ids": [e["experiment_id"]]})["runs"]
        for run in runs:
            rid, data = run["info"]["run_id"], run["data"]
            metrics = {m["key"] for m in data.get("metrics", [])}
            params = {p["key"] for p in data.get("params", [])}
            files = artifacts(port, rid)
            tags = {t["key"]: t["value"] for t in data.get("tags", [])}
            label = f"{name} run {run['info'].get('run_name')}"
            if name == "valuesim-bench" and "mlflow.parentRunId" not in tags:
                need_m, need_f = {"accuracy_knn"}, {"report/accuracy_by_history.png", "report/results.md"}
            elif name == "valuesim-compile":
                need_m = {"before_accuracy", "after_accuracy", "after_accuracy_ci_low", "gain_difference"}
                need_f = {"program/program.json", "prompts/cognitive.txt", "after_predictions.json"}
            else:
                need_m = {"accuracy", "accuracy_ci_low", "accuracy_ci_high", "n_predictions", "n_persons"}
                need_f = set()
            problems += [f"{label}: metric {m} missing" for m in sorted(need_m - metrics)]
            problems += [f"{label}: artifact {f} missing" for f in sorted(need_f - files)]
            if "persons_by_country" not in params and "mlflow.parentRunId" in tags:
                problems.append(f"{label}: param persons_by_country missing")
    models = api(port, "/api/2.0/mlflow/logged-models/search",
                 {"experiment_ids": [e["experiment_id"] for e in experiments.values()]}).get("models", [])  # fmt: skip
    pending = [m["info"]["model_id"] for m in models if m["info"].get("status") == "LOGGED_MODEL_PENDING"]
    problems += [f"logged model {m} left PENDING" for m in pending]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
        if b'<div id="root"' not in r.read() and r.status != 200:
            problems.append("the UI's page does not load")
    return problems


def screenshots(port: int, out: Path) -> None:
    chromium = next((c for c in ("chromium", "chromium-browser") if subprocess.run(["which", c],
                     capture_output=True).returncode == 0), None)  # fmt: skip
    if chromium is None:
        print("no Chromium: screenshots skipped (apt-get install chromium)")
        return
    out.mkdir(parents=True, exist_ok=True)
    experiments = api(port, "/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    ids = {e["name"]: e["experiment_id"] for e in experiments}
    compile_run = api(port, "/api/2.0/mlflow/runs/search", {"experiment_ids": [ids["valuesim-compile"]]})["runs"][0]
    models = api(port, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [ids["valuesim-compile"]]})
    model_id = models["models"][0]["info"]["model_id"]
    bench = f"#/experiments/{ids['valuesim-bench']}/runs?workflowType=machine_learning"  # the link `valuesim ui` prints
    pages = {
        "experiments.png": "#/experiments",
        "experiment-runs-table.png": bench,
        "bench-history-chart.png": bench + "&compareRunsMode=CHART",  # the runs' metrics at step = history
        "compile-run.png": f"#/experiments/{ids['valuesim-compile']}/runs/{compile_run['info']['run_id']}"
        "?workflowType=machine_learning",
        "compile-model.png": f"#/experiments/{ids['valuesim-compile']}/models/{model_id}",
    }
    for name, page in pages.items():
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=40000", "--window-size=1800,1000", f"--screenshot={out / name}",
                        f"http://127.0.0.1:{port}/{page}"], capture_output=True, timeout=120)  # fmt: skip
        print(f"saved {out / name}")


def processes() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (state, parent pid, session id), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        found[int(entry.name)] = (fields[0], int(fields[1]), int(fields[3]))
    return found


def stop_ui(ui: subprocess.Popen) -> list[str]:
    """SIGTERM to `valuesim ui` (it stops MLflow's server, which leads a session of its own); then no process of
    either session may be left."""
    try:
        sessions = {ui.pid} | {pid for pid, (_, ppid, _) in processes().items() if ppid == ui.pid}
    finally:
        ui.terminate()
    try:
        ui.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(ui.pid, signal.SIGKILL)
        ui.wait()
        return ["`valuesim ui` did not stop within 60 s of SIGTERM"]
    left = [pid for pid, (state, _, sid) in processes().items() if sid in sessions and state not in "ZXx"]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return [f"processes left after stopping `valuesim ui`: {left}"] if left else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="a VALUESIM_HOME with runs [default: $VALUESIM_HOME, else a new one]")
    ap.add_argument("--screenshots", type=Path, help="folder for screenshots (needs Chromium)")
    ap.add_argument("--port", type=int, help="port for `valuesim ui` [default: a free one]")
    args = ap.parse_args()
    home = args.home or (Path(os.environ["VALUESIM_HOME"]) if os.environ.get("VALUESIM_HOME") else None)
    home = (home or Path(tempfile.mkdtemp(prefix="valuesim-mlflow-check-"))).resolve()
    if not (home / "mlruns" / "mlflow.db").exists():
        make_runs(home)
    started_ms = int(time.time() * 1000)  # a run started before this (make_runs' too) must have ended
    port = args.port or free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"VALUESIM_HOME": str(home)}
    ui = subprocess.Popen([sys.executable, "-m", "valuesim.cli", "ui", "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    problems: list[str] = []
    try:
        for _ in range(600):  # MLflow's server takes a while to start on a busy machine
            if ui.poll() is not None:
                problems.append(f"`valuesim ui --port {port}` exited with {ui.returncode} (port in use?)")
                break
            try:
                api(port, "/api/2.0/mlflow/experiments/search", {"max_results": 1})
                break
            except OSError:
                time.sleep(0.5)
        if not problems:
            problems += check_store(port, home, started_ms) + check(port)
            if args.screenshots:
                screenshots(port, args.screenshots)
    finally:
        problems += stop_ui(ui) if ui.poll() is None else []
    for p in problems:
        print(f"FAIL {p}")
    print(f"{'OK' if not problems else 'FAILED'}: checked the MLflow store in {home}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
