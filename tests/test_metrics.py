"""valuesim.metrics on small hand-computed prediction tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from valuesim.metrics import breakdown, population_wasserstein, summarize

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
    """Q223 has 11 options in the USA and 12 in Bangladesh: pooled positions must not break the histograms."""
    df = table(
        [
            ("a", "USA", "Q223", "P", False, 11, 0, 0),
            ("b", "BGD", "Q223", "P", False, 12, 11, 3),
            ("c", "BGD", "Q223", "P", False, 12, 3, 3),
        ]
    )
    # gold {0, 11, 3} vs pred {0, 3, 3}: TV = (|1/3 - 2/3| + 1/3) / 2 = 1/3
    assert population_wasserstein(df) == pytest.approx(1 / 3)


def test_gold_outside_the_options_counts_as_wrong_and_does_not_crash() -> None:
    df = table([("a", "USA", "Q1", "A", True, 4, NAN, 0), ("b", "USA", "Q1", "A", True, 4, 1, 1)])
    m = summarize(df)
    assert m["accuracy"] == 0.5 and m["nmae"] == pytest.approx(0.5)
    assert m["wasserstein"] == 0.0  # the row without a gold position is left out of both distributions
