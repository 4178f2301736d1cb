"""Metrics over a table of predictions. Pure pandas/numpy; the DSPy metric wrappers live in optimize/metric.py.

A predictions table has one row per (person, question) with columns:
    person_id, country, question, category, ordinal (bool), n_options, gold_pos, pred_pos
where *_pos is the 0-based position of the answer on the question's scale and pred_pos is NaN for an invalid
or missing prediction. Invalid predictions count as wrong for accuracy, as the maximum error (1.0) for
normalized MAE, and are left out of the predicted answer distribution of the population metrics.

Per-person metrics (summarize): accuracy, macro_accuracy (mean over questions), within_one, nmae (ordinal items).
Population metrics compare, per question, the distribution of predicted answers with the real one: does the
simulated population answer like the real population, even where individuals are wrong?

    population_table(preds, by_country=False, per_country=None, by=None)   one row per compared distribution
    population_wasserstein / population_jsd / population_kendall(preds, by_country=False, per_country=None)
    population_by(preds, "category")                                       the three per category (or country)

Per-country items (Q223 parties, Q290 ethnic groups: option 1 is a different party in each country) are compared
within each country, never pooled. Averages: mean over questions; a question split by country is first the
mean over its countries weighted by their number of answers; undefined values (NaN) are left out.
summarize reports them as wasserstein, jsd and kendall_tau. Uncertainty for all of these: valuesim/score/stats.py.

Scores of distributions (a table with `probs_pos`, probabilities by scale position, and `probs_method`):

    log_loss  -ln p(gold), natural log, p floored at EPSILON (so one impossible answer costs 13.8, not infinity)
    brier     sum over the options of (p_k - [k = gold])^2, in [0, 2]
    rps       ranked probability score, ordinal items only: sum over k < K of (P_k - O_k)^2 / (K - 1), P and O the
              cumulative forecast and outcome, in [0, 1]; 0 = all mass on the gold answer
    ece       expected calibration error of the answer's probability: ECE_BINS equal-width bins of that
              probability, sum over bins of (rows in bin / rows) * |accuracy in bin - mean probability in bin|

Which rows are scored (`prob_scores`): rows whose distribution is real (method counts, model, logprobs, samples),
and rows without a valid answer (failed, invalid), which are scored as the uniform distribution over their options
(they cannot improve a score by being left out, and say nothing). A point mass (method "point": a program that
gave no distribution) is never averaged with real distributions: a run with point masses only has no
distribution scores (null, `probs_note` says why); in a run that mixes both, the point-mass rows are left out of
these scores and counted in `prob_point`. Population metrics from the persons' averaged probabilities
(wasserstein_probs, jsd_probs, kendall_tau_probs) sit beside those from their answers.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from valuesim.data.catalog import COUNTRY_SPECIFIC


def summarize(preds: pd.DataFrame) -> dict:
    """All headline metrics as one flat dict: n, invalid, accuracy, macro_accuracy, within_one, nmae (in [0, 1]),
    the population metrics wasserstein and jsd (in [0, 1], 0 = same distributions) and kendall_tau (in [-1, 1],
    1 = options ranked alike), the distribution scores of `distribution_scores` (when the table has
    distributions), persons, questions. Their 95% intervals: valuesim.score.stats.bootstrap_ci (ece: ece_ci)."""
    if preds.empty:
        return {"n": 0, "invalid": 0}
    p = _derived(preds)
    ordinal = p[p["ordinal"]]
    population = population_table(p)
    return {
        "n": int(len(p)),
        "invalid": int(p["invalid"].sum()),
        "accuracy": float(p["correct"].mean()),
        "macro_accuracy": float(p.groupby("question")["correct"].mean().mean()),
        "within_one": float(p["within_one"].mean()),
        "nmae": float(ordinal["nerr"].mean()) if len(ordinal) else float("nan"),
        **{name: _average(population, name) for name in POPULATION_METRICS},
        **distribution_scores(preds),
        "persons": int(p["person_id"].nunique()),
        "questions": int(p["question"].nunique()),
    }


# Accuracy a perfect simulator could reach is bounded by how consistently people answer the same question twice;
# WVS has no retest panel, so the default is the two-week retest agreement Park et al. (2024) measured for GSS
# respondents. A parameter, so a user can set their own.
DEFAULT_CEILING = 0.81

# population metrics: summarize keys, population_table / population_by columns
POPULATION_METRICS = ("wasserstein", "jsd", "kendall_tau")
NAN = float("nan")

EPSILON = 1e-6  # probabilities are floored here for the log loss: -ln(1e-6) = 13.8 nats at most per item
PROB_METRICS = ("log_loss", "brier", "rps")  # per-item scores of distributions (ece is binned, see `ece`)
REAL_METHODS = ("counts", "model", "logprobs", "samples")  # distributions; "point" is a point mass on the answer
ECE_BINS = 10


T = TypeVar("T", np.ndarray, dict[str, np.ndarray])


def once_per_table(fn: Callable[[pd.DataFrame], T]) -> Callable[[pd.DataFrame], T]:
    """`fn(table)` computed once per table object while it lives, its arrays read-only: scoring a run reads the same
    table's probabilities in eight places (the metrics, their intervals, the floors, the item table), and turning a
    million rows' lists into a matrix took 0.7 s each time. A table is not changed in place once it is scored."""
    memo: dict[int, tuple[weakref.ref, T]] = {}

    @functools.wraps(fn)
    def once(preds: pd.DataFrame) -> T:
        key = id(preds)
        if key in memo and memo[key][0]() is preds:
            return memo[key][1]
        out = fn(preds)
        for a in out.values() if isinstance(out, dict) else [out]:
            a.setflags(write=False)
        memo[key] = (weakref.ref(preds, lambda _: memo.pop(key, None)), out)
        return out

    return once


