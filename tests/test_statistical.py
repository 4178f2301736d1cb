"""valuesim.programs.statistical and .knn: the majority, country, cell and knn baselines on tiny hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from valuesim.data.benchmark import Benchmark, make_example, make_person
from valuesim.data.benchmark import items as benchmark_items
from valuesim.programs.knn import KNN
from valuesim.programs.statistical import (
    CountryMajority,
    DemographicCell,
    GlobalMajority,
    Tallies,
    country_majorities,
    group_persons,
)

BASELINES = (GlobalMajority, CountryMajority, DemographicCell, KNN)


def train_table(catalog, rows: list[dict], dtype: str = "Int64") -> pd.DataFrame:
    """Training respondents: rows are {"country": .., "Qn": code}; unlisted questions are missing.

    dtype "float64" is how Benchmark.respondents() returns columns with missing values (NaN, codes as 1.0)."""
    data: dict = {
        "person_id": [f"{r['country']}-{i}" for i, r in enumerate(rows)],
        "country": [r["country"] for r in rows],
        "split": "train",
    }
    for q in catalog.codes:
        values = pd.array([r.get(q) for r in rows], dtype="Int64")
        data[q] = values.astype("float64") if dtype == "float64" else values
    return pd.DataFrame(data)


def ask(program, catalog, country: str, question: str, known: dict | None = None):
    """The program's answer for a person of `country` who gave the `known` answers, via the real example inputs."""
    known = known or {}
    demo = [{"q": q, "a": a} for q, a in known.items() if catalog[q].kind == "demographic"]
    profile = [{"q": q, "a": a} for q, a in known.items() if catalog[q].kind == "value"]
    person = make_person(catalog, country, demo, profile) | {"person_id": "test-1"}
    ex = make_example(catalog, person, question)
    answer = program(**ex.inputs()).answer
    assert answer is None or answer in ex.options, (type(program).__name__, question, answer)
    return answer


@pytest.mark.parametrize("by", [None, "country", "cell"])
def test_tallies_count_every_answer_of_each_group(bench_small: Path, by: str | None) -> None:
    """Tallies (counted in one pass over numbers) equal a count of the training table's answers, cell by cell; a
    person without a group (a cell of missing demographics) counts nowhere."""
    bench = Benchmark(bench_small)
    program = DemographicCell.from_benchmark(bench)
    train = program.train
    groups = None if by is None else (train["country"] if by == "country" else program.cells).copy()
    if groups is not None:
        groups.iloc[0] = None
    expected: dict[tuple, dict[float, float]] = {}
    for n, row in train.iterrows():
        group = 0 if groups is None else groups.iloc[n]
        if pd.isna(group):
            continue
        for code in program.codes:
            if pd.notna(row[code]):
                counts = expected.setdefault((group, code), {})
                counts[float(row[code])] = counts.get(float(row[code]), 0.0) + 1
    tallies = Tallies(train, program.codes, groups)
    assert tallies.tally == expected
    assert tallies.total == {key: sum(counts.values()) for key, counts in expected.items()}


def test_global_majority(catalog) -> None:
    rows = [{"country": "USA", "Q1": 1}] * 2 + [{"country": "JPN", "Q1": 2}] * 3 + [{"country": "USA"}] * 4
    program = GlobalMajority(train_table(catalog, rows), catalog)
    assert ask(program, catalog, "USA", "Q1") == "2"  # missing answers do not vote
    assert ask(program, catalog, "COL", "Q1") == "2"


def test_country_majority_and_fallback(catalog) -> None:
    rows = [{"country": "USA", "Q1": 1}] * 3 + [{"country": "JPN", "Q1": 2}] * 4 + [{"country": "COL", "Q2": 1}]
    program = CountryMajority(train_table(catalog, rows), catalog)
    assert ask(program, catalog, "USA", "Q1") == "1"
    assert ask(program, catalog, "JPN", "Q1") == "2"
    assert ask(program, catalog, "COL", "Q1") == "2"  # no Colombian answered Q1: global majority
    assert ask(program, catalog, "BGD", "Q1") == "2"  # no training respondent from the country at all


