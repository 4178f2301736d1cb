"""Runs spread over a Ray cluster (`--ray`, `--ray-address`): the only module that imports Ray, imported only by a
run that asks for it (`import valuesim` loads no Ray).

LM programs: one actor (worker) per CPU of the cluster builds the program and its LM once (an embedded model is
loaded once per worker) and runs up to `threads` predictions at once (a threaded actor), so in-flight requests =
workers x threads. Each person's items go to one worker, its first item before the others (PersonQueue, as in one
process), so a backstory is written once. Workers return the row `row_of` makes (whatever columns it carries);
the driver is the single writer of the run's store and commits each row as it arrives (`ray.wait`).

A worker that dies (killed, out of memory, its node lost) is restarted by Ray, which runs its unfinished calls
again (`max_restarts`, `max_task_retries`); one that stays dead is replaced and its unfinished persons go to the
new worker. The driver stores a row only for a call it is still waiting on, and the store's key is the person
and question, so nothing is lost or counted twice.

Programs without an LM: a Ray task builds the program and returns it into Ray's object store, once per connection
(`ml` fitting its question models as parallel tasks meanwhile, `fit_on_cluster`); each batch of persons is one Ray
task on it, started once the program is built (each worker process reads the program once; its numpy arrays, kNN's
training matrix among them, are read in place, not copied). A task returns its batch's store rows (a SQLite database
of them) and its part of the predictions table; the driver inserts the rows in one statement and joins the parts.
The driver never holds the program: it keeps the items, the store and the tables. In a bench, the next two cells'
batches are queued (`run_ahead`) and start as soon as this cell's are all started, so the workers predict while the
driver scores; a cell takes those results by its name and each batch's number, when the batch has the same items
(`taken`).
"""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dspy
import ray
from ray.exceptions import RayActorError

from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS
from valuesim.progress import bars
from valuesim.run.predict import (
    STORED,
    Batch,
    BatchResult,
    PersonQueue,
    Recorded,
    RunStopped,
    Tally,
    answer_batch,
    row_of,
)
from valuesim.run.store import RunStore, values_db

LOCAL = "local"  # --ray without an address: a cluster started for the run on this machine
RESTARTS = 3  # Ray restarts a dead worker this often (rerunning its calls) before the driver replaces it
# Local workers' nice value, not Ray's 15 (at which, sharing a core with other work, they got a few percent of it):
# the driver (nice 0), the run's single writer, goes first and keeps up with the results; at 0 it fell behind and
# scored a bench's last cells while the workers idled (BENCHMARKS §13)
WORKER_NICENESS = 5
REPLACEMENTS = 3  # workers the driver replaces per run before it stops (the --resume message keeps what was stored)
# what a worker needs of the driver's environment: where ValueSim keeps state, MLflow, DSPy's cache, API keys
PASSED_PREFIXES = ("VALUESIM_", "DSPY_", "MLFLOW_", "LITELLM_", "HF_", "TRANSFORMERS_")
PASSED_SUFFIXES = ("_API_KEY", "_API_BASE")


@contextmanager
def connected(address: str) -> Iterator[None]:
    """Ray for the run: a local cluster with this machine's CPUs (`LOCAL`), or the cluster at `address` (`auto`,
    `ray://head:10001`); shut down at the end. A process already connected (a bench's later cells, a test, a
    notebook) keeps its connection."""
    if ray.is_initialized():
        yield
        return
    try:
        if address == LOCAL:
            # "local" always starts a new cluster: a plain ray.init() would join one another process started here.
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     _system_config={"worker_niceness": WORKER_NICENESS})  # fmt: skip
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueSimError(f"--ray {address}: cannot connect to a Ray cluster ({str(e).splitlines()[0]})") from None
    try:
        yield
    finally:
        _BUILT.clear()
        _NEXT.clear()
        _AHEAD.clear()
        ray.shutdown()


