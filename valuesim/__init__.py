"""ValueSim: simulate how one person answers value questions with DSPy programs.

`valuesim.load(uri)` returns a compiled program ready to call (`runs:/<id>`, `models:/<name>/<version>` or a
folder saved by `valuesim compile`). Importing the package is cheap: DSPy and MLflow load on first use.
"""

from __future__ import annotations

from typing import Any

from valuesim import config  # noqa: F401  (sets LiteLLM's environment before anything imports DSPy or LiteLLM)

__all__ = ["load"]


def load(uri: str, allow_pickle: bool = False) -> Any:
    """A compiled program, ready to call: `program(**inputs)` returns a dspy.Prediction with `answer`.

    `allow_pickle=True` lets a `models:/` URI load MLflow's pickled model, which runs code from the file."""
    from valuesim.programs.saved import load

    return load(uri, allow_pickle=allow_pickle)
