"""valuesim.score.stats against cases whose answer is known: zero-width intervals for constant differences, nominal
coverage, uniform p-values under the null, wider intervals when a person's answers are correlated, the vectorized
bootstrap equal to a plain loop over resamples, exact sign-flip p-values, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from valuesim.score.metrics import summarize
from valuesim.score.stats import _resample_counts, bootstrap_ci, format_ci, item_table, paired_difference


def paired(a: pd.DataFrame, b: pd.DataFrame, *args: object, **kwargs: object) -> dict:
    """paired_difference of two predictions tables (it takes their item tables)."""
    return paired_difference(item_table(a), item_table(b), *args, **kwargs)  # type: ignore[arg-type]


def table(correct: np.ndarray, n_options: int = 4) -> pd.DataFrame:
    """A predictions table from a persons x questions matrix of right (1) / wrong (0) answers (gold 0, wrong = 2)."""
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


def mixed(rng: np.random.Generator, persons: int, questions: int) -> pd.DataFrame:
    """Ordinal and nominal items with various scale lengths, some invalid predictions and gold outside the options."""
    q = np.arange(questions)
    n_options = np.tile(q % 5 + 2, persons)
    gold = rng.integers(0, n_options).astype(float)
    pred = np.where(rng.random(gold.size) < 0.5, gold, rng.integers(0, n_options)).astype(float)
    pred[rng.random(gold.size) < 0.1] = np.nan
    gold[rng.random(gold.size) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "person_id": np.repeat([f"p{i}" for i in range(persons)], questions),
            "question": np.tile([f"Q{j + 1}" for j in q], persons),
            "country": "XXX",
            "category": "c",
            "ordinal": np.tile(q % 3 != 0, persons),
            "n_options": n_options,
            "gold_pos": gold,
            "pred_pos": pred,
        }
    )


def test_a_constant_difference_has_a_zero_width_interval() -> None:
    right, wrong = table(np.ones((30, 10), int)), table(np.zeros((30, 10), int))
    d = paired(right, wrong)
    assert d["difference"] == d["ci_low"] == d["ci_high"] == 1.0
    assert d["p_value"] < 0.01 and d["n_persons"] == 30 and d["n_items"] == 300
    assert bootstrap_ci(right)["accuracy"] == (1.0, 1.0)
    # every prediction one step above the gold on a 5-point scale: nMAE differs by exactly 1/4 on every item
    exact = mixed(np.random.default_rng(0), 30, 6).assign(ordinal=True, n_options=5, gold_pos=1.0)
    d = paired(exact.assign(pred_pos=1.0), exact.assign(pred_pos=2.0), "nmae")
    assert d["difference"] == d["ci_low"] == d["ci_high"] == pytest.approx(-0.25)
    # both within one on every item: no difference at all, and nothing to reject
    d = paired(exact.assign(pred_pos=1.0), exact.assign(pred_pos=2.0), "within_one")
    assert d["difference"] == d["ci_low"] == d["ci_high"] == 0.0 and d["p_value"] == 1.0


def test_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    runs, hits = 200, 0
    for seed in range(runs):
        lo, hi = bootstrap_ci(table(clustered(rng)), metrics=("accuracy",), n_resamples=300, seed=seed)["accuracy"]
        hits += lo <= 0.6 <= hi  # abilities are symmetric around 0.6, so 0.6 is the true accuracy
    assert 0.88 <= hits / runs <= 0.99


def test_p_values_are_uniform_under_the_null() -> None:
    """Two programs with the same accuracy and independent errors: p-values spread over [0, 1], ~5% below 0.05."""
    rng = np.random.default_rng(1)
    ps = []
    for seed in range(300):
        a, b = table(clustered(rng, 40, 15)), table(clustered(rng, 40, 15))
        ps.append(paired(a, b, n_resamples=200, seed=seed)["p_value"])
    ps = np.array(ps)
    assert 0.01 <= (ps < 0.05).mean() <= 0.10
    assert 0.35 <= (ps < 0.5).mean() <= 0.65 and 0.4 <= ps.mean() <= 0.6
    assert ps.min() < 0.05 and ps.max() > 0.95


def test_a_real_difference_is_detected() -> None:
    rng = np.random.default_rng(4)
    a, b = table(clustered(rng, 60, 20, mean=0.7)), table(clustered(rng, 60, 20, mean=0.5))
    d = paired(a, b)
    assert d["p_value"] < 0.01 and 0 < d["ci_low"] < 0.2 < d["ci_high"] < 0.4


def test_person_bootstrap_is_wider_than_an_item_bootstrap_when_answers_are_correlated() -> None:
    rng = np.random.default_rng(2)

    def widths(correct: np.ndarray) -> tuple[float, float]:
        preds = table(correct)
        items = preds.assign(person_id=np.arange(len(preds)))  # every answer its own cluster: the naive bootstrap
        (lo, hi), (ilo, ihi) = (bootstrap_ci(p, metrics=("accuracy",))["accuracy"] for p in (preds, items))
        return hi - lo, ihi - ilo

    person, item = widths(clustered(rng, persons=80, questions=30))
    assert person > 1.5 * item
    # the same amount of data without a person effect: both bootstraps agree
    person, item = widths((rng.random((80, 30)) < 0.6).astype(int))
    assert 0.8 < person / item < 1.25


def test_vectorized_bootstrap_equals_a_loop_over_resampled_tables() -> None:
    """Each resample recomputed by summarize on the drawn persons' rows gives the same intervals."""
    preds = mixed(np.random.default_rng(5), persons=12, questions=7)
    n, seed = 50, 3
    persons = sorted(preds["person_id"].unique())  # bootstrap_ci draws persons in id order
    rows = {p: preds[preds["person_id"] == p] for p in persons}
    stats = {m: [] for m in ("accuracy", "macro_accuracy", "within_one", "nmae")}
    for counts in np.concatenate(list(_resample_counts(len(persons), n, seed))):
        drawn = pd.concat([rows[p] for p, c in zip(persons, counts, strict=True) for _ in range(int(c))])
        m = summarize(drawn)
        for k in stats:
            stats[k].append(m[k])
    got = bootstrap_ci(preds, n_resamples=n, seed=seed)
    for k, values in stats.items():
        assert got[k] == pytest.approx(tuple(np.nanpercentile(values, [2.5, 97.5])), abs=1e-12), k


