"""What an LM program logs with a run: the prompt each of its predictors sends, rendered for one example.

Each program says what its predictors receive (`prompt_inputs`); what an earlier module would write (a backstory,
the views' answers) is a placeholder, since rendering calls no LM. valuesim.tracking writes the texts as run
artifacts without knowing any program.
"""

from __future__ import annotations

from typing import Any

import dspy

from valuesim.programs.options import OptionsAdapter

BACKSTORY = "<the person's backstory>"


def view_placeholders(views: tuple[str, ...]) -> dict[str, str]:
    """The coordinator's inputs from the CAPS views, as placeholders."""
    return {f"{view}_{field}": f"<{view} view's {field}>" for view in views for field in ("answer", "analysis")}


class LoggedPrompts:
    needs_lm = True  # every program with prompts calls an LM
    """Mixin for LM programs: `prompts(example)` gives {predictor name: its rendered messages}."""

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
