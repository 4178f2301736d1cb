"""`ml`: a trained classifier per held-out question, the baseline a practitioner would pick instead of kNN.

Fitted on TRAINING respondents only. Features: the person's known answers (missing where not known, as for
kNN), the free-number demographics (age, year of birth, household size, children), the country and the number
of known value answers.

History: a question's model is trained on the benchmark rows of the fold in which that question is held out,
each training respondent `copies` times, each copy at a history size drawn from `histories`, showing exactly what
a dev person shows at that size (demographics + the first k answers of their seeded profile order). The training
inputs thus have the test inputs' missingness, including that the fold's other held-out questions are never
known; one model per question serves every history size, and the program needs no history setting: what is not
in `known` is missing. (A model per history size would need the size at prediction time, which the program
interface does not carry, and a fit per size.)

Model, chosen on DEV accuracy of 10 fold-1 questions (12,875 items per history; never on test):

    fold 1, 10 questions                      h=0    h=58   h=116  h=232   CPU s per question fit
    knn (k=25)                                0.502  0.564  0.579  0.580
    hgb, 2 copies, top 40, 20 it, 8 leaves    0.522  0.584  0.617  0.646  0.4   (default)
    hgb, 2 copies, top 60, 30 it, 15 leaves   0.523  0.581  0.614  0.643  0.8
    hgb, 5 copies, top 60, 30 it, 15 leaves   0.520  0.582  0.613  0.646  1.9
    hgb, 1 copy, all items, 30 it, 15 leaves  0.526  0.576  -      0.643  ~5
    logreg one-hot, 2 copies, C=0.003         0.519  0.568  0.608  0.634  1.3
    logreg one-hot, 2 copies, C=0.01          0.522  0.564  0.598  0.628  1.2
    logreg one-hot, 2 copies, C=0.05          0.516  0.538  0.568  0.608  1.6

`hgb` (default): HistGradientBoostingClassifier (native missing values, nominal answers as categories) on the
`top` closed items with the highest mutual information with the question's answer (over the training
respondents' whole profiles), plus the free numbers, country and known count. It beats the best logistic
regression at every history size: a linear model on one-hot answers cannot change its weights with how much is
known (demographics matter at h=0, other answers at h=232), trees split on the known count and on missingness.
`logreg`: multinomial LogisticRegression on one-hot answers (missing = no indicator on), kept as an option.

The answer is the most probable of the item's options (ties to the first option); its distribution is
predict_proba restricted to the item's options and renormalized. A question no fold holds out, a person none of
whose options the model saw, and a person of whom nothing is known but the country (the `reference` protocol at
history 0, where demographics are part of the shuffled profile) get the country majority and its smoothed shares:
with the country alone, those are what the model can at best approximate (its boosted trees, trained on a mix of
history sizes, stayed under them there: BENCHMARKS §11). Fits are kept per process (keyed by
dataset fingerprint, protocol and settings), so a bench over history sizes fits each question once; prediction is
one predict_proba per question for the batch's persons who are asked it. OpenMP runs `threads` threads (1: on
shared busy cores more threads spin-wait and fit many times slower).
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from valuesim.data.catalog import NUMERIC_ITEMS, Catalog
from valuesim.programs.statistical import (
    CountryMajority,
    Guess,
    Item,
    _Fitted,
    choose_smoothing,
    group_persons,
    option_codes,
    smoothed,
)

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark

# (model, the feature columns it reads; None: all) for one question
Fit = tuple[Any, np.ndarray | None]
# inputs of the training copies, held-out (row, answer) pairs per question, ranked items per question
Training = tuple[np.ndarray, dict[str, list[tuple[int, int]]], dict[str, np.ndarray]]

HISTORIES = (0, 58, 116, 174, 232)
MAX_CATEGORIES = 254  # HistGradientBoostingClassifier: categories per feature < max_bins (255)
MODELS = ("hgb", "logreg")
_FITS: dict[tuple, dict] = {}  # (fingerprint, protocol, settings) -> {question: fitted model or None}


class Features:
    """Persons (country, known answers) as model inputs, the same encoding for training and prediction."""

    def __init__(self, train: pd.DataFrame, catalog: Catalog):
        self.closed = [q.code for q in catalog if not q.open and q.code in train]
        self.numeric = [c for c in catalog.codes if c in NUMERIC_ITEMS and c in train]
        self.codes = self.closed + self.numeric
        self.column = {c: j for j, c in enumerate(self.codes)}
        self.is_value = np.array([catalog[c].kind == "value" for c in self.codes])
        self.nominal = np.array([not catalog[c].ordinal for c in self.closed] + [False] * len(self.numeric))
        self.countries = sorted(train["country"].dropna().unique())
        values = train[self.closed].to_numpy(dtype="float64", na_value=np.nan)
        # each closed item's answer codes seen in training: categories (hgb) and one-hot columns (logreg)
        self.universe = [self.categories(values[:, j]) for j in range(len(self.closed))]
        numeric = train[self.numeric].to_numpy(dtype="float64", na_value=np.nan)
        self.center = np.nanmean(numeric, axis=0) if len(self.numeric) else np.zeros(0)
        self.spread = np.nan_to_num(np.nanstd(numeric, axis=0), nan=1.0) + 1e-9 if len(self.numeric) else np.zeros(0)
        self.center = np.nan_to_num(self.center)

    @staticmethod
    def categories(column: np.ndarray) -> np.ndarray:
        """The answer codes of one item (sorted), at most MAX_CATEGORIES of them: the most frequent. Per-country
        items of the whole WVS-7 (parties, Q223; ethnic groups, Q290) have ~500 codes over 66 countries, and
        HistGradientBoosting takes at most 255 categories per feature; rarer codes count as unknown answers."""
        codes, counts = np.unique(column[~np.isnan(column)], return_counts=True)
        if len(codes) <= MAX_CATEGORIES:
            return codes
        return np.sort(codes[np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]])

    def raw(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        """(persons x codes) known answer codes, NaN where unknown."""
        out = np.full((len(persons), len(self.codes)), np.nan)
        for i, (_, known) in enumerate(persons):
            cols = np.fromiter((self.column.get(code, -1) for code in known), np.int64, len(known))
            answers = np.array(list(known.values()), dtype="float64")
            out[i, cols[cols >= 0]] = answers[cols >= 0]
        return out

    def country_index(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        index = {c: n for n, c in enumerate(self.countries)}
        return np.array([index.get(c, np.nan) for c, _ in persons], dtype="float64")

    def for_hgb(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        """Answer codes (nominal ones as category numbers, unseen codes missing), the country as a category and
        the number of known value answers (how much of the profile is known)."""
        x = self.raw(persons)
        n_values = (~np.isnan(x[:, self.is_value])).sum(axis=1)
        for j in np.flatnonzero(self.nominal):
            u = self.universe[j]
            pos = np.searchsorted(u, x[:, j]).clip(max=max(len(u) - 1, 0))
            hit = (len(u) > 0) & (u[pos] == x[:, j]) if len(u) else np.zeros(len(x), dtype=bool)
            x[:, j] = np.where(hit, pos, np.nan)
        return np.column_stack([x, self.country_index(persons), n_values]).astype("float32")

    @property
    def hgb_categorical(self) -> np.ndarray:
        return np.concatenate([self.nominal, [True, False]])

    def for_logreg(self, persons: list[tuple[str, dict]]) -> sp.csr_matrix:
        """One-hot answers (no column on when unknown), standardized free numbers with missing indicators, the
        country one-hot, the known share of the profile."""
        x = self.raw(persons)
        blocks = []
        for j in range(len(self.closed)):
            u = self.universe[j]
            if len(u):
                blocks.append(sp.csr_matrix((x[:, j][:, None] == u[None, :]).astype("float64")))
        numeric = x[:, len(self.closed) :]
        missing = np.isnan(numeric)
        blocks.append(sp.csr_matrix(np.where(missing, 0.0, (numeric - self.center) / self.spread)))
        blocks.append(sp.csr_matrix(missing.astype("float64")))
        country = self.country_index(persons)
        blocks.append(sp.csr_matrix((country[:, None] == np.arange(len(self.countries))[None, :]).astype("float64")))
        blocks.append(sp.csr_matrix((~np.isnan(x[:, self.is_value])).sum(axis=1, keepdims=True) / 232.0))
        return sp.hstack(blocks, format="csr")


def estimators() -> tuple[type, type]:
    """scikit-learn's estimators, imported on first use (import valuesim stays cheap). Call before limiting threads:
    threadpool_limits only reaches OpenMP once sklearn has loaded it; imported inside the limit, the first fits
    ran unlimited and, on busy shared cores, 7x slower."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return HistGradientBoostingClassifier, LogisticRegression


