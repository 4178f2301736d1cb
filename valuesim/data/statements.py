"""Answers as second-person statements. Placeholder generic form; per-question templates come next."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from valuesim.data.catalog import Question


def render_statement(question: Question, answer: int) -> str:
    label = question.options.get(answer, str(answer))
    return f"Asked '{question.label}', you answered: {label}."
