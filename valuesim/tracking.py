"""MLflow: one tracking store under mlruns/ at the project home, or the tracking server MLFLOW_TRACKING_URI names.

The local store is a SQLite database (`mlruns/mlflow.db`) with artifacts in `mlruns/artifacts/`: MLflow 3
deprecates the plain file store (it needs MLFLOW_ALLOW_FILE_STORE=true), and SQLite lets two runs write at once.
Browse it with `valuesim ui` (MLflow's UI on this store, wherever it is run from). On a tracking server
(`http(s)://`) the server chooses where artifacts go (`mlflow server --artifacts-destination`), so a teammate on
another machine downloads the same programs and models.
"""

from __future__ import annotations

import fcntl
import functools
import math
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

from valuesim import config, files
from valuesim.errors import ProgramLoadError, ValueSimError

if TYPE_CHECKING:
    import dspy

    from valuesim.run.predict import EvalResult

# MLflow 3's UI opens an experiment on its GenAI traces page unless the experiment says it holds model runs; this
# tag (read by the UI, values in its ExperimentKind enum) makes the runs table the first page.
KIND_TAG = "mlflow.experimentKind"
KIND = {KIND_TAG: "custom_model_development"}

# The metrics a run logs: few and well named, so MLflow's default columns and charts are useful. Accuracy-like
# metrics also log their 95% CI as <metric>_ci_low / <metric>_ci_high when the result has them.
LOGGED_METRICS = [
    "accuracy", "macro_accuracy", "within_one", "nmae", "wasserstein", "jsd", "kendall_tau",
    "n_predictions", "n_persons", "n_distinct_questions", "invalid", "failed", "random_accuracy",
    "country_majority_floor", "normalized_accuracy",
    "log_loss", "brier", "rps", "ece", "jsd_probs", "prob_n", "uniform_log_loss", "country_log_loss",
]  # fmt: skip
# A result's counts under the names MLflow shows: what was used, beside the params saying what was asked.
METRIC_NAMES = {"n": "n_predictions", "persons": "n_persons", "questions": "n_distinct_questions"}
# Params under the names MLflow shows: what was asked (the flags), apart from the counts used (metrics n_*).
# None: not a param (n_persons is the metric; run_dir, a local path, is the tag valuesim.run_dir).
PARAM_NAMES = {"persons": "persons_asked", "questions": "questions_per_person", "n_persons": None, "run_dir": None}
COST_METRICS = [
    "lm_calls_per_pred", "prompt_tokens_per_pred", "cached_tokens_per_pred", "completion_tokens_per_pred",
    "usd_total", "usd_per_1000_preds", "seconds_per_pred",
]  # fmt: skip


TABLE_ROWS = 10_000  # predictions up to this many rows are an MLflow table (viewable in the UI), more a parquet file


tracking_uri = config.tracking_uri


def is_server(uri: str | None = None) -> bool:
    """Whether the tracking URI (default: the project's) is a tracking server rather than a local store."""
    return (uri or tracking_uri()).startswith(("http://", "https://"))


def setup_tracking(experiment: str | None = None) -> ModuleType:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if is_server():  # the server owns its schema and its artifact store (--artifacts-destination)
        if experiment:
            use_experiment(mlflow, experiment, artifact_location=None)
        return mlflow
    mlruns = config.mlruns_dir()
    mlruns.mkdir(parents=True, exist_ok=True)
    # Two processes creating the SQLite schema (or the same experiment) at once collide; a file lock makes the
    # first one do it and the other find it done.
    with open(mlruns / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if experiment:
            use_experiment(mlflow, experiment, artifact_location=(mlruns / "artifacts").as_uri())
        else:
            mlflow.search_experiments(max_results=1)  # creates the schema under the lock
    return mlflow


def use_experiment(mlflow: ModuleType, name: str, artifact_location: str | None) -> None:
    """Make `name` the active experiment, created with the runs-table kind when it is new. `artifact_location`
    None lets the tracking server choose (its proxied artifact store)."""
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        try:
            mlflow.create_experiment(name, artifact_location=artifact_location, tags=KIND)
        except mlflow.MlflowException:  # another client of the server created it meanwhile
            if mlflow.get_experiment_by_name(name) is None:
                raise
    elif found.tags.get(KIND_TAG) != KIND[KIND_TAG]:  # created by an older valuesim
        mlflow.MlflowClient().set_experiment_tag(found.experiment_id, KIND_TAG, KIND[KIND_TAG])
    mlflow.set_experiment(name)


@contextmanager
def parent_run(experiment: str, name: str, run_id: str | None = None) -> Iterator[Any]:
    """The bench's parent run: a new one, or the run `run_id` resumed (its children are the bench's cells)."""
    mlflow = setup_tracking(experiment)
    with mlflow.start_run(run_id=run_id, run_name=name, tags=source_tags()) as active, ended_as_killed(mlflow):
        yield active


def log_params(params: dict[str, Any]) -> None:
    """A run's params under the names MLflow shows (PARAM_NAMES); its run folder as the tag valuesim.run_dir."""
    import mlflow

    named = {PARAM_NAMES.get(k, k): v for k, v in params.items()}
    mlflow.log_params({k: str(v)[:500] for k, v in named.items() if k is not None and v is not None})
    if params.get("run_dir") is not None:
        mlflow.set_tag("valuesim.run_dir", str(params["run_dir"]))


@functools.cache
def source_tags() -> dict[str, str]:
    """The ValueSim version that ran, and its git commit when it runs from a git checkout (MLflow records its own
    `mlflow.source.git.commit` only when the entry point is a script inside the repository)."""
    from importlib.metadata import version

    tags = {"valuesim.version": version("valuesim")}
    package = Path(__file__).resolve().parent
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package, capture_output=True,
                               text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):  # no git here
        return tags
    lines = found.stdout.split()
    # only this checkout's commit: an installed package may sit in some other repository's folder
    if found.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == package.parent:
        tags["git.commit"] = lines[1]
    return tags


