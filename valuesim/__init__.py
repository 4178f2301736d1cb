"""ValueSim: simulate how one person answers value questions with DSPy programs.

`valuesim.load(uri)` returns a compiled program ready to call.
"""

from valuesim import lm  # noqa: F401  (first: sets DSPY_CACHEDIR before dspy builds its cache)
