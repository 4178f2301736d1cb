"""Durable per-run store of finished predictions (SQLite in the run folder).

Each prediction is committed as soon as it finishes, so a killed run loses at most the predictions in flight;
`--resume` skips the keys already stored (a retried failure replaces its row). The primary key makes a duplicate
impossible.
"""

from __future__ import annotations

import sqlite3
import threading
from operator import itemgetter
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
    cost_usd REAL           -- dollars of the prediction's LM calls as DSPy priced them; NULL: no price
)
"""
ADDED_COLUMNS = {"cached_tokens": "INTEGER", "cost_usd": "REAL"}  # missing from stores written before them


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

    def done(self, include_failed: bool = True) -> set[str]:
        """Keys already predicted; without the failed ones when a resumed run should retry them."""
        where = "" if include_failed else " WHERE status != 'failed'"
        with self._lock:
            return {k for (k,) in self._db.execute(f"SELECT key FROM predictions{where}")}

    def add(self, row: dict) -> None:
        row = {**row, "detail": _detail_json(row.get("detail") or {})}
        cols = ", ".join(row)
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO predictions ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            self._db.commit()

    def add_many(self, rows: list[dict]) -> None:
        """Many predictions (rows with the same columns) in one transaction: the batch path commits once per batch
        of persons, not once per prediction. A row replaces a stored row with its key, as in `add`."""
        if not rows:
            return
        cols = list(rows[0])
        get, detail = itemgetter(*cols), cols.index("detail") if "detail" in cols else None
        values = []
        for r in rows:
            v = list(get(r))
            if detail is not None:
                v[detail] = _detail_json(v[detail]) if v[detail] else "{}"
            values.append(v)
        sql = f"INSERT OR REPLACE INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        with self._lock:
            self._db.executemany(sql, values)
            self._db.commit()

    def frame(self) -> pd.DataFrame:
        with self._lock:
            return pd.read_sql_query("SELECT * FROM predictions", self._db)

    def close(self) -> None:
        self._db.close()