@contextmanager
def ended_as_killed(mlflow: ModuleType) -> Iterator[None]:
    """A run stopped by SIGTERM or Ctrl-C ends as KILLED, not RUNNING forever: SIGTERM raises SystemExit (exit code
    143, as the default handler's death) in the main thread while the block runs, and the active run is ended
    KILLED on the way out. Another thread cannot take signals, so there the block runs unchanged."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if main:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run(status="KILLED")
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_folder(folder: Path, artifact_path: str) -> None:
    """Every file under `folder`, as artifacts of the active run under `artifact_path`."""
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def finished_children(parent_run_id: str) -> set[str]:
    """The ids of the parent's child runs that finished and were not deleted."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'"
    ids: set[str] = set()
    token = None
    while True:
        page = client.search_runs([experiment], query, max_results=1000, page_token=token)
        ids |= {r.info.run_id for r in page}
        token = page.token
        if not token:
            return ids


def mark_superseded(old_run_id: str, new_run_id: str) -> None:
    """Tag a cell's earlier child run with the run that logs the cell now (it is kept, not deleted)."""
    import mlflow

    mlflow.MlflowClient().set_tag(old_run_id, "valuesim.superseded_by", new_run_id)


def log_metrics(metrics: dict, step: int | None = None) -> None:
    """Numeric metrics of the active run (see clean_metrics)."""
    import mlflow

    mlflow.log_metrics(clean_metrics(metrics), step=step)


@contextmanager
def compile_autolog(experiment: str) -> Iterator[None]:
    """DSPy autolog traces the program's calls while the block runs (not the optimizer's own); off again
    afterwards (a failed compile must not leave it on for the rest of the process). Not its compile record
    (log_compiles): that logs an empty model named "dspy" per optimizer call, only to show a Run tab in GenAI
    experiments, which would stay in the run's outputs even deleted; the compiled program is logged as
    `program/` and the model valuesim-<program> instead, and the optimizer's settings are the code's at the run's
    git.commit tag (valuesim/optimize/compile.py)."""
    mlflow = setup_tracking(experiment)
    mlflow.dspy.autolog(log_compiles=False, log_evals=False, log_traces_from_compile=False)
    try:
        yield
    finally:
        mlflow.dspy.autolog(disable=True)


def clean_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Numeric metrics only, NaN dropped (MLflow rejects neither, but NaN charts are useless)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and math.isnan(v)):
            continue
        out[f"{prefix}{k}"] = float(v)
    return out


@contextmanager
def run(
    experiment: str, name: str, params: dict[str, Any], tags: dict[str, str] | None = None, nested: bool = False
) -> Iterator[Any]:
    mlflow = setup_tracking(experiment)
    tags = source_tags() | (tags or {})
    with mlflow.start_run(run_name=name, nested=nested, tags=tags) as active, ended_as_killed(mlflow):
        log_params(params)
        yield active


def logged_metrics(metrics: dict, with_cost: bool) -> dict:
    """The subset of a result's metrics a run logs (see LOGGED_METRICS), with their CIs where present."""
    renamed = {METRIC_NAMES.get(k, k): v for k, v in metrics.items()}
    keys = [*LOGGED_METRICS, *(COST_METRICS if with_cost else [])]
    keys += [f"{k}_ci_{end}" for k in LOGGED_METRICS for end in ("low", "high")]
    return {k: renamed[k] for k in keys if k in renamed}


