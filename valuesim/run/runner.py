"""Wires the stages: benchmark -> program -> predictions -> metrics -> MLflow. The CLI calls these (and
valuesim/run/bench.py, which runs many of them side by side).

Every evaluate and compile is an MLflow run (experiments "valuesim-evaluate" and "valuesim-compile") and keeps
its predictions in a run folder (runs/<name>/predictions.sqlite), so an interrupted run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import random
import time
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
import pydantic

from valuesim import config, files, tracking
from valuesim.data.benchmark import Benchmark
from valuesim.data.benchmark import items as benchmark_items
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS, STATISTICAL
from valuesim.programs.saved import load_program, resolve_uri, save_program
from valuesim.programs.statistical import country_majorities
from valuesim.run.folder import claim
from valuesim.run.predict import EvalResult, evaluate, evaluate_batch
from valuesim.score.results import country_floor
from valuesim.score.stats import paired_difference

DEFAULT_TIMEOUT = 120.0


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
    lm: str = "gemma"
    api_base: str | None = None
    threads: int = 1
    seed: int = 0
    cache: bool = True  # DSPy's LM cache; off to measure real cost
    resamples: int = 1000  # bootstrap draws over persons for the 95% CIs (0: none)
    retry_failed: bool = True  # a resumed run predicts failed items again
    timeout: float = DEFAULT_TIMEOUT  # seconds per remote LM call before it is retried (then recorded as failed)
    settings: dict = field(default_factory=dict)  # program settings (backstory_words, ...)


def configure_lm(model: str, api_base: str | None = None, cache: bool = True, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Build the LM once and make it DSPy's default, with the options-constrained JSON adapter.

    Remote calls time out after `timeout` seconds and are retried 3 times (LiteLLM's exponential backoff, which
    honours a server's Retry-After); an item whose call still fails is recorded as failed with the reason."""
    from valuesim.lm import lm_info
    from valuesim.programs.options import OptionsAdapter

    lm = checked_lm(model, api_base, cache, timeout)
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    return lm_info(lm)


def checked_lm(
    model: str, api_base: str | None = None, cache: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> dspy.LM:
    """The LM a run calls (`run_lm`), checked: one tiny call to a remote model, one token from an embedded one."""
    from valuesim.lm import engine_of

    lm = run_lm(model, api_base, cache, timeout)
    engine = engine_of(lm)
    if engine is None:
        preflight(lm, api_base)
    else:  # a broken model file or a llama.cpp build for another CPU: one clear error, not N failed items
        check_engine_once(engine.model_path)
    return lm


def run_lm(model: str, api_base: str | None = None, cache: bool = True, timeout: float = DEFAULT_TIMEOUT) -> dspy.LM:
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
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if "api key" in reason.lower() or "api_key" in reason:  # reached, or not even tried: credentials
            provider = lm.model.split("/", 1)[0].upper()
            raise ValueSimError(
                f"LM {lm.model}{where} needs an API key: set {provider}_API_KEY (for a local server without keys, "
                f"any value: export {provider}_API_KEY=none). {reason}"
            ) from None
        raise ValueSimError(f"LM {lm.model}{where} is not reachable: {reason}") from None


def check_settings(name: str, settings: dict) -> None:
    """Each --set key must be a setting of the program (a parameter of its __init__ with a default) and its value
    of the declared type and range (`Annotated[int, Field(ge=1)]`), checked before any work: a bad value used to
    fail every prediction or stop deep inside the program."""
    model = settings_model(PROGRAMS[name])  # type: ignore[arg-type]  # classes are hashable
    try:
        model.model_validate(settings)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            raise ValueSimError(
                f"--set {key}: program {name!r} takes {', '.join(sorted(model.model_fields)) or 'no settings'}"
            ) from None
        value = files.quoted(settings.get(key), 60)
        raise ValueSimError(f"--set {key}={value}: {error['msg'].lower()} (program {name!r})") from None


@functools.cache
def settings_model(program: Any) -> type[pydantic.BaseModel]:
    """A pydantic model of a program's settings, read from its __init__: each parameter with a default, its type
    hint (with any Field range) and default, except those `from_benchmark` passes itself (`wired`). Strict: no
    text for numbers, no true/false for numbers."""
    init = program.__init__  # the class's own; inspect.signature(class) would read dspy's metaclass __call__
    hints = typing.get_type_hints(init, include_extras=True)
    fields: dict[str, Any] = {
        n: (hints.get(n, Any), p.default)
        for n, p in inspect.signature(init).parameters.items()
        if p.default is not inspect.Parameter.empty and n not in getattr(program, "wired", ())
    }
    config = pydantic.ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{program.__name__}Settings", __config__=config, **fields)
    return model


def build_program(spec: str, bench: Benchmark, settings: dict | None = None) -> tuple[dspy.Module, str, dict]:
    """A program from a name or a compiled-program URI. Returns (program, program name, its settings)."""
    if spec in PROGRAMS:
        check_settings(spec, settings or {})
        return PROGRAMS[spec].from_benchmark(bench, **(settings or {})), spec, settings or {}
    program, meta = load_program(resolve_uri(spec))
    return program, meta["program"], meta.get("settings", {})


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
        "program": setup.program,
        "program_name": name,
        "protocol": setup.protocol,
        "split": setup.split,
        "fold": setup.fold,
        "history": setup.history,
        "persons": setup.persons,
        "questions": setup.questions,
        "seed": setup.seed,
        "dataset": bench.fingerprint,
        "lm": setup.lm if lm else None,  # the name asked for (gemma, a path, ...); lm_model is what it resolved to
        **{f"setting_{k}": v for k, v in setup.settings.items()},
        **{f"lm_{k}": v for k, v in lm.items()},
    }