def worker_count() -> int:
    """One worker per CPU of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def persons_per_batch(persons: int, most: int) -> int:
    """Batches small enough that every worker gets about four (at most `most` persons each)."""
    return max(1, min(most, -(-persons // (4 * worker_count()))))


def passed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES) or k.endswith(PASSED_SUFFIXES)}


class Worker:
    """One Ray actor: the program and its LM, built once from the run's Setup (and a compiled state)."""

    def __init__(self, setup: Any, data: str, state: dict | None):
        # LiteLLM whole, here, before the threads: DSPy imports it at the first LM call, and threads making their
        # first calls at once got "partially initialized module 'litellm' has no attribute 'completion'"
        # (predictions failed in 1 of 4 runs of the resume test)
        import litellm  # noqa: F401

        from valuesim.data.benchmark import Benchmark
        from valuesim.lm import engine_of
        from valuesim.run.runner import ready_program

        self.error: str | None = None
        try:  # a user error (an unreachable LM, a bad model file) is reported by `ready`, not a crash loop
            program, _, _ = ready_program(setup, Benchmark(data))
            engine = engine_of(dspy.settings.lm)
            if engine is not None:  # an embedded model: llama.cpp threads = this worker's CPUs (it loads at first use)
                engine.n_threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
            if state is not None:
                program.load_state(state)
            self.recorded = Recorded(program)
        except Exception as e:  # noqa: BLE001 - any build error is reported to the driver as one line
            self.error = str(e) if isinstance(e, ValueSimError) else f"{type(e).__name__}: {e}"

    def ready(self) -> tuple[int, str | None]:
        """(the worker's process id, its build error or None)."""
        return os.getpid(), self.error

    def predict(self, example: dspy.Example) -> dict:
        return row_of(example, self.recorded(**example.inputs()))


class Workers:
    """The run's LM workers and the predictions each has in flight."""

    def __init__(self, setup: Any, data: Path, state: dict | None, threads: int, count: int):
        self.args, self.threads = (setup, str(data), state), threads
        self.actor = ray.remote(Worker).options(
            num_cpus=1,
            max_concurrency=threads,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            runtime_env={"env_vars": passed_env()},
        )
        self.handles: list[Any] = [self.actor.remote(*self.args) for _ in range(count)]  # Ray actor handles
        self.pids = [self.check(h) for h in self.handles]
        self.replaced = 0

    def check(self, handle: Any) -> int:
        pid, error = ray.get(handle.ready.remote())
        if error:
            raise ValueSimError(f"a Ray worker could not build the program: {error}")
        return pid

    def replace(self, w: int) -> None:
        """A new worker in place of worker `w`, which stayed dead after Ray's restarts."""
        self.replaced += 1
        if self.replaced > REPLACEMENTS:
            raise RunStopped(
                f"{self.replaced} Ray workers died and stayed dead; stopped with what finished stored: check the "
                "cluster (memory, nodes) and rerun with --resume"
            )
        self.handles[w] = self.actor.remote(*self.args)
        self.pids[w] = self.check(self.handles[w])