def log_result(
    result: EvalResult, prefix: str = "", with_cost: bool = True, step: int | None = None, with_table: bool = True
) -> None:
    """Metrics, breakdowns and the predictions table of an EvalResult. `step`: the history size, for an evaluate
    (a bench's child runs then draw one accuracy-by-history chart, one line per program when grouped by it).
    `with_table` False: not the table (a bench cell with an earlier cell's predictions, whose run holds them)."""
    import mlflow

    mlflow.log_metrics(clean_metrics(logged_metrics(result.metrics, with_cost), prefix), step=step)
    if with_table and len(result.predictions) <= TABLE_ROWS:
        mlflow.log_table(result.predictions, artifact_file=f"{prefix}predictions.json")
    elif with_table:  # log_table's JSON takes seconds per 60k rows and the UI cannot show that many: parquet for pandas
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, f"{prefix}predictions.parquet")
            result.predictions.to_parquet(path, index=False)
            mlflow.log_artifact(str(path))
    mlflow.log_table(result.by_country, artifact_file=f"{prefix}by_country.json")
    mlflow.log_table(result.by_category, artifact_file=f"{prefix}by_category.json")


def log_file(path: Path, artifact_path: str | None = None) -> None:
    """One file of the run's report (a reliability diagram) as an artifact of the active run."""
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def log_prompts(program: dspy.Module, example: dspy.Example) -> None:
    """The prompts a program says it sends for one example (`program.prompts(example)`, {predictor: text}; see
    valuesim/programs/prompts.py), as text artifacts prompts/<predictor>.txt. Programs without prompts log none."""
    import mlflow

    if not callable(getattr(program, "prompts", None)):
        return
    mlflow.tracing.disable()  # rendering prompts is not a call worth a trace (autolog would record five)
    try:
        texts = program.prompts(example)
    finally:
        mlflow.tracing.enable()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in texts.items():
            Path(tmp, f"{name}.txt").write_text(text)
        mlflow.log_artifacts(tmp, artifact_path="prompts")


def log_program_folder(folder: Path) -> None:
    log_folder(folder, "program")


# The logged model's input columns: one person asked one question per row, as `valuesim.inputs` builds it.
MODEL_INPUTS = ("demographics", "profile", "question", "options")
SERVED_MODEL = Path(__file__).with_name("served_model.py")


def model_signature() -> Any:
    """The logged program's MLflow signature: lists of sentences, the question's text and its options as a map of
    code -> label (a map, not an object: every question has its own codes) in; the chosen code out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Map, Schema

    sentences = Array(DataType.string)
    inputs = Schema([ColSpec(sentences, "demographics"), ColSpec(sentences, "profile"),
                     ColSpec(DataType.string, "question"), ColSpec(Map(DataType.string), "options")])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.string, "answer")]))


def log_program_model(
    folder: Path, program: str, lm: str, api_base: str | None, example: dict, register: str | None = None
) -> str:
    """The saved program as an MLflow pyfunc model named `valuesim-<program>` (models-from-code: the file
    valuesim/served_model.py and the program folder, no pickle), with its signature and one input example;
    registered as `register` when given. Its LM is `lm` (as --lm takes it), changed at load time with
    `model_config={"lm": ...}`. Returns the model URI (`models:/<model id>`)."""
    from importlib.metadata import version

    import mlflow

    info = mlflow.pyfunc.log_model(
        name=f"valuesim-{program}",
        python_model=str(SERVED_MODEL),
        artifacts={"program": str(folder)},
        model_config={"lm": lm, "api_base": api_base},
        signature=model_signature(),
        input_example={key: example[key] for key in MODEL_INPUTS},
        # stated, not inferred (MLflow would import the model in a subprocess to infer them)
        pip_requirements=[f"valuesim=={version('valuesim')}", f"mlflow=={mlflow.__version__}"],
        registered_model_name=register,
    )
    return str(info.model_uri)


def set_served_model(make: Callable[[Path, str | None, str | None], Any]) -> None:
    """Called by valuesim/served_model.py when MLflow loads a logged program: `make(program folder, lm, api_base)`
    builds the program (valuesim.programs.saved.ServedProgram), wrapped here as MLflow's PythonModel."""
    import mlflow

    class ProgramModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            config = context.model_config or {}
            self.served = make(Path(context.artifacts["program"]), config.get("lm"), config.get("api_base"))

        # a DataFrame hint: MLflow checks the input against the signature (a dict, a list of dicts or a
        # DataFrame become a DataFrame) instead of against type hints, which would refuse a single dict
        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            return pd.DataFrame(self.served.predict(model_rows(model_input)), columns=["answer"])

    mlflow.models.set_model(ProgramModel())