def test_votes_are_restricted_to_the_persons_options(catalog) -> None:
    """Q223 options are per country: a Bangladeshi party never becomes a USA respondent's vote."""
    rows = [{"country": "BGD", "Q223": 50001}] * 5 + [{"country": "USA", "Q223": 840002}] * 2
    rows += [{"country": "USA", "Q223": 4}]
    train = train_table(catalog, rows)
    for cls in BASELINES:
        program = cls(train, catalog)
        assert ask(program, catalog, "USA", "Q223", {"Q260": 1, "Q262": 40, "Q275": 3}) == "840002", cls.__name__
        assert ask(program, catalog, "BGD", "Q223", {"Q260": 1, "Q262": 40, "Q275": 3}) == "50001", cls.__name__


# ---------------------------------------------------------------------------------------------------------------
# Demographic cell


def cell_rows() -> list[dict]:
    young_graduate_men = [{"country": "USA", "Q260": 1, "Q262": 25, "Q275": 6, "Q1": 4}] * 3
    others = [{"country": "USA", "Q260": 2, "Q262": 60, "Q275": 2, "Q1": 1}] * 5
    return young_graduate_men + others + [{"country": "JPN", "Q260": 1, "Q262": 25, "Q275": 6, "Q1": 3}] * 6


@pytest.mark.parametrize("dtype", ["Int64", "float64"])
def test_cell_majority(catalog, dtype: str) -> None:
    train = train_table(catalog, cell_rows(), dtype=dtype)
    program = DemographicCell(train, catalog, min_cell=3)
    # same country, sex, age band (<30) and education band (ISCED 6-8: high) as the three young graduate men
    assert ask(program, catalog, "USA", "Q1", {"Q260": 1, "Q262": 28, "Q275": 7}) == "4"
    assert ask(program, catalog, "JPN", "Q1", {"Q260": 1, "Q262": 28, "Q275": 7}) == "3"


@pytest.mark.parametrize("dtype", ["Int64", "float64"])
def test_cell_backs_off_to_country(catalog, dtype: str) -> None:
    train = train_table(catalog, cell_rows(), dtype=dtype)
    small = DemographicCell(train, catalog, min_cell=4)  # the USA cell has only 3 answers
    assert ask(small, catalog, "USA", "Q1", {"Q260": 1, "Q262": 28, "Q275": 7}) == "1"
    program = DemographicCell(train, catalog, min_cell=3)
    assert ask(program, catalog, "USA", "Q1", {"Q260": 1, "Q262": 28}) == "1"  # education unknown
    assert ask(program, catalog, "USA", "Q1", {"Q260": 2, "Q262": 28, "Q275": 7}) == "1"  # empty cell


def test_cell_keys_ignore_column_dtype(bench_small: Path) -> None:
    """Respondent tables loaded from disk hold float codes where a column has missing values."""
    bench = Benchmark(bench_small)
    train = bench.respondents("train")
    as_float = train.assign(Q260=train["Q260"].astype("float64"))
    assert list(DemographicCell(as_float, bench.catalog).cells) == list(DemographicCell(train, bench.catalog).cells)
    assert not DemographicCell(as_float, bench.catalog).cells.str.contains(r"\.0\|").any()


# ---------------------------------------------------------------------------------------------------------------
# k nearest neighbours

SCALE = ["Q2", "Q3", "Q4", "Q5", "Q6"]  # 4-point importance scales


def knn_rows() -> list[dict]:
    a = {"country": "USA", "Q1": 3, **dict.fromkeys(SCALE, 1)}
    b = {"country": "USA", "Q1": 1, **dict.fromkeys(SCALE, 4)}
    return [a, b, dict(b)]


def test_knn_prefers_the_respondent_whose_answers_match(catalog) -> None:
    train = train_table(catalog, knn_rows())
    nearest = KNN(train, catalog, k=1)
    assert ask(nearest, catalog, "USA", "Q1", dict.fromkeys(SCALE, 1)) == "3"
    assert ask(nearest, catalog, "USA", "Q1", dict.fromkeys(SCALE, 4)) == "1"
    assert ask(nearest, catalog, "USA", "Q1", {"Q2": 1, "Q3": 2, "Q4": 1, "Q5": 1, "Q6": 2}) == "3"  # closer to a


def test_knn_vote_is_weighted_by_similarity(catalog) -> None:
    """One close respondent outweighs two distant ones (an unweighted vote of all three would say 1)."""
    train = train_table(catalog, knn_rows())
    program = KNN(train, catalog, k=3)
    assert ask(program, catalog, "USA", "Q1", dict.fromkeys(SCALE, 1)) == "3"
    assert ask(GlobalMajority(train, catalog), catalog, "USA", "Q1") == "1"