def test_paired_difference_uses_only_shared_items() -> None:
    rng = np.random.default_rng(6)
    a, b = mixed(rng, 20, 8), mixed(rng, 20, 8)
    b = b.iloc[rng.permutation(len(b))[:120]]  # b predicted a random subset of a's items, in another order
    extra = a.assign(person_id="x-" + a["person_id"])  # rows b does not have: ignored
    d = paired(pd.concat([a, extra]), b)
    shared = a.merge(b[["person_id", "question"]], on=["person_id", "question"])
    assert d["n_items"] == 120 and d["n_persons"] == shared["person_id"].nunique()
    b_shared = b.merge(shared[["person_id", "question"]], on=["person_id", "question"])
    for metric in ("accuracy", "macro_accuracy", "within_one", "nmae"):
        d = paired(a, b, metric)
        assert d["difference"] == pytest.approx(summarize(shared)[metric] - summarize(b_shared)[metric]), metric
        assert d["ci_low"] <= d["difference"] <= d["ci_high"]
    assert paired(a, b, "nmae")["n_items"] == int(shared["ordinal"].sum())


def test_sign_flip_is_exact_for_few_persons() -> None:
    # 3 persons, each better under a: of the 8 sign patterns only all-plus and all-minus are as extreme
    a, b = table(np.ones((3, 4), int)), table(np.zeros((3, 4), int))
    assert paired(a, b, n_resamples=1000)["p_value"] == 0.25
    one = paired(a.iloc[:4], b.iloc[:4])
    assert one["difference"] == 1.0 and one["p_value"] == 1.0 and math.isnan(one["ci_low"])
    # identical programs: nothing to reject
    assert paired(a, a)["p_value"] == 1.0


