"""valuesim.score.metrics on small hand-computed prediction tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import kendalltau

from valuesim.score.metrics import (
    breakdown,
    distributions,
    population_by,
    population_jsd,
    population_kendall,
    population_table,
    population_wasserstein,
    summarize,
)

NAN = float("nan")


def table(rows: list[tuple]) -> pd.DataFrame:
    """rows: (person_id, country, question, category, ordinal, n_options, gold_pos, pred_pos or NaN)."""
    cols = ["person_id", "country", "question", "category", "ordinal", "n_options", "gold_pos", "pred_pos"]
    df = pd.DataFrame(rows, columns=cols)
    df["gold_pos"] = df["gold_pos"].astype("float64")
    df["pred_pos"] = df["pred_pos"].astype("float64")
    return df


# Q1: ordinal, 5 options; Q2: nominal, 3 options.
#   p1 Q1 gold 0 pred 0 -> correct, err 0,      within one
#   p2 Q1 gold 2 pred 3 -> wrong,   err 1/4,    within one
#   p3 Q1 gold 4 pred 0 -> wrong,   err 4/4,    not within
#   p4 Q1 gold 1 invalid-> wrong,   err 1 (max), not within
#   p1 Q2 gold 0 pred 0 -> correct (nominal)
#   p2 Q2 gold 1 pred 2 -> wrong, adjacent code does not count as within one on a nominal item
SMALL = table(
    [
        ("p1", "USA", "Q1", "A", True, 5, 0, 0),
        ("p2", "USA", "Q1", "A", True, 5, 2, 3),
        ("p3", "JPN", "Q1", "A", True, 5, 4, 0),
        ("p4", "JPN", "Q1", "A", True, 5, 1, NAN),
        ("p1", "USA", "Q2", "B", False, 3, 0, 0),
        ("p2", "USA", "Q2", "B", False, 3, 1, 2),
    ]
)


def test_accuracy_counts_invalid_as_wrong() -> None:
    m = summarize(SMALL)
    assert m["n"] == 6 and m["invalid"] == 1
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["persons"] == 4 and m["questions"] == 2


def test_nmae_over_ordinal_items_with_invalid_as_one() -> None:
    assert summarize(SMALL)["nmae"] == pytest.approx((0 + 0.25 + 1.0 + 1.0) / 4)


def test_within_one() -> None:
    # ordinal: p1, p2 within one; nominal: only the exact p1 answer
    assert summarize(SMALL)["within_one"] == pytest.approx(3 / 6)


def test_macro_accuracy_averages_questions() -> None:
    # Q1: 1/4 correct, Q2: 1/2 correct
    assert summarize(SMALL)["macro_accuracy"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert summarize(SMALL)["macro_accuracy"] != pytest.approx(summarize(SMALL)["accuracy"])


def test_all_invalid() -> None:
    df = table([("p1", "USA", "Q1", "A", True, 4, 1, NAN), ("p2", "USA", "Q1", "A", True, 4, 2, NAN)])
    m = summarize(df)
    assert m["invalid"] == 2 and m["accuracy"] == 0.0 and m["within_one"] == 0.0 and m["nmae"] == 1.0
    assert math.isnan(m["wasserstein"])  # no predicted distribution to compare


def test_perfect_predictions() -> None:
    df = SMALL.assign(pred_pos=SMALL["gold_pos"])
    m = summarize(df)
    assert m["accuracy"] == m["within_one"] == m["macro_accuracy"] == 1.0
    assert m["nmae"] == 0.0 and m["wasserstein"] == 0.0 and m["invalid"] == 0


def test_no_ordinal_items_gives_nan_nmae() -> None:
    m = summarize(SMALL[SMALL["question"] == "Q2"])
    assert math.isnan(m["nmae"]) and m["accuracy"] == 0.5


def test_empty_table() -> None:
    assert summarize(SMALL.iloc[:0]) == {"n": 0, "invalid": 0}


def test_breakdown_by_country_and_category() -> None:
    by_country = breakdown(SMALL, "country").set_index("country")
    assert by_country.loc["USA", "n"] == 4 and by_country.loc["JPN", "n"] == 2
    assert by_country.loc["USA", "accuracy"] == pytest.approx(2 / 4)
    assert by_country.loc["JPN", "accuracy"] == 0.0
    assert by_country.loc["USA", "within_one"] == pytest.approx(3 / 4)  # p1 Q1, p2 Q1 (one off), p1 Q2
    assert by_country.loc["USA", "nmae"] == pytest.approx((0 + 0.25) / 2)  # ordinal items only
    assert by_country.loc["JPN", "nmae"] == pytest.approx(1.0)
    assert by_country.loc["JPN", "invalid"] == 1 and by_country.loc["USA", "invalid"] == 0
    by_category = breakdown(SMALL, "category").set_index("category")
    assert by_category.loc["A", "accuracy"] == pytest.approx(1 / 4)
    assert math.isnan(by_category.loc["B", "nmae"])


# ---------------------------------------------------------------------------------------------------------------
# Population Wasserstein


def question(gold: list[int], pred: list[float], n: int, ordinal: bool, q: str = "Q1") -> list[tuple]:
    return [(f"p{i}", "USA", q, "A", ordinal, n, g, p) for i, (g, p) in enumerate(zip(gold, pred, strict=True))]


def test_wasserstein_opposite_ends_is_one() -> None:
    df = table(question([0, 0, 0], [4, 4, 4], n=5, ordinal=True))
    assert population_wasserstein(df) == pytest.approx(1.0)
    df = table(question([0, 0], [2, 2], n=3, ordinal=False))
    assert population_wasserstein(df) == pytest.approx(1.0)  # disjoint supports: total variation 1


def test_wasserstein_identical_distributions_is_zero() -> None:
    # predictions are individually wrong but the population distribution is the same
    df = table(question([0, 1, 2, 3], [3, 2, 1, 0], n=4, ordinal=True))
    assert population_wasserstein(df) == 0.0
    assert summarize(df)["accuracy"] == 0.0


def test_wasserstein_ordinal_by_hand() -> None:
    # gold {0: 1/2, 1: 1/2}, pred {2: 1} on 0..4: W1 = 1/2*2 + 1/2*1 = 1.5, / (n-1 = 4) = 0.375
    df = table(question([0, 1], [2, 2], n=5, ordinal=True))
    assert population_wasserstein(df) == pytest.approx(0.375)


def test_wasserstein_nominal_is_total_variation() -> None:
    # gold {0: 1/2, 1: 1/2}, pred {1: 1/4, 2: 3/4} -> TV = (1/2 + 1/4 + 3/4) / 2 = 0.75
    df = table(question([0, 0, 1, 1], [1, 2, 2, 2], n=3, ordinal=False))
    assert population_wasserstein(df) == pytest.approx(0.75)
    # the same positions read as an ordinal scale: CDF diffs 1/2, 3/4 -> 1.25 / 2 = 0.625
    df = table(question([0, 0, 1, 1], [1, 2, 2, 2], n=3, ordinal=True))
    assert population_wasserstein(df) == pytest.approx(0.625)


def test_wasserstein_leaves_invalid_out_of_the_predicted_distribution() -> None:
    # valid predictions all at 0 like the gold: the invalid one does not move the predicted distribution
    df = table(question([0, 0, 0], [0, 0, NAN], n=4, ordinal=True))
    assert population_wasserstein(df) == 0.0


def test_wasserstein_averages_questions() -> None:
    df = table(
        question([0, 0], [3, 3], n=4, ordinal=True, q="Q1")  # 1.0
        + question([0, 1], [0, 1], n=2, ordinal=False, q="Q2")  # 0.0
    )
    assert population_wasserstein(df) == pytest.approx(0.5)
    assert summarize(df)["wasserstein"] == pytest.approx(0.5)


def test_summarize_values_are_plain_floats() -> None:
    m = summarize(SMALL)
    assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for v in m.values())


def test_wasserstein_per_country_option_lists() -> None:
    """Q223 has 11 options in the USA and 12 in Bangladesh: each country is compared on its own options."""
    df = table(
        [
            ("a", "USA", "Q223", "P", False, 11, 0, 0),
            ("b", "BGD", "Q223", "P", False, 12, 11, 3),
            ("c", "BGD", "Q223", "P", False, 12, 3, 3),
        ]
    )
    # USA: gold {0} = pred {0} -> 0; BGD: gold {11, 3} vs pred {3, 3} -> TV 1/2; weighted by answers (1, 2) -> 1/3
    assert population_wasserstein(df) == pytest.approx(1 / 3)
    t = population_table(df).set_index("country")
    assert t.loc["USA", "n_options"] == 11 and t.loc["BGD", "n_options"] == 12
    assert t.loc["USA", "wasserstein"] == 0.0 and t.loc["BGD", "wasserstein"] == pytest.approx(0.5)


def test_gold_outside_the_options_counts_as_wrong_and_does_not_crash() -> None:
    df = table([("a", "USA", "Q1", "A", True, 4, NAN, 0), ("b", "USA", "Q1", "A", True, 4, 1, 1)])
    m = summarize(df)
    assert m["accuracy"] == 0.5 and m["nmae"] == pytest.approx(0.5)
    assert m["wasserstein"] == 0.0  # the row without a gold position is left out of both distributions


def test_summarize_keys() -> None:
    assert set(summarize(SMALL)) == {
        "n", "invalid", "accuracy", "macro_accuracy", "within_one", "nmae", "wasserstein", "jsd", "kendall_tau",
        "persons", "questions",
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Population JSD and Kendall tau


def test_identical_distributions_give_zero_jsd_and_tau_one() -> None:
    # every prediction individually wrong or right by chance, but the same frequencies {0: 3, 1: 2, 2: 1, 3: 0}
    df = table(question([0, 0, 0, 1, 1, 2], [1, 0, 2, 0, 1, 0], n=4, ordinal=False))
    assert population_jsd(df) == 0.0 and population_kendall(df) == 1.0 and population_wasserstein(df) == 0.0
    m = summarize(df)
    assert m["jsd"] == 0.0 and m["kendall_tau"] == 1.0


def test_jsd_by_hand() -> None:
    # gold P = (1, 0), pred Q = (1/2, 1/2), M = (3/4, 1/4):
    # JSD = 1/2 log2(1 / (3/4)) + 1/2 (1/2 log2((1/2) / (3/4)) + 1/2 log2((1/2) / (1/4))) = 0.311278 bits
    df = table(question([0, 0], [0, 1], n=2, ordinal=True))
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5 * 1.0)
    assert population_jsd(df) == pytest.approx(expected) == pytest.approx(0.311278, abs=1e-6)
    assert population_jsd(df) == pytest.approx(jensenshannon([1, 0], [0.5, 0.5], base=2) ** 2)  # scipy: the root
    assert population_jsd(table(question([0, 0], [2, 2], n=3, ordinal=False))) == 1.0  # disjoint supports


def test_kendall_by_hand() -> None:
    gold = [0, 0, 0, 1, 1, 2]  # frequencies (3, 2, 1)
    assert population_kendall(table(question(gold, [2, 2, 2, 1, 1, 0], n=3, ordinal=True))) == pytest.approx(-1.0)
    # predicted (3, 3, 0): the pair (0, 1) is tied in the prediction, (0, 2) and (1, 2) concordant:
    # tau-b = (2 - 0) / sqrt(2 untied in pred * 3 untied in gold) = 2 / sqrt(6)
    df = table(question(gold, [0, 0, 0, 1, 1, 1], n=3, ordinal=True))
    assert population_kendall(df) == pytest.approx(2 / np.sqrt(6))
    assert population_kendall(df) == pytest.approx(kendalltau([3, 3, 0], [3, 2, 1]).statistic)


def test_kendall_undefined_questions_are_left_out_of_the_mean() -> None:
    # Q1: every option predicted equally often (1, 1): no ranking, tau undefined; Q2: tau 1
    df = table(question([0, 0, 1], [0, 1, NAN], n=2, ordinal=True) + question([0, 0, 1], [1, 1, 0], 2, True, "Q2"))
    t = population_table(df).set_index("question")
    assert math.isnan(t.loc["Q1", "kendall_tau"]) and t.loc["Q2", "kendall_tau"] == pytest.approx(-1.0)
    assert population_kendall(df) == pytest.approx(-1.0)
    assert math.isnan(population_kendall(df[df["question"] == "Q1"]))
    assert math.isnan(summarize(df.assign(pred_pos=NAN))["kendall_tau"])  # no valid prediction anywhere
    assert math.isnan(summarize(df.assign(pred_pos=NAN))["jsd"])


def test_vectorized_jsd_and_tau_equal_scipy_on_random_questions() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for q in range(40):
        n, people = int(rng.integers(2, 9)), int(rng.integers(3, 30))
        gold = rng.integers(0, n, people)
        pred = np.where(rng.random(people) < 0.5, gold, rng.integers(0, max(1, n // 2), people))
        rows += question(list(gold), list(pred.astype(float)), n, bool(q % 2), f"Q{q + 1}")
    df = table(rows)
    t = population_table(df).set_index("question")
    for (q, gold, pred, _), (_, row) in zip(distributions(df), t.iterrows(), strict=True):
        assert row.name == q
        assert row["jsd"] == pytest.approx(jensenshannon(gold, pred, base=2) ** 2, abs=1e-12)
        tau = kendalltau(pred, gold).statistic
        assert (math.isnan(tau) and math.isnan(row["kendall_tau"])) or row["kendall_tau"] == pytest.approx(tau)
    assert t["kendall_tau"].notna().sum() > 30


# ---------------------------------------------------------------------------------------------------------------
# Per-country items and splits


def two_countries(q: str, n_jpn: int = 2) -> list[tuple]:
    """USA answers option 0, the program says 1; Japan answers 1, the program says 0. Pooled: identical."""
    return [
        ("u1", "USA", q, "A", False, 2, 0, 1),
        ("u2", "USA", q, "A", False, 2, 0, 1),
        ("j1", "JPN", q, "A", False, n_jpn, 1, 0),
        ("j2", "JPN", q, "A", False, n_jpn, 1, 0),
    ]


def test_per_country_items_are_not_pooled() -> None:
    df = table(two_countries("Q223"))  # party 0 in the USA is not party 0 in Japan
    assert population_wasserstein(df, per_country=()) == 0.0  # what pooling would say
    assert population_wasserstein(df) == 1.0 and population_jsd(df) == 1.0
    assert population_kendall(df) == -1.0
    m = summarize(df)
    assert (m["wasserstein"], m["jsd"], m["kendall_tau"]) == (1.0, 1.0, -1.0)
    assert set(population_table(df)["country"]) == {"USA", "JPN"}


def test_which_items_are_per_country() -> None:
    df = table(two_countries("Q100"))  # an ordinary item: one population-wide distribution
    assert population_wasserstein(df) == 0.0 and list(population_table(df)["country"]) == [""]
    assert population_wasserstein(df, per_country={"Q100"}) == 1.0  # named by the caller
    assert population_wasserstein(df.assign(per_country=True)) == 1.0  # flagged by a column
    assert population_wasserstein(df, by_country=True) == 1.0  # every item split on request
    # options that differ between countries are per-country whatever the code
    assert population_wasserstein(table(two_countries("Q100", n_jpn=3))) == 1.0


def test_countries_are_weighted_by_their_answers() -> None:
    # Q223 in the USA: 1 answer, distance 1; in Japan: 3 answers, distance 0 -> (1 * 1 + 3 * 0) / 4
    df = table(
        [("u1", "USA", "Q223", "A", False, 2, 0, 1)]
        + [(f"j{i}", "JPN", "Q223", "A", False, 2, 1, 1) for i in range(3)]
        + question([0, 0], [0, 0], n=2, ordinal=False, q="Q1")  # distance 0
    )
    assert population_wasserstein(df) == pytest.approx((0.25 + 0.0) / 2)  # then the mean over questions


def test_population_by_category_and_country() -> None:
    df = table(
        question([0, 0], [3, 3], n=4, ordinal=True, q="Q1")  # category A: W 1.0, JSD 1
        + question([0, 1], [0, 1], n=2, ordinal=False, q="Q2")  # category A: 0, 0
        + [(f"b{i}", "JPN", "Q3", "B", True, 3, 0, 2) for i in range(3)]  # category B: W 1.0
    )
    df.loc[df["question"] == "Q3", "category"] = "B"
    by = population_by(df, "category").set_index("category")
    assert by.loc["A", "questions"] == 2 and by.loc["B", "questions"] == 1
    assert by.loc["A", "wasserstein"] == pytest.approx(0.5) and by.loc["B", "wasserstein"] == 1.0
    assert by.loc["A", "jsd"] == pytest.approx(0.5) and by.loc["A", "n"] == 4
    by = population_by(df, "country").set_index("country")
    assert by.loc["USA", "wasserstein"] == pytest.approx(0.5) and by.loc["JPN", "wasserstein"] == 1.0
    assert list(population_by(df.iloc[:0], "category").columns) == [
        "category", "questions", "n", "wasserstein", "jsd", "kendall_tau"
    ]  # fmt: skip


def test_population_metrics_of_an_empty_table() -> None:
    empty = SMALL.iloc[:0]
    assert population_table(empty).empty
    assert math.isnan(population_wasserstein(empty)) and math.isnan(population_jsd(empty))
    assert math.isnan(population_kendall(empty))
