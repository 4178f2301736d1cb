"""ValueSim: simulate how one person answers value questions with DSPy programs.

    import valuesim
    program = valuesim.load("runs:/<run_id>", lm="gemma")   # the compiled program, its LM and the runs' adapter
    prediction = program(**valuesim.inputs("person.json", "Q164"))
    prediction.answer                                         # an option code of Q164, as a string

Importing the package is cheap: DSPy and MLflow load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from valuesim import config  # noqa: F401  (sets LiteLLM's environment before anything imports DSPy or LiteLLM)

if TYPE_CHECKING:
    import dspy

    from valuesim.data.catalog import Catalog

__all__ = ["inputs", "load"]


def load(
    uri: str | Path,
    lm: str | dspy.LM | None = None,
    api_base: str | None = None,
    allow_pickle: bool = False,
) -> dspy.Module:
    """A saved program, ready to call: `program(**inputs)` returns a dspy.Prediction with `answer`.

    `uri`: a folder saved by `valuesim compile` (`runs/<run>/program`), `runs:/<run_id>`, `models:/<name>/<version>`,
    `models:/<name>@<alias>` or `models:/<model id>`.
    `lm`: a model as `--lm` takes it ("gemma", "smollm2", a .gguf path, "dummy", a LiteLLM string such as
    "openai/gpt-4o-mini", with `api_base` for a served model), built and checked exactly as a run builds it
    (temperature 0, the runs' max_tokens, timeout and retries); or a dspy.LM of your own; or None for the LM set
    with `dspy.configure(lm=...)`. It is set on the program's predictors (`program.set_lm`), not globally.
    Every LM program also carries the adapter the runs use (`program.adapter`, valuesim.programs.options'
    OptionsAdapter: answers constrained to the question's option codes), so it sends the prompts that were
    evaluated whatever adapter DSPy has configured; set `program.adapter = None` to use DSPy's.
    `allow_pickle=True` lets a `models:/` URI logged by an older ValueSim with MLflow's dspy flavor load its
    pickle, which runs code from the file: only for models you logged yourself (today's models have no pickle)."""
    from valuesim.programs.options import OptionsAdapter
    from valuesim.programs.prompts import LoggedPrompts
    from valuesim.run.runner import load_saved

    program = load_saved(str(uri), allow_pickle=allow_pickle)
    if not program.predictors():  # a baseline: no LM, no adapter
        return program
    if isinstance(program, LoggedPrompts):
        program.adapter = OptionsAdapter()
    if isinstance(lm, str):
        from valuesim.run.runner import checked_lm

        lm = checked_lm(lm, api_base)
    elif api_base is not None:
        from valuesim.errors import ValueSimError

        raise ValueSimError("api_base goes with an LM given by name (lm='openai/<model>'), not with a dspy.LM or None")
    if lm is not None:
        program.set_lm(lm)
    return program


def inputs(person: str | Path | dict[str, Any], question: str, catalog: str | Path | Catalog | None = None) -> dict:
    """A program's inputs for one person asked one question, as `valuesim simulate` builds them.

    `person`: a person file (README, "Person files") or its JSON as a dict (`{"country": "USA", "answers":
    {"Q260": "Female", ...}}`). `question`: a question code ("Q164"). `catalog`: the question catalog of a built
    benchmark, given as the benchmark's folder or a `valuesim.data.catalog.Catalog`; default the benchmark
    `valuesim data build` writes (`$VALUESIM_HOME/data/benchmark`)."""
    from valuesim.data.benchmark import Benchmark
    from valuesim.data.catalog import Catalog
    from valuesim.data.person import ask

    if not isinstance(catalog, Catalog):
        catalog = Benchmark(catalog or config.data_dir()).catalog
    example = ask(person, question, catalog)
    return {key: example[key] for key in example.inputs().keys()}
