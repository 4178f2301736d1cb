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
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    from datasets import Dataset

    from valuesim.data.benchmark import Benchmark

# (model, the feature columns it reads; None: all) for one question
Fit = tuple[Any, np.ndarray | None]
# inputs of the training copies, per question the copies that answered it and their answers, ranked items per question
Training = tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]

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

    def country_index(self, countries: Iterable[str]) -> np.ndarray:
        index = {c: n for n, c in enumerate(self.countries)}
        return np.array([index.get(c, np.nan) for c in countries], dtype="float64")

    def encoded(self, persons: list[tuple[str, dict]], model: str) -> np.ndarray | sp.csr_matrix:
        """The persons as `model` reads them."""
        x, countries = self.raw(persons), self.country_index(c for c, _ in persons)
        return self.for_hgb(x, countries) if model == "hgb" else self.for_logreg(x, countries)

    def for_hgb(self, x: np.ndarray, country: np.ndarray) -> np.ndarray:
        """From `raw` answers and `country_index`: answer codes (nominal ones as category numbers, unseen codes
        missing), the country as a category and the number of known value answers (how much of the profile is
        known)."""
        n_values = (~np.isnan(x[:, self.is_value])).sum(axis=1)
        for j in np.flatnonzero(self.nominal):
            u = self.universe[j]
            pos = np.searchsorted(u, x[:, j]).clip(max=max(len(u) - 1, 0))
            hit = (len(u) > 0) & (u[pos] == x[:, j]) if len(u) else np.zeros(len(x), dtype=bool)
            x[:, j] = np.where(hit, pos, np.nan)
        return np.column_stack([x, country, n_values]).astype("float32")

    @property
    def hgb_categorical(self) -> np.ndarray:
        return np.concatenate([self.nominal, [True, False]])

    def for_logreg(self, x: np.ndarray, country: np.ndarray) -> sp.csr_matrix:
        """From `raw` answers and `country_index`: one-hot answers (no column on when unknown), standardized free
        numbers with missing indicators, the country one-hot, the known share of the profile."""
        blocks = []
        for j in range(len(self.closed)):
            u = self.universe[j]
            if len(u):
                blocks.append(sp.csr_matrix((x[:, j][:, None] == u[None, :]).astype("float64")))
        numeric = x[:, len(self.closed) :]
        missing = np.isnan(numeric)
        blocks.append(sp.csr_matrix(np.where(missing, 0.0, (numeric - self.center) / self.spread)))
        blocks.append(sp.csr_matrix(missing.astype("float64")))
        blocks.append(sp.csr_matrix((country[:, None] == np.arange(len(self.countries))[None, :]).astype("float64")))
        blocks.append(sp.csr_matrix((~np.isnan(x[:, self.is_value])).sum(axis=1, keepdims=True) / 232.0))
        return sp.hstack(blocks, format="csr")