def predict_on_workers(
    setup: Any, data: Path, state: dict | None, todo: list[dspy.Example], store: RunStore, threads: int, progress: bool
) -> None:
    """`predict_all` over Ray workers (see the module docstring): the same rows, store, bar and failure rules."""
    count = worker_count()
    workers = Workers(setup, data, state, threads, count)
    persons = list(dict.fromkeys(ex.person_id for ex in todo))
    worker_of = {p: n % count for n, p in enumerate(persons)}  # a person's items stay with one worker
    queues = [PersonQueue([ex for ex in todo if worker_of[ex.person_id] == w]) for w in range(count)]
    in_flight: dict[Any, tuple[int, dspy.Example]] = {}  # call -> (worker, example)

    def fill(w: int) -> None:
        busy = sum(1 for v, _ in in_flight.values() if v == w)
        while busy < threads and (example := queues[w].next()) is not None:
            in_flight[workers.handles[w].predict.remote(example)] = (w, example)
            busy += 1

    def requeue(w: int) -> None:
        """Worker `w` stayed dead: its unfinished items, in-flight ones first, go to its replacement."""
        lost = [in_flight.pop(ref)[1] for ref in [r for r, (v, _) in in_flight.items() if v == w]]
        queues[w] = PersonQueue([*lost, *queues[w].remaining()])
        workers.replace(w)

    with bars(progress) as bar:
        task = bar.add_task("predicting", total=len(todo))
        tally = Tally(store, lambda: bar.advance(task))
        for w in range(count):
            fill(w)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            before, dead = tally.finished, set()
            for ref in ready:
                if ref not in in_flight:  # a call of a worker replaced meanwhile: its item was sent again
                    continue
                w, example = in_flight[ref]
                try:
                    row = ray.get(ref)
                except RayActorError:
                    dead.add(w)
                    continue
                del in_flight[ref]
                queues[w].done(example)
                tally.add(row)
            tally.stop_if_all_failed(before)
            for w in dead:
                requeue(w)
            for w in range(count):
                fill(w)
    tally.summary()


_PROGRAM: dict[str, Any] = {}  # in a worker process: the program it last read from the object store, by its ref


@ray.remote(max_retries=RESTARTS, retry_exceptions=False)
def _answer_batch(shared: list, batch: bytes) -> bytes:
    """`answer_batch`: the batch's store rows (as a database: `values_db`) and predictions table, made here so the
    driver only inserts and joins them; pickled as the batch is (`pickled`). The program's ref comes in a list, so
    Ray does not read the program for every task: a worker process reads it once (otherwise every task unpickles
    ml's fitted models again)."""
    [ref] = shared
    if ref.hex() not in _PROGRAM:
        _PROGRAM.clear()  # one program at a time: a bench's next program replaces it
        gc.unfreeze()
        _PROGRAM[ref.hex()] = ray.get(ref)
        gc.collect()  # what earlier tasks left in reference cycles, before the freeze would keep it
        gc.freeze()  # the program lives as long as the process: the garbage collector need not go through it again
    rows, error, table = answer_batch(_PROGRAM[ref.hex()], unpickled(batch))
    return pickle.dumps((values_db(STORED, rows), error, table), protocol=pickle.HIGHEST_PROTOCOL)


