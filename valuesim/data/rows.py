"""A protocol's per person x fold rows, built with numpy and streamed to Arrow a chunk of persons at a time.

`benchmark.person_fold` defines one row: the person's answered demographics, a seeded shuffle of their answered
profile questions and their answered held-out questions, each a list of {q, a}. Built one dict at a time, the whole
WVS-7 (97,220 persons x 5 folds x 2 protocols, ~280M items) took ~45 minutes and tens of GB, since every row was
held in memory until the end. Here CHUNK persons become Arrow list<struct<q, a>> columns at once, the shuffles come
from valuesim.data.shuffle (the permutations `random` gives), and each split is written to an Arrow file as it
goes. tests/test_build.py checks the rows equal person_fold's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Features, List, Value
from datasets.arrow_writer import ArrowWriter

from valuesim.data.catalog import Catalog
from valuesim.data.shuffle import permutations

if TYPE_CHECKING:
    from rich.progress import Progress

CHUNK = 4096  # persons per Arrow chunk (x 5 folds: ~20k rows, ~6M items, ~0.5 GB of intermediate arrays)
ITEM = {"q": Value("string"), "a": Value("int64")}


def features(protocol: str) -> Features:
    """The columns person_fold's dicts give (Dataset.from_list infers an always-empty list as a list of nulls)."""
    return Features(
        {
            "person_id": Value("string"),
            "country": Value("string"),
            "fold": Value("int64"),
            "demographics": List(ITEM) if protocol == "values" else List(Value("null")),
            "profile": List(ITEM),
            "heldout": List(ITEM),
        }
    )


def fold_lists(
    catalog: Catalog, protocol: str, train_q: list[str], test_q: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """(demographics, profile, held-out) question codes of one fold, in order; a row keeps a person's answered
    ones. `values`: demographics always known, value questions held out; `reference`: the fold as given. Open
    items (free numbers) are never held out: `reference` moves them to the profile."""
    askable = [q for q in test_q if not catalog[q].open]
    moved = [q for q in test_q if catalog[q].open]
    if protocol == "values":
        demographics = [q for q in catalog.codes if catalog[q].kind == "demographic"]
        profile = [q for q in train_q if catalog[q].kind == "value"]
        heldout = [q for q in askable if catalog[q].kind == "value"]
        return demographics, profile, heldout
    return [], [*train_q, *moved], askable


def write_rows(
    persons: pd.DataFrame,
    catalog: Catalog,
    protocol: str,
    folds: dict[int, tuple[list[str], list[str]]],
    seed: int,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """Write the rows of `persons` (a respondents table: person_id, country, Q1..Q290) to an Arrow file at `path`,
    each person's folds in order, persons in table order (what Dataset.from_list of person_fold's rows holds)."""
    task = progress.add_task(f"writing {path.stem}", total=len(persons)) if progress else None
    with ArrowWriter(path=str(path), features=features(protocol)) as writer:
        for table in chunk_tables(persons, catalog, protocol, folds, seed):
            writer.write_table(table)
            if progress and task is not None:
                progress.advance(task, table.num_rows // len(folds))
        writer.finalize()
    if progress and task is not None:
        progress.remove_task(task)
    return path


def chunk_tables(
    persons: pd.DataFrame, catalog: Catalog, protocol: str, folds: dict[int, tuple[list[str], list[str]]], seed: int
) -> Iterator[pa.Table]:
    """The rows of `persons`, CHUNK persons per Arrow table."""
    column = {q: i for i, q in enumerate(catalog.codes)}
    lists = [fold_lists(catalog, protocol, train_q, test_q) for train_q, test_q in folds.values()]
    demographics, profile, heldout = (
        [np.array([column[q] for q in fold[part]], dtype=np.int64) for fold in lists] for part in range(3)
    )
    names = pa.array(catalog.codes, pa.string())
    for start in range(0, len(persons), CHUNK):
        chunk = persons.iloc[start : start + CHUNK]
        known = chunk[catalog.codes].notna().to_numpy()
        values = np.stack([chunk[q].to_numpy(dtype=np.int64, na_value=0) for q in catalog.codes], axis=1)
        ids = chunk["person_id"].to_numpy(dtype=object)
        n_folds = len(folds)
        offsets, columns = _answered(known, profile)
        seeds = [f"{seed}-{pid}-{fold}-{protocol}" for pid in ids for fold in folds]
        order = permutations(seeds, np.diff(offsets))
        row, k = np.nonzero(order >= 0)  # row by row: each row's shuffled profile in order
        shuffled = columns[offsets[row] + order[row, k]]
        demo_column = _items(names, values, n_folds, *_answered(known, demographics))
        if protocol != "values":  # no demographics: Dataset.from_list's list of nulls
            demo_column = pa.ListArray.from_arrays(pa.array(np.zeros(len(seeds) + 1), pa.int32()), pa.nulls(0))
        yield pa.table(
            {
                "person_id": pa.array(np.repeat(ids, n_folds), pa.string()),
                "country": pa.array(np.repeat(chunk["country"].to_numpy(dtype=object), n_folds), pa.string()),
                "fold": pa.array(np.tile(np.array(list(folds), dtype=np.int64), len(chunk))),
                "demographics": demo_column,
                "profile": _items(names, values, n_folds, offsets, shuffled),
                "heldout": _items(names, values, n_folds, *_answered(known, heldout)),
            }
        )


def _items(names: pa.Array, values: np.ndarray, n_folds: int, offsets: np.ndarray, columns: np.ndarray) -> pa.ListArray:
    """list<struct<q, a>>: row r holds questions `columns[offsets[r]:offsets[r + 1]]` of person r // n_folds."""
    person = np.repeat(np.arange(len(offsets) - 1) // n_folds, np.diff(offsets))
    pairs = pa.StructArray.from_arrays(
        [names.take(pa.array(columns)), pa.array(values[person, columns], pa.int64())], names=["q", "a"]
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pairs)


def _answered(known: np.ndarray, per_fold: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows person-major, fold-minor: (offsets, question columns) of each row's answered questions of its fold's
    list, in list order."""
    n_folds = len(per_fold)
    counts = np.stack([known[:, cols].sum(axis=1) for cols in per_fold], axis=1)  # (persons, folds)
    offsets = np.concatenate([[0], np.cumsum(counts.ravel())])
    out = np.empty(offsets[-1], dtype=np.int64)
    for f, cols in enumerate(per_fold):
        person, k = np.nonzero(known[:, cols])  # person by person, in list order
        first = np.repeat(np.cumsum(counts[:, f]) - counts[:, f], counts[:, f])
        out[offsets[person * n_folds + f] + np.arange(len(person)) - first] = cols[k]
    return offsets, out
