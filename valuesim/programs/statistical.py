"""Statistical baselines behind the same interface as the LM programs: a dspy.Module whose forward takes the
example inputs and returns dspy.Prediction(answer=<option code as str>). Each is fitted on the benchmark's
training respondents; none sees a held-out answer of the person it predicts for.
"""

from __future__ import annotations

from collections import Counter

import dspy
import numpy as np
import pandas as pd

from valuesim.data.catalog import Catalog


class _Fitted(dspy.Module):
    """Shared plumbing: training answers by question, votes restricted to the question's options."""

    def __init__(self, train: pd.DataFrame, catalog: Catalog):
        super().__init__()
        self.train = train.reset_index(drop=True)
        self.catalog = catalog
        self._majorities: dict = {}

    @classmethod
    def from_benchmark(cls, bench, **settings) -> _Fitted:
        return cls(bench.respondents("train"), bench.catalog, **settings)

    def vote(self, answers: pd.Series, options: dict, weights: pd.Series | None = None) -> str | None:
        answers = answers.dropna().astype(int)
        if weights is None:
            weights = pd.Series(1.0, index=answers.index)
        tally: Counter = Counter()
        for a, w in zip(answers, weights.loc[answers.index], strict=True):
            if str(a) in options:
                tally[str(a)] += w
        return tally.most_common(1)[0][0] if tally else None

    def majority(self, question: str, options: dict, country: str | None = None) -> str | None:
        """Majority answer overall or within a country, memoized: it is the same for every person."""
        key = (question, country, tuple(options))
        if key not in self._majorities:
            rows = self.train if country is None else self.train[self.train["country"] == country]
            self._majorities[key] = self.vote(rows[question], options)
        return self._majorities[key]


class GlobalMajority(_Fitted):
    """The most common answer to the question among all training respondents."""

    def forward(self, question: str, options: dict, **_) -> dspy.Prediction:
        return dspy.Prediction(answer=self.majority(question, options))


class CountryMajority(_Fitted):
    """The most common answer among training respondents of the person's country."""

    def forward(self, question: str, options: dict, country: str, **_) -> dspy.Prediction:
        answer = self.majority(question, options, country) or self.majority(question, options)
        return dspy.Prediction(answer=answer)


def age_band(age) -> str | None:
    if age is None or pd.isna(age):
        return None
    return "<30" if age < 30 else "30-49" if age < 50 else "50+"


def education_band(isced) -> str | None:
    if isced is None or pd.isna(isced):
        return None
    return "low" if isced <= 2 else "middle" if isced <= 5 else "high"


def sex_key(sex) -> str | None:
    if sex is None or pd.isna(sex):
        return None
    return str(int(sex))


class DemographicCell(_Fitted):
    """Majority in the person's cell: country x sex x age band x education; backs off to the country when the
    cell has fewer than `min_cell` answers to the question or an attribute is unknown."""

    def __init__(self, train: pd.DataFrame, catalog: Catalog, min_cell: int = 10):
        super().__init__(train, catalog)
        self.min_cell = min_cell
        train = self.train
        self.cells = train["country"] + "|" + self._cells(train["Q260"], train["Q262"], train["Q275"])

    @staticmethod
    def _cells(sex, age, edu) -> pd.Series:
        # sex as "1"/"2" whatever the column dtype (a column with missing values loads as float64: "1.0")
        parts = [sex.map(sex_key), age.map(age_band), edu.map(education_band)]
        return parts[0].astype(str) + "|" + parts[1].astype(str) + "|" + parts[2].astype(str)

    def forward(self, question: str, options: dict, country: str, known: dict, **_) -> dspy.Prediction:
        attrs = [sex_key(known.get("Q260")), age_band(known.get("Q262")), education_band(known.get("Q275"))]
        if None not in attrs:
            cell = f"{country}|{attrs[0]}|{attrs[1]}|{attrs[2]}"
            answers = self.train.loc[self.cells == cell, question].dropna()
            answer = self.vote(answers, options) if len(answers) >= self.min_cell else None
            if answer is not None:
                return dspy.Prediction(answer=answer)
        return CountryMajority.forward(self, question=question, options=options, country=country)


class KNN(_Fitted):
    """k-nearest-neighbour respondents: similarity = mean agreement over the answers the person shares with a
    training respondent (1 - normalized scale distance on ordinal items, exact match on nominal ones), plus the
    same country; a similarity-weighted vote of the k most similar respondents who answered the question."""

    def __init__(self, train: pd.DataFrame, catalog: Catalog, k: int = 25):
        super().__init__(train, catalog)
        self.k = k
        self.codes = [q.code for q in catalog if not q.open]
        self.matrix = self.train[self.codes].astype("float64").to_numpy()  # NaN = missing
        self.scale = np.array([self._scale(catalog[c]) for c in self.codes])  # 0 = nominal
        self._sims: dict = {}

    @staticmethod
    def _scale(q) -> float:
        """Code distance that counts as maximal disagreement; codes are consecutive on every ordinal scale here."""
        codes = sorted(q.options)
        return float(codes[-1] - codes[0]) if q.ordinal and len(codes) > 1 else 0.0

    def similarity(self, known: dict, country: str) -> np.ndarray:
        key = (country, tuple(sorted(known.items())))
        if key not in self._sims:
            cols = [i for i, c in enumerate(self.codes) if c in known]
            values = np.array([known[self.codes[i]] for i in cols], dtype="float64")
            block, scale = self.matrix[:, cols], self.scale[cols]
            diff = np.abs(block - values)
            agree = np.where(scale > 0, 1 - diff / np.where(scale > 0, scale, 1), diff == 0).astype("float64")
            agree[np.isnan(block)] = np.nan
            same_country = (self.train["country"] == country).to_numpy(dtype="float64")[:, None]
            with np.errstate(invalid="ignore"):
                sims = np.nanmean(np.hstack([agree, same_country]), axis=1)
            if len(self._sims) > 64:  # a person's questions come together; keep memory flat on long runs
                self._sims.clear()
            self._sims[key] = np.nan_to_num(sims)
        return self._sims[key]

    def forward(self, question: str, options: dict, country: str, known: dict, **_) -> dspy.Prediction:
        sims = pd.Series(self.similarity(known, country))
        answered = self.train[question].notna()
        top = sims[answered].nlargest(self.k)
        answer = self.vote(self.train.loc[top.index, question], options, weights=top + 1e-6)
        return dspy.Prediction(answer=answer or CountryMajority.forward(self, question, options, country).answer)
