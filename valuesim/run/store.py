"""Durable per-run store of finished predictions (SQLite in the run folder).

Each prediction is committed as soon as it finishes, so a killed run loses at most the predictions in flight;
`--resume` skips the keys already stored (a retried failure replaces its row). The primary key makes a duplicate
impossible.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pandas as pd

from valuesim import files

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY,
    person_id TEXT, question TEXT, gold TEXT, answer TEXT,
    status TEXT,            -- ok | invalid | failed
    error TEXT,
    detail TEXT,            -- JSON: module answers, analyses, backstory
    lm_calls INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL,
    cached_tokens INTEGER,  -- prompt tokens the engine reused from its KV/prefix cache
    cost_usd REAL,          -- dollars of the prediction's LM calls as DSPy priced them; NULL: no price
    probs TEXT,             -- JSON {option code: probability} over the question's options; NULL: no valid answer
    probs_method TEXT       -- counts | model | logprobs | samples | point; NULL: no valid answer, or a store
                            -- written before distributions (its rows count as point masses, see `parsed`)
)
"""
# a new store's columns, in SCHEMA's order (what `rows_frame` gives), read off SCHEMA itself
with closing(sqlite3.connect(":memory:")) as _db:
    COLUMNS = tuple(row[1] for row in _db.execute(SCHEMA).execute("PRAGMA table_info(predictions)"))
# missing from stores written before them
ADDED_COLUMNS = {"cached_tokens": "INTEGER", "cost_usd": "REAL", "probs": "TEXT", "probs_method": "TEXT"}


def probs_json(probs: dict | None) -> str | None:
    """A distribution as the store keeps it (JSON text; None: none)."""
    return None if probs is None else files.strict_json(probs, indent=None)


def _detail_json(detail: dict) -> str:
    # strict JSON like every file ValueSim writes: a store is read by other tools (sqlite3 + jq) too
    return files.strict_json(detail, default=str, indent=None, ensure_ascii=False)


class RunStore:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "predictions.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed prediction survives kill -9 (the process dying); only an OS crash or power loss
        # could lose the last commits. FULL fsyncs every prediction and made a 63k-prediction run I/O-bound.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(predictions)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in columns:
                self._db.execute(f"ALTER TABLE predictions ADD COLUMN {name} {kind}")
        self._db.commit()
        self._db.execute("ATTACH DATABASE ':memory:' AS batch")  # where `add_values` reads a `values_db`

    def done(self, include_failed: bool = True, need_probs: bool = False) -> set[str]:
        """Keys already predicted; without the failed ones when a resumed run should retry them, and with
        `need_probs` without the valid answers stored before distributions were (a batch program predicts those
        again: it is cheap and gives the same answer with its distribution)."""
        where = ["1"] if include_failed else ["status != 'failed'"]
        if need_probs:
            where.append("(probs_method IS NOT NULL OR status != 'ok')")
        with self._lock:
            return {k for (k,) in self._db.execute(f"SELECT key FROM predictions WHERE {' AND '.join(where)}")}

    def add(self, row: dict) -> None:
        row = {**row, "detail": _detail_json(row.get("detail") or {}), "probs": probs_json(row.get("probs"))}
        cols = ", ".join(row)
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO predictions ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            self._db.commit()

    def add_values(self, columns: Sequence[str], values: Sequence[Sequence] | bytes) -> None:
        """Many predictions in one transaction, as value tuples in the order of `columns`, `detail` and `probs`
        already JSON text (`valuesim.run.predict.batch_rows`), or as the database `values_db` made of them: the
        batch path commits once per batch of persons, not once per prediction. A row replaces a stored row with its
        key, as in `add`."""
        names = ", ".join(columns)
        with self._lock:
            if isinstance(values, bytes):
                self._db.deserialize(values, name="batch")  # replaces the previous batch's
                self._db.execute(f"INSERT OR REPLACE INTO main.predictions ({names}) SELECT {names} FROM batch.values_")
            else:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO predictions ({names}) VALUES ({', '.join('?' * len(columns))})", values
                )
            self._db.commit()

    def frame(self) -> pd.DataFrame:
        """Every stored row, as `parsed` gives it."""
        with self._lock:
            return parsed(pd.read_sql_query("SELECT * FROM predictions", self._db))

    def close(self) -> None:
        self._db.close()


def parsed(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored rows with `probs` parsed into a dict (its JSON text in `probs_json`). A valid answer stored before
    distributions were (no probs_method) reads as a point mass on it (method "point"): that is all such a row
    knows."""
    text = frame["probs"].to_numpy(dtype=object)
    old = (frame["probs_method"].isna() & (frame["status"] == "ok") & frame["answer"].notna()).to_numpy()
    frame["probs"] = [
        {str(a): 1.0} if o else json.loads(p) if isinstance(p, str) else None
        for p, a, o in zip(frame["probs"], frame["answer"], old, strict=True)
    ]
    # the JSON text as well, what a predictions table carries (writing a million dicts again took 20 s)
    frame["probs_json"] = [probs_json(d) if o else p for p, d, o in zip(text, frame["probs"], old, strict=True)]
    frame.loc[old, "probs_method"] = "point"
    return frame


def values_db(columns: Sequence[str], values: Sequence[Sequence]) -> bytes:
    """`add_values`' value tuples as a serialized SQLite database (one table, `values_`, columns without types, so
    each value keeps the type it was given until the store's columns convert it, as when inserted directly). A Ray
    worker sends a batch's rows so: the driver, the run's single writer, then inserts them in one statement, in
    less than half the CPU time that reading the tuples and inserting them one by one takes (BENCHMARKS §13)."""
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"CREATE TABLE values_ ({', '.join(columns)})")
        db.executemany(f"INSERT INTO values_ VALUES ({', '.join('?' * len(columns))})", values)
        db.commit()
        return db.serialize()


def rows_frame(columns: Sequence[str], values: Sequence[Sequence], probs: Sequence[dict | None]) -> pd.DataFrame:
    """What `RunStore.frame` reads back after `add_values(columns, values)` into a new store, without a store: a
    batch's rows where it was predicted (valuesim.run.predict.batch_table). `probs` are the rows' distributions as
    dicts, what their JSON text parses to: not parsed again."""
    raw = pd.DataFrame.from_records(values, columns=list(columns), coerce_float=True)  # as read_sql_query reads
    for name in COLUMNS:
        if name not in raw:
            raw[name] = None  # NULL in the store
    frame = raw[list(COLUMNS)].copy()
    frame["probs"], frame["probs_json"] = list(probs), frame["probs"]
    return frame
