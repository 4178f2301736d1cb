"""MLflow: one tracking store under mlruns/ at the project home, no server.

The store is a SQLite database (`mlruns/mlflow.db`) with artifacts in `mlruns/artifacts/`: MLflow 3 deprecates
the plain file store (it needs MLFLOW_ALLOW_FILE_STORE=true), and SQLite lets two runs write at once.
Browse it with `valuesim ui` (MLflow's UI on this store, wherever it is run from).
"""

from __future__ import annotations

import fcntl
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from valuesim import config, files
from valuesim.errors import ProgramLoadError

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
    "n", "n_persons", "n_questions", "invalid", "failed", "random_accuracy", "country_accuracy", "normalized_accuracy",
    "log_loss", "brier", "rps", "ece", "jsd_probs", "prob_n", "uniform_log_loss", "country_log_loss",
]  # fmt: skip
COST_METRICS = [
    "lm_calls_per_pred", "prompt_tokens_per_pred", "cached_tokens_per_pred", "completion_tokens_per_pred",
    "usd_total", "usd_per_1000_preds", "seconds_per_pred",
]  # fmt: skip


TABLE_ROWS = 10_000  # predictions up to this many rows are an MLflow table (viewable in the UI), more a parquet file


tracking_uri = config.tracking_uri


def setup_tracking(experiment: str | None = None) -> ModuleType:
    import mlflow

    mlruns = config.mlruns_dir()
    mlruns.mkdir(parents=True, exist_ok=True)
    # Two processes creating the SQLite schema (or the same experiment) at once collide; a file lock makes the
    # first one do it and the other find it done.
    with open(mlruns / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mlflow.set_tracking_uri(tracking_uri())
        if experiment:
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                mlflow.create_experiment(experiment, artifact_location=(mlruns / "artifacts").as_uri(), tags=KIND)
            elif found.tags.get(KIND_TAG) != KIND[KIND_TAG]:  # created by an older valuesim
                mlflow.MlflowClient().set_experiment_tag(found.experiment_id, KIND_TAG, KIND[KIND_TAG])
            mlflow.set_experiment(experiment)
        else:
            mlflow.search_experiments(max_results=1)  # creates the schema under the lock
    return mlflow


@contextmanager
def parent_run(experiment: str, name: str, run_id: str | None = None) -> Iterator[Any]:
    """The bench's parent run: a new one, or the run `run_id` resumed (its children are the bench's cells)."""
    mlflow = setup_tracking(experiment)
    with mlflow.start_run(run_id=run_id, run_name=name) as active:
        yield active


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in params.items() if v is not None})


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
    """DSPy autolog records the optimizer's program states while the block runs; off again afterwards (a failed
    compile must not leave it on for the rest of the process), and the empty models it leaves PENDING deleted."""
    mlflow = setup_tracking(experiment)
    mlflow.dspy.autolog(log_compiles=True, log_evals=False, log_traces_from_compile=False)
    try:
        yield
    finally:
        mlflow.dspy.autolog(disable=True)
        drop_pending_models(mlflow.get_experiment_by_name(experiment).experiment_id)


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
    with mlflow.start_run(run_name=name, nested=nested, tags=tags) as active:
        log_params(params)
        yield active


def logged_metrics(metrics: dict, with_cost: bool) -> dict:
    """The subset of a result's metrics a run logs (see LOGGED_METRICS), with their CIs where present."""
    renamed = {{"persons": "n_persons", "questions": "n_questions"}.get(k, k): v for k, v in metrics.items()}
    keys = [*LOGGED_METRICS, *(COST_METRICS if with_cost else [])]
    keys += [f"{k}_ci_{end}" for k in LOGGED_METRICS for end in ("low", "high")]
    return {k: renamed[k] for k in keys if k in renamed}


def log_result(result: EvalResult, prefix: str = "", with_cost: bool = True) -> None:
    """Metrics, breakdowns and the predictions table of an EvalResult."""
    import mlflow

    mlflow.log_metrics(clean_metrics(logged_metrics(result.metrics, with_cost), prefix))
    if len(result.predictions) <= TABLE_ROWS:
        mlflow.log_table(result.predictions, artifact_file=f"{prefix}predictions.json")
    else:  # log_table's JSON takes seconds per 60k rows and the UI cannot show that many: parquet for pandas
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


def log_dspy_model(program: dspy.Module) -> str | None:
    """The program with MLflow's dspy flavor (for the model registry). Returns the model URI, or None when the
    program cannot be serialized (the JSON folder logged beside it is what `valuesim.load` reads)."""
    import mlflow

    try:
        info = mlflow.dspy.log_model(program, name="model", use_dspy_model_save=True)
        return info.model_uri
    except Exception as e:  # noqa: BLE001 - record why, keep the run
        mlflow.set_tag("dspy_flavor_error", f"{type(e).__name__}: {e}"[:500])
        return None


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
    """A model logged with MLflow's dspy flavor, unpickled (runs code from the file: only for your own models)."""
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


def drop_pending_models(experiment_id: str) -> int:
    """Delete the empty logged models DSPy autolog leaves in state PENDING (named "dspy", no files). Returns how
    many were deleted."""
    import mlflow
    from mlflow.entities import LoggedModelStatus

    client = mlflow.MlflowClient()
    pending = [
        m for m in client.search_logged_models(experiment_ids=[experiment_id])
        if m.status == LoggedModelStatus.PENDING
    ]  # fmt: skip
    for m in pending:
        client.delete_logged_model(m.model_id)
    return len(pending)


def read_json(path: Path) -> Any:
    """A state file a run left, or None when there is none (a damaged one is a one-line error naming it)."""
    return files.read_json(path) if path.exists() else None


write_json = files.write_json
