"""Every program the CLI can run, by name. Each class builds itself with `from_benchmark(bench, **settings)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import dspy

from valuesim.programs.baselines import Backstory, Demographics, FullInfo
from valuesim.programs.knn import KNN
from valuesim.programs.ml import TrainedModel
from valuesim.programs.rag import Rag
from valuesim.programs.statistical import CountryMajority, DemographicCell, GlobalMajority, Random
from valuesim.programs.valuesim import ValueSim

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark


class ProgramClass(Protocol):
    """A program class: called with settings, or built from a benchmark, it gives a dspy.Module."""

    needs_lm: bool  # False: fitted on training respondents, no LM, predicted in batches

    def __call__(self, *args: Any, **settings: Any) -> dspy.Module: ...

    def from_benchmark(self, bench: Benchmark, **settings: Any) -> dspy.Module: ...


PROGRAMS: dict[str, ProgramClass] = {
    "random": Random,
    "majority": GlobalMajority,
    "country": CountryMajority,
    "cell": DemographicCell,
    "knn": KNN,
    "ml": TrainedModel,
    "demographics": Demographics,
    "rag": Rag,
    "full-info": FullInfo,
    "backstory": Backstory,
    "valuesim": ValueSim,
}


def needs_lm(program: str) -> bool:
    """Whether a program (a name, or a compiled program's URI: only LM programs compile) calls an LM; the others are
    fitted on training respondents and predict in batches (`predict_batch`)."""
    return PROGRAMS[program].needs_lm if program in PROGRAMS else True