def identity_of(setup: Setup, bench: Benchmark, name: str, lm: dict) -> dict:
    """What makes two runs the same run (see valuesim/run/folder.py): not threads, cache or where the LM is served."""
    from importlib.metadata import version

    return {
        "program": name,
        "compiled_program": program_fingerprint(setup.program) if setup.program not in PROGRAMS else None,
        "settings": setup.settings,
        "lm": {k: v for k, v in lm.items() if k != "api_base"},
        "protocol": setup.protocol,
        "split": setup.split,
        "fold": setup.fold,
        "history": setup.history,
        "persons": setup.persons,
        "questions": setup.questions,
        "seed": setup.seed,
        "dataset": bench.fingerprint,
        "valuesim": version("valuesim"),
    }


def program_fingerprint(spec: str) -> str:
    """A compiled program's identity: the hash of its saved state, wherever it was loaded from."""
    folder = resolve_uri(spec)
    return hashlib.sha256((folder / "program.json").read_bytes()).hexdigest()[:16]


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
    the statistical programs of one history)."""
    program, name, _ = build_program(setup.program, bench, setup.settings)
    lm = {} if name in STATISTICAL else configure_lm(setup.lm, setup.api_base, setup.cache, setup.timeout)
    run_dir = Path(run_dir or config.runs_dir() / run_name(setup))
    selection = (setup.protocol, setup.split, setup.fold, setup.history, setup.persons, setup.questions, setup.seed)
    if name in STATISTICAL:  # no LM: plain items, predicted in batches
        examples = items if items is not None else benchmark_items(bench, *selection)
        persons = [(i["person_id"], i["country"]) for i in examples]
    else:
        examples = bench.examples(*selection)
        persons = who(examples)
    if not examples:
        raise ValueSimError("no examples selected (check --split, --fold, --persons)")
    params = params_of(setup, bench, name, lm) | {"run_dir": str(run_dir)} | sample_params(persons)
    identity = identity_of(setup, bench, name, lm)
    with claim(run_dir, identity), tracking.run(experiment, run_dir.name, params, nested=nested) as active:
        if name in STATISTICAL:
            # persons per stored batch: a killed run loses at most one batch (seconds of work), and each batch
            # costs ml a fixed ~30 ms per question in sklearn (VALUESIM_BATCH_PERSONS, default 2048)
            per_batch = int(os.environ.get("VALUESIM_BATCH_PERSONS", "2048"))
            result = evaluate_batch(program, examples, bench.catalog, run_dir,
                                    setup.resamples, setup.seed, per_batch, setup.retry_failed, progress)  # fmt: skip
        else:
            result = evaluate(
                program, examples, bench.catalog, run_dir, setup.threads, progress, setup.resamples, setup.seed,
                setup.retry_failed,
            )  # fmt: skip
        result.metrics |= country_floor(result.predictions, country_majorities(bench, examples))
        tracking.log_result(result, with_cost=name not in STATISTICAL)
        if name not in STATISTICAL:
            tracking.log_prompts(program, examples[0])
        params["mlflow_run_id"] = active.info.run_id
    return result, params


def read_finished(setup: Setup, bench: Benchmark, run_dir: Path, items: list[dict] | None = None) -> EvalResult | None:
    """The result `run_evaluate` gives for a finished run, read back from its folder without predicting, calling
    an LM or logging to MLflow (a bench rerun reuses its finished cells so). None when the folder lacks a
    prediction of the selection, or holds a failed one `run_evaluate` would retry; a folder of another run is
    refused as `run_evaluate` refuses it."""
    from valuesim.lm import lm_info
    from valuesim.run.predict import example_key, open_store
    from valuesim.score.metrics import breakdown
    from valuesim.score.results import cost_summary, only_keys, predictions_table_of, score

    run_dir = Path(run_dir)
    if not (run_dir / "predictions.sqlite").exists():
        return None
    name = setup.program if setup.program in PROGRAMS else build_program(setup.program, bench, setup.settings)[1]
    lm = {} if name in STATISTICAL else lm_info(run_lm(setup.lm, setup.api_base, setup.cache, setup.timeout))
    selection = (setup.protocol, setup.split, setup.fold, setup.history, setup.persons, setup.questions, setup.seed)
    examples: list[Any]
    if name in STATISTICAL:
        examples = items if items is not None else benchmark_items(bench, *selection)
        meta = [(f"{i['person_id']}|{i['question_code']}", i["country"], i["category"], i["ordinal"],
                 list(i["options"])) for i in examples]  # fmt: skip
    else:
        examples = bench.examples(*selection)
        meta = [(example_key(ex), ex.country, ex.category, ex.ordinal, list(ex.options)) for ex in examples]
    keys = {m[0] for m in meta}
    with claim(run_dir, identity_of(setup, bench, name, lm)), open_store(run_dir) as store:
        stored = only_keys(store.frame(), keys)
    if not keys or len(stored) < len(keys) or (setup.retry_failed and (stored["status"] == "failed").any()):
        return None
    preds = predictions_table_of(stored, meta)
    metrics = score(preds, setup.resamples, setup.seed) | cost_summary(stored)
    metrics |= country_floor(preds, country_majorities(bench, examples))
    return EvalResult(preds, metrics, breakdown(preds, "country"), breakdown(preds, "category"))


def run_compile(
    setup: Setup,
    bench: Benchmark,
    optimizer: str,
    train_persons: int,
    dev_persons: int,
    run_dir: Path | None = None,
    progress: bool = True,
    reflection_lm: str | None = None,
) -> dict:
    """Evaluate on dev, compile on training respondents, evaluate again, save and log everything.

    `reflection_lm` (an LM name as for --lm) writes the instructions MIPROv2 and GEPA propose; default the task LM.
    Returns a summary with the before/after metrics, the saved program folder and the MLflow run id.
    """
    import mlflow

    from valuesim.optimize.compile import compile_program

    if setup.program not in PROGRAMS or setup.program in STATISTICAL:
        raise ValueSimError(f"compile takes an LM program name, not {setup.program!r}")
    run_dir = Path(run_dir or config.runs_dir() / run_name(setup, "compile"))
    check_settings(setup.program, setup.settings)
    program = PROGRAMS[setup.program].from_benchmark(bench, **setup.settings)
    q = setup.questions
    # Three disjoint sets of persons: the optimizer learns demos on `trainset`, selects among candidates on `valset`
    # (both from the train split), and before/after are measured on dev persons it never saw.
    if train_persons < 2:
        raise ValueSimError("compile needs --train 2 or more: training persons are split into train and validation")
    examples = bench.examples(setup.protocol, "train", setup.fold, setup.history, train_persons, q, seed=setup.seed)
    trainset, valset = split_by_person(examples, val_share=0.25, seed=setup.seed)
    devset = bench.examples(setup.protocol, "dev", setup.fold, setup.history, dev_persons, q, seed=setup.seed)
    if not trainset or not valset or not devset:
        raise ValueSimError(
            f"compile needs train, validation and dev examples; selected {len(trainset)}, {len(valset)}, {len(devset)}"
        )
    lm = configure_lm(setup.lm, setup.api_base, timeout=setup.timeout)
    proposer = None
    if reflection_lm:
        from valuesim.lm import build_lm

        proposer = build_lm(reflection_lm, num_retries=3, cache=setup.cache)
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
    setup_mlflow = tracking.setup_tracking("valuesim-compile")
    setup_mlflow.dspy.autolog(log_compiles=True, log_evals=False, log_traces_from_compile=False)
    try:
        identity = identity_of(setup, bench, setup.program, lm) | {
            "optimizer": optimizer,
            "reflection_lm": reflection_lm or setup.lm,
            "train_persons": train_persons,
            "dev_persons": dev_persons,
        }
        with claim(run_dir, identity), tracking.run("valuesim-compile", run_dir.name, params) as active:
            before = evaluate(program, devset, bench.catalog, run_dir / "before", setup.threads, progress,
                              setup.resamples, setup.seed)  # fmt: skip
            tracking.log_result(before, prefix="before_")
            t0 = time.perf_counter()
            compiled = compile_program(
                program, optimizer, trainset, valset, seed=setup.seed, threads=setup.threads, proposer_lm=proposer
            )
            mlflow.log_metric("compile_seconds", time.perf_counter() - t0)
            after = evaluate(compiled, devset, bench.catalog, run_dir / "after", setup.threads, progress,
                             setup.resamples, setup.seed)  # fmt: skip
            tracking.log_result(after, prefix="after_")
            gain = paired_difference(after.predictions, before.predictions, "accuracy", max(setup.resamples, 200))
            mlflow.log_metrics({f"gain_{k}": v for k, v in gain.items() if k != "n_items"})
            folder = save_program(compiled, setup.program, run_dir / "program", setup.settings, lm)
            tracking.log_program_folder(folder)
            tracking.log_prompts(compiled, devset[0])
            model_uri = tracking.log_dspy_model(compiled)
            run_id = active.info.run_id
    finally:  # a failed compile must not leave DSPy autologging on for the rest of the process
        setup_mlflow.dspy.autolog(disable=True)
        tracking.drop_pending_models(setup_mlflow.get_experiment_by_name("valuesim-compile").experiment_id)
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
    }
    # what the compile printed, for scripts (scripts/main-job names the MLflow run from it)
    files.write_json(run_dir / "compile.json", summary)
    return summary