@once_per_table
def prob_matrix(preds: pd.DataFrame) -> np.ndarray:
    """(rows x widest scale) probabilities by position; rows without a distribution are NaN."""
    width = int(preds["n_options"].max()) if len(preds) else 0
    out = np.full((len(preds), width), np.nan)
    if "probs_pos" not in preds:
        return out
    rows = preds["probs_pos"].to_numpy(dtype=object)
    # `type(p) in`, not isinstance with a union: half the time of this function on a million rows
    lengths = np.fromiter((len(p) if type(p) in (list, tuple, np.ndarray) else 0 for p in rows), int, len(rows))
    has = lengths > 0
    out[has] = 0.0
    # one scatter of all the rows' values (a row at a time took 1.3 s per million rows, scored several times)
    values = np.fromiter(itertools.chain.from_iterable(itertools.compress(rows, has)), float, int(lengths.sum()))
    row = np.repeat(np.arange(len(rows)), lengths)
    col = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = values
    return out


@once_per_table
def prob_scores(preds: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per row: scored (bool, see the module docstring), log_loss, brier, rps (NaN on nominal items), confidence
    (the answer's probability) and correct, NaN/False where not scored. Rows without a gold position are not
    scored."""
    n = len(preds)
    methods = preds["probs_method"].to_numpy(dtype=object) if "probs_method" in preds else np.full(n, None)
    real = np.isin(methods, REAL_METHODS)
    gold = preds["gold_pos"].to_numpy(float)
    k = preds["n_options"].to_numpy(int)
    width = int(k.max()) if n else 0
    p = prob_matrix(preds)
    missing = np.isnan(p[:, 0]) if width else np.ones(n, dtype=bool)
    scored = (real | (missing & real.any())) & ~np.isnan(gold)
    inside = np.arange(width)[None, :] < k[:, None]
    p = np.where(missing[:, None], inside / np.maximum(k, 1)[:, None], p)  # no distribution: uniform
    g = np.where(np.isnan(gold), 0, gold).astype(int)
    onehot = (np.arange(width)[None, :] == g[:, None]).astype(float)
    pg = p[np.arange(n), np.minimum(g, max(width - 1, 0))] if width else np.zeros(n)
    log_loss = -np.log(np.maximum(pg, EPSILON))
    brier = ((p - onehot) ** 2 * inside).sum(axis=1)
    cum = np.cumsum(p - onehot, axis=1) ** 2 * (np.arange(width)[None, :] < (k - 1)[:, None])
    rps = cum.sum(axis=1) / np.maximum(k - 1, 1)
    ordinal = preds["ordinal"].to_numpy(bool)
    pred = preds["pred_pos"].to_numpy(float)
    has = ~np.isnan(pred)
    confidence = np.where(
        has, p[np.arange(n), np.where(has, pred, 0).astype(int)] if width else 0.0, 1 / np.maximum(k, 1)
    )
    nan = np.full(n, np.nan)
    return {
        "scored": scored,
        "point": (methods == "point") & ~np.isnan(gold),
        "missing": missing & scored,
        "log_loss": np.where(scored, log_loss, nan),
        "brier": np.where(scored, brier, nan),
        "rps": np.where(scored & ordinal, rps, nan),
        "confidence": np.where(scored, confidence, nan),
        "correct": scored & has & (pred == gold),
    }


def reliability(items: pd.DataFrame, bins: int = ECE_BINS) -> pd.DataFrame:
    """The reliability diagram's points: per bin of the answer's probability (equal width), rows n, mean
    probability (confidence) and accuracy, over the scored rows of an item table (valuesim.score.stats.item_table:
    scored where `confidence` is defined)."""
    conf = items["confidence"].to_numpy(float)
    scored = ~np.isnan(conf)
    return _reliability(conf[scored], items["accuracy"].to_numpy(float)[scored], bins)


def _reliability(conf: np.ndarray, correct: np.ndarray, bins: int) -> pd.DataFrame:
    b = np.minimum((conf * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "bin_low": np.arange(bins) / bins,
            "n": n,
            "confidence": np.bincount(b, weights=conf, minlength=bins) / n,
            "accuracy": np.bincount(b, weights=correct, minlength=bins) / n,
        })  # fmt: skip


def ece(preds: pd.DataFrame, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the answer's probability over the scored rows (NaN when none)."""
    s = prob_scores(preds)
    r = _reliability(s["confidence"][s["scored"]], s["correct"][s["scored"]].astype(float), bins)
    total = r["n"].sum()
    if not total:
        return NAN
    used = r["n"] > 0
    return float((r.loc[used, "n"] * (r.loc[used, "accuracy"] - r.loc[used, "confidence"]).abs()).sum() / total)


def distribution_scores(preds: pd.DataFrame) -> dict:
    """log_loss, brier, rps, ece (means over the scored rows), prob_n (rows scored), prob_point (point masses
    left out), prob_missing (rows without a valid answer, scored as uniform), and the population metrics of the
    averaged probabilities; with point masses only, the scores are None and probs_note says why."""
    if "probs_method" not in preds:  # a table without distributions (written before them, or by hand)
        return {}
    s = prob_scores(preds)
    out: dict = {"prob_n": int(s["scored"].sum()), "prob_point": int((s["point"] & ~s["scored"]).sum()),
                 "prob_missing": int(s["missing"].sum())}  # fmt: skip
    if not s["scored"].any():
        note = "point masses only: the program gave no distribution" if s["point"].any() else "no distribution"
        return out | dict.fromkeys([*PROB_METRICS, "ece"]) | {"probs_note": note}
    for m in PROB_METRICS:
        out[m] = float(np.nanmean(s[m])) if (~np.isnan(s[m])).any() else NAN
    out["ece"] = ece(preds)
    population = population_table(preds, source="probs")
    out |= {f"{m}_probs": _average(population, m) for m in POPULATION_METRICS}
    return out


def uniform_floor(preds: pd.DataFrame) -> dict:
    """Exact scores of the uniform distribution over each scored row's options (all rows with a gold answer
    when none is scored): uniform_log_loss (mean ln K), uniform_brier (1 - 1/K), uniform_rps (ordinal rows)."""
    s = prob_scores(preds)
    rows = s["scored"] if s["scored"].any() else preds["gold_pos"].notna().to_numpy()
    if not rows.any():
        return {}
    # no distribution + a real method: uniform (only the columns prob_scores reads: a copy of the whole table took
    # most of a second per million rows)
    u = preds.loc[rows, ["gold_pos", "pred_pos", "n_options", "ordinal"]].assign(probs_method="counts")
    su = prob_scores(u)
    return {f"uniform_{m}": float(np.nanmean(su[m])) if (~np.isnan(su[m])).any() else NAN for m in PROB_METRICS}


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

    def mean(pairs: list[tuple[float, int]]) -> float:
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


# ---------------------------------------------------------------------------------------------------------------
# Population metrics: does the simulated population answer like the real one, item by item?


def population_table(
    preds: pd.DataFrame,
    by_country: bool = False,
    per_country: Collection[str] | None = None,
    by: str | None = None,
    source: str = "answers",
) -> pd.DataFrame:
    """One row per pair of answer distributions compared: the real answers (gold) against the predicted ones.

    Distributions are histograms over a question's scale positions. A question is pooled over countries, except
    per-country items, whose positions name different options in each country (Q223's party 1 in the USA is not
    party 1 in Japan): they get one distribution per (question, country). `by_country=True` splits every
    question by country. Which questions are per-country: `per_country` if given; else the table's boolean
    `per_country` column if it has one; else COUNTRY_SPECIFIC (Q223 parties, Q290 ethnic groups) and any question
    whose n_options differs between rows. `by` (e.g. "category") adds that column to the grouping; by="country"
    implies by_country.

    Rows without a gold position are left out of both distributions, invalid predictions out of the predicted one.
    Columns: question, country ("" when pooled), [by], ordinal, n_options, n (gold answers), n_pred (valid
    predictions), wasserstein, jsd, kendall_tau. Metrics are NaN where undefined (no valid prediction, a
    one-option scale; for kendall_tau also an all-equal frequency vector).

    source="answers" builds the predicted distribution from the answers (each person one vote on their answer);
    source="probs" from the persons' averaged probabilities (each person spreads one vote over the options as
    their distribution does; rows without one are left out, as invalid answers are).

    wasserstein: 1-Wasserstein distance. Ordinal items on scale positions divided by the scale length
        (n_options - 1), so 0 is identical and 1 is all mass at opposite ends; nominal items with every pair of
        distinct options 1 apart, which is the total variation distance. In [0, 1].
    jsd: Jensen-Shannon divergence in bits (base 2), in [0, 1]. This is the divergence, i.e. the square of what
        scipy.spatial.distance.jensenshannon(p, q, base=2) returns (the distance). Ignores the scale order.
    kendall_tau: Kendall's tau-b between the predicted and real frequencies of the item's options (all n_options
        options, unchosen ones as 0, ties handled by tau-b): 1 when the prediction ranks the options as the
        population does, -1 reversed. Equal to scipy.stats.kendalltau, computed for all groups at once.
    """
    groups = _population_groups(preds, by_country, per_country, by)
    if groups is None:
        return pd.DataFrame(columns=[*_group_keys(by), "ordinal", "n_options", "n", "n_pred", *POPULATION_METRICS])
    gold, pred = groups.histograms()
    if source == "probs":
        pred = groups.prob_histograms(prob_matrix(preds)[groups.rows])
    out = {**groups.labels, "ordinal": groups.ordinal, "n_options": groups.n_options}
    out |= {"n": gold.sum(axis=1), "n_pred": pred.sum(axis=1)}
    out |= _distribution_metrics(gold, pred, groups.n_options, groups.ordinal)
    return pd.DataFrame(out)


def population_wasserstein(
    preds: pd.DataFrame, by_country: bool = False, per_country: Collection[str] | None = None
) -> float:
    """Mean over questions of the 1-Wasserstein distance between predicted and real answer distributions, in [0, 1]
    (see population_table; per-country items and, with by_country, all items are compared per country)."""
    return _average(population_table(preds, by_country, per_country), "wasserstein")


def population_jsd(preds: pd.DataFrame, by_country: bool = False, per_country: Collection[str] | None = None) -> float:
    """Mean over questions of the Jensen-Shannon divergence (base 2, in [0, 1]; the divergence, not its square root)
    between predicted and real answer distributions (see population_table)."""
    return _average(population_table(preds, by_country, per_country), "jsd")


def population_kendall(
    preds: pd.DataFrame, by_country: bool = False, per_country: Collection[str] | None = None
) -> float:
    """Mean over questions of Kendall's tau-b between predicted and real option frequencies (see population_table).

    Questions where tau is undefined (every option predicted equally often, e.g. no valid prediction) are left out
    of the mean; NaN when it is undefined for every question.
    """
    return _average(population_table(preds, by_country, per_country), "kendall_tau")


def population_by(
    preds: pd.DataFrame, by: str = "category", by_country: bool = False, per_country: Collection[str] | None = None
) -> pd.DataFrame:
    """The population metrics per value of `by` (category, country, ...): one row per value with questions (how
    many have a defined Wasserstein distance), n (gold answers) and the mean over questions of wasserstein, jsd
    and kendall_tau, averaged as in summarize. by="country" compares each country's own distributions."""
    table = population_table(preds, by_country, per_country, by=by)
    if table.empty:
        return pd.DataFrame(columns=[by, "questions", "n", *POPULATION_METRICS])
    out = pd.DataFrame({"n": table.groupby(by)["n"].sum()})
    out["questions"] = table[table["wasserstein"].notna()].groupby(by)["question"].nunique()
    out["questions"] = out["questions"].fillna(0).astype(int)
    for metric in POPULATION_METRICS:
        out[metric] = _average(table, metric, by)
    return out.reset_index()[[by, "questions", "n", *POPULATION_METRICS]]


@dataclass
class _Groups:
    """The distributions population_table compares: one group per (question, country or "", [by])."""

    labels: dict[str, np.ndarray]  # key column -> label per group, groups in sorted order
    ordinal: np.ndarray  # per group
    n_options: np.ndarray  # per group: the scale length
    gid: np.ndarray  # per used row (gold answered): its group
    gold_pos: np.ndarray  # per used row
    pred_pos: np.ndarray  # per used row, NaN when invalid
    rows: np.ndarray  # bool per input row: used (has a gold position)

    def histograms(self) -> tuple[np.ndarray, np.ndarray]:
        """(gold, pred) answer counts, groups x widest scale."""
        groups, width = len(self.ordinal), int(self.n_options.max())
        valid = ~np.isnan(self.pred_pos)
        size = groups * width
        gold = np.bincount(self.gid * width + self.gold_pos, minlength=size)
        cells = self.gid[valid] * width + self.pred_pos[valid].astype(int)
        pred = np.bincount(cells, minlength=size)
        return gold.reshape(groups, width), pred.reshape(groups, width)

    def prob_histograms(self, probs: np.ndarray) -> np.ndarray:
        """Summed probabilities (used rows x scale positions, NaN rows: no distribution), groups x widest scale."""
        width = int(self.n_options.max())
        out = np.zeros((len(self.ordinal), width))
        p = np.zeros((len(probs), width))
        p[:, : probs.shape[1]] = np.nan_to_num(probs[:, :width], nan=0.0)
        np.add.at(out, self.gid, p)
        return out


def _group_keys(by: str | None) -> list[str]:
    return ["question", "country"] + ([by] if by and by not in ("question", "country") else [])


def _population_groups(
    preds: pd.DataFrame, by_country: bool, per_country: Collection[str] | None, by: str | None
) -> _Groups | None:
    """Group ids over (question, country or "", [by]) in sorted order, with numpy (a pandas groupby costs ms)."""
    keys = _group_keys(by)
    rows = preds["gold_pos"].notna().to_numpy()
    g = preds[rows]
    if g.empty:
        return None
    split = by_country or by == "country" or g["question"].isin(_per_country_questions(g, per_country)).to_numpy()
    parts = [g["question"].to_numpy(), np.where(split, g["country"].to_numpy(dtype=object), "")]
    parts += [g[by].to_numpy()] if len(keys) > 2 else []
    codes, names = zip(*(pd.factorize(x, sort=True) for x in parts), strict=True)
    key = np.zeros(len(g), dtype=np.int64)
    for c, lab in zip(codes, names, strict=True):
        key = key * len(lab) + c
    uniq, first, gid = np.unique(key, return_index=True, return_inverse=True)
    labels: dict[str, np.ndarray] = {}
    rest = uniq
    for name, lab in reversed(list(zip(keys, names, strict=True))):
        rest, c = np.divmod(rest, len(lab))
        labels[name] = np.asarray(lab, dtype=object)[c]
    gold_pos = g["gold_pos"].to_numpy(float).astype(int)
    pred_pos = g["pred_pos"].to_numpy(float)
    valid = ~np.isnan(pred_pos)
    # a group's scale: its options, stretched if a position lies beyond them (never for well-formed tables)
    n_opt = np.zeros(len(uniq), dtype=int)
    np.maximum.at(n_opt, gid, np.maximum(g["n_options"].to_numpy(int), gold_pos + 1))
    np.maximum.at(n_opt, gid[valid], pred_pos[valid].astype(int) + 1)
    return _Groups(
        labels={k: labels[k] for k in keys},
        ordinal=g["ordinal"].to_numpy(bool)[first],
        n_options=n_opt,
        gid=gid.ravel(),
        gold_pos=gold_pos,
        pred_pos=pred_pos,
        rows=rows,
    )


def _distribution_metrics(
    gold: np.ndarray, pred: np.ndarray, n_options: np.ndarray, ordinal: np.ndarray
) -> dict[str, np.ndarray]:
    """wasserstein, jsd and kendall_tau of count histograms (..., groups, width); NaN where undefined."""
    mask = np.arange(gold.shape[-1]) < n_options[:, None]
    defined = (pred.sum(axis=-1) > 0) & (n_options >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = gold / gold.sum(axis=-1, keepdims=True)
        q = pred / pred.sum(axis=-1, keepdims=True)
        w1 = np.abs(np.cumsum(p - q, axis=-1) * mask).sum(axis=-1) / np.maximum(n_options - 1, 1)
        tv = 0.5 * np.abs(p - q).sum(axis=-1)
        width = gold.shape[-1]
        flat_mask = np.broadcast_to(mask, gold.shape).reshape(-1, width)
        tau = _kendall_tau_b(pred.reshape(-1, width), gold.reshape(-1, width), flat_mask)
    return {
        "wasserstein": np.where(defined, np.where(ordinal, w1, tv), np.nan),
        "jsd": np.where(defined, _jsd(p, q), np.nan),
        "kendall_tau": np.where(defined, tau.reshape(defined.shape), np.nan),
    }


def _question_means(values: np.ndarray, weights: np.ndarray, question: np.ndarray) -> np.ndarray:
    """Mean over questions of values (..., groups): within a question, groups (countries) weighted by their gold
    answers; NaN values left out; NaN where no question has a value."""
    onehot = (question[:, None] == np.arange(question.max() + 1)).astype(float)
    ok = ~np.isnan(values)
    w = np.where(ok, weights, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_question = (np.where(ok, values, 0.0) * w) @ onehot / (w @ onehot)
    defined = ~np.isnan(per_question)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, per_question, 0.0).sum(axis=-1) / defined.sum(axis=-1)


def _per_country_questions(preds: pd.DataFrame, per_country: Collection[str] | None) -> set:
    if per_country is not None:
        return set(per_country)
    if "per_country" in preds:
        return set(preds.loc[preds["per_country"].astype(bool), "question"])
    q, questions = pd.factorize(preds["question"].to_numpy())
    n_options = preds["n_options"].to_numpy(int)
    low, high = np.full(len(questions), n_options.max(initial=0)), np.zeros(len(questions), dtype=int)
    np.minimum.at(low, q, n_options)
    np.maximum.at(high, q, n_options)
    return set(COUNTRY_SPECIFIC) | set(np.asarray(questions)[low < high])


def _average(table: pd.DataFrame, metric: str, by: str | None = None) -> float | pd.Series:
    """Mean over questions of a metric; a question split by country is first the mean over its countries weighted
    by their gold answers (a country with 3 respondents does not count as much as one with 1,000). NaN entries
    are left out; NaN when nothing is defined."""
    if by is None:
        if table.empty:
            return NAN
        q, _ = pd.factorize(table["question"].to_numpy())
        return float(_question_means(table[metric].to_numpy(float), table["n"].to_numpy(float), q))
    t = table[table[metric].notna()]
    sums = t.assign(x=t[metric] * t["n"]).groupby([by, "question"])[["x", "n"]].sum()
    per_question = (sums["x"] / sums["n"]).groupby(level=0).mean()
    return per_question.reindex(pd.Index(pd.unique(table[by].to_numpy()), name=by))


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence in bits of distributions p and q (rows sum to 1)."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=-1)

    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0)


def _kendall_tau_b(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Kendall tau-b of x and y over the columns where mask is true (NaN when either is all ties).

    tau-b = (concordant - discordant) / sqrt(pairs not tied in x * pairs not tied in y), over all pairs of columns.
    """
    groups, width = x.shape
    out = np.full(groups, np.nan)
    step = max(1, 2_000_000 // (width * width))
    for s in range(0, groups, step):
        xs, ys, ms = x[s : s + step], y[s : s + step], mask[s : s + step]
        pairs = ms[:, :, None] & ms[:, None, :]
        dx = np.sign(xs[:, :, None] - xs[:, None, :]) * pairs
        dy = np.sign(ys[:, :, None] - ys[:, None, :]) * pairs
        untied = np.sqrt((dx != 0).sum(axis=(1, 2)).astype(float) * (dy != 0).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + step] = np.where(untied > 0, (dx * dy).sum(axis=(1, 2)) / untied, np.nan)
    return out


def distributions(
    preds: pd.DataFrame, by_country: bool = False, per_country: Collection[str] | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, bool]]:
    """(question, gold distribution, predicted distribution, ordinal) per compared group, over scale positions, in
    population_table's order and groups (per-country items split by country, every item with by_country).
    A per-group view for plots and checks; the metrics use population_table, which computes all groups at once."""
    split = _per_country_questions(preds, per_country)
    for question, g in preds.groupby("question"):
        g = g[g["gold_pos"].notna()]  # a gold answer that is not an option has no place on the scale
        parts = g.groupby("country") if by_country or question in split else [(None, g)]
        for _, part in parts:
            n = int(part["n_options"].max()) if len(part) else 0
            pred = part["pred_pos"].dropna().astype(int)
            if len(pred) == 0 or n < 2:
                continue
            gold = np.bincount(part["gold_pos"].astype(int), minlength=n) / len(part)
            yield question, gold, np.bincount(pred, minlength=n) / len(pred), bool(part["ordinal"].iloc[0])


def _item_scores(preds: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per row, as numpy arrays: ordinal, invalid, correct, nerr (normalized error, 1 when invalid or gold is not
    an option) and within_one. The one definition of the per-item metrics (summarize, breakdown, stats)."""
    ordinal = preds["ordinal"].to_numpy(bool)
    pred = preds["pred_pos"].to_numpy(float)
    diff = np.abs(pred - preds["gold_pos"].to_numpy(float))  # NaN when either is missing: wrong, error 1
    scale = np.maximum(preds["n_options"].to_numpy(float) - 1, 1)
    return {
        "ordinal": ordinal,
        "invalid": np.isnan(pred),
        "correct": diff == 0,
        "nerr": np.where(np.isnan(diff), 1.0, diff / scale),
        "within_one": np.where(ordinal, diff <= 1, diff == 0),
    }


def _derived(preds: pd.DataFrame) -> pd.DataFrame:
    return preds.assign(**_item_scores(preds))
