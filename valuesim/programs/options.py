"""Answers constrained to a question's options.

Each call narrows the signature's `answer` field to Literal[<the question's codes>], so structured-output
adapters send an enum schema (the embedded engine turns it into a grammar) and parsing rejects anything else.
`OptionsAdapter` renders the prompt from the un-narrowed signature: the options are already an input, and a
system message that does not change from question to question keeps the engine's prefix cache warm.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

import dspy

# private: DSPy's own structured-output model of a signature (the schema OpenAI gets), no public equivalent
# (pinned by tests/test_private_apis.py)
from dspy.adapters.json_adapter import _get_structured_outputs_response_format


def with_options(signature: type[dspy.Signature], options: dict[str, str]) -> type[dspy.Signature]:
    # ignores below: classes hash by identity, but mypy does not count type[Any] (dspy is untyped) as Hashable
    return _narrowed(signature, tuple(str(c) for c in options))  # type: ignore[arg-type]


# Cached because with_updated_fields deep-copies the signature: ~2.4 ms of one core per LM call, which capped
# `--threads 64` against a served model (scripts/concurrency_bench.py). Signatures hash by identity.
@lru_cache(maxsize=4096)
def _narrowed(signature: type[dspy.Signature], codes: tuple[str, ...]) -> type[dspy.Signature]:
    return signature.with_updated_fields("answer", type_=Literal[codes])


@lru_cache(maxsize=256)
def widened(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    if "answer" in signature.output_fields and signature.output_fields["answer"].annotation is not str:
        return signature.with_updated_fields("answer", type_=str)
    return signature


class OptionsAdapter(dspy.JSONAdapter):
    """JSONAdapter whose prompt text does not depend on the question's option codes (the schema still does)."""

    def format(
        self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return super().format(widened(signature), demos, inputs)  # type: ignore[arg-type]

    # private hook: JSONAdapter's only step between choosing response_format and calling the LM; overriding the
    # public __call__ would mean copying DSPy's choice (pinned by tests/test_private_apis.py)
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
        max_tokens = lm_kwargs.get("max_tokens") or lm.kwargs.get("max_tokens") or 512
        schema = _bounded_schema(signature, self.use_native_function_calling, max_tokens)  # type: ignore[arg-type]
        if schema is not None:
            lm_kwargs["response_format"] = {"type": "json_object", "schema": json.loads(schema)}


# Cached (as JSON text, so no caller shares a mutable dict) because building the pydantic model costs ~1.5 ms of
# one core per LM call, which capped `--threads 64` against a served model (scripts/concurrency_bench.py).
@lru_cache(maxsize=4096)
def _bounded_schema(signature: type[dspy.Signature], native_tools: bool, max_tokens: int) -> str | None:
    from valuesim.lm import bound_strings  # the embedded engine's bound: JSON never cut off by max_tokens

    try:
        model = _get_structured_outputs_response_format(signature, native_tools)
    except (ValueError, TypeError):
        return None
    return json.dumps(bound_strings(model.model_json_schema(), max_tokens))
