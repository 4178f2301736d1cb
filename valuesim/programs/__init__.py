"""Every program the CLI can run, by name. Each class builds itself with `from_benchmark(bench, **settings)`."""

from valuesim.programs.statistical import KNN, CountryMajority, DemographicCell, GlobalMajority

PROGRAMS = {
    "majority": GlobalMajority,
    "country": CountryMajority,
    "cell": DemographicCell,
    "knn": KNN,
}
STATISTICAL = {"majority", "country", "cell", "knn"}