class Answers:
    """One list-of-answers column of a fold's rows ({"q", "a"} lists: demographics, profile or held-out answers) as
    flat arrays: each answer's row, its position in the row's list, its question (an index into `codes`) and its
    answer code."""

    def __init__(self, column: pa.ChunkedArray):
        lists = column.combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
        # int32: a fold of the whole WVS-7 has 17 million answers
        self.row = np.repeat(np.arange(len(lists), dtype=np.int32), lengths)
        self.pos = (np.arange(len(self.row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
        flat = pc.list_flatten(lists)
        if pa.types.is_null(flat.type):  # a column empty in every row (the reference protocol's demographics)
            flat = pa.array([], pa.struct([("q", pa.string()), ("a", pa.int64())]))
        questions = flat.field("q").dictionary_encode()
        self.q = questions.indices.to_numpy(zero_copy_only=False)
        self.codes: list[str] = questions.dictionary.to_pylist()
        self.a = flat.field("a").to_numpy(zero_copy_only=False)

    def columns(self, column: dict[str, int]) -> np.ndarray:
        """Each answer's feature column (-1: not a feature)."""
        return np.array([column.get(c, -1) for c in self.codes], dtype=np.int64)[self.q]


class FoldRows:
    """A fold's training rows (`Benchmark.rows` or a list of their dicts) as arrays: the whole WVS-7's 58,324
    training rows hold 17 million answers, 4.7 GB as Python dicts."""

    def __init__(self, rows: Dataset | list[dict[str, Any]]):
        table = pa.Table.from_pylist(rows) if isinstance(rows, list) else rows.with_format("arrow")[:]
        self.person_id: list[str] = table.column("person_id").to_pylist()
        self.country: list[str] = table.column("country").to_pylist()
        self.demographics, self.profile, self.heldout = (
            Answers(table.column(c)) for c in ("demographics", "profile", "heldout")
        )

    def __len__(self) -> int:
        return len(self.person_id)

    def raw(self, features: Features, histories: np.ndarray) -> np.ndarray:
        """`Features.raw` of copies of the rows: (rows x copies) x codes, copy j of row r (line r * copies + j)
        knowing the demographics and the first histories[r, j] profile answers (NaN for none: the whole profile)."""
        copies = histories.shape[1]
        out = np.full((len(self) * copies, len(features.codes)), np.nan)
        for answers, shown in ((self.demographics, None), (self.profile, histories)):
            col = answers.columns(features.column)
            for j in range(copies):
                keep = col >= 0
                if shown is not None:
                    keep &= ~(answers.pos >= shown[answers.row, j])  # a NaN size keeps every answer
                out[answers.row[keep].astype(np.int64) * copies + j, col[keep]] = answers.a[keep]
        return out

    def targets(self, copies: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per held-out question, the training copies (lines of `raw`) that answered it, in order, and their
        answers."""
        h = self.heldout
        lines = (h.row.astype(np.int64)[:, None] * copies + np.arange(copies)).ravel()
        q, a = np.repeat(h.q, copies), np.repeat(h.a, copies)
        order = np.lexsort((lines, q))
        q, lines, a = q[order], lines[order], a[order]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        return {h.codes[q[s]]: (lines[s:e], a[s:e]) for s, e in zip(starts, [*starts[1:], len(q)], strict=True)}

    def heldout_questions(self) -> set[str]:
        return {self.heldout.codes[q] for q in np.unique(self.heldout.q)}


def estimators() -> tuple[type, type]:
    """scikit-learn's estimators, imported on first use (import valuesim stays cheap). Call before limiting threads:
    threadpool_limits only reaches OpenMP once sklearn has loaded it; imported inside the limit, the first fits
    ran unlimited and, on busy shared cores, 7x slower."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return HistGradientBoostingClassifier, LogisticRegression


def load_rows(bench: Benchmark, protocol: str, fold: int) -> FoldRows:
    """The training respondents' benchmark rows of one fold (what a dev person's inputs are built from)."""
    return FoldRows(bench.rows(protocol, "train", fold))


class TrainedModel(_Fitted):
    """A classifier per held-out question on training respondents (see the module docstring)."""

    # passed by from_benchmark, not settings a user gives: the protocol is the run's (valuesim.run.runner passes it),
    # so the models learn from training inputs shaped as the dev inputs they will see
    wired = ("folds", "cache_key", "protocol")

    def __init__(
        self,
        train: pd.DataFrame,
        catalog: Catalog,
        folds: Mapping[int, FoldRows | list[dict[str, Any]] | Callable[[], FoldRows]] | None = None,
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
        self._rows: dict[int, FoldRows] = {}
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
        models are fitted needs neither the training rows nor their inputs (then millions of Python objects, unpickled
        in each task: a --ray run of `ml` took 71 s per cell where one process took 14; arrays now, still hundreds
        of MB per task). A question without a model reloads them."""
        super().prepare()
        self._rows.clear()
        self._training.clear()

    def smoothing_constant(self) -> float:
        """The country fallback's smoothing, chosen as the `country` program chooses its own."""
        if self.smoothing is None:
            self.smoothing = choose_smoothing(CountryMajority(self.train, self.catalog))
        return self.smoothing

    def rows(self, fold: int) -> FoldRows:
        if fold not in self._rows:
            rows = self.folds[fold]
            rows = rows() if callable(rows) else rows
            self._rows[fold] = rows if isinstance(rows, FoldRows) else FoldRows(rows)
            for question in sorted(self._rows[fold].heldout_questions()):
                self._fold_of.setdefault(question, fold)
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
        which copies answered each held-out question and how, and for hgb each question's most informative
        items."""
        if fold not in self._training:
            rows, f = self.rows(fold), self.features
            sizes = np.array([[self.history_of(p, c) for c in range(self.copies)] for p in rows.person_id], float)
            x = rows.raw(f, sizes.reshape(len(rows), self.copies))
            country = np.repeat(f.country_index(rows.country), self.copies)
            if self.model == "hgb":
                ranked = self.ranked_items(rows.raw(f, np.full((len(rows), 1), np.nan)), rows)
                x = f.for_hgb(x, country)
            else:
                x, ranked = f.for_logreg(x, country), {}
            self._training[fold] = (x, rows.targets(self.copies), ranked)
        return self._training[fold]

    def history_of(self, person_id: str, copy: int) -> int:
        """The history size of a training copy: each size once when copies == len(histories), else drawn."""
        if self.copies == len(self.histories):
            return self.histories[copy]
        return self.histories[zlib.crc32(f"{person_id}|{copy}".encode()) % len(self.histories)]

    def ranked_items(self, x: np.ndarray, rows: FoldRows) -> dict[str, np.ndarray]:
        """Per held-out question, the closed items ranked by mutual information with its answer over the training
        respondents' whole profiles (`x`: their `raw` answers): one contingency matrix (item answers x question
        answers) for all pairs, from sparse one-hot matrices."""
        f = self.features
        starts = np.cumsum([0] + [len(u) for u in f.universe])
        item_of = np.repeat(np.arange(len(f.universe)), np.diff(starts))
        lines, cols = [], []
        for item, u in enumerate(f.universe):
            if len(u):
                pos = np.searchsorted(u, x[:, item]).clip(max=len(u) - 1)
                hit = u[pos] == x[:, item]  # NaN (unknown) never hits
                lines.append(np.flatnonzero(hit))
                cols.append(starts[item] + pos[hit])
        onehot = self.indicators(np.concatenate(lines), np.concatenate(cols), (len(x), starts[-1]))
        h = rows.heldout
        names = np.array(h.codes, dtype=object)
        rank = np.argsort(np.argsort(names))  # question index -> its place in sorted order
        # (question, answer) columns, sorted; each held-out answer's column. One number per pair: np.unique over
        # rows of two columns took 2.4 s on a fold of the whole WVS-7
        low, span = (int(h.a.min()), int(np.ptp(h.a)) + 1) if len(h.a) else (0, 1)
        pairs, col = np.unique(rank[h.q].astype(np.int64) * span + (h.a - low), return_inverse=True)
        question = pairs // span  # each column's question, by its place in sorted order
        questions = sorted(h.codes[q] for q in np.unique(h.q))
        y = self.indicators(h.row, col.ravel(), (len(x), len(pairs)))
        q_of = np.searchsorted(np.unique(question), question)
        n_ab = (onehot.T @ y).toarray()  # (item answers x question answers) counts over persons who gave both
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

    @staticmethod
    def indicators(lines: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
        """A 0/1 matrix with ones at (lines, cols)."""
        return sp.csr_matrix((np.ones(len(lines)), (lines, cols)), shape=shape)

    def fitted(self, question: str) -> Fit | None:
        """The question's model (fitted on first use), None when no fold holds the question out."""
        if question not in self.fits:
            fold = self.fold_of(question)
            self.fits[question] = None if fold is None else self.fit(*self.training(fold), question)
        return self.fits[question]

    def fit(
        self,
        x: np.ndarray,
        targets: dict[str, tuple[np.ndarray, np.ndarray]],
        ranked: dict[str, np.ndarray],
        question: str,
    ) -> Fit | None:
        """(model, columns it reads) for the question, None when there is nothing to learn."""
        args = self.fit_args(x, targets, ranked, question)
        return None if args is None else fit_one(x, *args)

    def fit_args(
        self,
        x: np.ndarray,
        targets: dict[str, tuple[np.ndarray, np.ndarray]],
        ranked: dict[str, np.ndarray],
        question: str,
    ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """What `fit_one` takes besides x for the question (estimator settings, training rows, answers, columns);
        None when there is nothing to learn."""
        if question not in targets:
            return None
        rows, y = targets[question]
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

    def fits_to_make(self, questions: Iterable[str]) -> Iterator[tuple[np.ndarray, dict[str, tuple]]]:
        """The models of `questions` not fitted yet, fold by fold: (the fold's training inputs x, question -> the
        arguments of `fit_one(x, *args)`), the costliest first. A --ray run fits them as parallel Ray tasks and puts
        them in `fits` (valuesim/run/cluster.py); a question with nothing to learn gets None in `fits` as its fold is
        reached."""
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
            self.fits.update({q: None for q in todo if q not in args})
            # the costliest first (rows x answers: hgb grows a tree per answer), so that the last fits running are
            # short ones and no worker idles long while another finishes a big one
            order = sorted(args, key=lambda q: -len(args[q][1]) * len(np.unique(args[q][2])))
            yield x, {q: args[q] for q in order}

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
                encoded = self.features.encoded(persons, self.model)
            x = encoded[person_of[which]]
            proba = model.predict_proba(x if keep is None else x[:, keep])
            classes = model.classes_.astype("float64")
            by_options: dict[tuple, list[int]] = {}  # the question's items, by their options (the same, as a rule)
            for i, n in enumerate(which):
                by_options.setdefault(tuple(items[n]["options"].items()), []).append(i)
            for rows in by_options.values():
                guesses = model_guesses(proba[rows], classes, items[which[rows[0]]]["options"])
                for i, guess in zip(rows, guesses, strict=True):
                    answers[which[i]] = guess
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


def model_guesses(proba: np.ndarray, classes: np.ndarray, options: dict) -> list[Guess | None]:
    """Per row of predict_proba, restricted to the item's options and renormalized (an option the model never saw:
    0), the answer its most probable option (ties to the first option); None when the model knows none of the
    options or gives them no probability. One matrix for all rows: per row in Python it was a third of ml's
    predicting time."""
    index = {c: n for n, c in enumerate(classes)}
    columns = [index.get(number) for number in option_codes(options)]
    if all(c is None for c in columns):
        return [None] * len(proba)
    p = np.zeros((len(proba), len(columns)))
    for j, c in enumerate(columns):
        if c is not None:
            p[:, j] = proba[:, c]
    total = p.sum(axis=1)
    seen = np.array([c is not None for c in columns])
    best = np.argmax(np.where(seen, p, -1.0), axis=1)  # the first of the most probable options the model knows
    shares = (p / np.where(total > 0, total, 1.0)[:, None]).tolist()
    codes = list(options)
    return [
        Guess(codes[b], dict(zip(codes, share, strict=True)), "model") if t > 0 else None
        for b, share, t in zip(best.tolist(), shares, total.tolist(), strict=True)
    ]
