"""Shared test helpers for the LM programs: a DummyLM that answers per module, hand-made examples.

`ScriptedLM` is DSPy's DummyLM (same engine, adapter-formatted replies, `lm.history`) whose reply is chosen by
which signature the prompt belongs to, recognised by the first line of the signature's instructions in the
system message. The three CAPS views get identical user messages, so routing on the user message alone (what
DummyLM's dict mode does) cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dspy
from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.utils.dummies import DummyLM

from valuesim.programs.options import OptionsAdapter
from valuesim.signatures import (
    Affective,
    AnswerFromBackstory,
    AnswerFromDemographics,
    AnswerFromProfile,
    Behavioral,
    Cognitive,
    Coordinate,
    WriteBackstory,
)

# module name -> signature; the names match the predictor names of the programs (ValueSim: story.write, ...)
SIGNATURES: dict[str, type[dspy.Signature]] = {
    "write": WriteBackstory,
    "cognitive": Cognitive,
    "affective": Affective,
    "behavioral": Behavioral,
    "coordinator": Coordinate,
    "from_backstory": AnswerFromBackstory,
    "from_profile": AnswerFromProfile,
    "from_demographics": AnswerFromDemographics,
}

Reply = dict[str, Any] | Callable[[list[dict]], dict[str, Any]]


def first_line(signature: type[dspy.Signature]) -> str:
    return signature.instructions.strip().splitlines()[0].strip()


def module_of(messages: list[dict]) -> str:
    """Which signature a prompt was rendered from (by its instructions in the system message)."""
    system = next(m["content"] for m in messages if m["role"] == "system")
    found = [name for name, sig in SIGNATURES.items() if first_line(sig) in system]
    assert len(found) == 1, f"cannot tell the module of this prompt: {found} in {system[-400:]!r}"
    return found[0]


def user_message(messages: list[dict]) -> str:
    """The last user message: the one carrying this call's inputs."""
    return [m for m in messages if m["role"] == "user"][-1]["content"]


class _ScriptedEngine(DummyEngine):
    def _complete_messages(self, messages):
        owner = self.owner
        name = module_of(messages)
        owner.calls.append((name, messages))
        reply = owner.replies.get(name)
        if reply is None:
            raise AssertionError(f"ScriptedLM has no reply for module {name!r}")
        owner.answers = iter([reply(messages) if callable(reply) else reply])
        return super()._complete_messages(messages)


class ScriptedLM(DummyLM):
    """DummyLM replying per module: `replies` maps a SIGNATURES name to output fields (or a function of the
    messages returning them). `calls` lists (module name, messages) in call order."""

    def __init__(self, replies: dict[str, Reply], adapter: dspy.Adapter | None = None):
        super().__init__([], adapter=adapter or OptionsAdapter())
        self.replies = dict(replies)
        self.calls: list[tuple[str, list[dict]]] = []
        self._engine_spec = _ScriptedEngine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied._engine_spec = _ScriptedEngine(copied)
        copied._async_engine_spec = AsyncDummyEngine(copied._engine_spec)
        return copied

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def users(self, name: str) -> list[str]:
        """The user messages of every call to module `name`."""
        return [user_message(messages) for n, messages in self.calls if n == name]


def use(lm: dspy.LM) -> dspy.LM:
    """Make `lm` DSPy's default with the adapter the CLI uses."""
    dspy.configure(lm=lm, adapter=OptionsAdapter())
    return lm


# ---------------------------------------------------------------------------------------------------------------
# Hand-made examples with the fields Benchmark.examples() produces

IMPORTANCE = {"1": "Very important", "2": "Rather important", "3": "Not very important", "4": "Not at all important"}
YES_NO = {"1": "Yes", "2": "No"}
SCALE10 = {
    str(i): ("Completely dissatisfied" if i == 1 else "Completely satisfied" if i == 10 else str(i))
    for i in range(1, 11)
}

DEMOGRAPHICS = ["You live in Japan.", "You are a woman.", "You are 34 years old."]
PROFILE = [
    "Family is very important in your life.",
    "You attend religious services once a year.",
    "You have quite a lot of confidence in the police.",
]

INPUTS = ("person_id", "country", "known", "demographics", "profile", "question_code", "question", "options")


def make_ex(
    question_code: str = "Q1",
    answer: str | None = "1",
    options: dict[str, str] | None = None,
    question: str | None = None,
    person_id: str = "JPN-1",
    country: str = "JPN",
    demographics: list[str] | None = None,
    profile: list[str] | None = None,
    known: dict | None = None,
    category: str = "Social Values, Norms, Stereotypes",
    ordinal: bool = True,
) -> dspy.Example:
    """An example shaped like valuesim.data.benchmark.make_example's."""
    return dspy.Example(
        person_id=person_id,
        country=country,
        known=known if known is not None else {"Q260": 2, "Q262": 34},
        demographics=list(DEMOGRAPHICS if demographics is None else demographics),
        profile=list(PROFILE if profile is None else profile),
        question_code=question_code,
        question=question or f"Question text of {question_code}?",
        options=dict(options or IMPORTANCE),
        category=category,
        ordinal=ordinal,
        answer=answer,
    ).with_inputs(*INPUTS)


def views_reply(cognitive: str, affective: str, behavioral: str) -> dict[str, Reply]:
    """Replies for the three CAPS views with the given answers, each analysis naming its view."""
    return {
        "cognitive": {"analysis": "cognitive analysis", "answer": cognitive},
        "affective": {"analysis": "affective analysis", "answer": affective},
        "behavioral": {"analysis": "behavioral analysis", "answer": behavioral},
    }
