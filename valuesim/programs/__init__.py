"""Every program the CLI can run, by name. Each class builds itself with `from_benchmark(bench, **settings)`."""

from valuesim.programs.baselines import Backstory, Demographics, FullInfo
from valuesim.programs.rag import Rag
from valuesim.programs.statistical import KNN, CountryMajority, DemographicCell, GlobalMajority, Random
from valuesim.programs.valuesim import ValueSim

PROGRAMS = {
    "random": Random,
    "majority": GlobalMajority,
    "country": CountryMajority,
    "cell": DemographicCell,
    "knn": KNN,
    "demographics": Demographics,
    "rag": Rag,
    "full-info": FullInfo,
    "backstory": Backstory,
    "valuesim": ValueSim,
}
# Programs that need no LM: fitted on training respondents, run in batches (valuesim.evaluate.evaluate_batch).
STATISTICAL = {"random", "majority", "country", "cell", "knn"}
