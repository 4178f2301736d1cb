"""What an LM program logs with a run: the prompt each of its predictors sends, rendered for one example.

Each program says what its predictors receive (`prompt_inputs`); what an earlier module would write (a backstory,
the views' answers) is a placeholder, since rendering calls no LM. valuesim.tracking writes the texts as run
artifacts without knowing any program.
"""

from __future__ import annotations

from typing import Any

import dspy

from valuesim.programs.distribution import sampled
from valuesim.programs.options import OptionsAdapter

BACKSTORY = "<the person's backstory>"


def view_placeholders(views: tuple[str, ...]) -> dict[str, str]:
    """The coordinator's inputs from the CAPS views, as placeholders."""
    return {f"{view}_{field}": f"<{view} view's {field}>" for view in views for field in ("answer", "analysis")}


class LoggedPrompts:
    """Mixin for LM programs: `prompts(example)` gives {predictor name: its rendered messages}.

    A program can also carry its own DSPy adapter (DSPy 3.4 has none per module, only `dspy.configure` and
    `dspy.context`): with `program.adapter` set, each call runs inside `dspy.context(adapter=program.adapter)`,
    which reaches its predictors and dspy.Parallel's threads. `valuesim.load` sets it to the OptionsAdapter every
    run uses; runs leave it None and configure the adapter globally (runner.configure_lm)."""

    needs_lm = True  # every program with prompts calls an LM
    adapter: dspy.Adapter | None = None
    samples: int = 0  # --samples K: answers drawn when the LM gives no logprobs (programs/distribution.py)

    def __call__(self, *args: Any, **kwargs: Any) -> dspy.Prediction:
        if self.adapter is None:
            return self._sampled(*args, **kwargs)
        with dspy.context(adapter=self.adapter):
            return self._sampled(*args, **kwargs)

    def _sampled(self, *args: Any, **kwargs: Any) -> dspy.Prediction:
        def run() -> dspy.Prediction:
            return super(LoggedPrompts, self).__call__(*args, **kwargs)  # type: ignore[misc]

        pred = run()
        if self.samples and "options" in kwargs:
            sampled(run, pred, kwargs["options"], self.samples)
        return pred

    async def acall(self, *args: Any, **kwargs: Any) -> dspy.Prediction:
        if self.adapter is None:
            return await super().acall(*args, **kwargs)  # type: ignore[misc]
        with dspy.context(adapter=self.adapter):
            return await super().acall(*args, **kwargs)  # type: ignore[misc]

    def prompt_inputs(self, example: dspy.Example) -> dict[str, Any]:
        """Every input any predictor of this program receives for `example` (override to add the program's own)."""
        return dict(example.inputs())

    def prompts(self, example: dspy.Example) -> dict[str, str]:
        inputs = self.prompt_inputs(example)
        adapter = OptionsAdapter()  # the adapter every LM program runs with (runner.configure_lm)
        texts = {}
        for name, predictor in self.named_predictors():  # type: ignore[attr-defined]
            fields = {k: v for k, v in inputs.items() if k in predictor.signature.input_fields}
            messages = adapter.format(predictor.signature, predictor.demos, fields)
            texts[name] = "\n\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages)
        return texts
