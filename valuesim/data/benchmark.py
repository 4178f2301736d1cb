"""The benchmark: respondents split train/dev/test, per fold a shuffled profile and held-out questions.

Layout of a built benchmark (`valuesim data build`, default `data/benchmark/`, gitignored):

    catalog.json              the question catalog: wording, options, every answer's statement (no WVS files needed)
    manifest.json             seed, split sizes, dataset fingerprint, ingest report
    respondents/              HF dataset: person_id, country, split, Q1..Q290 codes (None = missing)
    reference/, values/       HF DatasetDict (train/dev/test), one row per person and fold

Protocols: `reference` is the paper's (profile and held-out questions both over Q1-Q290); `values` (default)
always knows the demographics Q260-Q290 and holds out only value questions Q1-Q259. Open items (age, year of
birth, household size, ...) are never held out. History size k keeps the first k profile answers of a
seeded per-person-and-fold order, so the items known at k=58 are also known at k=116.

A build streams: the official CSV is read in chunks (valuesim.data.raw) and each protocol's rows are built a
chunk of persons at a time and written as they go (valuesim.data.rows), so the whole WVS-7 fits in a few GB.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, load_from_disk

from valuesim import files
from valuesim.data.catalog import Catalog
from valuesim.data.rows import fold_lists
from valuesim.errors import NotFoundError, ValueSimError

PROTOCOLS = ("values", "reference")
SPLITS = {"train": 0.6, "dev": 0.2, "test": 0.2}
DEFAULT_DIR = Path("data/benchmark")


def person_fold(
    person: dict, catalog: Catalog, protocol: str, fold: int, train_q: list[str], test_q: list[str], seed: int
) -> dict:
    """One person's row of one protocol and fold: the definition. A build computes the same rows a chunk of
    persons at a time (valuesim.data.rows; tests/test_build.py compares the two)."""
    answered = {q: int(person[q]) for q in catalog.codes if pd.notna(person[q])}

    def items(codes: list[str]) -> list[dict[str, Any]]:
        return [{"q": q, "a": answered[q]} for q in codes if q in answered]

    demographics, profile, heldout = fold_lists(catalog, protocol, train_q, test_q)
    profile = [q for q in profile if q in answered]
    random.Random(f"{seed}-{person['person_id']}-{fold}-{protocol}").shuffle(profile)
    return {
        "person_id": person["person_id"],
        "country": person["country"],
        "fold": fold,
        "demographics": items(demographics),
        "profile": items(profile),
        "heldout": items(heldout),
    }


class Benchmark:
    """A built benchmark on disk: the catalog, respondents and protocol datasets."""

    def __init__(self, path: str | Path = DEFAULT_DIR):
        self.path = Path(path)
        if not (self.path / "manifest.json").exists():
            raise NotFoundError(
                f"{self.path}: no built benchmark here; run `valuesim data build --wvs <WVS-7 folder>` first"
            )
        self.manifest = files.read_json(self.path / "manifest.json", what="benchmark manifest")
        if not isinstance(self.manifest, dict) or "fingerprint" not in self.manifest:
            raise ValueSimError(f"{self.path / 'manifest.json'}: not a benchmark manifest; build it again")
        self.catalog = Catalog.load(self.path / "catalog.json")
        self._profile_size: dict[int, int] = {}  # fold -> its number of profile questions

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    def respondents(self, split: str | None = None) -> pd.DataFrame:
        df = load_from_disk(str(self.path / "respondents")).to_pandas()
        return df if split is None else df[df["split"] == split].reset_index(drop=True)

    def rows(self, protocol: str, split: str, fold: int) -> Dataset:
        if protocol not in PROTOCOLS:
            raise ValueSimError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        ds = load_from_disk(str(self.path / protocol))[split]
        # one vectorized comparison instead of Dataset.filter's Python call per row (30 s and a progress bar for
        # the whole WVS-7's 291,620 rows); in memory, so nothing is written into the benchmark folder
        folds = ds.data.column("fold").to_numpy()
        return ds.select(np.flatnonzero(folds == fold), keep_in_memory=True)

    def check_history(self, fold: int, history: int) -> None:
        """Refuse a history size larger than the fold's profile questions (232 in the paper's folds): it would run
        as the whole profile and be recorded under a size that was never used. The same limit for both protocols
        (`values` keeps only the value questions of those, so its profiles are shorter)."""
        if fold not in self._profile_size:  # every profile question of the fold, answered by someone in train
            profiles = self.rows("reference", "train", fold).with_format("arrow")["profile"]
            self._profile_size[fold] = len(pc.unique(pc.list_flatten(profiles).combine_chunks().field("q")))
        if history > self._profile_size[fold]:
            raise ValueSimError(
                f"--history {history}: fold {fold} has {self._profile_size[fold]} profile questions; "
                f"use a history of at most {self._profile_size[fold]}"
            )

    def sample(self, protocol: str, split: str, fold: int, persons: int | None = None, seed: int = 0) -> Dataset:
        """The rows of `persons` respondents, stratified by country: each country gets its share of the split
        (largest remainder, at least one per country while persons allow), drawn with a seeded shuffle. The same
        arguments give the same persons for every program and history size. None (or more than the split has)
        takes every row, in file order."""
        rows = self.rows(protocol, split, fold)
        if persons is None or persons >= len(rows):
            return rows
        if persons < 1:
            raise ValueSimError(f"persons must be at least 1, got {persons}")
        ids = pd.Series(rows["person_id"])
        by_country = ids.groupby(pd.Series(rows["country"])).groups
        sizes = pd.Series({c: len(i) for c, i in by_country.items()}).sort_index()
        quota = sizes / sizes.sum() * persons
        take = quota.astype(int).clip(lower=min(1, persons // len(sizes)))
        spare = persons - int(take.sum())
        if spare > 0:  # largest remainders first; ties broken by country code for a stable order
            order = (quota - quota.astype(int)).sort_values(ascending=False, kind="stable").index
            for c in list(order)[:spare]:
                take[c] += 1
        while take.sum() > persons:  # the one-per-country floor overshot: trim the largest quotas
            take[take.idxmax()] -= 1
        chosen: list[int] = []
        for country, n in take.items():
            idx = sorted(by_country[country], key=lambda i: ids[i])
            random.Random(f"{seed}-sample-{country}").shuffle(idx)
            chosen += idx[: int(n)]
        return rows.select(sorted(chosen))

    def examples(
        self,
        protocol: str = "values",
        split: str = "dev",
        fold: int = 1,
        history: int = 232,
        persons: int | None = None,
        questions: int | None = None,
        seed: int = 0,
    ) -> list[dspy.Example]:
        """One example per (person, held-out question), inputs rendered for the programs.

        `persons` draws a country-stratified sample (see `sample`); None takes every person of the split."""
        self.check_history(fold, history)
        rows = self.sample(protocol, split, fold, persons, seed)
        out = []
        for row in rows:
            person = make_person(self.catalog, row["country"], row["demographics"], row["profile"][:history])
            person["person_id"] = row["person_id"]
            for item in row["heldout"][:questions]:
                out.append(make_example(self.catalog, person, item["q"], gold=item["a"]))
        return out


def items(
    bench: Benchmark,
    protocol: str = "values",
    split: str = "dev",
    fold: int = 1,
    history: int = 232,
    persons: int | None = None,
    questions: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """The same selection as `Benchmark.examples`, as plain dicts without rendered statements (what programs that
    need no LM read: person_id, country, known codes, question_code, options), plus the gold answer and metadata."""
    bench.check_history(fold, history)
    # one options dict per question and country, shared by its items (a million dicts otherwise)
    options_of = functools.cache(
        lambda code, country: {str(c): label for c, label in bench.catalog[code].options_for(country).items()}
    )
    # the columns read whole: row by row through `datasets`, the whole WVS-7 test split took 4.9 s, this 3.3 s
    rows = bench.sample(protocol, split, fold, persons, seed).with_format("arrow")[:]
    demographics, profile, heldout = (answer_lists(rows.column(c)) for c in ("demographics", "profile", "heldout"))
    out = []
    for n, (person_id, country) in enumerate(zip(rows.column("person_id").to_pylist(),
                                                 rows.column("country").to_pylist(), strict=True)):  # fmt: skip
        known = dict(zip(*demographics(n), strict=True))
        known.update(zip(*(part[:history] for part in profile(n)), strict=True))
        codes, answers = (part[:questions] for part in heldout(n))
        for code, answer in zip(codes, answers, strict=True):
            q = bench.catalog[code]
            out.append(
                {
                    "person_id": person_id,
                    "country": country,
                    "known": known,
                    "question_code": q.code,
                    "options": options_of(q.code, country),
                    "answer": str(answer),
                    "category": q.category,
                    "ordinal": q.ordinal,
                }
            )
    return out


def item_questions(
    bench: Benchmark,
    protocol: str = "values",
    split: str = "dev",
    fold: int = 1,
    history: int = 232,
    persons: int | None = None,
    questions: int | None = None,
    seed: int = 0,
) -> frozenset[str]:
    """The question codes of the same selection's `items`, read without making them (a --ray run starts building
    its program on them while the driver makes the items)."""
    bench.check_history(fold, history)  # as `items` does: no build for a selection it refuses
    heldout = bench.sample(protocol, split, fold, persons, seed).with_format("arrow")["heldout"].combine_chunks()
    asked = heldout if questions is None else pc.list_slice(heldout, 0, questions)
    return frozenset(pc.unique(pc.list_flatten(asked).field("q")).to_pylist())


def answer_lists(column: pa.ChunkedArray) -> Callable[[int], tuple[list, list]]:
    """A column of answer lists ([{q, a}, ...] per row) read once: row n -> (its codes, its answers)."""
    array = column.combine_chunks()
    flat = array.flatten()
    if len(flat):
        codes, answers = flat.field("q").to_pylist(), flat.field("a").to_pylist()
    else:  # every list empty: a column whose items have no type
        codes, answers = [], []
    starts = (array.offsets.to_numpy() - array.offsets[0].as_py()).tolist()
    return lambda n: (codes[starts[n] : starts[n + 1]], answers[starts[n] : starts[n + 1]])


def make_person(catalog: Catalog, country: str, demographics: list[dict], profile: list[dict]) -> dict:
    """What a program may know about a person: codes for the statistical programs, statements for the LMs."""
    known = {i["q"]: i["a"] for i in [*demographics, *profile]}
    demo_items = [i for i in [*demographics, *profile] if catalog[i["q"]].kind == "demographic"]
    value_items = [i for i in profile if catalog[i["q"]].kind == "value"]
    return {
        "country": country,
        "known": known,
        "demographics": [f"You live in {catalog.country_phrase(country)}."]
        + [catalog[i["q"]].statement(i["a"]) for i in demo_items],
        "profile": [catalog[i["q"]].statement(i["a"]) for i in value_items],
    }


def make_example(catalog: Catalog, person: dict, question_code: str, gold: int | None = None) -> dspy.Example:
    """One person asked one question: `question_code` is the code ("Q46"), `question` its wording, the field every
    signature reads."""
    q = catalog[question_code]
    options = q.options_for(person["country"])
    ex = dspy.Example(
        **person,
        question_code=question_code,
        question=q.text,
        options={str(c): label for c, label in options.items()},
        category=q.category,
        ordinal=q.ordinal,
        answer=None if gold is None else str(gold),
    )
    return ex.with_inputs(
        "person_id", "country", "known", "demographics", "profile", "question_code", "question", "options"
    )


__all__ = ["Benchmark", "make_example", "make_person", "PROTOCOLS"]