def unpickled(data: bytes) -> Any:
    """pickle.loads with the garbage collector paused: a batch is about 100,000 new dicts, and the collections they
    set off cost six times the reading (0.41 s -> 0.07 s per batch of the whole WVS-7). What is read is collected
    later as anything else."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        if was_enabled:
            gc.enable()


def pickled(batch: Batch) -> bytes:
    """A batch for a Ray task, pickled here: Ray's own serializer copies an object at each reference, so a
    person's `known` dict, shared by their items, would travel (and be read back) once per item, 48 times the
    bytes. Pickle sends it once. (Programs find a person's items by person_id and answers, not by the dict's
    identity: `group_persons`.)"""
    return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


@ray.remote(max_retries=RESTARTS)
def _build(setup: Any, data: Path) -> Any:
    """The run's program without an LM, built on the cluster: its return value goes to the object store, so the
    driver never holds a copy."""
    return prepared(built_here(setup, data))


def fit_on_cluster(setup: Any, data: Path, questions: frozenset[str]) -> Any:
    """`ml` with its models for the `questions`, made by Ray tasks that wait on nothing (Ray starts each once its
    inputs are ready): one builds the program with its smoothing and tallies (`_build`), one makes the models'
    training inputs (`_to_fit`), one per model fits it, the costliest first, and `_with_fits` returns the program
    with its models. Returns its ref; the driver neither waits nor holds any of it. (A task waiting on others gives
    up its CPU, and Ray starts more worker processes, each reading the program again.)"""
    from valuesim.programs.ml import fit_one

    known: Any
    todo: Any
    known, todo = _to_fit.options(num_returns=2).remote(setup, data, questions)  # type: ignore[misc]  # two refs
    fits = [_fit.remote(fit_one, todo, n) for n in range(len(questions))]
    return _with_fits.remote(_build.remote(setup, data), known, *fits)


@ray.remote(max_retries=RESTARTS)
def _to_fit(setup: Any, data: Path, questions: frozenset[str]) -> tuple[dict, list[tuple]]:
    """`ml`'s models for the `questions` that need no fitting (question -> None: nothing to learn), and those to
    fit: (question, its fold's training inputs, the rest of `fit_one`'s arguments), the costliest first within a
    fold (`fits_to_make`). Each fit task reads them in place from the object store."""
    program = built_here(setup, data)
    todo = [(q, x, args) for x, by_question in program.fits_to_make(questions) for q, args in by_question.items()]
    return {q: program.fits[q] for q in questions if q in program.fits}, todo


@ray.remote(max_retries=RESTARTS)
def _fit(fit: Any, todo: list[tuple], n: int) -> tuple[str, Any] | None:
    """The `n`th model of `_to_fit`'s list, with its question; None past the list's end."""
    if n >= len(todo):
        return None
    question, x, args = todo[n]
    return question, fit(x, *args)


@ray.remote(max_retries=RESTARTS)
def _with_fits(program: Any, known: dict, *fits: tuple[str, Any] | None) -> Any:
    program.fits.update(known)
    program.fits.update(fit for fit in fits if fit is not None)
    return program


def built_here(setup: Any, data: Path) -> Any:
    """The run's program without an LM, as `build_program` returns it."""
    from valuesim.data.benchmark import Benchmark
    from valuesim.run.runner import build_program

    return build_program(setup.program, Benchmark(data), setup.settings, setup.protocol)[0]


def prepared(program: Any) -> Any:
    """The program with what it builds at its first prediction built: each worker process reads its own copy from
    the object store, and would otherwise build it again (kNN choosing its smoothing took minutes per task)."""
    if hasattr(program, "prepare"):
        program.prepare()
    return program


_BUILT: dict[tuple, Any] = {}  # (program, settings, benchmark, questions, cluster) -> the built program's ref


def built(setup: Any, data: Path, questions: frozenset[str]) -> Any:
    """The program's object in the object store, built once per connection (a bench's histories share it)."""
    key = (
        setup.program,
        repr(sorted(setup.settings.items())),
        str(data),
        questions,
        ray.get_runtime_context().gcs_address,
    )
    if key not in _BUILT:
        learns = hasattr(PROGRAMS.get(setup.program), "fits_to_make")
        _BUILT[key] = fit_on_cluster(setup, data, questions) if learns else _build.remote(setup, data)
    return _BUILT[key]


def batches_on_workers(
    program: Any,
    batches: Iterable[Batch],
    build: tuple[Any, Path, frozenset[str]] | None = None,
    cell: str | None = None,
) -> Iterator[BatchResult]:
    """The batches as parallel Ray tasks (a task whose worker dies is run again by Ray), yielded as they finish.
    The program is in the object store once: built there from `build` (setup, benchmark folder, questions), or
    the given one put there. At most two batches per CPU are in flight, so they are pickled as needed.
    A batch started ahead for this `cell` (`run_ahead`: the same program and items) is taken, not run again;
    once this cell's batches are all started, the queued cells' batches start (AHEAD per CPU; Ray queues them)."""
    shared = built(*build) if build else ray.put(prepared(program))
    # a task started before its program is built would wait for it without its CPU, and Ray would start
    # another worker process (which reads the program again) in its place
    ray.wait([shared], fetch_local=False)
    queued = [c for c, *_ in _NEXT]
    if cell in queued:  # its own batches take over, its started ones stay; cells queued before it were not run
        del _NEXT[: queued.index(cell) + 1]
    limit = 2 * worker_count()
    pending = iter(enumerate(batches))
    in_flight: dict[Any, int] = {}
    while True:
        while len(in_flight) < limit and (nxt := next(pending, None)) is not None:
            b, batch = nxt
            ref = taken(cell, shared, b, batch)
            in_flight[ref if ref is not None else _answer_batch.remote([shared], pickled(batch))] = b
        if len(in_flight) < limit:  # this cell's batches are all started: the queued cells' fill the queue
            start_ahead(AHEAD * worker_count())
        if not in_flight:
            drop_ahead(cell)  # started for this cell, not taken (its inputs differed)
            return
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        yield in_flight.pop(ref), *unpickled(ray.get(ref))


