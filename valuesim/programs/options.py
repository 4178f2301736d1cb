"""Answers constrained to a question's options.

Each call narrows the signature's `answer` field to Literal[<the question's codes>], so structured-output
adapters send an enum schema (the embedded engine turns it into a grammar) and parsing rejects anything else.
`OptionsAdapter` renders the prompt from the un-narrowed signature: the options are already an input, and a
system message that does not change from question to question keeps the engine's prefix cache warm.
"""

from __future__ import annotations

from typing import Any, Literal

import dspy
from dspy.adapters.json_adapter import _get_structured_outputs_response_format


def with_options(signature: type[dspy.Signature], options: dict[str, str]) -> type[dspy.Signature]:
    codes = tuple(str(c) for c in options)
    return signature.with_updated_fields("answer", type_=Literal[codes])


def widened(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    if "answer" in signature.output_fields and signature.output_fields["answer"].annotation is not str:
        return signature.with_updated_fields("answer", type_=str)
    return signature


class OptionsAdapter(dspy.JSONAdapter):
    """JSONAdapter whose prompt text does not depend on the question's option codes (the schema still does)."""

    def format(
        self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return super().format(widened(signature), demos, inputs)

    def _prepare_response_format(
        self, lm: dspy.BaseLM, lm_kwargs: dict[str, Any], signature: type[dspy.Signature]
    ) -> None:
        """DSPy sends no response_format to a model LiteLLM does not know (`openai/<served name>` on a vLLM or
        llama.cpp server), so nothing constrains the answer. For such a server, send JSON mode with the schema
        attached: llama.cpp's servers turn it into a grammar (answers are then always options), others at least
        return JSON. Known models keep DSPy's choice (OpenAI gets its structured-output json_schema)."""
        super()._prepare_response_format(lm, lm_kwargs, signature)
        if "response_format" in lm_kwargs or not getattr(lm, "kwargs", {}).get("api_base"):
            return
        try:
            model = _get_structured_outputs_response_format(signature, self.use_native_function_calling)
        except (ValueError, TypeError):
            return
        from valuesim.lm import bound_strings  # the embedded engine's bound: JSON never cut off by max_tokens

        max_tokens = lm_kwargs.get("max_tokens") or lm.kwargs.get("max_tokens") or 512
        schema = bound_strings(model.model_json_schema(), max_tokens)
        lm_kwargs["response_format"] = {"type": "json_object", "schema": schema}
