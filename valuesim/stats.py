"""Uncertainty for every figure: cluster bootstrap over persons, paired differences between programs.

Answers of one person are not independent (one person answers all their questions), so intervals resample
persons with replacement, keeping all their answers. Vectorized: per-person sums are computed once, and each of
the `n_resamples` resamples is a row of multinomial counts over persons, so 1,334 persons x 1,000 resamples is one
matrix product per metric.

    bootstrap_ci(preds)                        {"accuracy": (lo, hi), "within_one": ..., "nmae": ..., ...}
    paired_difference(a, b, "accuracy")        mean a - b on the items both have, 95% CI, p-value, n
    format_ci(0.603, 0.597, 0.609)             "0.603 [0.597, 0.609]"

Predictions tables are those of valuesim/metrics.py (person_id, question, ordinal, n_options, gold_pos, pred_pos).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valuesim.metrics import _derived

METRICS = ("accuracy", "macro_accuracy", "within_one", "nmae")
LEVEL = 0.95
N_RESAMPLES = 1000


def _per_item(preds: pd.DataFrame) -> pd.DataFrame:
    """correct, within_one and (ordinal items only) the normalized error, per row."""
    p = _derived(preds)
    return pd.DataFrame(
        {
            "person_id": p["person_id"].to_numpy(),
            "question": p["question"].to_numpy(),
            "accuracy": p["correct"].to_numpy(float),
            "within_one": p["within_one"].to_numpy(float),
            "nmae": np.where(p["ordinal"], p["nerr"], np.nan),
        }
    )


def _resample_counts(n_persons: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples x n_persons) how often each person is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_persons, np.full(n_persons, 1 / n_persons), size=n_resamples).astype(float)


def _ratio(counts: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ num) / (counts @ den)


def bootstrap_ci(
    preds: pd.DataFrame,
    metrics: tuple[str, ...] = METRICS,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each metric from a bootstrap over persons (all of a person's answers together)."""
    if preds.empty:
        return {}
    items = _per_item(preds)
    persons, person_idx = np.unique(items["person_id"], return_inverse=True)
    counts = _resample_counts(len(persons), n_resamples, seed)
    tail = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float]] = {}
    for metric in metrics:
        if metric == "macro_accuracy":  # mean over questions of each question's accuracy in the resample
            questions, q_idx = np.unique(items["question"], return_inverse=True)
            hits = np.zeros((len(persons), len(questions)))
            seen = np.zeros((len(persons), len(questions)))
            np.add.at(hits, (person_idx, q_idx), items["accuracy"].to_numpy())
            np.add.at(seen, (person_idx, q_idx), 1)
            values = np.nanmean(_ratio(counts, hits, seen), axis=1)
        else:
            x = items[metric].to_numpy()
            ok = ~np.isnan(x)
            num = np.bincount(person_idx[ok], weights=x[ok], minlength=len(persons))
            den = np.bincount(person_idx[ok], minlength=len(persons)).astype(float)
            values = _ratio(counts, num, den)
        values = values[~np.isnan(values)]
        if len(values):
            lo, hi = np.percentile(values, [tail, 100 - tail])
            out[metric] = (float(lo), float(hi))
    return out


def paired_difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "accuracy",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float]:
    """Program a minus program b on the items both predicted: mean difference, a bootstrap CI over persons, and a
    two-sided p-value from a sign-flip permutation test over persons (under the null each person's difference
    is as likely negated; exact for the paired design, no normality assumed)."""
    ia, ib = _per_item(a), _per_item(b)
    both = ia.merge(ib, on=["person_id", "question"], suffixes=("_a", "_b"))
    diff = (both[f"{metric}_a"] - both[f"{metric}_b"]).to_numpy()
    ok = ~np.isnan(diff)
    both, diff = both[ok], diff[ok]
    if not len(diff):
        return {"difference": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"),
                "n_persons": 0, "n_items": 0}  # fmt: skip
    persons, idx = np.unique(both["person_id"], return_inverse=True)
    num = np.bincount(idx, weights=diff, minlength=len(persons))
    den = np.bincount(idx, minlength=len(persons)).astype(float)
    observed = num.sum() / den.sum()
    boot = _ratio(_resample_counts(len(persons), n_resamples, seed), num, den)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    signs = np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=(n_resamples, len(persons)))
    null = (signs @ num) / den.sum()
    p = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (n_resamples + 1)
    return {
        "difference": float(observed),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": float(min(p, 1.0)),
        "n_persons": int(len(persons)),
        "n_items": int(len(diff)),
    }


def format_ci(value: float, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """ "0.603 [0.597, 0.609]" (the value alone when there is no interval)."""
    if lo is None or hi is None or np.isnan(lo) or np.isnan(hi):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
