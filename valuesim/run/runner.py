"""Wires the stages: benchmark -> program -> predictions -> metrics -> MLflow. The CLI calls these (and
valuesim/run/bench.py, which runs many of them side by side).

Every evaluate and compile is an MLflow run (experiments "valuesim-evaluate" and "valuesim-compile") and keeps
its predictions in a run folder (runs/<name>/predictions.sqlite), so an interrupted run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
import pandas as pd

from valuesim import config, files, tracking
from valuesim.data.benchmark import Benchmark, item_questions
from valuesim.data.benchmark import items as benchmark_items
from valuesim.errors import ProgramLoadError, ValueSimError
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.programs.saved import load_program, save_program
from valuesim.programs.settings import check_settings
from valuesim.programs.statistical import country_majorities
from valuesim.run.folder import claim
from valuesim.run.predict import (
    BatchRunner,
    EvalResult,
    Predictor,
    evaluate,
    evaluate_batch,
    item_batches,
    read_stored,
)
from valuesim.score.plots import reliability_png
from valuesim.score.results import country_floor
from valuesim.score.stats import item_table, paired_difference


@dataclass
class Setup:
    """What a run evaluates: the data selection, the program and the LM."""

    program: str = "knn"
    protocol: str = "values"
    split: str = "dev"
    fold: int = 1
    history: int = 232
    persons: int | None = None
    questions: int | None = None
    lm: str = config.DEFAULT_LM
    api_base: str | None = None
    threads: int = 1
    seed: int = 0
    cache: bool = True  # DSPy's LM cache; off to measure real cost
    resamples: int = config.RESAMPLES  # bootstrap draws over persons for the 95% CIs (0: none)
    retry_failed: bool = True  # a resumed run predicts failed items again
    timeout: float = config.TIMEOUT  # seconds per remote LM call before it is retried (then recorded as failed)
    samples: int = 0  # LM programs without logprobs: answers drawn for the distribution (programs/distribution.py)
    settings: dict = field(default_factory=dict)  # program settings (backstory_words, ...)
    ray: str | None = None  # spread the predictions over a Ray cluster: "local" (started for the run) or an address

    def selection(self, **changes: Any) -> dict[str, Any]:
        """Which persons and questions the run sees, as `Benchmark.examples` and `benchmark.items` take them."""
        keys = ("protocol", "split", "fold", "history", "persons", "questions", "seed")
        return {k: getattr(self, k) for k in keys} | changes


def configure_lm(model: str, api_base: str | None = None, cache: bool = True, timeout: float = config.TIMEOUT) -> dict:
    """Build the LM once and make it DSPy's default, with the options-constrained JSON adapter.

    Remote calls time out after `timeout` seconds and are retried 3 times (LiteLLM's exponential backoff, which
    honours a server's Retry-After); an item whose call still fails is recorded as failed with the reason."""
    from valuesim.lm import lm_info
    from valuesim.programs.options import OptionsAdapter

    lm = checked_lm(model, api_base, cache, timeout)
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    return lm_info(lm)


def checked_lm(model: str, api_base: str | None = None, cache: bool = True, timeout: float = config.TIMEOUT) -> dspy.LM:
    """`run_lm`, then checked before a long run: a served model answers one tiny call, an embedded one loads and
    generates a token (a broken model file or a llama.cpp build for another CPU: one clear error, not N failures)."""
    from valuesim.lm import engine_of

    lm = run_lm(model, api_base, cache, timeout)
    engine = engine_of(lm)
    if engine is None:
        preflight(lm, api_base)
    else:
        check_engine_once(engine.model_path)
    return lm


def run_lm(model: str, api_base: str | None = None, cache: bool = True, timeout: float = config.TIMEOUT) -> dspy.LM:
    """The LM a run calls, built but neither checked nor configured (its `lm_info` is part of the run's identity)."""
    from valuesim.lm import build_lm, is_embedded

    remote: dict[str, Any] = {} if is_embedded(model) else {"timeout": timeout}
    return build_lm(model, api_base=api_base, num_retries=3, cache=cache, **remote)


@functools.cache
def check_engine_once(path: Path) -> None:
    from valuesim.lm.check import check_engine

    check_engine(path)


def preflight(lm: dspy.LM, api_base: str | None) -> None:
    """One tiny call before a long run, so a server that is down is one clear error, not N failed items."""
    try:
        lm.copy(cache=False)("ping", max_tokens=1)  # with the run's retries: a 429 is a busy server, not a dead one
    except Exception as e:  # noqa: BLE001 - LiteLLM wraps transport errors in many types
        where = f" at {api_base}" if api_base else ""
        reason = files.first_line(e)
        if "api key" in reason.lower() or "api_key" in reason:  # reached, or not even tried: credentials
            provider = lm.model.split("/", 1)[0].upper()
            raise ValueSimError(
                f"LM {lm.model}{where} needs an API key: set {provider}_API_KEY (for a local server without keys, "
                f"any value: export {provider}_API_KEY=none). {reason}"
            ) from None
        raise ValueSimError(f"LM {lm.model}{where} is not reachable: {reason}") from None


def build_program(
    spec: str, bench: Benchmark, settings: dict | None = None, protocol: str = "values"
) -> tuple[dspy.Module, str, dict]:
    """A program from a name or a compiled-program URI. Returns (program, program name, its settings). A program
    that learns from the benchmark rows (`ml`: "protocol" in its `wired`) gets the run's protocol."""
    if spec in PROGRAMS:
        check_settings(spec, settings or {})
        wired = {"protocol": protocol} if "protocol" in getattr(PROGRAMS[spec], "wired", ()) else {}
        return PROGRAMS[spec].from_benchmark(bench, **wired, **(settings or {})), spec, settings or {}
    program, meta = load_program(tracking.resolve_uri(spec))
    return program, meta["program"], meta.get("settings", {})


def load_saved(uri: str, allow_pickle: bool = False) -> dspy.Module:
    """A saved program from a folder, `runs:/` or `models:/` URI, rebuilt from DSPy's JSON state. `allow_pickle`
    loads a `models:/` URI with MLflow's dspy flavor instead, which unpickles the model files: that runs code from
    the file, so only for models you logged yourself."""
    if allow_pickle and uri.startswith("models:/"):
        try:
            return tracking.load_dspy_model(uri)
        except Exception as e:  # noqa: BLE001 - MLflow raises several kinds for a missing or unreadable model
            raise ProgramLoadError(f"{uri}: cannot be loaded from the MLflow model registry ({e})") from None
    program, _ = load_program(tracking.resolve_uri(uri))
    return program


def sample_params(persons: Iterable[tuple[str, str]], prefix: str = "") -> dict:
    """Which persons a run saw, from (person_id, country) pairs: how many, and per country ("BGD:2,COL:2")."""
    per_country: dict[str, set] = {}
    for person_id, country in persons:
        per_country.setdefault(country, set()).add(person_id)
    return {
        f"{prefix}n_persons": sum(len(v) for v in per_country.values()),
        f"{prefix}persons_by_country": ",".join(f"{c}:{len(v)}" for c, v in sorted(per_country.items())),
    }


def split_by_person(
    examples: list[dspy.Example], val_share: float, seed: int
) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Examples split into two sets of persons (a person's questions stay together), within each country."""
    persons = sorted({(ex.country, ex.person_id) for ex in examples})
    random.Random(f"{seed}-val").shuffle(persons)
    val: set[str] = set()
    for country in sorted({c for c, _ in persons}):
        ids = [p for c, p in persons if c == country]
        val |= set(ids[: max(1, round(len(ids) * val_share))] if len(ids) > 1 else [])
    if not val:  # one person per country: the last country's person validates
        val = {persons[-1][1]}
    return [ex for ex in examples if ex.person_id not in val], [ex for ex in examples if ex.person_id in val]


def who(examples: list[dspy.Example]) -> list[tuple[str, str]]:
    return [(ex.person_id, ex.country) for ex in examples]


def run_name(setup: Setup, kind: str = "evaluate") -> str:
    label = setup.program if setup.program in PROGRAMS else "compiled"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{label}-{setup.protocol}-f{setup.fold}-h{setup.history}"


def params_of(setup: Setup, bench: Benchmark, name: str, lm: dict) -> dict:
    return {
        "program": name,  # a compiled program's name too; program_uri says where it was loaded from
        "program_uri": setup.program if setup.program not in PROGRAMS else None,
        **setup.selection(),
        "dataset": bench.fingerprint,
        "lm": setup.lm if lm else None,  # the name asked for (gemma, a path, ...); lm_model is what it resolved to
        **{f"setting_{k}": v for k, v in setup.settings.items()},
        **{f"lm_{k}": v for k, v in lm.items()},
        **({"samples": setup.samples} if setup.samples and lm else {}),
    }


def identity_of(setup: Setup, bench: Benchmark, name: str, lm: dict) -> dict:
    """What makes two runs the same run (see valuesim/run/folder.py): not threads, cache or where the LM is served."""
    from importlib.metadata import version

    return {
        "program": name,
        "compiled_program": program_fingerprint(setup.program) if setup.program not in PROGRAMS else None,
        "settings": setup.settings,
        "lm": {k: v for k, v in lm.items() if k != "api_base"},
        **({"samples": setup.samples} if setup.samples and lm else {}),  # absent when off: older runs still resume
        **setup.selection(),
        "dataset": bench.fingerprint,
        "valuesim": version("valuesim"),
    }


def program_fingerprint(spec: str) -> str:
    """A compiled program's identity: the hash of its saved state, wherever it was loaded from."""
    folder = tracking.resolve_uri(spec)
    return hashlib.sha256((folder / "program.json").read_bytes()).hexdigest()[:16]


@dataclass
class Prepared:
    """One program on one selection, resolved once: what `run_evaluate` predicts and `read_finished` reads back."""

    program: Any  # a dspy.Module; None for a --ray run's program without an LM (built on the cluster)
    name: str  # the program's name (a compiled program's too)
    lm: dict  # the LM's lm_info; {} for a program that needs none
    examples: list  # dspy.Examples, or plain item dicts for programs without an LM (the batch path)

    @functools.cached_property
    def persons(self) -> list[tuple[str, str]]:
        """(person_id, country) of each person, in the order of their first example."""
        if self.examples and isinstance(self.examples[0], dict):
            pairs = {ex["person_id"]: ex["country"] for ex in self.examples}
        else:
            pairs = {ex.person_id: ex.country for ex in self.examples}
        return list(pairs.items())


def prepare(setup: Setup, bench: Benchmark, items: list[dict] | None = None, configure: bool = True) -> Prepared:
    """Build the program, set up its LM (configured as DSPy's default, or only described when `configure` is
    False), and select its examples. `items`: the selection's `benchmark_items`, when the caller has them."""
    program, name, lm = ready_program(setup, bench, configure)
    if needs_lm(name):
        examples: list = bench.examples(**setup.selection())
    else:  # no LM: plain items, predicted in batches
        examples = items if items is not None else benchmark_items(bench, **setup.selection())
    if not examples:
        raise ValueSimError("no examples selected (check --split, --fold, --persons)")
    return Prepared(program, name, lm, examples)


def ready_program(setup: Setup, bench: Benchmark, configure: bool = True) -> tuple[Any, str, dict]:
    """The run's program and, when it needs one, its LM configured as DSPy's default with the run's adapter (or
    only described when `configure` is False). Returns (program, its name, lm_info or {}). A --ray run's program
    without an LM is None: a Ray task builds it into the object store (valuesim/run/cluster.py)."""
    if setup.ray is not None and setup.program in PROGRAMS and not needs_lm(setup.program):
        check_settings(setup.program, setup.settings)  # built (and fitted) once on the cluster, not here
        return None, setup.program, {}
    program, name, _ = build_program(setup.program, bench, setup.settings, setup.protocol)
    if not needs_lm(name):
        return program, name, {}
    program.samples = setup.samples
    lm = configure_lm(setup.lm, setup.api_base, setup.cache, setup.timeout) if configure else describe_lm(setup)
    return program, name, lm


def describe_lm(setup: Setup) -> dict:
    """The run's LM as its identity records it, without loading or calling it."""
    from valuesim.lm import lm_info

    return lm_info(run_lm(setup.lm, setup.api_base, setup.cache, setup.timeout))


def run_evaluate(
    setup: Setup,
    bench: Benchmark,
    run_dir: Path | None = None,
    experiment: str = "valuesim-evaluate",
    progress: bool = True,
    nested: bool = False,
    items: list[dict] | None = None,
) -> tuple[EvalResult, dict]:
    """Evaluate one program on one selection, log it as an MLflow run. Returns (result, params).

    `items`: the selection's `benchmark_items`, when the caller already has them (a bench shares them between
    the programs without an LM of one history)."""
    run = prepare(setup, bench, items, configure=setup.ray is None)  # --ray: each worker builds the LM
    run_dir = Path(run_dir or config.runs_dir() / run_name(setup))
    params = params_of(setup, bench, run.name, run.lm) | {"run_dir": str(run_dir)} | sample_params(run.persons)
    with claim(run_dir, identity_of(setup, bench, run.name, run.lm)), \
            tracking.run(experiment, run_dir.name, params, nested=nested) as active, on_ray(setup.ray):  # fmt: skip
        # --ray: the cluster builds the program (unless a bench started it); the driver meanwhile finds the country
        # floor's answers
        batches = None if needs_lm(run.name) else batch_workers(setup, bench)
        floor = Floor(setup, bench, run.examples)
        if needs_lm(run.name):
            result = evaluate(run.program, run.examples, run_dir, setup.threads, progress, setup.resamples, setup.seed,
                              setup.retry_failed, lm_workers(setup, bench))  # fmt: skip
        else:  # persons per stored batch: a killed run loses at most one batch (seconds of work)
            size = batch_persons(setup, run.persons)
            result = evaluate_batch(run.program, run.examples, run_dir, setup.resamples, setup.seed, size,
                                    setup.retry_failed, progress, batches)  # fmt: skip
        result.metrics |= floor(result.predictions)
        tracking.log_result(result, with_cost=needs_lm(run.name), step=setup.history)
        if result.metrics.get("prob_n"):  # the reliability diagram of its distributions, in the run folder too
            files.write_atomic(
                run_dir / "reliability.png",
                reliability_png({(setup.history, run.name): item_table(result.predictions)}),
            )
            tracking.log_file(run_dir / "reliability.png")
        if needs_lm(run.name):
            tracking.log_prompts(run.program, run.examples[0])
        params["mlflow_run_id"] = active.info.run_id
    return result, params


@contextmanager
def on_ray(address: str | None) -> Iterator[None]:
    """Connected to Ray for a --ray run (valuesim/run/cluster.py, imported only then); nothing otherwise."""
    if address is None:
        yield
        return
    from valuesim.run.cluster import connected

    with connected(address):
        yield


def lm_workers(setup: Setup, bench: Benchmark, state: dict | None = None) -> Predictor | None:
    """A --ray run's predictor for an LM program: Ray workers that build `setup`'s program (with a compiled `state`
    loaded) and its LM once each; None (one process) without --ray."""
    if setup.ray is None:
        return None
    from valuesim.run.cluster import predict_on_workers

    return functools.partial(predict_on_workers, setup, bench.path, state)


def batch_persons(setup: Setup, persons: list[tuple[str, str]]) -> int:
    """Persons per stored batch: config.BATCH_PERSONS in one process; in a --ray run smaller, so that every
    worker gets batches (the answers do not depend on the batch)."""
    if setup.ray is None:
        return config.BATCH_PERSONS
    from valuesim.run.cluster import persons_per_batch

    return persons_per_batch(len({p for p, _ in persons}), config.BATCH_PERSONS)


def batch_workers(setup: Setup, bench: Benchmark) -> BatchRunner | None:
    """A --ray run's batch runner for a program without an LM: parallel Ray tasks on the program a Ray task built
    from `setup` (or the given program: a compiled one); None without --ray."""
    if setup.ray is None:
        return None
    from valuesim.run.cluster import batches_on_workers

    # started now (unless a bench started it): the driver's work until the first batch overlaps it
    build = build_ahead(setup, bench)
    return functools.partial(batches_on_workers, build=build, cell=cell_key(setup))


def build_ahead(setup: Setup, bench: Benchmark) -> tuple[Setup, Path, frozenset[str]]:
    """A --ray run's program without an LM starts building on the cluster now (once per connection: a bench's
    later cells find it built; a bench starts it before it makes the cell's items). Returns what it is built
    from, as `valuesim.run.cluster.built` takes it: the setup, the benchmark and the selection's questions."""
    from valuesim.run.cluster import built

    build = (setup, bench.path, selection_questions(bench, tuple(setup.selection().items())))
    built(*build)
    return build


@functools.lru_cache(maxsize=8)
def selection_questions(bench: Benchmark, selection: tuple[tuple[str, Any], ...]) -> frozenset[str]:
    """`item_questions` of a run's selection, read once per benchmark object (a bench asks for each cell's twice)."""
    return item_questions(bench, **dict(selection))


def predict_ahead(setup: Setup, bench: Benchmark, items: list[dict], running: Setup) -> None:
    """A --ray bench's next cell or the one after (a program without an LM, nothing stored yet): queue its batches,
    which the workers start while the `running` cell finishes and is scored
    (valuesim.run.cluster.run_ahead); its `run_evaluate` takes their results. The batches are the ones
    `evaluate_batch` will make of these items."""
    from valuesim.run.cluster import run_ahead

    persons = list(dict.fromkeys((i["person_id"], i["country"]) for i in items))
    _, batches = item_batches(items, list(range(len(items))), batch_persons(setup, persons))
    questions = selection_questions(bench, tuple(setup.selection().items()))
    run_ahead(cell_key(setup), (setup, bench.path, questions), batches, cell_key(running))


def cell_key(setup: Setup) -> str:
    """Which program on which selection: the cell a batch started ahead belongs to."""
    return repr((setup.program, sorted(setup.selection().items()), sorted(setup.settings.items())))


def read_finished(setup: Setup, bench: Benchmark, run_dir: Path, items: list[dict] | None = None) -> EvalResult | None:
    """The result `run_evaluate` gives for a finished run, read back from its folder without predicting, calling
    an LM or logging to MLflow (a bench rerun reuses its finished cells so). None when the folder lacks a
    prediction of the selection, or holds a failed one `run_evaluate` would retry; a folder of another run is
    refused as `run_evaluate` refuses it."""
    if not (Path(run_dir) / "predictions.sqlite").exists():
        return None
    run = prepare(setup, bench, items, configure=False)
    with claim(Path(run_dir), identity_of(setup, bench, run.name, run.lm)):
        result = read_stored(run.examples, run_dir, setup.retry_failed, setup.resamples, setup.seed)
    if result is not None:
        result.metrics |= Floor(setup, bench, run.examples)(result.predictions)
    return result


_FLOORS: dict[tuple, dict] = {}  # (dataset, the selection but its history size) -> `country_floor`'s metrics


class Floor:
    """`country_floor` of a run's examples. It reads which persons are asked which questions and their gold
    answers, not what the persons are known to have answered: every history size of a fold has the same floor, so
    a bench computes it once per fold (3 s per million items). Made before predicting, so that a --ray run finds
    the country majority's answers while the cluster builds the program."""

    def __init__(self, setup: Setup, bench: Benchmark, examples: list):
        self.key = (bench.fingerprint, repr(sorted(setup.selection(history=None).items())))
        self.majorities = {} if self.key in _FLOORS else country_majorities(bench, examples)

    def __call__(self, preds: pd.DataFrame) -> dict:
        if self.key not in _FLOORS:
            _FLOORS[self.key] = country_floor(preds, self.majorities)
        return _FLOORS[self.key]


def run_compile(
    setup: Setup,
    bench: Benchmark,
    optimizer: str,
    train_persons: int,
    dev_persons: int,
    run_dir: Path | None = None,
    progress: bool = True,
    reflection_lm: str | None = None,
    register: str | None = None,
) -> dict:
    """Evaluate on dev, compile on training respondents, evaluate again, save and log everything.

    `reflection_lm` (an LM name as for --lm) writes the instructions MIPROv2 and GEPA propose; default the task LM.
    `register`: a name in MLflow's model registry for the logged model (a new version of it).
    Returns a summary with the before/after metrics, the saved program folder and the MLflow run id.
    """
    from valuesim.optimize.compile import compile_program

    if setup.program not in PROGRAMS or not needs_lm(setup.program):
        raise ValueSimError(f"compile takes an LM program name, not {setup.program!r}")
    run_dir = Path(run_dir or config.runs_dir() / run_name(setup, "compile"))
    check_settings(setup.program, setup.settings)
    program = PROGRAMS[setup.program].from_benchmark(bench, **setup.settings)
    # Three disjoint sets of persons: the optimizer learns demos on `trainset`, selects among candidates on `valset`
    # (both from the train split), and before/after are measured on dev persons it never saw.
    if train_persons < 2:
        raise ValueSimError("compile needs --train 2 or more: training persons are split into train and validation")
    examples = bench.examples(**setup.selection(split="train", persons=train_persons))
    trainset, valset = split_by_person(examples, val_share=0.25, seed=setup.seed)
    devset = bench.examples(**setup.selection(split="dev", persons=dev_persons))
    if not trainset or not valset or not devset:
        raise ValueSimError(
            f"compile needs train, validation and dev examples; selected {len(trainset)}, {len(valset)}, {len(devset)}"
        )
    lm = configure_lm(setup.lm, setup.api_base, setup.cache, setup.timeout)
    proposer = None
    if reflection_lm:  # built and checked like the task LM: the run's timeout, retries, --api-base and preflight
        proposer = checked_lm(reflection_lm, setup.api_base, setup.cache, setup.timeout)
    params = params_of(setup, bench, setup.program, lm) | {
        "optimizer": optimizer,
        "reflection_lm": reflection_lm or setup.lm,
        "train_persons": train_persons,
        "dev_persons": dev_persons,
        "train_examples": len(trainset),
        "val_examples": len(valset),
        "dev_examples": len(devset),
        "run_dir": str(run_dir),
        **sample_params(who(trainset), "train_"),
        **sample_params(who(valset), "val_"),
        **sample_params(who(devset), "dev_"),
    }
    with tracking.compile_autolog("valuesim-compile"):
        identity = identity_of(setup, bench, setup.program, lm) | {
            "optimizer": optimizer,
            "reflection_lm": reflection_lm or setup.lm,
            "train_persons": train_persons,
            "dev_persons": dev_persons,
        }
        with claim(run_dir, identity), tracking.run("valuesim-compile", run_dir.name, params) as active, \
                on_ray(setup.ray):  # fmt: skip
            before = evaluate(program, devset, run_dir / "before", setup.threads, progress,
                              setup.resamples, setup.seed, predict=lm_workers(setup, bench))  # fmt: skip
            tracking.log_result(before, prefix="before_")
            t0 = time.perf_counter()
            compiled = compile_program(
                program, optimizer, trainset, valset, seed=setup.seed, threads=setup.threads, proposer_lm=proposer
            )
            tracking.log_metrics({"compile_seconds": time.perf_counter() - t0})
            after = evaluate(compiled, devset, run_dir / "after", setup.threads, progress, setup.resamples,
                             setup.seed, predict=lm_workers(setup, bench, compiled.dump_state()))  # fmt: skip
            tracking.log_result(after, prefix="after_")
            gain = paired_difference(item_table(after.predictions), item_table(before.predictions), "accuracy",
                                     max(setup.resamples, 200))  # fmt: skip
            tracking.log_metrics({f"gain_{k}": v for k, v in gain.items() if k != "n_items"})
            folder = save_program(compiled, setup.program, run_dir / "program", setup.settings, lm)
            tracking.log_program_folder(folder)
            tracking.log_prompts(compiled, devset[0])
            model_uri = tracking.log_program_model(folder, setup.program, setup.lm, setup.api_base,
                                                   dict(devset[0].inputs()), register)  # fmt: skip
            run_id = active.info.run_id
    summary = {
        "params": params,
        "before": before.metrics,
        "after": after.metrics,
        "gain": gain,  # after - before accuracy on the same dev items: difference, 95% CI, p-value
        "persons": {
            "train": sorted({ex.person_id for ex in trainset}),
            "val": sorted({ex.person_id for ex in valset}),
            "dev": sorted({ex.person_id for ex in devset}),
        },
        "program_dir": str(folder),
        "mlflow_run_id": run_id,
        "program_uri": f"runs:/{run_id}",
        "model_uri": model_uri,
        "registered_model": register,
    }
    # what the compile printed, for scripts (scripts/main-job names the MLflow run from it)
    files.write_json(run_dir / "compile.json", summary)
    return summary
