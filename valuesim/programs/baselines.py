"""LM baselines: backstory -> direct answer (Anthology-style), full profile, demographics only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import dspy

from valuesim.programs.distribution import ask, finish, settle
from valuesim.programs.options import with_options
from valuesim.programs.prompts import BACKSTORY, LoggedPrompts
from valuesim.programs.valuesim import BackstoryWords, StoryTeller
from valuesim.signatures import AnswerFromBackstory, AnswerFromDemographics, AnswerFromProfile

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark


class _Direct(LoggedPrompts, dspy.Module):
    @classmethod
    def from_benchmark(cls, bench: Benchmark | None = None, **settings: Any) -> Self:
        return cls(**settings)


class Backstory(_Direct):
    """The same backstory as ValueSim, then one direct answer: ValueSim without the CAPS views."""

    def __init__(self, backstory_words: BackstoryWords = 120) -> None:
        super().__init__()
        self.story = StoryTeller(backstory_words)
        self.answer = dspy.Predict(AnswerFromBackstory)

    def prompt_inputs(self, example: dspy.Example) -> dict[str, Any]:
        """For the logged prompts: the backstory writer's word budget is this program's; the backstory a placeholder."""
        return {**super().prompt_inputs(example), "word_budget": self.story.words, "backstory": BACKSTORY}

    def forward(
        self, demographics: list[str], profile: list[str], question: str, options: dict[str, str], **_: Any
    ) -> dspy.Prediction:
        backstory = self.story(demographics=demographics, profile=profile)
        pred, probs = ask(
            self.answer,
            signature=with_options(self.answer.signature, options),
            backstory=backstory,
            question=question,
            options=options,
        )
        return dspy.Prediction(**finish(pred.answer, options, probs), backstory=backstory)


class FullInfo(_Direct):
    """All known answers in one prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.Predict(AnswerFromProfile)

    def forward(
        self, demographics: list[str], profile: list[str], question: str, options: dict[str, str], **_: Any
    ) -> dspy.Prediction:
        pred, probs = ask(
            self.answer,
            signature=with_options(self.answer.signature, options),
            demographics=demographics,
            profile=profile,
            question=question,
            options=options,
        )
        return settle(pred, options, probs)  # the predictor's own Prediction, as before


class Demographics(_Direct):
    """Demographics only: what the person's background alone predicts."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.Predict(AnswerFromDemographics)

    def forward(self, demographics: list[str], question: str, options: dict[str, str], **_: Any) -> dspy.Prediction:
        pred, probs = ask(
            self.answer,
            signature=with_options(self.answer.signature, options),
            demographics=demographics,
            question=question,
            options=options,
        )
        return settle(pred, options, probs)
