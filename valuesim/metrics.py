"""Metrics over a table of predictions. Pure pandas/numpy; the DSPy metric wrappers live in optimize/metric.py.

A predictions table has one row per (person, question) with columns:
    person_id, country, question, category, ordinal (bool), n_options, gold_pos, pred_pos
where *_pos is the 0-based position of the answer on the question's scale and pred_pos is NaN for an invalid
or missing prediction. Invalid predictions count as wrong for accuracy, as the maximum error (1.0) for
normalized MAE, and are left out of the predicted answer distribution of the population metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def summarize(preds: pd.DataFrame) -> dict:
    """All headline metrics as one flat dict (accuracies in [0, 1])."""
    if preds.empty:
        return {"n": 0, "invalid": 0}
    p = _derived(preds)
    ordinal = p[p["ordinal"]]
    return {
        "n": int(len(p)),
        "invalid": int(p["invalid"].sum()),
        "accuracy": float(p["correct"].mean()),
        "macro_accuracy": float(p.groupby("question")["correct"].mean().mean()),
        "within_one": float(p["within_one"].mean()),
        "nmae": float(ordinal["nerr"].mean()) if len(ordinal) else float("nan"),
        "wasserstein": population_wasserstein(p),
        "persons": int(p["person_id"].nunique()),
        "questions": int(p["question"].nunique()),
    }


# Accuracy a perfect simulator could reach is bounded by how consistently people answer the same question twice;
# WVS has no retest panel, so the default is the two-week retest agreement Park et al. (2024) measured for GSS
# respondents. A parameter, so a user can set their own.
DEFAULT_CEILING = 0.81


def random_floor(preds: pd.DataFrame) -> dict:
    """Exact expected metrics of a predictor picking a uniformly random option (no sampling): accuracy is the
    mean of 1/options; within-one and nMAE average over every option of each item's scale."""
    g = preds[preds["gold_pos"].notna()]
    if g.empty:
        return {}
    acc, within, err = [], [], []
    for (n, gold, ordinal), rows in g.groupby(["n_options", "gold_pos", "ordinal"]):
        n, gold = int(n), int(gold)
        dist = np.abs(np.arange(n) - gold)
        acc.append((1 / n, len(rows)))
        within.append(((dist <= 1).mean() if ordinal else 1 / n, len(rows)))
        if ordinal:
            err.append((dist.mean() / max(n - 1, 1), len(rows)))

    def mean(pairs):
        return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs)) if pairs else float("nan")

    return {"random_accuracy": mean(acc), "random_within_one": mean(within), "random_nmae": mean(err)}


def normalized_accuracy(accuracy: float, floor: float, ceiling: float = DEFAULT_CEILING) -> float:
    """(accuracy - random) / (ceiling - random): 0 at chance, 1 at the retest ceiling."""
    return float((accuracy - floor) / (ceiling - floor))


def breakdown(preds: pd.DataFrame, by: str) -> pd.DataFrame:
    """Accuracy, within-one and nMAE per value of `by` (e.g. country, category)."""
    p = _derived(preds)
    g = p.groupby(by)
    out = pd.DataFrame({"n": g.size(), "accuracy": g["correct"].mean(), "within_one": g["within_one"].mean()})
    out["nmae"] = p[p["ordinal"]].groupby(by)["nerr"].mean()
    out["invalid"] = g["invalid"].sum()
    return out.reset_index()


def population_wasserstein(preds: pd.DataFrame) -> float:
    """Mean over questions of the 1-Wasserstein distance between predicted and real answer distributions.

    Ordinal questions: distance on scale positions, divided by the scale length (n_options - 1), so 0 is identical
    and 1 is all mass at opposite ends. Nominal questions: every pair of distinct options is 1 apart, which makes
    W1 the total variation distance.
    """
    dists = []
    for _, g in preds.groupby("question"):
        g = g[g["gold_pos"].notna()]  # a gold answer that is not an option has no place on the scale
        # per-country items (parties, ethnic groups) have a different number of options in each country
        n = int(g["n_options"].max()) if len(g) else 0
        pred = g["pred_pos"].dropna().astype(int)
        if len(pred) == 0 or n < 2:
            continue
        gold = np.bincount(g["gold_pos"].astype(int), minlength=n) / len(g)
        hist = np.bincount(pred, minlength=n) / len(pred)
        if bool(g["ordinal"].iloc[0]):
            dists.append(np.abs(np.cumsum(gold - hist)).sum() / (n - 1))
        else:
            dists.append(0.5 * np.abs(gold - hist).sum())
    return float(np.mean(dists)) if dists else float("nan")


def _derived(preds: pd.DataFrame) -> pd.DataFrame:
    p = preds.copy()
    p["ordinal"] = p["ordinal"].astype(bool)
    p["invalid"] = p["pred_pos"].isna()
    diff = (p["pred_pos"] - p["gold_pos"]).abs()
    p["correct"] = diff.eq(0) & ~p["invalid"]
    scale = (p["n_options"] - 1).clip(lower=1)
    p["nerr"] = (diff / scale).fillna(1.0)
    p["within_one"] = np.where(p["ordinal"], diff.le(1), diff.eq(0)) & ~p["invalid"]
    return p
