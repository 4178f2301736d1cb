"""Where ValueSim keeps its state. One home, overridable with VALUESIM_HOME (default: the current directory).

data/benchmark/   built benchmark          runs/       one folder per evaluate/compile/bench run
mlruns/           MLflow tracking store    .cache/     parsed WVS files, DSPy's LM cache, model files
"""

from __future__ import annotations

import os
from pathlib import Path

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