def test_knn_prefers_same_country(catalog) -> None:
    same_answers = dict.fromkeys(SCALE, 2)
    rows = [{"country": "JPN", "Q1": 4, **same_answers}, {"country": "USA", "Q1": 2, **same_answers}]
    program = KNN(train_table(catalog, rows), catalog, k=1)
    assert ask(program, catalog, "USA", "Q1", same_answers) == "2"
    assert ask(program, catalog, "JPN", "Q1", same_answers) == "4"


def test_knn_skips_respondents_without_an_answer(catalog) -> None:
    rows = [{"country": "USA", **dict.fromkeys(SCALE, 1)}, {"country": "USA", "Q1": 2, **dict.fromkeys(SCALE, 4)}]
    program = KNN(train_table(catalog, rows), catalog, k=1)
    assert ask(program, catalog, "USA", "Q1", dict.fromkeys(SCALE, 1)) == "2"


def test_knn_without_known_answers(catalog) -> None:
    rows = [{"country": "USA", "Q1": 1}, {"country": "JPN", "Q1": 4}, {"country": "JPN", "Q1": 4}]
    program = KNN(train_table(catalog, rows), catalog, k=1)
    assert ask(program, catalog, "USA", "Q1", {}) == "1"  # only the country is known


# ---------------------------------------------------------------------------------------------------------------
# On the small real benchmark


def test_answers_are_always_options(bench_small: Path) -> None:
    bench = Benchmark(bench_small)
    examples = bench.examples("values", "dev", 1, history=58, persons=12, questions=4)
    examples += bench.examples("reference", "dev", 2, history=116, persons=4, questions=10)
    assert len(examples) == 12 * 4 + 4 * 10
    for name, cls in [("majority", GlobalMajority), ("country", CountryMajority), ("cell", DemographicCell),
                      ("knn", KNN)]:  # fmt: skip
        program = cls.from_benchmark(bench)
        answers = [program(**ex.inputs()).answer for ex in examples]
        bad = [(ex.question_code, a) for ex, a in zip(examples, answers, strict=True) if a not in ex.options]
        assert bad == [], name
        if name == "knn":
            accuracy = sum(a == ex.answer for ex, a in zip(examples, answers, strict=True)) / len(examples)
            assert 0.2 < accuracy < 1.0


def test_the_country_floor_is_the_country_programs_answer_to_every_item(bench_small: Path) -> None:
    """country_majorities answers once per country, question and scale; each item gets the Guess the country
    program gives that item."""
    bench = Benchmark(bench_small)
    selected = benchmark_items(bench, "values", "dev", 1, 58, 12, 20)
    guesses = CountryMajority.from_benchmark(bench).predict_batch(selected)
    floor = country_majorities(bench, selected)
    assert len(floor) == len(selected)
    for item, guess in zip(selected, guesses, strict=True):
        assert floor[f"{item['person_id']}|{item['question_code']}"] == guess


def test_a_person_is_their_id_and_answers_not_one_dict(catalog) -> None:
    """Items of a person whose known answers arrive as copies (a transport between processes makes them) are one
    person; the same person_id with other answers is another; the cell program answers copies as the original."""
    known = {"Q260": 1, "Q262": 40, "Q275": 3, "Q1": 2}
    items = [{"person_id": "a", "country": "XXX", "known": dict(known), "question_code": f"Q{q}"} for q in (2, 3)]
    items += [{"person_id": "a", "country": "XXX", "known": known | {"Q1": 1}, "question_code": "Q2"}]
    persons, of = group_persons(items)
    assert of.tolist() == [0, 0, 1] and [p[1] for p in persons] == [known, known | {"Q1": 1}]
    train = train_table(catalog, [{"country": "XXX", "Q260": 1, "Q262": 40, "Q275": 3, "Q2": 1}] * 12)
    cell = DemographicCell(train, catalog)
    asked = [i | {"options": {"1": "a", "2": "b"}} for i in items]
    shared = [i | {"known": known} for i in asked]
    votes = [[None if v is None else v.tolist() for v in cell.votes_batch(i)] for i in (asked, shared)]
    assert votes[0][0] is not None and votes[0] == votes[1]
