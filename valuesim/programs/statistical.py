"""Statistical baselines behind the same interface as the LM programs: a dspy.Module whose forward takes the
example inputs and returns dspy.Prediction(answer=<option code as str>). Each is fitted on the benchmark's
training respondents; none sees a held-out answer of the person it predicts for.
"""

from __future__ import annotations

import zlib
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

    def predict_batch(self, items: list[dict]) -> list[str | None]:
        """Answers for many items at once (dicts with the example inputs: person_id, country, known, question,
        options). The per-item `forward` is this on one item, so both paths give the same answers."""
        return [self.predict_one(**item) for item in items]

    def predict_one(self, **item) -> str | None:
        raise NotImplementedError

    def forward(self, **inputs) -> dspy.Prediction:
        return dspy.Prediction(answer=self.predict_batch([inputs])[0])

    def majority(self, question: str, options: dict, country: str | None = None) -> str | None:
        """Majority answer overall or within a country, memoized: it is the same for every person."""
        key = (question, country, tuple(options))
        if key not in self._majorities:
            rows = self.train if country is None else self.train[self.train["country"] == country]
            self._majorities[key] = self.vote(rows[question], options)
        return self._majorities[key]


class Random(_Fitted):
    """A uniformly random option per item (seeded by person and question). Its expected metrics are exact and
    reported as the random floor (metrics.random_floor); this program exists to run it like any other."""

    def predict_one(self, person_id: str, question: str, options: dict, **_) -> str | None:
        codes = list(options)
        return codes[zlib.crc32(f"{person_id}|{question}".encode()) % len(codes)] if codes else None


class GlobalMajority(_Fitted):
    """The most common answer to the question among all training respondents."""

    def predict_one(self, question: str, options: dict, **_) -> str | None:
        return self.majority(question, options)


class CountryMajority(_Fitted):
    """The most common answer among training respondents of the person's country."""

    def predict_one(self, question: str, options: dict, country: str, **_) -> str | None:
        return self.majority(question, options, country) or self.majority(question, options)


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

    def predict_one(self, question: str, options: dict, country: str, known: dict, **_) -> str | None:
        attrs = [sex_key(known.get("Q260")), age_band(known.get("Q262")), education_band(known.get("Q275"))]
        if None not in attrs:
            key = (f"{country}|{attrs[0]}|{attrs[1]}|{attrs[2]}", question, tuple(options))
            if key not in self._majorities:  # the same for everyone in the cell: computed once
                answers = self.train.loc[self.cells == key[0], question].dropna()
                self._majorities[key] = self.vote(answers, options) if len(answers) >= self.min_cell else None
            if self._majorities[key] is not None:
                return self._majorities[key]
        return CountryMajority.predict_one(self, question=question, options=options, country=country)


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

    def similarities(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        """(persons x training respondents) mean agreement over the answers each pair shares, plus same country.
        One array operation per block of persons instead of one pandas pass per prediction."""
        train = self.matrix.astype("float32")
        answered = ~np.isnan(train)
        scale = self.scale.astype("float32")
        ordinal = scale > 0
        countries = self.train["country"].to_numpy()
        out = np.zeros((len(persons), len(train)), dtype="float64")
        for start in range(0, len(persons), 16):  # 16 x 4,000 x 280 floats: ~70 MB per block
            block = persons[start : start + 16]
            values = np.full((len(block), len(self.codes)), np.nan, dtype="float32")
            for i, (_, known) in enumerate(block):
                for j, code in enumerate(self.codes):
                    if code in known:
                        values[i, j] = known[code]
            diff = np.abs(values[:, None, :] - train[None, :, :])
            agree = np.where(ordinal, 1 - diff / np.where(ordinal, scale, 1), diff == 0)
            both = ~np.isnan(values)[:, None, :] & answered[None, :, :]
            total = np.where(both, agree, 0).sum(axis=2) + (
                countries[None, :] == np.array([c for c, _ in block])[:, None]
            )
            out[start : start + len(block)] = total / (both.sum(axis=2) + 1)
        return out

    def predict_batch(self, items: list[dict]) -> list[str | None]:
        """Per person: similarities once; per question: the k most similar respondents who answered it vote,
        weighted by similarity (ties: the lower-indexed respondent, then the first option on the scale)."""
        people: dict[str, int] = {}
        persons: list[tuple[str, dict]] = []
        for item in items:
            if item["person_id"] not in people:
                people[item["person_id"]] = len(persons)
                persons.append((item["country"], item["known"]))
        sims = self.similarities(persons)
        answers = []
        for item in items:
            question, options = item["question"], item["options"]
            col = self.train[question].to_numpy(dtype="float64", na_value=np.nan)
            who = np.flatnonzero(~np.isnan(col))
            s = sims[people[item["person_id"]], who]
            if len(who) > self.k:  # the k largest, ties to the lower index (a stable sort of the candidates)
                top = np.argpartition(-s, self.k - 1)[: self.k]
                cut = s[top].min()
                above, at = np.flatnonzero(s > cut), np.flatnonzero(s == cut)
                top = np.concatenate([above, at[: self.k - len(above)]])
            else:
                top = np.arange(len(who))
            tally: dict[str, float] = {}
            for a, w in zip(col[who[top]].astype(int), s[top] + 1e-6, strict=True):
                if str(a) in options:
                    tally[str(a)] = tally.get(str(a), 0.0) + w
            best = max(tally.values(), default=None)
            answer = next((c for c in options if tally.get(c) == best), None) if best is not None else None
            answers.append(answer or CountryMajority.predict_one(self, question, options, item["country"]))
        return answers