def load_rows(bench: Benchmark, protocol: str, fold: int) -> list[dict[str, Any]]:
    """The training respondents' benchmark rows of one fold (what a dev person's inputs are built from)."""
    return list(bench.rows(protocol, "train", fold))


class TrainedModel(_Fitted):
    """A classifier per held-out question on training respondents (see the module docstring)."""

    # passed by from_benchmark, not settings a user gives: the protocol is the run's (valuesim.run.runner passes it),
    # so the models learn from training inputs shaped as the dev inputs they will see
    wired = ("folds", "cache_key", "protocol")

    def __init__(
        self,
        train: pd.DataFrame,
        catalog: Catalog,
        folds: Mapping[int, list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]] | None = None,
        model: Literal["hgb", "logreg"] = "hgb",
        max_iter: Annotated[int, Field(ge=1)] = 20,
        copies: Annotated[int, Field(ge=1)] = 2,
        top: Annotated[int, Field(ge=1)] = 40,
        threads: Annotated[int, Field(ge=1)] = 1,
        c: Annotated[float, Field(gt=0)] = 0.003,
        learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.15,
        leaves: Annotated[int, Field(ge=2)] = 8,
        histories: str = ",".join(map(str, HISTORIES)),
        protocol: str = "values",
        cache_key: tuple | None = None,
        smoothing: Annotated[float, Field(ge=0)] | None = None,
    ):
        """`folds`: fold -> the training respondents' benchmark rows of that fold (person_id, country,
        demographics, profile, heldout), or a callable returning them (loaded on first use). `smoothing`: of the
        country shares that answer where no model does (None: chosen on training persons as for `country`)."""
        super().__init__(train, catalog, smoothing)
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        self.model, self.max_iter, self.copies, self.top, self.threads = model, max_iter, copies, top, threads
        self.c = c  # logreg: inverse L2 strength
        self.learning_rate, self.leaves = learning_rate, leaves  # hgb
        self.histories = [int(h) for h in str(histories).split(",")]
        self.features = Features(self.train, catalog)
        self.folds = folds or {}
        self._rows: dict[int, list[dict]] = {}
        self._fold_of: dict[str, int] = {}
        self._training: dict[int, Training] = {}
        settings = (protocol, model, max_iter, copies, top, c, learning_rate, leaves, tuple(self.histories))
        key = (*cache_key, *settings) if cache_key else None
        self.fits: dict[str, Fit | None] = _FITS.setdefault(key, {}) if key else {}

    @classmethod
    def from_benchmark(cls, bench: Benchmark, protocol: str = "values", **settings: Any) -> TrainedModel:
        """Fitted lazily on the benchmark's training respondents and their rows in `protocol` of each fold;
        fits are shared by every program built from the same benchmark and settings in this process."""
        folds = {f: functools.partial(load_rows, bench, protocol, f) for f in range(1, bench.manifest["folds"] + 1)}
        return cls(bench.respondents("train"), bench.catalog, folds, protocol=protocol,
                   cache_key=(bench.fingerprint,), **settings)  # fmt: skip

    def prepare(self) -> None:
        """The smoothing and tallies built, and the fitting data dropped: a batch task's copy of a program whose
        models are fitted needs neither the training rows nor their inputs (millions of Python objects, unpickled
        in each task: a --ray run of `ml` took 71 s per cell where one process took 14). A question without a model
        reloads them."""
        super().prepare()
        self._rows.clear()
        self._training.clear()

    def smoothing_constant(self) -> float:
        """The country fallback's smoothing, chosen as the `country` program chooses its own."""
        if self.smoothing is None:
            self.smoothing = choose_smoothing(CountryMajority(self.train, self.catalog))
        return self.smoothing

    def rows(self, fold: int) -> list[dict]:
        if fold not in self._rows:
            rows = self.folds[fold]
            self._rows[fold] = rows() if callable(rows) else rows
            for row in self._rows[fold]:
                for item in row["heldout"]:
                    self._fold_of.setdefault(item["q"], fold)
        return self._rows[fold]

    def fold_of(self, question: str) -> int | None:
        """The fold whose held-out set has the question (folds are read until one has it)."""
        for fold in self.folds:
            if question in self._fold_of:
                break
            self.rows(fold)
        return self._fold_of.get(question)

    def training(self, fold: int) -> Training:
        """Inputs of the training respondents (`copies` per person, each at a history size from `histories`),
        their held-out answers by question, and for hgb each question's most informative items."""
        if fold not in self._training:
            persons, answers, full = [], [], []
            for row in self.rows(fold):
                demographics, profile = row["demographics"], row["profile"]
                for c in range(self.copies):
                    k = self.history_of(row["person_id"], c)
                    known = {i["q"]: i["a"] for i in [*demographics, *profile[:k]]}
                    persons.append((row["country"], known))
                    answers.append(row["heldout"])
                full.append((row["country"], {i["q"]: i["a"] for i in [*demographics, *profile]}))
            targets: dict[str, list[tuple[int, int]]] = {}
            for n, heldout in enumerate(answers):
                for item in heldout:
                    targets.setdefault(item["q"], []).append((n, item["a"]))
            if self.model == "hgb":
                x = self.features.for_hgb(persons)
                ranked = self.ranked_items(full, [r["heldout"] for r in self.rows(fold)])
            else:
                x, ranked = self.features.for_logreg(persons), {}
            self._training[fold] = (x, targets, ranked)
        return self._training[fold]

    def history_of(self, person_id: str, copy: int) -> int:
        """The history size of a training copy: each size once when copies == len(histories), else drawn."""
        if self.copies == len(self.histories):
            return self.histories[copy]
        return self.histories[zlib.crc32(f"{person_id}|{copy}".encode()) % len(self.histories)]

    def ranked_items(self, persons: list[tuple[str, dict]], heldout: list[list[dict]]) -> dict[str, np.ndarray]:
        """Per held-out question, the closed items ranked by mutual information with its answer over the training
        respondents' whole profiles: one contingency matrix (item answers x question answers) for all pairs."""
        f = self.features
        x = f.raw(persons)[:, : len(f.closed)]
        item_of = np.concatenate([np.full(len(u), j) for j, u in enumerate(f.universe)]).astype(np.int64)
        codes = np.concatenate(f.universe)
        onehot = (x[:, item_of] == codes[None, :]).astype("float64")  # (persons x item answers)
        questions = sorted({i["q"] for h in heldout for i in h})
        classes = {q: sorted({i["a"] for h in heldout for i in h if i["q"] == q}) for q in questions}
        col: dict[tuple[str, int], int] = {}
        for q in questions:
            for a in classes[q]:
                col[(q, a)] = len(col)
        y = np.zeros((len(persons), len(col)))
        for n, h in enumerate(heldout):
            for i in h:
                y[n, col[(i["q"], i["a"])]] = 1.0
        q_of = np.array([questions.index(q) for q, _ in col], dtype=np.int64)
        n_ab = onehot.T @ y  # (item answers x question answers) counts over persons who gave both
        item_starts = np.flatnonzero(np.r_[True, item_of[1:] != item_of[:-1]])
        q_starts = np.flatnonzero(np.r_[True, q_of[1:] != q_of[:-1]])
        n_aq = np.add.reduceat(n_ab, q_starts, axis=1)  # answer a of the item, question q answered
        n_jb = np.add.reduceat(n_ab, item_starts, axis=0)  # item answered, answer b of the question
        n_jq = np.add.reduceat(n_aq, item_starts, axis=0)
        j = np.searchsorted(item_starts, np.arange(len(item_of)), side="right") - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = n_ab * n_jq[j][:, q_of] / (n_aq[:, q_of] * n_jb[j])
            term = np.where(n_ab > 0, n_ab * np.log(ratio), 0.0)
            mi = np.add.reduceat(np.add.reduceat(term, q_starts, axis=1), item_starts, axis=0) / n_jq
        mi = np.nan_to_num(mi, nan=0.0)
        items = item_of[item_starts]
        return {q: items[np.argsort(-mi[:, n], kind="stable")][mi[np.argsort(-mi[:, n], kind="stable"), n] > 0]
                for n, q in enumerate(questions)}  # fmt: skip

    def fitted(self, question: str) -> Fit | None:
        """The question's model (fitted on first use), None when no fold holds the question out."""
        if question not in self.fits:
            fold = self.fold_of(question)
            self.fits[question] = None if fold is None else self.fit(*self.training(fold), question)
        return self.fits[question]

    def fit(
        self,
        x: np.ndarray,
        targets: dict[str, list[tuple[int, int]]],
        ranked: dict[str, np.ndarray],
        question: str,
    ) -> Fit | None:
        """(model, columns it reads) for the question, None when there is nothing to learn."""
        args = self.fit_args(x, targets, ranked, question)
        return None if args is None else fit_one(x, *args)

    def fit_args(
        self,
        x: np.ndarray,
        targets: dict[str, list[tuple[int, int]]],
        ranked: dict[str, np.ndarray],
        question: str,
    ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """What `fit_one` takes besides x for the question (estimator settings, training rows, answers, columns);
        None when there is nothing to learn."""
        pairs = targets.get(question, [])
        if not pairs:
            return None
        rows = np.array([n for n, _ in pairs])
        y = np.array([a for _, a in pairs], dtype="int64")
        if len(np.unique(y)) < 2:  # one answer for everyone: nothing to learn, the majority answers
            return None
        spec = {"model": self.model, "max_iter": self.max_iter, "threads": self.threads, "c": self.c,
                "learning_rate": self.learning_rate, "leaves": self.leaves}  # fmt: skip
        if self.model != "hgb":
            return spec, rows, y, None
        f = self.features
        chosen = ranked.get(question, np.zeros(0, dtype=np.int64))
        chosen = np.sort(chosen[: self.top] if self.top else chosen)
        cols = np.concatenate([chosen, np.arange(len(f.closed), x.shape[1])])  # + numbers, country, count
        return spec | {"categorical": f.hgb_categorical}, rows, y, cols

    def fit_in_parallel(self, run: Callable[[Callable, Any, list[tuple]], list], questions: Iterable[str]) -> None:
        """Fit the models of `questions` not fitted yet, fold by fold: `run(fit_one, x, args)` returns
        `[fit_one(x, *a) for a in args]`, computed by parallel Ray tasks in a --ray run (valuesim/run/cluster.py)."""
        by_fold: dict[int, list[str]] = {}
        for question in sorted(set(questions) - set(self.fits)):
            fold = self.fold_of(question)
            if fold is None:
                self.fits[question] = None
            else:
                by_fold.setdefault(fold, []).append(question)
        for fold, todo in by_fold.items():
            x, targets, ranked = self.training(fold)
            args = {q: a for q in todo if (a := self.fit_args(x, targets, ranked, q)) is not None}
            fits = dict(zip(args, run(fit_one, x, list(args.values())), strict=True))
            self.fits.update({q: fits.get(q) for q in todo})

    def predict_batch(self, items: list[Item]) -> list[Guess]:
        """Per question asked in the batch: its model (fitted on first use) on the batch's persons who are asked
        it. OpenMP/BLAS limited to `threads` (on shared, busy cores more threads spin and run many times slower)."""
        estimators()
        with threadpool_limits(self.threads):
            return self._predict(items)

    def _predict(self, items: list[Item]) -> list[Guess]:
        persons, person_of = group_persons(items)
        answers: list[Guess | None] = [None] * len(items)
        by_question: dict[str, list[int]] = {}
        for n, item in enumerate(items):
            if item["known"]:  # a person of whom nothing is known but the country: the country's shares answer
                by_question.setdefault(item["question_code"], []).append(n)
        encoded = None
        for question, which in by_question.items():
            fitted = self.fitted(question)
            if fitted is None:
                continue
            model, keep = fitted
            if encoded is None:  # the batch's persons, encoded once
                encoded = self.features.for_hgb(persons) if self.model == "hgb" else self.features.for_logreg(persons)
            x = encoded[person_of[which]]
            proba = model.predict_proba(x if keep is None else x[:, keep])
            classes = model.classes_.astype("float64")
            for i, n in enumerate(which):
                answers[n] = model_guess(proba[i], classes, items[n]["options"])
        a = self.smoothing_constant() if any(g is None for g in answers) else 0.0
        return [
            g if g is not None else smoothed(self.country_or_global(i["question_code"], i["options"], i["country"]),
                                             i["options"], a)
            for i, g in zip(items, answers, strict=True)
        ]  # fmt: skip


def fit_one(x: np.ndarray, spec: dict, rows: np.ndarray, y: np.ndarray, cols: np.ndarray | None) -> Fit:
    """One question's model on training rows `rows` of `x` (answers `y`); hgb reads the columns `cols` of them
    that any row knows."""
    HistGradientBoostingClassifier, LogisticRegression = estimators()
    with warnings.catch_warnings(), threadpool_limits(spec["threads"]):
        warnings.simplefilter("ignore")  # convergence warnings at a small max_iter
        if cols is None:
            model = LogisticRegression(C=spec["c"], max_iter=spec["max_iter"])
            return model.fit(x[rows], y), None
        xq = x[rows][:, cols]
        known = ~np.isnan(xq).all(axis=0)
        cols, xq = cols[known], xq[:, known]
        model = HistGradientBoostingClassifier(
            max_iter=spec["max_iter"],
            learning_rate=spec["learning_rate"],
            max_leaf_nodes=spec["leaves"],
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=spec["categorical"][cols],
            early_stopping=False,
            random_state=0,
        )
        return model.fit(xq, y), cols


def model_guess(proba: np.ndarray, classes: np.ndarray, options: dict) -> Guess | None:
    """predict_proba restricted to the item's options and renormalized (an option the model never saw: 0), the
    answer its most probable option (ties to the first option); None when the model knows none of the options."""
    index = {c: n for n, c in enumerate(classes)}
    p = np.array([proba[index[number]] if number in index else 0.0 for number in option_codes(options)])
    if not any(number in index for number in option_codes(options)) or not p.sum() > 0:
        return None
    best = -1.0
    answer = None
    for code, number, value in zip(options, option_codes(options), p, strict=True):
        if number in index and value > best:
            best, answer = value, code
    return Guess(answer, dict(zip(options, (p / p.sum()).tolist(), strict=True)), "model")
