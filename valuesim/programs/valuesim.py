"""ValueSim: backstory once per person, three CAPS views per question, a coordinator when they disagree."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import dspy
from pydantic import Field

from valuesim.programs.distribution import ask, finish
from valuesim.programs.options import with_options
from valuesim.programs.prompts import BACKSTORY, LoggedPrompts, view_placeholders
from valuesim.signatures import Affective, Behavioral, Cognitive, Coordinate, WriteBackstory

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark


class BackstoryCache:
    """One backstory per person (same demographics and profile), reused for all their questions."""

    def __init__(self) -> None:
        self._stories: dict[str, str] = {}
        self._lock = threading.Lock()

    # A copy starts empty: optimizers deep-copy the program before changing its prompts, and a compiled copy must
    # write its own backstories (the lock cannot be copied, so DSPy used to fall back to a shallow copy that shared
    # the stories of the uncompiled program). Pickling (MLflow's dspy flavor) drops the stories and the lock too.
    def __deepcopy__(self, memo: dict[int, Any]) -> BackstoryCache:
        return BackstoryCache()

    def __copy__(self) -> BackstoryCache:
        return BackstoryCache()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        BackstoryCache.__init__(self)

    @staticmethod
    def key(demographics: list[str], profile: list[str]) -> str:
        return hashlib.sha1(json.dumps([demographics, profile]).encode()).hexdigest()

    def get_or_make(self, demographics: list[str], profile: list[str], make: Callable[[], str]) -> str:
        key = self.key(demographics, profile)
        with self._lock:
            if key in self._stories:
                return self._stories[key]
        story = make()
        with self._lock:
            if len(self._stories) > 256:  # persons come one after another; keep memory flat
                self._stories.clear()
            self._stories[key] = story
        return story


class StoryTeller(dspy.Module):
    """Profile statements -> a bounded second-person backstory, cached per person."""

    def __init__(self, words: int = 120, reuse: bool = True):
        super().__init__()
        self.words = words
        self.reuse = reuse  # False writes a new backstory for every question: the naive cost, for comparison
        self.write = dspy.Predict(WriteBackstory)
        self.cache = BackstoryCache()

    def forward(self, demographics: list[str], profile: list[str]) -> str:
        def make() -> str:
            pred = self.write(
                demographics=demographics,
                profile=profile,
                word_budget=self.words,
                config={"max_tokens": int(self.words * 2)},
            )
            return pred.backstory

        return self.cache.get_or_make(demographics, profile, make) if self.reuse else make()


BackstoryWords = Annotated[int, Field(ge=10, le=2000)]  # the word budget the backstory writer is given

VIEWS = ("cognitive", "affective", "behavioral")


def pooled(distributions: list[dict | None]) -> dict | None:
    """The views' mean distribution when they agree (None unless every view has one); see docs/reference.md."""
    if any(d is None for d in distributions) or not distributions:
        return None
    codes = list(distributions[0])  # type: ignore[arg-type]
    return {code: sum(d[code] for d in distributions) / len(distributions) for code in codes}  # type: ignore[index]


class ValueSim(LoggedPrompts, dspy.Module):
    def __init__(
        self,
        backstory_words: BackstoryWords = 120,
        analysis_tokens: Annotated[int, Field(ge=16, le=4096)] = 48,  # below ~16 the JSON answer is cut off
        parallel: bool = False,
        reuse_backstory: bool = True,
    ):
        super().__init__()
        self.story = StoryTeller(backstory_words, reuse_backstory)
        self.cognitive = dspy.Predict(Cognitive)
        self.affective = dspy.Predict(Affective)
        self.behavioral = dspy.Predict(Behavioral)
        self.coordinator = dspy.Predict(Coordinate)
        self.analysis_tokens = analysis_tokens
        self.parallel = parallel  # worth it for remote LMs; the embedded engine runs one call at a time anyway

    @classmethod
    def from_benchmark(cls, bench: Benchmark | None = None, **settings: Any) -> ValueSim:
        return cls(**settings)

    def prompt_inputs(self, example: dspy.Example) -> dict[str, Any]:
        """For the logged prompts: the backstory writer's word budget is this program's, later inputs placeholders."""
        return {
            **super().prompt_inputs(example),
            "word_budget": self.story.words,
            "backstory": BACKSTORY,
            **view_placeholders(VIEWS),
        }

    def forward(
        self, demographics: list[str], profile: list[str], question: str, options: dict[str, str], **_: Any
    ) -> dspy.Prediction:
        backstory = self.story(demographics=demographics, profile=profile)
        calls = [
            (
                getattr(self, name),
                dict(
                    signature=with_options(getattr(self, name).signature, options),
                    backstory=backstory,
                    question=question,
                    options=options,
                    config={"max_tokens": self.analysis_tokens},
                ),
            )
            for name in VIEWS
        ]
        if self.parallel:
            asks = [(ask, dict(predictor=module, **kwargs)) for module, kwargs in calls]
            results = dspy.Parallel(num_threads=3, disable_progress_bar=True)(asks)
        else:
            results = [ask(module, **kwargs) for module, kwargs in calls]
        views = {name: pred for name, (pred, _) in zip(VIEWS, results, strict=True)}
        view_probs = [probs for _, probs in results]
        answers = {name: v.answer for name, v in views.items()}
        coordinated = len(set(answers.values())) > 1
        if coordinated:
            pred, probs = ask(
                self.coordinator,
                signature=with_options(self.coordinator.signature, options),
                backstory=backstory,
                question=question,
                options=options,
                **{f"{name}_{field}": v[field] for name, v in views.items() for field in ("answer", "analysis")},
            )
            final = pred.answer
        else:
            final = answers["cognitive"]
            probs = pooled(view_probs)
        return dspy.Prediction(
            **finish(final, options, probs),
            backstory=backstory,
            coordinated=coordinated,
            **{f"{name}_answer": v.answer for name, v in views.items()},
            **{f"{name}_analysis": v.analysis for name, v in views.items()},
        )
