"""Uncertainty for every figure: cluster bootstrap intervals over persons and paired differences between programs.

Why persons: one person answers all their questions, so their answers are not independent (a person the simulator
reads well is read well on most items). Treating 63k answers as 63k independent draws gives intervals far too
narrow. Every interval here therefore resamples *persons* with replacement and keeps all of a drawn person's rows
(a cluster bootstrap); every test flips the sign of whole persons.

API (predictions tables as in valuesim/score/metrics.py: person_id, question, ordinal, n_options, gold_pos, pred_pos):

    bootstrap_ci(preds, metrics=METRICS, n_resamples=1000, seed=0, level=0.95) -> {"accuracy": (lo, hi), ...}
    item_table(preds) -> per row: person, question, the metrics below, the answer's probability
    paired_difference(item_table(a), item_table(b), metric="accuracy", n_resamples=1000, seed=0, level=0.95)
        -> {"difference", "ci_low", "ci_high", "p_value", "n_persons", "n_items"}
    format_ci(0.6031, 0.597, 0.6094) -> "0.603 [0.597, 0.609]"

Metrics (METRICS), each the same statistic `valuesim.score.metrics.summarize` reports, recomputed in every resample:
    accuracy        correct answers / answered items (invalid predictions are wrong)
    macro_accuracy  mean over questions of each question's accuracy (questions drawn in the resample)
    within_one      correct or one scale step off on ordinal items; exact on nominal ones
    nmae            mean |pred - gold| / (n_options - 1) over ordinal items, an invalid prediction counting 1.
                    Lower is better, so a negative paired difference in nmae means `a` is better.

Method and choices:
- Percentile intervals (the `level` central quantiles of the resampled statistic). A resample is a row of counts
  (how often each person is drawn), so a statistic over all resamples is one matrix product of that
  (n_resamples x persons) count matrix with per-person sums computed once: 1,334 persons x 47 items x 1,000
  resamples takes well under a second.
- Persons are ordered by id before drawing, so a seed gives the same result whatever the row order.
- A metric with no items (nmae without ordinal items) is left out of bootstrap_ci's result; with fewer than two
  persons there is nothing to resample and the result is empty (format_ci then prints the value alone).
- paired_difference compares two programs on the same items only (inner join on person_id, question), bootstraps
  the difference over persons (the same persons' rows of both programs move together), and tests "no
  difference" with a sign-flip permutation test over persons: under the null each person's difference is as
  likely negated, so the p-value is the share of random sign patterns whose difference is at least as far from 0
  as the observed one (two-sided; exact enumeration of all 2^persons patterns when that is at most n_resamples,
  otherwise n_resamples random patterns with the (1 + hits) / (1 + n_resamples) correction). No normality is
  assumed, and it stays valid for a handful of persons.
- The population metrics (wasserstein, jsd, kendall_tau of valuesim.score.metrics) get no interval here: a resample
  repeats persons, so its answer histograms are noisier than the sample's and a distance between them is biased
  upward; on a 63k-row table the resampled Wasserstein distances lay entirely above the estimate (0.042-0.047 vs
  0.032). Asking for them is an error rather than a misleading interval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from valuesim import config
from valuesim.score.metrics import ECE_BINS, POPULATION_METRICS, PROB_METRICS, _item_scores, prob_scores

METRICS = ("accuracy", "macro_accuracy", "within_one", "nmae", *PROB_METRICS)
LEVEL = 0.95
N_RESAMPLES = config.RESAMPLES
# resample count matrices are built in blocks of at most this many cells (memory stays small for huge tables)
_BLOCK_CELLS = 4_000_000


def bootstrap_ci(
    preds: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each metric from a cluster bootstrap over persons (all of a person's rows together).

    Returns {metric: (low, high)}; metrics without items, and all metrics when there are fewer than 2 persons,
    are left out. The point estimates are `valuesim.score.metrics.summarize(preds)`.
    """
    _check(metrics, n_resamples, level)
    if preds.empty:
        return {}
    items = _per_item(preds)
    person_idx, persons = pd.factorize(items["person_id"], sort=True)
    if len(persons) < 2:
        return {}
    q_idx, questions = pd.factorize(items["question"], sort=True)
    sums = {m: _person_sums(items[m], person_idx, len(persons), q_idx, len(questions), m) for m in metrics}
    boot = _bootstrap(sums, len(persons), n_resamples, seed)
    out: dict[str, tuple[float, float]] = {}
    for metric, values in boot.items():
        interval = _percentiles(values, level)
        if interval is not None:
            out[metric] = interval
    return out


