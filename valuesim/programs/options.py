"""Answers constrained to a question's options.

Each call narrows the signature's `answer` field to Literal[<the question's codes>], so structured-output
adapters send an enum schema (the embedded engine turns it into a grammar) and parsing rejects anything else.
`OptionsAdapter` renders the prompt from the un-narrowed signature: the options are already an input, and a
system message that does not change from question to question keeps the engine's prefix cache warm.
"""

from __future__ import annotations

from typing import Literal

import dspy


def with_options(signature: type[dspy.Signature], options: dict[str, str]) -> type[dspy.Signature]:
    codes = tuple(str(c) for c in options)
    return signature.with_updated_fields("answer", type_=Literal[codes])  # type: ignore[valid-type]


def widened(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    if "answer" in signature.output_fields and signature.output_fields["answer"].annotation is not str:
        return signature.with_updated_fields("answer", type_=str)
    return signature


class OptionsAdapter(dspy.JSONAdapter):
    """JSONAdapter whose prompt text does not depend on the question's option codes (the schema still does)."""

    def format(self, signature, demos, inputs):
        return super().format(widened(signature), demos, inputs)
