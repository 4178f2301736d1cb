"""Statistical baselines behind the same interface as the LM programs: a dspy.Module whose forward takes the
example inputs and returns dspy.Prediction(answer=<option code as str>, probs={code: probability},
probs_method="counts" | "model"). Each is fitted on the benchmark's
training respondents; none sees a held-out answer of the person it predicts for. This module holds their shared
plumbing (`_Fitted`, answer tallies) and the random, majority and demographic-cell baselines; knn.py and ml.py
build on it.

Every statistical program needs no LM and has one implementation, vectorized: `predict_batch(items)` answers many
items at once (dicts with person_id, country, known, question_code, options: what valuesim.run.predict.evaluate_batch
passes), and `forward` is `predict_batch` on one item, so the batch path and the per-item path (dspy, simulate)
give the same answers. Ties are deterministic in both: a vote tie goes to the option that comes first in the
question's option order (scale order), a neighbour tie to the training respondent that comes first in the table.

Distributions: every program answers with a `Guess`: the answer and a probability per option of the item. The
counting programs (majority, country, cell, knn) smooth their votes additively, p_k = (v_k + a) / (V + K a) over
the item's K options, so an option no training respondent (or neighbour) chose keeps some mass; the answer is the
most voted option as before (smoothing changes no ranking, so top-1 is unchanged). The constant a is the setting
`smoothing`; left unset it is chosen on TRAINING persons only (`choose_smoothing`): a fifth of them (at most
TUNING_PERSONS, picked by a hash of the person id) are held out, the program is refitted on the rest, and a is the
value of SMOOTHING_GRID with the lowest log loss on the held-out persons' answers (each shows its demographics and
a random share of its value answers, as a dev person at some history size; up to TUNING_QUESTIONS of its other
value answers are predicted). Dev and test persons are never read.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import dspy
import numpy as np
import pandas as pd
from pydantic import Field

from valuesim.data.catalog import Catalog

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark

# person_id, country, known ({code: answer code}), question_code, options ({"code": label}, scale order)
Item = dict[str, Any]
# votes over an item's options, in option order (None: nobody to count)
Votes = np.ndarray | None

SMOOTHING_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
TUNING_PERSONS = 400  # training persons held out to choose the smoothing constant
TUNING_QUESTIONS = 10  # of their value answers predicted, per person


@dataclass(frozen=True)
class Guess:
    """A batch program's prediction for one item: the answer (an option code, None when there is nothing to go
    on), the probability of each of the item's options (None without an answer) and how it was made: "counts"
    (smoothed shares of votes) or "model" (a classifier's predict_proba)."""

    answer: str | None
    probs: dict[str, float] | None
    method: str = "counts"


def smoothed(votes: Votes, options: dict[str, str], a: float) -> Guess:
    """The item's answer (most votes, ties to the first option) and (v_k + a) / (V + K a) over its options."""
    if votes is None or not votes.sum() > 0:
        return Guess(None, None)
    p = (votes + a) / (votes.sum() + a * len(votes))
    return Guess(list(options)[int(np.argmax(votes))], dict(zip(options, p.tolist(), strict=True)))


def option_codes(options: dict[str, str]) -> list[float]:
    """An item's option codes as numbers, in option order (NaN for a code that is not a number: never voted)."""
    out = []
    for code in options:
        try:
            out.append(float(int(code)))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def first_best(tally: dict[float, float], options: dict[str, str]) -> str | None:
    """The option with the most votes in `tally` (code -> votes); ties to the first option; None without votes."""
    best, answer = 0.0, None
    for code, number in zip(options, option_codes(options), strict=True):
        votes = tally.get(number, 0.0)
        if votes > best:
            best, answer = votes, code
    return answer


class Tallies:
    """Answer counts of the training table per (group, question): {code: count}, plus the number of answers.

    Built once from all cells of the table (one value_counts over the answered cells), so a majority is a dict
    lookup instead of a pass over the training rows."""

    def __init__(self, train: pd.DataFrame, codes: list[str], groups: pd.Series | None = None):
        values = train[codes].to_numpy(dtype="float64", na_value=np.nan)
        if groups is None:
            group, names = np.zeros(len(train), dtype=np.int64), np.array([0], dtype=object)
        else:  # a row without a group (-1) counts nowhere
            group, names = pd.factorize(groups.to_numpy())
        rows, cols = np.nonzero(~np.isnan(values) & (group >= 0)[:, None])
        answers, answer = np.unique(values[rows, cols], return_inverse=True)
        # each answered cell as one number (group, question, answer), counted by hashing: counting (group, question,
        # answer) rows took 4 s for the whole WVS-7's training persons by country, this 1.2 s
        cell = (group[rows] * len(codes) + cols) * len(answers) + answer
        counts = pd.Series(cell).value_counts(sort=False)
        key, n = counts.index.to_numpy(), counts.to_numpy(dtype="float64")
        g, rest = np.divmod(key, len(codes) * len(answers))
        q, a = np.divmod(rest, len(answers))
        self.tally: dict[tuple, dict[float, float]] = {}
        for g_, q_, a_, n_ in zip(names[g].tolist(), np.asarray(codes, dtype=object)[q].tolist(),
                                  answers[a].tolist(), n.tolist(), strict=True):  # fmt: skip
            self.tally.setdefault((g_, q_), {})[a_] = n_
        self.total = {key: sum(t.values()) for key, t in self.tally.items()}

    def vote(self, question: str, options: dict[str, str], group: object = 0) -> str | None:
        return first_best(self.tally.get((group, question), {}), options)

    def votes(self, question: str, options: dict[str, str], group: object = 0) -> Votes:
        """Answer counts of the group over the item's options, in option order; None when none was chosen."""
        tally = self.tally.get((group, question), {})
        v = np.array([tally.get(n, 0.0) for n in option_codes(options)])
        return v if v.sum() > 0 else None


class _Fitted(dspy.Module):
    needs_lm = False  # fitted on training respondents; runs through the batch path (predict_batch)
    """Shared plumbing: the training table, majorities by country and overall, the per-item `forward`.

    `reads` names the known answers a program looks at (None: any of them), so a bench can see that two history
    sizes give it the same inputs and predict once."""

    reads: tuple[str, ...] | None = None

    def __init__(self, train: pd.DataFrame, catalog: Catalog, smoothing: float | None = None):
        super().__init__()
        self.train = train.reset_index(drop=True)
        self.catalog = catalog
        self.codes = [q.code for q in catalog if not q.open and q.code in self.train]
        self._tallies: dict[str, Tallies] = {}
        self.smoothing = smoothing  # None: chosen on training persons at the first prediction

    def own_settings(self) -> dict[str, Any]:
        """The settings a refit on other training persons takes (besides smoothing)."""
        return {}

    def smoothing_constant(self) -> float:
        """The additive smoothing constant: the setting, or chosen on held-out training persons (once)."""
        if self.smoothing is None:
            self.smoothing = choose_smoothing(self)
        return self.smoothing

    def prepare(self) -> None:
        """Build now what is otherwise built at the first prediction (the smoothing constant, the answer tallies).
        A copy sent to another process, as every batch task of a --ray run gets, then carries them instead of
        building them again in each task (for kNN a refit and a vote over up to 400 training persons)."""
        self.smoothing_constant()
        self.tallies("all")
        self.tallies("country")

    @classmethod
    def from_benchmark(cls, bench: Benchmark, **settings: Any) -> _Fitted:
        """Fitted on the benchmark's training respondents."""
        return cls(bench.respondents("train"), bench.catalog, **settings)

    def tallies(self, by: str) -> Tallies:
        """Counts overall ("all") or per country ("country"), built on first use."""
        if by not in self._tallies:
            self._tallies[by] = Tallies(self.train, self.codes, None if by == "all" else self.train[by])
        return self._tallies[by]

    def majority(self, question: str, options: dict[str, str], country: str | None = None) -> Votes:
        """Training answer counts over the options, within `country` when given (None: nobody chose one)."""
        if country is None:
            return self.tallies("all").votes(question, options)
        return self.tallies("country").votes(question, options, country)

    def country_or_global(self, question: str, options: dict[str, str], country: str) -> Votes:
        votes = self.majority(question, options, country)
        return votes if votes is not None else self.majority(question, options)

    def votes_batch(self, items: list[Item]) -> list[Votes]:
        """Unsmoothed votes over each item's options (counting programs; `predict_batch` smooths them)."""
        raise NotImplementedError

    def predict_batch(self, items: list[Item]) -> list[Guess]:
        """A Guess (answer, probabilities, method) for many items at once."""
        a = self.smoothing_constant()
        return [smoothed(v, i["options"], a) for v, i in zip(self.votes_batch(items), items, strict=True)]

    def forward(self, **inputs: Any) -> dspy.Prediction:
        """One item: `predict_batch` on it, so both paths share one implementation."""
        guess = self.predict_batch([inputs])[0]
        return dspy.Prediction(answer=guess.answer, probs=guess.probs, probs_method=guess.method)


def memoized(items: list[Item], key: Callable[[Item], Hashable], answer: Callable[[Item], Votes]) -> list[Votes]:
    """answer(item) for each item, computed once per key(item): majorities are the same for many items."""
    memo: dict = {}
    out = []
    for item in items:
        k = key(item)
        if k not in memo:
            memo[k] = answer(item)
        out.append(memo[k])
    return out


class Random(_Fitted):
    """A uniformly random option per item, seeded by (seed, person, question): reproducible in any order or batch.
    Its expected metrics are exact and reported as the random floor (valuesim.score.metrics.random_floor); this program
    exists to run the floor like any other program."""

    reads = ()

    def prepare(self) -> None:
        pass  # nothing is built at the first prediction

    def __init__(self, train: pd.DataFrame, catalog: Catalog, seed: int = 0):
        super().__init__(train, catalog, smoothing=0.0)
        self.seed = seed

    def predict_batch(self, items: list[Item]) -> list[Guess]:
        """The random option, and the uniform distribution it is drawn from."""
        out = []
        for item in items:
            codes = list(item["options"])
            h = zlib.crc32(f"{self.seed}|{item['person_id']}|{item['question_code']}".encode())
            uniform = dict.fromkeys(codes, 1 / len(codes)) if codes else None
            out.append(Guess(codes[h % len(codes)] if codes else None, uniform))
        return out


class GlobalMajority(_Fitted):
    """The most common answer to the question among all training respondents."""

    reads = ()

    def __init__(self, train: pd.DataFrame, catalog: Catalog, smoothing: Annotated[float, Field(ge=0)] | None = None):
        super().__init__(train, catalog, smoothing)

    def votes_batch(self, items: list[Item]) -> list[Votes]:
        return memoized(
            items,
            lambda i: (i["question_code"], tuple(i["options"])),
            lambda i: self.majority(i["question_code"], i["options"]),
        )


class CountryMajority(_Fitted):
    """The most common answer among training respondents of the person's country (overall when none answered)."""

    reads = ()

    def __init__(self, train: pd.DataFrame, catalog: Catalog, smoothing: Annotated[float, Field(ge=0)] | None = None):
        super().__init__(train, catalog, smoothing)

    def votes_batch(self, items: list[Item]) -> list[Votes]:
        return memoized(
            items,
            lambda i: (i["question_code"], i["country"], tuple(i["options"])),
            lambda i: self.country_or_global(i["question_code"], i["options"], i["country"]),
        )


_COUNTRY_FITS: dict[str, CountryMajority] = {}  # dataset fingerprint -> fitted program (a bench scores many cells)


def country_majorities(bench: Benchmark, items: list[Any]) -> dict[str, Guess]:
    """person|question -> the country majority's Guess (answer and smoothed country shares), for the items (dicts
    or dspy.Examples) of any run: the country floor every evaluate/bench table prints beside the random floor."""
    fit = _COUNTRY_FITS.get(bench.fingerprint)
    if fit is None:
        fit = _COUNTRY_FITS[bench.fingerprint] = CountryMajority.from_benchmark(bench)
    # one Guess per country, question and scale (a million items have a few thousand), shared by their items
    one_of = {(i["country"], i["question_code"], tuple(i["options"])): i for i in items}
    plain = [{k: i[k] for k in ("person_id", "country", "question_code", "options")} for i in one_of.values()]
    guess = dict(zip(one_of, fit.predict_batch(plain), strict=True))
    return {
        f"{i['person_id']}|{i['question_code']}": guess[i["country"], i["question_code"], tuple(i["options"])]
        for i in items
    }


def age_band(age: Any) -> str | None:
    if age is None or pd.isna(age):
        return None
    return "<30" if age < 30 else "30-49" if age < 50 else "50+"


def education_band(isced: Any) -> str | None:
    if isced is None or pd.isna(isced):
        return None
    return "low" if isced <= 2 else "middle" if isced <= 5 else "high"


def sex_key(sex: Any) -> str | None:
    if sex is None or pd.isna(sex):
        return None
    return str(int(sex))


class DemographicCell(_Fitted):
    """Majority in the person's cell: country x sex x age band x education; backs off to the country when the
    cell has fewer than `min_cell` answers to the question or an attribute is unknown."""

    reads = ("Q260", "Q262", "Q275")

    def __init__(
        self,
        train: pd.DataFrame,
        catalog: Catalog,
        min_cell: Annotated[int, Field(ge=1)] = 10,
        smoothing: Annotated[float, Field(ge=0)] | None = None,
    ):
        super().__init__(train, catalog, smoothing)
        self.min_cell = min_cell
        train = self.train
        self.cells = train["country"] + "|" + self._cells(train["Q260"], train["Q262"], train["Q275"])

    @staticmethod
    def _cells(sex: pd.Series, age: pd.Series, edu: pd.Series) -> pd.Series:
        # sex as "1"/"2" whatever the column dtype (a column with missing values loads as float64: "1.0")
        parts = [sex.map(sex_key), age.map(age_band), edu.map(education_band)]
        return parts[0].astype(str) + "|" + parts[1].astype(str) + "|" + parts[2].astype(str)

    @staticmethod
    def cell_of(country: str, known: dict) -> str | None:
        """The person's cell key, None when sex, age or education is unknown."""
        attrs = [sex_key(known.get("Q260")), age_band(known.get("Q262")), education_band(known.get("Q275"))]
        return None if None in attrs else f"{country}|{attrs[0]}|{attrs[1]}|{attrs[2]}"

    def own_settings(self) -> dict[str, Any]:
        return {"min_cell": self.min_cell}

    def prepare(self) -> None:
        super().prepare()
        self.cell_tallies()

    def cell_tallies(self) -> Tallies:
        if "cell" not in self._tallies:
            self._tallies["cell"] = Tallies(self.train, self.codes, self.cells)
        return self._tallies["cell"]

    def cell_vote(self, cell: str | None, question: str, options: dict[str, str]) -> Votes:
        if cell is None:
            return None
        tallies = self.cell_tallies()
        if tallies.total.get((cell, question), 0) < self.min_cell:  # answers of any code count, as before
            return None
        return tallies.votes(question, options, cell)

    def votes_batch(self, items: list[Item]) -> list[Votes]:
        def answer(item: Item) -> Votes:
            q, options = item["question_code"], item["options"]
            votes = self.cell_vote(self.cell_of(item["country"], item["known"]), q, options)
            return votes if votes is not None else self.country_or_global(q, options, item["country"])

        # the same answer for every item of the same cell attributes, question and scale
        return memoized(
            items,
            lambda i: (i["country"], *map(i["known"].get, self.reads), i["question_code"], tuple(i["options"])),
            answer,
        )


def group_persons(items: list[Item]) -> tuple[list[tuple[str, dict]], np.ndarray]:
    """Distinct persons of the items as (country, known), and each item's person index. A person is a person_id
    and country with their known answers: items that share one dict are found at once, a copy (what a transport
    between processes may make) by comparing it with the person_id's earlier dicts."""
    persons: list[tuple[str, dict]] = []
    by_dict: dict[int, int] = {}  # id of a known dict -> its person (the items keep the dicts alive)
    by_person: dict[tuple, list[int]] = {}  # (person_id, country) -> their persons
    of = np.empty(len(items), dtype=np.int64)
    for n, item in enumerate(items):
        known = item["known"]
        p = by_dict.get(id(known))
        if p is None:
            same = by_person.setdefault((item.get("person_id"), item["country"]), [])
            p = next((q for q in same if persons[q][1] == known), None)
            if p is None:
                p = len(persons)
                persons.append((item["country"], known))
                same.append(p)
            by_dict[id(known)] = p
        of[n] = p
    return persons, of


def tuning_items(train: pd.DataFrame, catalog: Catalog, seed: int = 0) -> list[Item]:
    """Items of training persons, as a dev person's would look: known = their demographics and a random share
    (uniform in [0, 1]) of their value answers; asked = up to TUNING_QUESTIONS of their other closed value answers.
    The gold answer is in "answer" (never passed to a program)."""
    values = [q.code for q in catalog if q.kind == "value" and not q.open and q.code in train]
    demographics = [q.code for q in catalog if q.kind != "value" and q.code in train]
    out = []
    for _, person in train.iterrows():
        rng = np.random.default_rng(zlib.crc32(f"{seed}|{person['person_id']}".encode()))
        answered = [c for c in values if pd.notna(person[c])]
        rng.shuffle(answered)
        cut = int(rng.uniform() * (len(answered) + 1))
        known = {c: person[c] for c in demographics if pd.notna(person[c])} | {c: person[c] for c in answered[:cut]}
        for code in answered[cut:][:TUNING_QUESTIONS]:
            options = {str(c): label for c, label in catalog[code].options_for(person["country"]).items()}
            gold = str(int(person[code]))
            if gold in options:
                out.append({"person_id": person["person_id"], "country": person["country"], "known": known,
                            "question_code": code, "options": options, "answer": gold})  # fmt: skip
    return out


def choose_smoothing(program: _Fitted) -> float:
    """The SMOOTHING_GRID value with the lowest log loss on held-out TRAINING persons (see the module docstring):
    the program refitted on the other training persons votes for their items. 1.0 when there are too few."""
    ids = program.train["person_id"].astype(str)
    share = max(5, len(ids) // min(TUNING_PERSONS, max(len(ids) // 5, 1)))  # ~a fifth, at most TUNING_PERSONS
    held = ids.map(lambda p: zlib.crc32(f"smoothing|{p}".encode()) % share == 0).to_numpy()
    if held.sum() < 2 or (~held).sum() < 2:
        return 1.0
    refit = type(program)(program.train[~held], program.catalog, smoothing=0.0, **program.own_settings())
    items = tuning_items(program.train[held], program.catalog)
    votes, gold = [], []
    for v, item in zip(refit.votes_batch(items), items, strict=True):
        if v is not None:
            votes.append(v)
            gold.append(list(item["options"]).index(item["answer"]))
    if not votes:
        return 1.0
    losses = []
    for a in SMOOTHING_GRID:
        p = [(v[g] + a) / (v.sum() + a * len(v)) for v, g in zip(votes, gold, strict=True)]
        losses.append(-float(np.mean(np.log(p))))
    return SMOOTHING_GRID[int(np.argmin(losses))]
