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
# Programs that need no LM (the name is historical: `ml` is a trained model): fitted on training respondents only,
# run in batches (valuesim.run.predict.evaluate_batch), no LM configured.
STATISTICAL = {"random", "majority", "country", "cell", "knn", "ml"}
