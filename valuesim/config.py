"""Where ValueSim keeps its state. One home, overridable with VALUESIM_HOME (default: the current directory).

data/benchmark/   built benchmark          runs/       one folder per evaluate/compile/bench run
mlruns/           MLflow tracking store    .cache/     parsed WVS files, DSPy's LM cache, model files
"""

from __future__ import annotations

import os
from pathlib import Path


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