def test_reproducible_with_a_seed_and_independent_of_row_order() -> None:
    preds = table(clustered(np.random.default_rng(3)))
    a, b = bootstrap_ci(preds, seed=5), bootstrap_ci(preds, seed=5)
    assert a == b and set(a) == {"accuracy", "macro_accuracy", "within_one", "nmae"}
    assert bootstrap_ci(preds.sample(frac=1, random_state=1), seed=5) == a
    assert bootstrap_ci(preds, seed=6) != a
    for lo, hi in a.values():
        assert 0 <= lo <= hi <= 1
    acc = (preds["gold_pos"] == preds["pred_pos"]).mean()
    assert a["accuracy"][0] < acc < a["accuracy"][1]
    other = table(clustered(np.random.default_rng(7)))
    assert paired(preds, other, seed=2) == paired(preds, other, seed=2)


def test_empty_single_person_and_missing_metric() -> None:
    preds = table(clustered(np.random.default_rng(8), persons=5, questions=4))
    assert bootstrap_ci(preds.iloc[:0]) == {}
    assert bootstrap_ci(preds.iloc[:4]) == {}  # one person: no spread between persons to measure
    assert set(bootstrap_ci(preds.assign(ordinal=False))) == {"accuracy", "macro_accuracy", "within_one"}
    none = paired(preds.iloc[:4], preds.iloc[4:])  # no shared items
    assert none["n_items"] == 0 and math.isnan(none["difference"]) and math.isnan(none["p_value"])


def test_bad_arguments_are_errors() -> None:
    preds = table(np.ones((3, 2), int))
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        bootstrap_ci(preds, metrics=("f1",))
    with pytest.raises(ValueError, match="unknown metric"):
        paired(preds, preds, "f1")
    with pytest.raises(ValueError, match="population metric 'wasserstein'"):
        bootstrap_ci(preds, metrics=("accuracy", "wasserstein"))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(preds, level=95)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(preds, n_resamples=0)
    with pytest.raises(ValueError, match="table b has repeated"):
        paired(preds, pd.concat([preds, preds.iloc[:1]]))


def test_full_dev_set_size() -> None:
    """1,334 persons x 47 items (63k rows) x 1,000 resamples: four intervals and a paired difference (speed is
    measured in scripts/bench_batch.py, not asserted here)."""
    rng = np.random.default_rng(9)
    persons, per, pool = 1334, 47, 259
    q = np.concatenate([rng.choice(pool, per, replace=False) for _ in range(persons)])
    n_options = q % 9 + 2
    gold = rng.integers(0, n_options)
    preds = pd.DataFrame(
        {
            "person_id": np.repeat(np.arange(persons), per),
            "question": [f"Q{j + 1}" for j in q],
            "ordinal": q % 3 != 0,
            "n_options": n_options,
            "gold_pos": gold.astype(float),
            "pred_pos": np.where(rng.random(q.size) < 0.6, gold, 0).astype(float),
        }
    )
    ci = bootstrap_ci(preds, n_resamples=1000)
    d = paired(preds, preds.assign(pred_pos=gold.astype(float)), n_resamples=1000)
    assert len(ci) == 4 and d["n_items"] == len(preds) and d["p_value"] < 0.01


@pytest.mark.parametrize(
    "args, text",
    [
        ((0.6031, 0.597, 0.6094), "0.603 [0.597, 0.609]"),
        ((0.5, None, None), "0.500"),
        ((0.5, float("nan"), float("nan")), "0.500"),
        ((-0.01234, -0.02, 0.0, 2), "-0.01 [-0.02, 0.00]"),
    ],
)
def test_format_ci(args, text: str) -> None:
    assert format_ci(*args) == text
