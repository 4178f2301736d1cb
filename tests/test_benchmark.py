"""valuesim.data.benchmark: splits, per person x fold rows of both protocols, and the examples programs see."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from valuesim.data.benchmark import PROTOCOLS, SPLITS, Benchmark, item_questions, items
from valuesim.data.build import assign_splits, read_folds
from valuesim.data.catalog import OPEN_ITEMS

N_PER_COUNTRY = 40


@pytest.fixture(scope="module")
def bench(bench_small: Path) -> Benchmark:
    return Benchmark(bench_small)


@pytest.fixture(scope="module")
def rows(bench_small: Path) -> dict[str, list[dict]]:
    """All rows of both protocols (every split), loaded once."""
    out = {}
    for protocol in PROTOCOLS:
        dd = load_from_disk(str(bench_small / protocol))
        out[protocol] = [r | {"split": s} for s in SPLITS for r in dd[s]]
    return out


@pytest.fixture(scope="module")
def respondents(bench: Benchmark) -> pd.DataFrame:
    return bench.respondents()


def number(q: str) -> int:
    return int(q[1:])


# ---------------------------------------------------------------------------------------------------------------
# Splits


def test_manifest(bench: Benchmark, bench_small: Path) -> None:
    m = json.loads((bench_small / "manifest.json").read_text())
    assert m["respondents"] == 4 * N_PER_COUNTRY and m["folds"] == 5 and m["seed"] == 0
    assert m["ingest"]["mapped_share"] == 1.0 and m["ingest"]["unmapped"] == 0
    assert bench.fingerprint == m["fingerprint"] and m["fingerprint"].endswith("-s0")
    assert (bench_small / "catalog.json").exists() and len(bench.catalog) == 290


def test_splits_are_stratified_by_country(respondents: pd.DataFrame, bench: Benchmark) -> None:
    counts = respondents.groupby("country")["split"].value_counts().unstack()
    expected = {s: round(N_PER_COUNTRY * share) for s, share in SPLITS.items()}  # 24 / 8 / 8
    for country in ("BGD", "COL", "JPN", "USA"):
        assert counts.loc[country].to_dict() == expected, country
    assert bench.manifest["countries"]["USA"] == expected
    assert bench.manifest["splits"] == {s: 4 * n for s, n in expected.items()}


def test_splits_are_seeded(respondents: pd.DataFrame) -> None:
    table = respondents.drop(columns="split")
    assert assign_splits(table, 0) == respondents["split"].tolist()  # what build() wrote for seed 0
    assert assign_splits(table, 0) == assign_splits(table, 0)
    assert assign_splits(table, 1) != assign_splits(table, 0)
    shuffled = table.sample(frac=1, random_state=3)  # row order does not matter, only the seed
    assert dict(zip(shuffled["person_id"], assign_splits(shuffled, 1), strict=True)) == dict(
        zip(table["person_id"], assign_splits(table, 1), strict=True)
    )


def test_split_methods_select_rows(bench: Benchmark) -> None:
    dev = bench.respondents("dev")
    assert len(dev) == 4 * 8 and set(dev["split"]) == {"dev"}
    fold2 = bench.rows("values", "dev", 2)
    assert len(fold2) == len(dev) and set(fold2["fold"]) == {2}
    with pytest.raises(ValueError, match="unknown protocol"):
        bench.rows("paper", "dev", 1)


def test_missing_benchmark_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="valuesim data build"):
        Benchmark(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------------------------
# Per person x fold rows


def test_one_row_per_person_and_fold(rows, respondents: pd.DataFrame) -> None:
    split_of = dict(zip(respondents["person_id"], respondents["split"], strict=True))
    for protocol in PROTOCOLS:
        keys = [(r["person_id"], r["fold"]) for r in rows[protocol]]
        assert len(keys) == len(set(keys)) == len(respondents) * 5
        assert all(split_of[r["person_id"]] == r["split"] for r in rows[protocol])


def test_heldout_never_in_profile_or_demographics(rows) -> None:
    for protocol in PROTOCOLS:
        for r in rows[protocol]:
            held = {i["q"] for i in r["heldout"]}
            known = [i["q"] for i in r["profile"] + r["demographics"]]
            assert held.isdisjoint(known), (protocol, r["person_id"], r["fold"], held & set(known))
            assert len(known) == len(set(known))


def test_answers_are_the_respondents_codes(rows, respondents: pd.DataFrame) -> None:
    codes = respondents.set_index("person_id")
    for protocol in PROTOCOLS:
        for r in rows[protocol][::7]:
            person = codes.loc[r["person_id"]]
            for item in r["profile"] + r["demographics"] + r["heldout"]:
                assert person[item["q"]] == item["a"]
            answered = {q for q in codes.columns if q.startswith("Q") and pd.notna(person[q])}
            # every answered question of the person is in the row one way or another (open items too)
            listed = {i["q"] for i in r["profile"] + r["demographics"] + r["heldout"]}
            assert listed <= answered
            if protocol == "reference":
                assert listed == answered


def test_values_protocol(rows, bench: Benchmark) -> None:
    catalog = bench.catalog
    for r in rows["values"]:
        assert r["demographics"], r["person_id"]
        assert all(catalog[i["q"]].kind == "demographic" for i in r["demographics"])
        assert all(1 <= number(i["q"]) <= 259 for i in r["heldout"])
        assert all(1 <= number(i["q"]) <= 259 for i in r["profile"])
    assert any("Q262" in {i["q"] for i in r["demographics"]} for r in rows["values"])  # open items are known


def test_reference_protocol(rows) -> None:
    heldout = set()
    for r in rows["reference"]:
        assert r["demographics"] == []
        heldout |= {i["q"] for i in r["heldout"]}
        assert all(1 <= number(i["q"]) <= 290 for i in r["heldout"] + r["profile"])
    assert heldout.isdisjoint(OPEN_ITEMS)
    assert any(number(q) >= 260 for q in heldout)  # demographics are asked in this protocol


def test_open_items_never_held_out(rows) -> None:
    assert OPEN_ITEMS == {"Q261", "Q262", "Q266", "Q267", "Q268", "Q270", "Q272", "Q274"}
    for protocol in PROTOCOLS:
        for r in rows[protocol]:
            assert OPEN_ITEMS.isdisjoint(i["q"] for i in r["heldout"])


def test_heldout_questions_follow_the_folds(rows, wvs_small: Path) -> None:
    folds = read_folds(wvs_small / "protocol")
    for protocol in PROTOCOLS:
        per_person: dict[str, list[str]] = {}
        for r in rows[protocol]:
            _, test_q = folds[r["fold"]]
            held = [i["q"] for i in r["heldout"]]
            assert set(held) <= set(test_q)
            per_person.setdefault(r["person_id"], []).extend(held)
        for person, held in per_person.items():
            assert len(held) == len(set(held)), (protocol, person)  # each question held out in one fold only


def test_profile_order_is_seeded_per_person_and_fold(rows) -> None:
    by_key = {(r["person_id"], r["fold"]): [i["q"] for i in r["profile"]] for r in rows["values"]}
    person = rows["values"][0]["person_id"]
    a = by_key[(person, 1)]
    assert a != sorted(a, key=number)  # shuffled, not questionnaire order
    other = next(p for p, f in by_key if p != person and f == 1)
    assert by_key[(other, 1)][:20] != a[:20]


# ---------------------------------------------------------------------------------------------------------------
# Examples


def test_histories_are_nested(bench: Benchmark) -> None:
    by_k = {k: bench.examples("values", "dev", 1, history=k, questions=1) for k in (0, 58, 116, 232)}
    demo = {ex.person_id: ex.known for ex in by_k[0]}
    for small, large in [(0, 58), (58, 116), (116, 232)]:
        assert len(by_k[small]) == len(by_k[large]) > 0
        for a, b in zip(by_k[small], by_k[large], strict=True):
            assert a.person_id == b.person_id
            assert a.known.items() <= b.known.items()
            assert len(a.profile) <= len(b.profile) and b.profile[: len(a.profile)] == a.profile
    full = {ex.person_id: len(ex.profile) for ex in by_k[232]}
    for ex in by_k[58]:
        assert len(ex.profile) == min(58, full[ex.person_id])
        assert len(ex.known) - len(demo[ex.person_id]) == len(ex.profile)
    assert max(full.values()) > 116
    assert all(ex.profile == [] for ex in by_k[0]) and all(ex.demographics for ex in by_k[0])


def test_examples_hide_the_gold_answer(bench: Benchmark) -> None:
    catalog = bench.catalog
    for protocol in PROTOCOLS:
        examples = bench.examples(protocol, "dev", 1, history=232)
        assert examples
        for ex in examples:
            q = catalog[ex.question_code]
            inputs = ex.inputs()
            assert "answer" not in inputs.keys()
            assert ex.question_code not in ex.known
            held_statement = q.statement(int(ex.answer))
            assert held_statement not in ex.profile and held_statement not in ex.demographics
            assert ex.answer in ex.options, (ex.person_id, ex.question_code, ex.answer)  # gold is a choosable option
            assert ex.options == {str(c): lab for c, lab in q.options_for(ex.country).items()}


def test_example_inputs(bench: Benchmark) -> None:
    ex = bench.examples("values", "dev", 1, history=58, persons=1, questions=1)[0]
    assert set(ex.inputs().keys()) == {
        "person_id",
        "country",
        "known",
        "demographics",
        "profile",
        "question_code",
        "question",
        "options",
    }
    # the code names the question, `question` is its wording: the field every signature reads
    assert ex.question_code in bench.catalog.codes and ex.question == bench.catalog[ex.question_code].text
    assert ex.demographics[0].startswith("You live in ")
    assert isinstance(ex.ordinal, bool) and ex.category


def test_persons_and_questions_limits(bench: Benchmark) -> None:
    examples = bench.examples("values", "dev", 1, history=232, persons=3, questions=5)
    assert len(examples) == 15
    assert len({ex.person_id for ex in examples}) == 3
    all_rows = bench.rows("values", "dev", 1)
    chosen = bench.sample("values", "dev", 1, 3)
    expected = [(r["person_id"], i["q"]) for r in chosen for i in r["heldout"][:5]]
    assert [(ex.person_id, ex.question_code) for ex in examples] == expected
    assert len(bench.examples("values", "dev", 1, persons=2)) == sum(
        len(r["heldout"]) for r in bench.sample("values", "dev", 1, 2)
    )
    assert len(bench.examples("values", "dev", 1, persons=1000, questions=1)) == len(all_rows)


def test_persons_are_a_seeded_sample_stratified_by_country(bench: Benchmark) -> None:
    """--persons N draws each country's share of the split (not the first N in file order, which were all from one
    country), the same persons for every fold, protocol and history, and other persons for another seed."""
    rows = bench.rows("values", "dev", 1)
    sizes = pd.Series(rows["country"]).value_counts()
    n = 2 * len(sizes) + 1
    sample = bench.sample("values", "dev", 1, n)
    counts = pd.Series(sample["country"]).value_counts()
    assert len(sample) == n and set(counts.index) == set(sizes.index)  # every country is there
    share = sizes / sizes.sum() * n
    assert ((counts - share.loc[counts.index]).abs() < 1 + 1e-9).all()  # each within one of its proportional share
    again = bench.sample("reference", "dev", 2, n)
    assert again["person_id"] == sample["person_id"]
    assert bench.sample("values", "dev", 1, n, seed=1)["person_id"] != sample["person_id"]
    one_each = bench.sample("values", "dev", 1, len(sizes))
    assert sorted(one_each["country"]) == sorted(sizes.index)
    with pytest.raises(ValueError, match="at least 1"):
        bench.sample("values", "dev", 1, 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_items_select_what_examples_select(bench_small: Path, protocol: str) -> None:
    """`items` (the benchmark read column by column) and `Benchmark.examples` (row by row) give the same persons,
    known answers, questions, options and gold answers, in the same order."""
    bench = Benchmark(bench_small)
    fields = ("person_id", "country", "known", "question_code", "options", "answer", "category", "ordinal")
    for history, persons, questions in ((0, None, None), (58, 7, 3), (232, 5, None)):
        got = items(bench, protocol, "dev", 1, history, persons, questions)
        want = bench.examples(protocol, "dev", 1, history, persons, questions)
        assert got and [tuple(i[f] for f in fields) for i in got] == [tuple(e[f] for f in fields) for e in want]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_item_questions_are_the_questions_of_the_items(bench_small: Path, protocol: str) -> None:
    """A --ray run builds its program on `item_questions` before it makes the items: the same questions."""
    bench = Benchmark(bench_small)
    for fold, persons, questions in ((1, None, None), (2, 7, 3), (3, 5, 1), (1, None, 0)):
        got = item_questions(bench, protocol, "test", fold, 58, persons, questions)
        assert got == {i["question_code"] for i in items(bench, protocol, "test", fold, 58, persons, questions)}
        assert got or questions == 0