def paired_difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "accuracy",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, float]:
    """Program `a` minus program `b` on the items both predicted (same person, same question); `a` and `b` are item
    tables (`item_table` of predictions tables: what a bench keeps of its cells).

    Returns difference (metric of a - metric of b on the shared items), ci_low / ci_high (percentile interval of a
    paired cluster bootstrap over persons), p_value (two-sided sign-flip permutation test over persons, see the
    module docstring), n_persons and n_items (shared items the metric counts: nmae counts ordinal items only).
    With no shared items every number is NaN; with one person the interval is NaN.
    """
    _check([metric], n_resamples, level)
    ia, ib = _item_columns(a, "a"), _item_columns(b, "b")
    # integer keys over both tables' (person, question) pairs, then the items both have
    person_idx, persons = pd.factorize(np.concatenate([ia["person_id"], ib["person_id"]]), sort=True)
    q_idx, questions = pd.factorize(np.concatenate([ia["question"], ib["question"]]), sort=True)
    key = person_idx.astype(np.int64) * len(questions) + q_idx
    ka, kb = key[: len(ia["person_id"])], key[len(ia["person_id"]) :]
    for name, k in (("a", ka), ("b", kb)):
        if len(np.unique(k)) < len(k):
            raise ValueError(f"paired_difference: table {name} has repeated (person_id, question) rows")
    _, at_a, at_b = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    diff = ia[metric][at_a] - ib[metric][at_b]
    ok = ~np.isnan(diff)
    diff, shared = diff[ok], ka[at_a][ok]
    nan = float("nan")
    if not len(diff):
        return {"difference": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "n_persons": 0, "n_items": 0}
    # persons and questions of the shared items only, renumbered 0..n-1
    person_idx, persons = pd.factorize(shared // len(questions), sort=True)
    q_idx, questions = pd.factorize(shared % len(questions), sort=True)
    num, den = _person_sums(diff, person_idx, len(persons), q_idx, len(questions), metric)

    # observed = sum of per-person contributions (each person's summed difference over the full sample's counts)
    total = den.sum(axis=0)
    used = total > 0
    contrib = (num[:, used] / total[used]).sum(axis=1) / used.sum()
    observed = float(contrib.sum())

    interval = None
    if len(persons) > 1:
        interval = _percentiles(_bootstrap({metric: (num, den)}, len(persons), n_resamples, seed)[metric], level)
    return {
        "difference": observed,
        "ci_low": interval[0] if interval else nan,
        "ci_high": interval[1] if interval else nan,
        "p_value": _sign_flip_p(contrib, observed, n_resamples, seed + 1),
        "n_persons": int(len(persons)),
        "n_items": int(len(diff)),
    }


def ece_ci(
    preds: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL, bins: int = ECE_BINS
) -> tuple[float, float] | None:
    """95% interval of the expected calibration error (valuesim.score.metrics.ece) from the same cluster bootstrap
    over persons: per person and bin, rows, summed probability and hits; each resample's ECE from those sums.

    ECE sums absolute gaps, so a resample (which duplicates persons: noisier bins) has a larger ECE on average than
    the sample; on a calibrated program the plain percentile interval lay wholly above the estimate. The interval is
    therefore the percentile interval shifted by that bias (the resamples' mean minus the estimate), clipped at 0:
    the bootstrap's spread around the estimate. None without scored rows or with fewer than 2 persons."""
    _check([], n_resamples, level)
    s = prob_scores(preds)
    rows = s["scored"]
    if not rows.any():
        return None
    person_idx, persons = pd.factorize(preds["person_id"].to_numpy()[rows], sort=True)
    if len(persons) < 2:
        return None
    conf, hit = s["confidence"][rows], s["correct"][rows].astype(float)
    cell = person_idx * bins + np.minimum((conf * bins).astype(int), bins - 1)
    size = len(persons) * bins
    n, c, a = (np.bincount(cell, weights=w, minlength=size).reshape(len(persons), bins)
               for w in (None, conf, hit))  # fmt: skip
    values = []
    for counts in _resample_counts(len(persons), n_resamples, seed):
        rn, rc, ra = counts @ n, counts @ c, counts @ a
        values.append(np.abs(ra - rc).sum(axis=1) / rn.sum(axis=1))
    boot = np.concatenate(values)
    interval = _percentiles(boot, level)
    if interval is None:
        return None
    bias = float(np.nanmean(boot)) - float(np.abs(a.sum(axis=0) - c.sum(axis=0)).sum() / n.sum())
    return max(interval[0] - bias, 0.0), max(interval[1] - bias, 0.0)


def format_ci(value: float, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """ "0.603 [0.597, 0.609]"; the value alone when there is no interval (None or NaN bounds)."""
    if lo is None or hi is None or np.isnan(lo) or np.isnan(hi):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


# ---------------------------------------------------------------------------------------------------------------


def _check(metrics: Sequence[str], n_resamples: int, level: float) -> None:
    population = [m for m in metrics if m in POPULATION_METRICS]
    if population:
        raise ValueError(
            f"no bootstrap interval for the population metric {population[0]!r}: a resample duplicates persons, "
            "which makes every histogram noisier and biases a distance upward (its interval can miss the estimate)"
        )
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; expected one of {', '.join(METRICS)}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _per_item(preds: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per row of a predictions table: 1/0 for accuracy (also macro_accuracy) and within_one, the normalized error
    on ordinal rows only, the distribution scores and the answer's probability (NaN on rows not scored)."""
    scores = _item_scores(preds)
    correct = scores["correct"].astype(float)
    probs = prob_scores(preds)
    return {
        **{m: probs[m] for m in PROB_METRICS},  # NaN on rows not scored (see valuesim.score.metrics)
        "person_id": preds["person_id"].to_numpy(),
        "question": preds["question"].to_numpy(),
        "accuracy": correct,
        "macro_accuracy": correct,
        "within_one": scores["within_one"].astype(float),
        "nmae": np.where(scores["ordinal"], scores["nerr"], np.nan),
        "confidence": probs["confidence"],
    }


ITEM_COLUMNS = ("person_id", "question", "accuracy", "within_one", "nmae", *PROB_METRICS, "confidence")


def _item_columns(items: pd.DataFrame, name: str) -> dict[str, np.ndarray]:
    """`_per_item` of an item table, read back from its columns."""
    missing = [c for c in ITEM_COLUMNS if c not in items]
    if missing:
        raise ValueError(f"table {name} is not an item table (valuesim.score.stats.item_table): no {missing[0]}")
    out = {c: items[c].to_numpy() for c in ITEM_COLUMNS}
    return out | {"macro_accuracy": out["accuracy"]}


def item_table(preds: pd.DataFrame) -> pd.DataFrame:
    """What `paired_difference` and the reliability diagram read of a predictions table, in a tenth of its memory:
    per row the person and question (categories), accuracy, within_one, nmae, the distribution scores and the
    answer's probability `confidence` (NaN where a metric does not count the row). A bench keeps these of its
    finished cells, not their predictions tables (five of a million rows each took 10 GB)."""
    items = _per_item(preds)
    del items["macro_accuracy"]  # the same column as accuracy
    table = pd.DataFrame(items)
    return table.astype({"person_id": "category", "question": "category"})


def _person_sums(
    x: np.ndarray, person_idx: np.ndarray, n_persons: int, q_idx: np.ndarray, n_questions: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) per person, persons x columns: one column, or one per question for macro_accuracy.

    A statistic over a resample with person counts c is nanmean over columns of (c @ num) / (c @ den).
    """
    ok = ~np.isnan(x)
    cols = n_questions if metric == "macro_accuracy" else 1
    cell = person_idx[ok] * cols + (q_idx[ok] if cols > 1 else 0)
    num = np.bincount(cell, weights=x[ok], minlength=n_persons * cols).reshape(n_persons, cols)
    den = np.bincount(cell, minlength=n_persons * cols).reshape(n_persons, cols).astype(float)
    return num, den


def _resample_counts(n_persons: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of rows of (n_resamples x n_persons) counts: how often each person is drawn in each resample."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n_persons)
    for start in range(0, n_resamples, block):
        rows = min(block, n_resamples - start)
        draws = rng.integers(0, n_persons, size=(rows, n_persons))
        cell = (np.arange(rows)[:, None] * n_persons + draws).ravel()
        yield np.bincount(cell, minlength=rows * n_persons).reshape(rows, n_persons).astype(float)


def _bootstrap(
    sums: dict[str, tuple[np.ndarray, np.ndarray]], n_persons: int, n_resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """The statistic of each metric in each resample (NaN where a resample drew no item of the metric)."""
    parts: dict[str, list[np.ndarray]] = {m: [] for m in sums}
    for counts in _resample_counts(n_persons, n_resamples, seed):
        for metric, (num, den) in sums.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = (counts @ num) / (counts @ den)
            parts[metric].append(_nanmean_rows(ratio))
    return {m: np.concatenate(v) for m, v in parts.items()}


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0).sum(axis=1) / n, np.nan)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def _sign_flip_p(contrib: np.ndarray, observed: float, n_resamples: int, seed: int) -> float:
    """Two-sided p-value of a sign-flip test: exact over all sign patterns when there are few persons."""
    n = len(contrib)
    tol = 1e-10 * max(1.0, abs(observed))  # the identity pattern must count as "as extreme" despite rounding
    if n <= 30 and 2**n <= n_resamples:
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ contrib) >= abs(observed) - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, n_resamples, block):
        signs = rng.choice([-1.0, 1.0], size=(min(block, n_resamples - start), n))
        hits += int(np.sum(np.abs(signs @ contrib) >= abs(observed) - tol))
    return float((1 + hits) / (1 + n_resamples))
