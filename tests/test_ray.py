"""`--ray`: runs spread over a local Ray cluster of 2 CPUs (started once for the module in this process, shut down
at the end) give exactly the rows and metrics of one process; a worker killed mid-run and a driver killed mid-run
lose nothing and count nothing twice. LM calls go to the stub server of scripts/concurrency_bench.py (answers
picked from a hash of the prompt: repeatable) or to the llama.cpp server fixture."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.run.predict import STORED

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]
SECONDS = STORED.index("seconds")  # a stored row's time, which differs between runs
SELECTION = ["--persons", "8", "--questions", "6", "--history", "20", "--resamples", "50"]


def as_rows(rows: list[tuple] | bytes) -> list[tuple]:
    """A batch's store rows, also when a Ray task sent them as a database (`valuesim.run.store.values_db`)."""
    if not isinstance(rows, bytes):
        return rows
    with closing(sqlite3.connect(":memory:")) as db:
        db.deserialize(rows)
        return db.execute("SELECT * FROM values_ ORDER BY rowid").fetchall()


def _stub_module():
    spec = importlib.util.spec_from_file_location("concurrency_bench", ROOT / "scripts" / "concurrency_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the module; `--ray` runs in this process use it, subprocesses connect to
    its address."""
    from valuesim.run.cluster import LOCAL, connected

    with connected(LOCAL):  # the cluster `--ray` starts, with this machine's CPUs (2 here)
        yield ray.get_runtime_context().gcs_address


def test_local_workers_run_just_below_the_driver(cluster) -> None:
    """Ray starts workers at nice 15, where beside other work they get a few percent of a core: `--ray` starts its
    local cluster with them at nice 5, below the driver (nice 0), which goes first."""
    from valuesim.run.cluster import WORKER_NICENESS

    assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == WORKER_NICENESS == 5 and os.nice(0) == 0


def test_a_batch_task_sees_each_person_once(cluster) -> None:
    """A person's items share one `known` dict, and kNN computes similarities once per such person. Ray's own
    serializer made one dict per item (48x kNN's work); the batch reaches the task with its persons shared."""
    from valuesim.programs.statistical import Guess, group_persons
    from valuesim.run.cluster import batches_on_workers

    class CountPersons:  # defined here: Ray pickles it by value
        def predict_batch(self, inputs: list[dict]) -> list[Guess]:
            return [Guess(str(len(group_persons(inputs)[0])), None)] * len(inputs)

    known = [{"Q1": 1}, {"Q1": 2}]
    batch = [{"person_id": f"p{p}", "country": "X", "known": known[p], "question_code": f"Q{q}",
              "options": {"1": "one", "2": "two"}, "answer": "1", "category": "society", "ordinal": False}
             for p in range(2) for q in range(2, 5)]  # fmt: skip
    [(number, _, error, table)] = list(batches_on_workers(CountPersons(), [batch]))
    assert (number, error, table["answer"].tolist()) == (0, None, ["2"] * 6)  # each item's answer: 2 persons


def test_a_worker_process_reads_the_program_once(cluster, tmp_path: Path) -> None:
    """Batch tasks get the program's ref, not the program: each worker process reads (unpickles) it once, not once
    per task (ml's fitted models would be unpickled again for every task)."""
    from valuesim.programs.statistical import Guess
    from valuesim.run.cluster import batches_on_workers

    class Counted:  # defined here: Ray pickles it by value
        def __init__(self, log: str):
            self.log = log

        def __setstate__(self, state: dict) -> None:  # called where it is unpickled
            self.__dict__.update(state)
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")

        def predict_batch(self, inputs: list[dict]) -> list[Guess]:
            return [Guess("1", None)] * len(inputs)

    batches = [[{"person_id": f"p{b}", "country": "X", "known": {}, "question_code": "Q1", "options": {"1": "one"},
                 "answer": "1", "category": "society", "ordinal": False}] for b in range(12)]  # fmt: skip
    got = list(batches_on_workers(Counted(str(tmp_path / "reads")), batches))
    assert sorted(b for b, *_ in got) == list(range(12)) and all(as_rows(rows)[0][3] == "1" for _, rows, *_ in got)
    reads = (tmp_path / "reads").read_text().split()
    assert len(reads) == len(set(reads)) < len(batches)  # one read per worker process that ran a batch


def test_the_next_cells_batches_start_ahead_and_that_cell_takes_them(cluster, bench_small: Path, monkeypatch) -> None:
    """A --ray bench queues the next cell's batches (runner.predict_ahead): they start once this cell's batches are
    all started, and the next cell takes their results instead of running them again; a cell whose inputs differ
    takes none, and what it was queued is dropped when it finishes. The answers are those of one process."""
    from valuesim.data.benchmark import Benchmark, items
    from valuesim.programs import PROGRAMS
    from valuesim.run import cluster as c
    from valuesim.run.predict import in_order, item_batches
    from valuesim.run.runner import Setup, batch_persons, batch_workers, cell_key, predict_ahead

    monkeypatch.setattr(c, "AHEAD", 1)  # (by default about a whole cell starts ahead)
    bench = Benchmark(bench_small)
    now, after = (Setup(program="knn", history=h, persons=40, ray=c.LOCAL) for h in (0, 58))
    now_items, after_items = (items(bench, **s.selection()) for s in (now, after))
    predict_ahead(after, bench, after_items, now)
    ours = batch_workers(now, bench)
    assert ours is not None
    chunks, inputs = item_batches(now_items, list(range(len(now_items))), 2)  # 20 batches: more than 4 in flight
    list(ours(None, inputs))
    started = [k for k in c._AHEAD if k[0] == cell_key(after)]
    ahead = c.AHEAD * c.worker_count()  # one per CPU (set above): part of the next cell, so some are run by it
    assert len(started) == ahead and not c._AHEAD.keys() - set(started)  # all for the next cell
    submitted = []
    real = c._answer_batch.remote
    c._answer_batch.remote = lambda *a: submitted.append(1) or real(*a)  # type: ignore[method-assign]
    try:
        theirs = batch_workers(after, bench)
        assert theirs is not None
        persons = [(i["person_id"], i["country"]) for i in after_items]
        chunks, inputs = item_batches(after_items, list(range(len(after_items))), batch_persons(after, persons))
        got = {b: [r[:SECONDS] + r[SECONDS + 1 :] for r in as_rows(rows)] for b, rows, *_ in theirs(None, inputs)}
    finally:
        c._answer_batch.remote = real  # type: ignore[method-assign]
    assert len(chunks) > ahead and len(submitted) == len(chunks) - ahead  # those taken, none run twice
    assert not c._AHEAD and not c._NEXT
    program = PROGRAMS["knn"].from_benchmark(bench)
    _, inputs = item_batches(after_items, list(range(len(after_items))), batch_persons(after, persons))
    assert got == {b: [r[:SECONDS] + r[SECONDS + 1 :] for r in rows] for b, rows, *_ in in_order(program, inputs)}
    # queued for a cell that then runs other inputs: nothing taken, and nothing left behind
    predict_ahead(after, bench, after_items, now)
    list(ours(None, item_batches(now_items, list(range(len(now_items))), 2)[1]))
    assert c._AHEAD
    other = Setup(program="knn", history=58, persons=40, questions=3, ray=c.LOCAL)
    run = batch_workers(after, bench)
    assert run is not None
    list(run(None, item_batches(items(bench, **other.selection()), [0, 1], 2)[1]))
    assert not c._AHEAD


@pytest.mark.parametrize("program", ["knn", "cell", "ml", "random"])
def test_a_built_program_carries_what_it_builds_at_its_first_prediction(cluster, bench_small: Path, program) -> None:
    """Each batch task gets its own copy of the program from the object store: a smoothing constant or tallies left
    to the first prediction would be built again in every task."""
    from valuesim.run import cluster
    from valuesim.run.runner import Setup

    built = ray.get(cluster.built(Setup(program=program), bench_small, frozenset({"Q1", "Q2"})))
    if program != "random":
        assert built.smoothing is not None and {"all", "country"} <= set(built._tallies)
    if program == "cell":
        assert "cell" in built._tallies
    if program == "ml":  # its models fitted (with any this process had fitted before), it carries no fitting data
        assert {"Q1", "Q2"} <= set(built.fits) and not built._rows and not built._training


@pytest.fixture(scope="module")
def stub():
    """The 200 ms stub of scripts/concurrency_bench.py, here answering after 0.1 s."""
    server = _stub_module().StubServer(delay=0.1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def invoke(*args: object, home: Path | None = None):
    env = {"OPENAI_API_KEY": "stub"} | ({"VALUESIM_HOME": str(home)} if home else {})
    r = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def rows(run_dir: Path) -> pd.DataFrame:
    """The stored rows without their timings, by key."""
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        frame = pd.read_sql_query("SELECT * FROM predictions", db)
    return frame.drop(columns=["seconds"]).sort_values("key").reset_index(drop=True)


def untimed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}


def uncounted(metrics: dict) -> dict:
    """The metrics without timings and LM-call counts: a call a killed run's worker finished but the driver never
    stored is in DSPy's cache, so the rerun of its item makes no call (fewer calls, the same answer)."""
    return {k: v for k, v in untimed(metrics).items() if not any(c in k for c in ("lm_calls", "tokens", "cost"))}


def fewer_calls(metrics: dict, one: dict) -> bool:
    return 0 < metrics["lm_calls_per_pred"] <= one["lm_calls_per_pred"]


@pytest.mark.parametrize("program", ["knn", "ml", "cell", "valuesim"])
def test_ray_evaluate_gives_the_one_process_rows_and_metrics(
    cluster, bench_small: Path, tmp_path: Path, program: str
) -> None:
    lm = ["--lm", "dummy", "--threads", "3"] if program == "valuesim" else []
    common = ["evaluate", "--program", program, *lm, "--data", bench_small, *SELECTION, "--json"]
    one = invoke(*common, "--run-dir", tmp_path / "one")
    spread = invoke(*common, "--run-dir", tmp_path / "ray", "--ray")
    assert one["metrics"]["n"] == 48 and untimed(spread["metrics"]) == untimed(one["metrics"])
    assert spread["by_country"] == one["by_country"] and spread["by_category"] == one["by_category"]
    assert rows(tmp_path / "ray").equals(rows(tmp_path / "one"))


def test_ray_bench_gives_the_one_process_table(cluster, bench_small: Path, tmp_path: Path) -> None:
    common = ["bench", "--programs", "knn,ml,demographics", "--history", "0,20", "--lm", "dummy", "--persons", "6",
              "--questions", "4", "--resamples", "50", "--data", bench_small, "--json"]  # fmt: skip
    one = invoke(*common, "--out", tmp_path / "one")["results"]
    spread = invoke(*common, "--out", tmp_path / "ray", "--ray")["results"]
    assert len(one) == 6
    for a, b in zip(one, spread, strict=True):
        assert {k: v for k, v in a.items() if "seconds" not in k} == {k: v for k, v in b.items() if "seconds" not in k}


def test_a_ray_bench_predicts_each_batch_once(cluster, bench_small: Path, tmp_path: Path, monkeypatch) -> None:
    """Every cell takes the batches started for it while the cell before it ran, at every history: no batch is
    sent to the workers twice. (Queuing the next cell dropped the running cell's started batches, so every cell of
    a bench but the last predicted its batches twice.)"""
    from valuesim import config
    from valuesim.run import cluster as c

    submitted = []
    real = c._answer_batch.remote
    monkeypatch.setattr(c._answer_batch, "remote", lambda *a: submitted.append(1) or real(*a))
    results = invoke("bench", "--programs", "knn", "--history", "0,10,20,30", "--persons", "12", "--questions", "4",
                     "--resamples", "20", "--data", bench_small, "--out", tmp_path / "b", "--ray", "--json",
                     home=tmp_path / "home")["results"]  # fmt: skip
    assert [r["history"] for r in results] == [0, 10, 20, 30]  # four cells, each predicted (their inputs differ)
    batches = [-(-r["persons"] // c.persons_per_batch(r["persons"], config.BATCH_PERSONS)) for r in results]
    assert min(batches) > 1 and len(submitted) == sum(batches)
    assert not c._AHEAD and not c._NEXT


def worker_pids() -> list[int]:
    """The ValueSim Ray workers of this module's cluster: processes titled ray::Worker whose raylet this process
    started."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith("ray::Worker") and grandparent == os.getpid():
            found.append(int(proc.name))
    return found


def stored_count(run_dir: Path) -> int:
    """Rows the driver has stored; read-only, so polling before the driver claims the folder creates no empty
    store there (the driver then refused the folder: "holds predictions of a run without run.json")."""
    try:
        with sqlite3.connect(f"file:{run_dir / 'predictions.sqlite'}?mode=ro", uri=True, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])
    except sqlite3.Error:
        return 0


def start_driver(cluster: str, stub, bench: Path, run_dir: Path, home: Path, *extra: str) -> subprocess.Popen:
    """`valuesim evaluate --ray-address <this module's cluster>` as its own process (demographics on the stub)."""
    args = [sys.executable, "-m", "valuesim", "evaluate", "--program", "demographics", "--lm", "openai/stub",
            "--api-base", stub.api_base, "--threads", "2", "--data", str(bench), *SELECTION, "--run-dir",
            str(run_dir), "--ray-address", cluster, "--json", *extra]  # fmt: skip
    env = os.environ | {"VALUESIM_HOME": str(home), "OPENAI_API_KEY": "stub", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(run_dir: Path, proc: subprocess.Popen, count: int) -> None:
    deadline = time.time() + 300
    while stored_count(run_dir) < count:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "the run stored too few predictions in 5 minutes"
        time.sleep(0.1)


def one_process(stub, bench: Path, tmp_path: Path) -> dict:
    return invoke("evaluate", "--program", "demographics", "--lm", "openai/stub", "--api-base", stub.api_base,
                  "--threads", "4", "--data", bench, *SELECTION, "--run-dir", tmp_path / "one", "--json",
                  home=tmp_path / "home-one")  # fmt: skip


@pytest.fixture
def slow_stub(stub):
    """The stub at 0.5 s a request while a run is killed mid-way: at 0.1 s the 48 predictions (4 in flight) could
    all finish between the test seeing the first rows and its kill."""
    stub.delay = 0.5
    try:
        yield stub
    finally:
        stub.delay = 0.1


def test_a_worker_killed_mid_run_loses_nothing(cluster, slow_stub, bench_small: Path, tmp_path: Path) -> None:
    stub = slow_stub
    run_dir = tmp_path / "ray"
    proc = start_driver(cluster, stub, bench_small, run_dir, tmp_path / "home-ray")
    wait_for_rows(run_dir, proc, 6)
    pids = worker_pids()
    assert len(pids) == 2, pids  # one worker per CPU
    os.kill(pids[0], signal.SIGKILL)
    assert stored_count(run_dir) < 48  # killed mid-run
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert worker_pids() == [] or pids[0] not in worker_pids()
    result = json.loads(out)
    stored = rows(run_dir)
    assert len(stored) == 48 and stored["key"].is_unique and (stored["status"] == "ok").all()
    one = one_process(stub, bench_small, tmp_path)
    assert uncounted(result["metrics"]) == uncounted(one["metrics"]) and fewer_calls(result["metrics"], one["metrics"])
    assert stored.drop(columns=["detail"]).equals(rows(tmp_path / "one").drop(columns=["detail"]))


def test_resume_after_the_driver_was_killed(cluster, slow_stub, bench_small: Path, tmp_path: Path) -> None:
    stub = slow_stub
    run_dir, home = tmp_path / "ray", tmp_path / "home-ray"
    proc = start_driver(cluster, stub, bench_small, run_dir, home)
    wait_for_rows(run_dir, proc, 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert 6 <= stored_count(run_dir) < 48
    resumed = start_driver(cluster, stub, bench_small, run_dir, home, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    stored = rows(run_dir)
    not_ok = stored[stored["status"] != "ok"].to_dict("records")
    assert len(stored) == 48 and stored["key"].is_unique and not not_ok, not_ok
    one = one_process(stub, bench_small, tmp_path)
    metrics = json.loads(out)["metrics"]
    assert uncounted(metrics) == uncounted(one["metrics"]) and fewer_calls(metrics, one["metrics"])


@pytest.mark.llm
def test_an_lm_program_on_the_llama_cpp_server(cluster, bench_small: Path, tmp_path: Path) -> None:
    from test_lm import _smollm2_available

    from valuesim.testing.servers import free_port, start_server

    if not _smollm2_available():
        pytest.skip("llama_cpp or the SmolLM2 GGUF is not installed")
    port = free_port()
    server = start_server(port)
    try:
        out = invoke("evaluate", "--program", "demographics", "--lm", "openai/smollm2", "--api-base",
                     f"http://127.0.0.1:{port}/v1", "--threads", "2", "--timeout", "900", "--data", bench_small,
                     "--persons", "2", "--questions", "2", "--history", "20", "--run-dir", tmp_path / "run",
                     "--ray", "--json")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    m = out["metrics"]
    assert m["n"] == 4 and m["failed"] == 0 and m["lm_calls_per_pred"] >= 1 and m["prompt_tokens_per_pred"] > 0


@pytest.mark.llm
def test_an_embedded_model_is_loaded_once_per_worker_and_answers_as_in_one_process(
    cluster, bench_small: Path, tmp_path: Path, monkeypatch
) -> None:
    """`--lm smollm2` under --ray: each worker loads the GGUF once (for all its threads and items), and the run
    stores what one process stores: the same answers, and distributions read from the model's logits that agree
    to float rounding (llama.cpp's sums may differ in the last bits with what its prefix cache reused)."""
    from test_lm import _smollm2_available

    from valuesim.run.cluster import Worker
    from valuesim.run.runner import Setup

    if not _smollm2_available():
        pytest.skip("llama_cpp or the SmolLM2 GGUF is not installed")

    class Probe(Worker):  # defined here: Ray pickles it by value
        def models_loaded(self) -> tuple[int, int]:
            """(models loaded in this process, llama.cpp threads of the run's engine)"""
            import dspy

            from valuesim.lm import engine, engine_of

            return len(engine._loaded), engine_of(dspy.settings.lm).n_threads

    from valuesim.data.benchmark import Benchmark

    # no LM cache: DSPy's in-memory cache lives as long as a Ray worker process, which an earlier test may have used
    setup = Setup(program="demographics", lm="smollm2", persons=2, questions=3, history=20, cache=False)
    worker = ray.remote(Probe).options(num_cpus=1, max_concurrency=2).remote(setup, str(bench_small), None)
    examples = Benchmark(bench_small).examples(**setup.selection())
    predicted = ray.get([worker.predict.remote(ex) for ex in examples])
    assert len(predicted) == 6 and all(r["status"] == "ok" and r["probs_method"] == "logprobs" for r in predicted)
    # one model for 6 predictions on 2 threads, run on the worker's one CPU (2 workers x 2 threads thrash 2 cores)
    assert ray.get(worker.models_loaded.remote()) == (1, 1)
    ray.kill(worker)

    common = ["evaluate", "--program", "demographics", "--lm", "smollm2", "--threads", "2", "--data", bench_small,
              "--persons", "2", "--questions", "3", "--history", "20", "--json"]  # fmt: skip
    one = invoke(*common, "--run-dir", tmp_path / "one")
    monkeypatch.setenv("VALUESIM_HOME", str(tmp_path / "other-home"))  # not answered from the first run's LM cache
    spread = invoke(*common, "--run-dir", tmp_path / "ray", "--ray")
    assert spread["metrics"]["n"] == one["metrics"]["n"] == 6 and spread["metrics"]["failed"] == 0
    a, b = rows(tmp_path / "one"), rows(tmp_path / "ray")
    assert a["answer"].tolist() == b["answer"].tolist() and (b["probs_method"] == "logprobs").all()
    for p, q in zip(a["probs"], b["probs"], strict=True):
        p, q = json.loads(p), json.loads(q)
        assert p.keys() == q.keys() and max(abs(p[c] - q[c]) for c in p) < 1e-4, (p, q)