AHEAD = 8  # batches per CPU started ahead: about two cells (persons_per_batch), so the workers do not idle while
# the driver scores a cell and makes the items of the one after next; their results wait in the object store (tens
# of MB per batch)

# The next cells' batches, started while this cell's last batches finish and the driver scores and logs it (a
# bench's serial part; BENCHMARKS §13): (cell, program ref, its numbered batches) queued by `run_ahead` in the
# order the cells run, and the tasks started from them by (cell, program ref, batch number), with the batch's
# items. Only that cell, with the same program and the same items, takes a result, so an answer is always the one
# its own batch would give.
_NEXT: list[tuple[str, Any, Iterator[tuple[int, Batch]]]] = []
_AHEAD: dict[tuple[str | None, str, int], tuple[Batch, Any]] = {}


def run_ahead(cell: str, build: tuple[Any, Path, frozenset[str]], batches: Iterator[Batch], running: str) -> None:
    """Queue the batches of a later `cell` (its program from `build`, as `batches_on_workers` takes it) while the
    `running` cell is about to run; what was started for cells neither running nor queued, and not taken, is
    dropped. The running cell's started batches stay: it was queued until now, and it takes them (dropping them
    too made every cell of a bench but the last predict its batches twice)."""
    if all(c != cell for c, *_ in _NEXT):
        _NEXT.append((cell, built(*build), enumerate(batches)))
    keep = {running, *(c for c, *_ in _NEXT)}
    for key in [k for k in _AHEAD if k[0] not in keep]:
        ray.cancel(_AHEAD.pop(key)[1])


def start_ahead(most: int) -> None:
    """Start queued batches, cell by cell, until `most` are started ahead and not yet taken (Ray runs them as CPUs
    free up). A cell stays queued until it runs: its started batches are kept for it (`run_ahead`)."""
    for cell, shared, batches in _NEXT:
        if not ray.wait([shared], timeout=0, fetch_local=False)[0]:  # not built yet (see batches_on_workers)
            return
        while len(_AHEAD) < most:
            nxt = next(batches, None)
            if nxt is None:  # this cell's batches are all started: the next cell's
                break
            b, batch = nxt
            _AHEAD[(cell, shared.hex(), b)] = (batch, _answer_batch.remote([shared], pickled(batch)))
        else:
            return


def taken(cell: str | None, shared: Any, b: int, batch: Batch) -> Any | None:
    """The task started ahead for this cell's batch number `b`, when it was started on the same items: the same
    dicts (the bench's items of a cell are made once), compared by identity, as comparing their values would
    cost as much as pickling them. None (and the task cancelled) otherwise."""
    started = _AHEAD.pop((cell, shared.hex(), b), None)
    if started is None:
        return None
    items, ref = started
    if len(items) == len(batch) and all(a is c for a, c in zip(items, batch, strict=True)):
        return ref
    ray.cancel(ref)
    return None


def drop_ahead(cell: str | None) -> None:
    for key in [k for k in _AHEAD if k[0] == cell]:
        ray.cancel(_AHEAD.pop(key)[1])
