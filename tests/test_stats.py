"""The statistics against cases whose answer is known: zero-width intervals for constant differences, nominal
coverage, uniform p-values under the null, wider intervals when a person's answers are correlated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from valuesim.stats import bootstrap_ci, format_ci, paired_difference


def table(correct: np.ndarray, n_options: int = 4) -> pd.DataFrame:
    """A predictions table from a persons x questions matrix of right (1) / wrong (0) answers."""
    persons, questions = correct.shape
    gold = np.zeros(correct.size)
    return pd.DataFrame(
        {
            "person_id": np.repeat([f"p{i}" for i in range(persons)], questions),
            "question": np.tile([f"Q{j + 1}" for j in range(questions)], persons),
            "country": "XXX",
            "category": "c",
            "ordinal": True,
            "n_options": n_options,
            "gold_pos": gold,
            "pred_pos": np.where(correct.ravel() == 1, gold, 2.0),
        }
    )


def clustered(rng: np.random.Generator, persons: int = 60, questions: int = 20, mean: float = 0.6) -> np.ndarray:
    """Right/wrong answers where each person has their own ability (answers of a person are correlated)."""
    ability = np.clip(rng.normal(mean, 0.2, persons), 0.01, 0.99)
    return (rng.random((persons, questions)) < ability[:, None]).astype(int)


def test_a_constant_difference_has_a_zero_width_interval() -> None:
    right, wrong = table(np.ones((30, 10), int)), table(np.zeros((30, 10), int))
    d = paired_difference(right, wrong)
    assert d["difference"] == d["ci_low"] == d["ci_high"] == 1.0
    assert d["p_value"] < 0.01 and d["n_persons"] == 30 and d["n_items"] == 300
    assert bootstrap_ci(right)["accuracy"] == (1.0, 1.0)


def test_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for seed in range(120):
        lo, hi = bootstrap_ci(table(clustered(rng)), metrics=("accuracy",), n_resamples=300, seed=seed)["accuracy"]
        hits += lo <= 0.6 <= hi
    assert 0.85 <= hits / 120 <= 0.995


def test_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(1)
    ps = []
    for seed in range(200):
        a, b = table(clustered(rng, 40, 15)), table(clustered(rng, 40, 15))
        ps.append(paired_difference(a, b, n_resamples=300, seed=seed)["p_value"])
    ps = np.array(ps)
    assert 0.01 <= (ps < 0.05).mean() <= 0.11
    assert 0.35 <= ps.mean() <= 0.65 and ps.min() < 0.1 and ps.max() > 0.9


def test_person_bootstrap_is_wider_than_treating_answers_as_independent() -> None:
    rng = np.random.default_rng(2)
    correct = clustered(rng, persons=80, questions=30)
    lo, hi = bootstrap_ci(table(correct), metrics=("accuracy",))["accuracy"]
    p = correct.mean()
    naive = 2 * 1.96 * np.sqrt(p * (1 - p) / correct.size)
    assert hi - lo > 1.3 * naive


def test_all_metrics_and_reproducibility() -> None:
    preds = table(clustered(np.random.default_rng(3)))
    a, b = bootstrap_ci(preds, seed=5), bootstrap_ci(preds, seed=5)
    assert a == b and set(a) == {"accuracy", "macro_accuracy", "within_one", "nmae"}
    for lo, hi in a.values():
        assert 0 <= lo <= hi <= 1
    acc = (preds["gold_pos"] == preds["pred_pos"]).mean()
    assert a["accuracy"][0] < acc < a["accuracy"][1]
    assert bootstrap_ci(preds, seed=6) != a


@pytest.mark.parametrize(
    "args, text", [((0.6031, 0.597, 0.6094), "0.603 [0.597, 0.609]"), ((0.5, None, None), "0.500")]
)
def test_format_ci(args, text: str) -> None:
    assert format_ci(*args) == text