def model_rows(model_input: Any) -> list[dict[str, Any]]:
    """The rows a logged program was given, as plain Python: a DataFrame (what MLflow passes after checking the
    signature), one dict or a list of dicts; numpy arrays (MLflow's parsing of `inputs`/`instances` payloads) become
    lists, so the program sees what `valuesim.inputs` gives."""
    if isinstance(model_input, pd.DataFrame):
        rows = model_input.to_dict("records")
    elif isinstance(model_input, dict):
        rows = [model_input]
    elif isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        rows = model_input
    else:
        raise ValueSimError(
            f"a ValueSim model takes a person asked a question as {{{', '.join(MODEL_INPUTS)}}} (one dict, a list "
            f"of dicts or a DataFrame), not a {type(model_input).__name__}"
        )
    return [{key: plain(value) for key, value in row.items()} for row in rows]


def plain(value: Any) -> Any:
    """numpy arrays and scalars, nested in lists and dicts, as Python lists and scalars."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def valuesim_experiments() -> dict[str, str]:
    """The store's ValueSim experiments (valuesim-evaluate, -compile, -bench): name -> experiment id."""
    found = setup_tracking().search_experiments(filter_string="name LIKE 'valuesim-%'")
    return {e.name: e.experiment_id for e in sorted(found, key=lambda e: e.name)}


def use_store() -> ModuleType:
    """MLflow pointed at the project's store (valuesim.config.tracking_uri), where runs:/ and models:/ are found."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def download(uri: str) -> Path:
    """A run's artifact (`runs:/<run_id>/<path>`) as a local path."""
    return Path(use_store().artifacts.download_artifacts(artifact_uri=uri))


def model_source_run(uri: str) -> str | None:
    """The run that logged a `models:/` model (name/version, name@alias or a logged model's id), by MLflow's own
    URI resolution; None for a model no run logged."""
    return use_store().models.get_model_info(uri).run_id


def load_dspy_model(uri: str) -> dspy.Module:
    """A model an older ValueSim logged with MLflow's dspy flavor, unpickled (runs code from the file: only for your
    own models). Today's models are pyfunc models from code (log_program_model), with no pickle."""
    return use_store().dspy.load_model(uri)


def resolve_uri(uri: str) -> Path:
    """The local folder of a saved program: a folder as is; `runs:/<run_id>[/<path>]` downloads the run's `program/`
    (or <path>); `models:/<name>/<version>`, `models:/<name>@<alias>` and `models:/<model_id>` find the run that
    logged the model (MLflow resolves the URI) and download its `program/`. Never unpickles: every form ends in
    DSPy's JSON state."""
    if uri.startswith("models:/"):
        try:
            run_id = model_source_run(uri)
        except Exception as e:  # noqa: BLE001 - MLflow raises several kinds for an unknown model
            raise ProgramLoadError(f"{uri}: no such model in the MLflow store ({files.first_line(e)})") from None
        if not run_id:
            raise ProgramLoadError(f"{uri}: the model was not logged by a run, so it has no saved program folder")
        return resolve_uri(f"runs:/{run_id}")
    if uri.startswith("runs:/"):
        run_id, _, sub = uri[len("runs:/") :].partition("/")
        try:
            return download(f"runs:/{run_id}/{sub or 'program'}")
        except Exception as e:  # noqa: BLE001 - MLflow raises several kinds for a missing run/artifact
            reason = files.first_line(e)
            raise ProgramLoadError(f"{uri}: cannot be downloaded from the MLflow store ({reason})") from None
    path = Path(uri)
    if not path.exists():
        raise ProgramLoadError(f"{uri}: no such program (give a program name, a saved folder, runs:/ or models:/)")
    return path


def end_orphans(parent_run_id: str) -> list[str]:
    """Mark the parent and its child runs still RUNNING as KILLED: their process died (a rerun resumes them in new
    child runs). Returns the ids marked."""
    # the project's store: a rerun in a new process calls this before any run is opened (MlflowClient() alone
    # read MLflow's default store and did not find the parent)
    client = setup_tracking().MlflowClient()
    parent = client.get_run(parent_run_id)
    found = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    ids = [r.info.run_id for r in found]
    for run_id in ids:
        client.set_terminated(run_id, status="KILLED")
    return ids


def read_json(path: Path) -> Any:
    """A state file a run left, or None when there is none (a damaged one is a one-line error naming it)."""
    return files.read_json(path) if path.exists() else None


write_json = files.write_json
