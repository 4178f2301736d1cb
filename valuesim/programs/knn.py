"""`knn`: the k-nearest-neighbour respondents of the training table, a similarity-weighted vote (statistical.py has
the interface all the statistical programs share and the majority baselines it backs off to).
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field

from valuesim.data.catalog import Catalog, Question
from valuesim.programs.statistical import Item, Votes, _Fitted, group_persons, option_codes


class KNN(_Fitted):
    """k-nearest-neighbour respondents: similarity = mean agreement over the answers the person shares with a
    training respondent (1 - normalized scale distance on ordinal items, exact match on nominal ones), plus the
    same country; a similarity-weighted vote of the k most similar respondents who answered the question.

    Vectorized: per block of persons one similarity matrix (persons x training respondents) from two matrix
    products, in integers (agreements scaled by the common multiple of the scale lengths), so similarities are
    exact and an exact tie is a tie whatever the batch; one stable sort per person gives the neighbour order (ties
    to the lower training index); each question's vote walks that order to its first k respondents who answered."""

    BLOCK = 512  # persons per similarity matrix: 512 x 4,000 float64 = 16 MB

    def __init__(
        self,
        train: pd.DataFrame,
        catalog: Catalog,
        k: Annotated[int, Field(ge=1)] = 25,
        smoothing: Annotated[float, Field(ge=0)] | None = None,
    ):
        super().__init__(train, catalog, smoothing)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.column = {code: j for j, code in enumerate(self.codes)}
        self.matrix = self.train[self.codes].to_numpy(dtype="float64", na_value=np.nan)  # NaN = missing
        self.scale = np.array([self._scale(catalog[c]) for c in self.codes])  # 0 = nominal
        self.unit = math.lcm(*{int(s) for s in self.scale if s > 0}) if (self.scale > 0).any() else 1
        # one column per (question, code) a training respondent gave: who gave it (one-hot, transposed)
        q_of, code_of = [], []
        for j in range(len(self.codes)):
            col = self.matrix[:, j]
            for code in np.unique(col[~np.isnan(col)]):
                q_of.append(j)
                code_of.append(code)
        self.u_question = np.array(q_of, dtype=np.int64)
        self.u_code = np.array(code_of, dtype="float64")
        scale = self.scale[self.u_question]
        self.u_step = np.where(scale > 0, self.unit // np.where(scale > 0, scale, 1), 0).astype("float64")
        self.u_ordinal = scale > 0
        onehot = self.matrix[:, self.u_question] == self.u_code[None, :]  # (train x codes)
        self.onehot_t = np.ascontiguousarray(onehot.T, dtype="float32")
        self.answered_t = np.ascontiguousarray(~np.isnan(self.matrix).T, dtype="float32")  # (questions x train)
        self.n_answered = (~np.isnan(self.matrix)).sum(axis=0)
        self.countries = self.train["country"].to_numpy(dtype=object)

    def own_settings(self) -> dict:
        return {"k": self.k}

    @staticmethod
    def _scale(q: Question) -> float:
        """Code distance that counts as maximal disagreement; codes are consecutive on every ordinal scale here."""
        codes = sorted(q.options)
        return float(codes[-1] - codes[0]) if q.ordinal and len(codes) > 1 else 0.0

    def known_matrix(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        """(persons x questions) the persons' known answer codes, NaN where unknown."""
        values = np.full((len(persons), len(self.codes)), np.nan)
        for i, (_, known) in enumerate(persons):
            cols = np.fromiter((self.column.get(code, -1) for code in known), np.int64, len(known))
            answers = np.array(list(known.values()), dtype="float64")  # None -> NaN: unknown
            values[i, cols[cols >= 0]] = answers[cols >= 0]
        return values

    def similarities(self, persons: list[tuple[str, dict]]) -> np.ndarray:
        """(persons x training respondents) mean agreement over the shared answers and the same-country flag.

        numerator = unit * (sum of agreements + same country), denominator = unit * (shared answers + 1): both are
        integers, computed exactly (float32 products of integers below 2**24, float64 otherwise), so the quotient
        is the same float for the same person whatever else is in the batch."""
        values = self.known_matrix(persons)
        x = values[:, self.u_question]  # (persons x codes) the person's answer to each code's question
        diff = np.abs(x - self.u_code[None, :])
        agree = np.where(self.u_ordinal, self.unit - diff * self.u_step, np.where(diff == 0, self.unit, 0.0))
        agree = np.nan_to_num(agree, nan=0.0)
        bound = (np.abs(agree).max(initial=0) + self.unit) * (len(self.codes) + 1)
        dtype = "float32" if bound < 2**24 else "float64"  # exact either way
        num = agree.astype(dtype) @ self.onehot_t.astype(dtype, copy=False)
        shared = (~np.isnan(values)).astype(dtype) @ self.answered_t.astype(dtype, copy=False)
        same = np.array([c for c, _ in persons], dtype=object)[:, None] == self.countries[None, :]
        num = num.astype("float64") + self.unit * same
        return num / (self.unit * (shared.astype("float64") + 1))

    def votes_batch(self, items: list[Item]) -> list[Votes]:
        """The neighbours' similarity-weighted votes over each item's options (the country's counts, or everyone's,
        when no neighbour answered with one of the options)."""
        persons, person_of = group_persons(items)
        answers: list[Votes] = [None] * len(items)
        by_person = np.argsort(person_of, kind="stable")
        bounds = np.searchsorted(person_of[by_person], np.arange(0, len(persons) + self.BLOCK, self.BLOCK))
        for b, start in enumerate(range(0, len(persons), self.BLOCK)):
            block = persons[start : start + self.BLOCK]
            chosen = by_person[bounds[b] : bounds[b + 1]]
            if len(self.train) == 0 or not len(chosen):
                continue
            sims = self.similarities(block)
            order = np.argsort(-sims, axis=1, kind="stable")  # most similar first, ties to the lower index
            self._vote(items, chosen, person_of[chosen] - start, sims, order, answers)
        return [
            a if a is not None else self.country_or_global(item["question_code"], item["options"], item["country"])
            for item, a in zip(items, answers, strict=True)
        ]

    def _vote(
        self,
        items: list[Item],
        chosen: np.ndarray,
        rows: np.ndarray,
        sims: np.ndarray,
        order: np.ndarray,
        answers: list[Votes],
    ) -> None:
        """Per question: each item's first k respondents (in its person's order) who answered, weighted vote."""
        questions = np.array([self.column.get(items[n]["question_code"], -1) for n in chosen])
        n_train = len(self.train)
        for j in np.unique(questions):
            if j < 0:  # not a question of the training table: the fallback answers
                continue
            mine = np.flatnonzero(questions == j)
            col = self.matrix[:, j]
            width = min(n_train, 4 * self.k + 32)
            while mine.size:
                cand = order[rows[mine], :width]  # (items x width) training indices, most similar first
                answer = col[cand]
                valid = ~np.isnan(answer)
                rank = np.cumsum(valid, axis=1)
                done = (rank[:, -1] >= self.k) | (width == n_train) | (rank[:, -1] == self.n_answered[j])
                if done.any():
                    sel = valid[done] & (rank[done] <= self.k)
                    # the chosen neighbours' positions, most similar first (a stable sort keeps the order)
                    pos = np.argsort(~sel, axis=1, kind="stable")[:, : self.k]
                    pick = np.take_along_axis(sel, pos, axis=1)
                    idx = np.take_along_axis(cand[done], pos, axis=1)
                    weight = sims[rows[mine[done]][:, None], idx] + 1e-6
                    self._tally(items, chosen[mine[done]], col[idx], weight, pick, answers)
                mine = mine[~done]
                width = min(n_train, width * 4)

    def _tally(
        self,
        items: list[Item],
        which: np.ndarray,
        answer: np.ndarray,
        weight: np.ndarray,
        pick: np.ndarray,
        answers: list[Votes],
    ) -> None:
        """Weighted votes restricted to each item's options, added neighbour by neighbour in similarity order (the
        same additions in the same order for an item alone or in a batch); ties to the first option."""
        options = [option_codes(items[n]["options"]) for n in which]
        width = max(len(o) for o in options)
        codes = np.full((len(which), width), np.nan)
        for i, o in enumerate(options):
            codes[i, : len(o)] = o
        votes = np.zeros(codes.shape)
        count = np.zeros(codes.shape, dtype=np.int64)
        for t in range(answer.shape[1]):
            hit = pick[:, t, None] & (answer[:, t, None] == codes)
            votes += np.where(hit, weight[:, t, None], 0.0)
            count += hit
        for i, n in enumerate(which):  # the answer: the first maximum (ties to the first option), see `smoothed`
            if count[i].any():
                answers[n] = votes[i, : len(options[i])].copy()
