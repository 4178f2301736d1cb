"""A run's stored predictions -> the predictions table, the metrics with their 95% CIs over persons, and what the
predictions cost. Both paths of valuesim.run.predict (thread pool, batches) score through here, and the estimate's
comparison with a finished run reads its dollars (`dollars_of`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valuesim import files
from valuesim.programs.statistical import Guess
from valuesim.score.metrics import (
    PROB_METRICS,
    normalized_accuracy,
    prob_scores,
    random_floor,
    summarize,
    uniform_floor,
)
from valuesim.score.stats import N_RESAMPLES, bootstrap_ci, ece_ci


def only_keys(stored: pd.DataFrame, keys: set[str]) -> pd.DataFrame:
    """The stored rows of these keys (a set lookup per row: pandas' isin on string columns takes ~0.6 s per 60k)."""
    return stored[np.fromiter((k in keys for k in stored["key"].to_numpy(dtype=object)), bool, len(stored))]


def predictions_table_of(stored: pd.DataFrame, meta: list[tuple]) -> pd.DataFrame:
    """Stored rows joined with (key, country, category, ordinal, option codes) per item, in the items' order (not
    the order predictions finished in, which threads and Ray workers change: float sums would differ in the last
    bit); gold and answer as 0-based positions on the item's options (NaN when missing or not an option); `probs`
    (JSON text {code: probability}, None without a distribution), `probs_pos` (the same as a list by position, what
    the scores read) and `probs_method`."""
    frame = pd.DataFrame(
        {
            "key": [m[0] for m in meta],
            "country": [m[1] for m in meta],
            "category": [m[2] for m in meta],
            "ordinal": [m[3] for m in meta],
            "n_options": [len(m[4]) for m in meta],
        }
    ).drop_duplicates("key")
    frame["item_order"] = np.arange(len(frame))
    options = {m[0]: m[4] for m in meta}
    p = stored.merge(frame, on="key", how="inner").sort_values("item_order", kind="stable")
    p = p.drop(columns="item_order").reset_index(drop=True)
    keys = p["key"].to_numpy(dtype=object)
    for col, out in (("gold", "gold_pos"), ("answer", "pred_pos")):
        values = p[col].to_numpy(dtype=object)
        p[out] = np.array(
            [options[k].index(v) if v in options[k] else np.nan for k, v in zip(keys, values, strict=True)], dtype=float
        )
    if "probs" not in p:  # a table of rows from before distributions
        p["probs"], p["probs_method"] = None, None
    p["probs_pos"] = [
        None if not isinstance(d, dict) else [float(d.get(code, 0.0)) for code in options[k]]
        for k, d in zip(keys, p["probs"], strict=True)
    ]
    # as JSON text: a column of dicts with different keys per question comes back from parquet (the MLflow table
    # of a large run) with every question's keys in every row
    if "probs_json" in p:  # a store's frame: the text it read
        p["probs"] = p.pop("probs_json")
    else:
        p["probs"] = [files.strict_json(d, indent=None) if isinstance(d, dict) else None for d in p["probs"]]
    return p


def score(preds: pd.DataFrame, resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Headline metrics, their 95% CIs over persons (<metric>_ci_low/_high), the random floor and the uniform
    distribution's scores."""
    metrics = summarize(preds)
    if resamples > 0:
        for name, (lo, hi) in bootstrap_ci(preds, n_resamples=resamples, seed=seed).items():
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = lo, hi
        interval = ece_ci(preds, n_resamples=resamples, seed=seed)
        if interval is not None:
            metrics["ece_ci_low"], metrics["ece_ci_high"] = interval
    metrics |= random_floor(preds) | uniform_floor(preds)
    if "accuracy" in metrics and "random_accuracy" in metrics:  # 0 at chance, 1 at the retest ceiling
        metrics["normalized_accuracy"] = normalized_accuracy(metrics["accuracy"], metrics["random_accuracy"])
    return metrics


NO_GUESS = Guess(None, None)  # an item the country majority has no Guess for


def country_floor(preds: pd.DataFrame, majority: dict[str, Guess]) -> dict:
    """Accuracy of the country majority (valuesim.programs.statistical.CountryMajority) on the same items, and the
    scores of its smoothed country shares (country_log_loss, country_brier, country_rps): the floor a person-level
    simulator has to beat, since the country alone already gives it."""
    answered = preds[preds["gold"].notna()]
    if answered.empty:
        return {}
    # items share their country's Guess object: each distinct one is read once, its rows index it
    guesses = [majority.get(k, NO_GUESS) for k in answered["key"].to_numpy(dtype=object)]
    number: dict[int, int] = {}  # id of a Guess -> its place in `distinct`
    distinct: list[Guess] = []
    which = np.empty(len(guesses), dtype=np.int64)
    for n, g in enumerate(guesses):
        if id(g) not in number:
            number[id(g)] = len(distinct)
            distinct.append(g)
        which[n] = number[id(g)]
    answers = np.array([g.answer for g in distinct], dtype=object)[which]
    hits = answers == answered["gold"].astype(str).to_numpy(dtype=object)
    out = {"country_majority_floor": float(np.mean(hits))}
    # the country's distributions in the run's table (same rows, positions): scored by the same rules
    width = answered["n_options"].to_numpy(int)
    shares = [None if g.probs is None else list(g.probs.values()) for g in distinct]
    best = np.array([np.nan if g.probs is None else float(np.argmax(list(g.probs.values()))) for g in distinct])
    shares = answered.assign(
        probs_pos=[
            s if s is None or len(s) <= w else s[:w]
            for s, w in zip((shares[n] for n in which.tolist()), width.tolist(), strict=True)
        ],
        probs_method="counts",
        pred_pos=best[which] if len(distinct) else np.nan,
    )
    s = prob_scores(shares)
    for m in PROB_METRICS:
        out[f"country_{m}"] = float(np.nanmean(s[m])) if (~np.isnan(s[m])).any() else float("nan")
    return out


def cost_summary(stored: pd.DataFrame) -> dict:
    """Failures, LM calls, tokens, dollars and seconds per prediction (and dollars in total).

    Cached tokens are the prompt tokens a provider (OpenAI's `prompt_tokens_details.cached_tokens`) or the embedded
    engine reused from its prompt cache; ValueSim's prompt order (instructions, backstory, question) is laid out
    for those hits. Dollars are None when some LM call had no price or the store predates the column."""
    n = max(len(stored), 1)
    cached = stored["cached_tokens"].fillna(0)  # NULL in older stores
    usd = dollars_of(stored)
    return {
        "failed": int((stored["status"] == "failed").sum()),
        "lm_calls_per_pred": float(stored["lm_calls"].sum() / n),
        "prompt_tokens_per_pred": float(stored["prompt_tokens"].sum() / n),
        "cached_tokens_per_pred": float(cached.sum() / n),
        # tokens the engine really evaluated (prompt minus what its prefix cache reused)
        "evaluated_tokens_per_pred": float((stored["prompt_tokens"] - cached).sum() / n),
        "completion_tokens_per_pred": float(stored["completion_tokens"].sum() / n),
        "usd_total": usd,
        "usd_per_1000_preds": None if usd is None else usd / n * 1000,  # a cent per prediction reads 10.000
        "seconds_per_pred": float(stored["seconds"].sum() / n),
    }


def dollars_of(stored: pd.DataFrame) -> float | None:
    """The run's dollars: predictions without LM calls cost nothing; None if any LM prediction has no price."""
    if "cost_usd" not in stored:
        return None
    lm_rows = stored["lm_calls"].fillna(0) > 0
    if stored.loc[lm_rows, "cost_usd"].isna().any():
        return None
    return float(stored.loc[lm_rows, "cost_usd"].sum())
